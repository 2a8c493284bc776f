"""Builders of the optimizer and learning-rate scheduler from cfg.SOLVER."""
import torch

from .lr_scheduler import WarmupMultiStepLR


def make_optimizer(cfg, model, lr_factor=1.0):
    """SGD over the trainable parameters of ``model`` with maskrcnn-benchmark's per-parameter settings.

    Parameters whose name contains "bias" get lr = base * SOLVER.BIAS_LR_FACTOR and SOLVER.WEIGHT_DECAY_BIAS;
    the others lr = base and SOLVER.WEIGHT_DECAY; base = SOLVER.BASE_LR * ``lr_factor`` (e.g.
    MODEL.GAN.D_LR_FACTOR for the discriminators' own optimizer). Momentum SOLVER.MOMENTUM.

    maskrcnn-benchmark made one param group per parameter; the two groups here give the same update with far
    fewer groups (PyTorch's fused multi-tensor SGD works per group).

    Args:
        cfg: config with SOLVER.{BASE_LR, BIAS_LR_FACTOR, WEIGHT_DECAY, WEIGHT_DECAY_BIAS, MOMENTUM}.
        model: nn.Module; parameters with requires_grad=False (frozen stages) are left out.
        lr_factor: multiplier of SOLVER.BASE_LR.
    Returns:
        torch.optim.SGD with param groups "weights" and "biases" (empty ones are omitted).
    """
    base_lr = cfg.SOLVER.BASE_LR * lr_factor
    weights, biases = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (biases if "bias" in name else weights).append(param)
    groups = []
    if weights:
        groups.append({"params": weights, "lr": base_lr, "weight_decay": cfg.SOLVER.WEIGHT_DECAY,
                       "name": "weights"})
    if biases:
        groups.append({"params": biases, "lr": base_lr * cfg.SOLVER.BIAS_LR_FACTOR,
                       "weight_decay": cfg.SOLVER.WEIGHT_DECAY_BIAS, "name": "biases"})
    if not groups:
        raise ValueError("make_optimizer: {} has no trainable parameters (all requires_grad=False)".format(
            type(model).__name__))
    return torch.optim.SGD(groups, lr=base_lr, momentum=cfg.SOLVER.MOMENTUM)


def make_lr_scheduler(cfg, optimizer):
    """WarmupMultiStepLR from SOLVER.{STEPS, GAMMA, WARMUP_FACTOR, WARMUP_ITERS, WARMUP_METHOD}."""
    return WarmupMultiStepLR(
        optimizer,
        cfg.SOLVER.STEPS,
        cfg.SOLVER.GAMMA,
        warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
        warmup_iters=cfg.SOLVER.WARMUP_ITERS,
        warmup_method=cfg.SOLVER.WARMUP_METHOD,
    )
