"""The per-iteration optimisation step and what every step shares: the supervised (baseline) step, the check
that refuses non-finite losses before anything is updated, and the DistributedDataParallel wrapping.
``engine.trainer.do_train`` calls a step once per iteration; ``engine.adversarial`` builds the adversarial one
from these parts."""
import inspect

import torch

from maskrcnn_benchmark.engine.mixed_precision import backward_and_step
from maskrcnn_benchmark.utils.comm import all_gather, any_process_true


class NonFiniteLossError(FloatingPointError):
    """A loss term (or a tensor of the forward pass, see NonFiniteTensorError) is NaN or infinite; raised before
    anything is updated with it.

    Attributes: ``names`` (list[str]) the non-finite terms or tensors, ``iteration`` (int).
    """

    def __init__(self, names, iteration, values=None):
        self.names = list(names)
        self.iteration = iteration
        shown = ", ".join("{}={}".format(n, values[n]) if values else n for n in self.names)
        what = "loss" if all(n.startswith("loss") for n in self.names) else "value"
        super().__init__("non-finite {} at iteration {}: {}".format(what, iteration, shown))


def check_finite_losses(loss_dict, iteration, nonfinite_here=None):
    """Raise NonFiniteLossError naming every non-finite entry of ``loss_dict`` (dict name -> Tensor).

    Args:
        nonfinite_here (dict name -> str or None): non-finite values this process found elsewhere (e.g. a
            NonFiniteTensorError raised inside the forward pass), reported with the losses.

    Under torch.distributed the verdict is shared: a term non-finite on any process counts on all, so every
    process skips (or stops at) the same step and none is left waiting in a gradient all-reduce. A process
    whose forward pass failed calls this with ``loss_dict={}`` and its finding, so the collectives match.
    """
    local = {n: float(loss_dict[n].detach().float().sum()) for n in sorted(loss_dict)
             if not bool(torch.isfinite(loss_dict[n].detach()).all())}
    local.update(nonfinite_here or {})
    # one small all-reduce per step; the names are gathered only when something is wrong somewhere
    if not any_process_true([bool(local)])[0]:
        return
    gathered = all_gather(local)
    names = sorted(set().union(*gathered))
    values = {}
    for name in names:
        if name in local:
            values[name] = local[name]
        else:
            rank = next(r for r, entries in enumerate(gathered) if name in entries)
            values[name] = "finite here, not on another process (process {})".format(rank)
    raise NonFiniteLossError(names, iteration, values)


def make_baseline_train_step(model, optimizer, precision=None, scaler=None):
    """The supervised Mask R-CNN step: forward, check the losses, sum them, backward, optimizer step.

    Arguments:
        model: the detector (or its DistributedDataParallel wrapper, so the gradients are averaged).
        optimizer: over the detector's parameters.
        precision (MixedPrecision or None): autocast region of the forward pass.
        scaler (GradScaler or None): the optimizer's loss scaler (float16).
    Returns:
        callable (images, targets, iteration) -> dict name -> 0-dim Tensor of the losses to log
        (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask``...);
        raises NonFiniteLossError (before any update) when a loss is NaN or infinite.
    """

    def train_step(images, targets, iteration):
        if precision is not None:
            with precision.autocast():
                loss_dict = model(images, targets)
        else:
            loss_dict = model(images, targets)
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        check_finite_losses(loss_dict, iteration)
        backward_and_step(sum(loss for loss in loss_dict.values()), optimizer, scaler)
        return {k: v.detach() for k, v in loss_dict.items()}

    return train_step


def distribute_module(module, device):
    """Wrap ``module`` in DistributedDataParallel for ``device`` (CUDA: one GPU per process; CPU: gloo).

    find_unused_parameters stays False (no per-iteration graph walk): every loss of the detector and of the
    discriminators touches all the parameters it could reach, with an exact zero when it has nothing to
    average over (``logits.sum() * 0`` for empty RoI sets), and the adversarial-only variant adds the
    dropped supervised losses times zero (engine/adversarial.py).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    # Buffers are made equal once, at wrapping, and not re-broadcast before every forward: FrozenBatchNorm
    # buffers never change, and BatchNorm running statistics stay per process (rank 0's are saved).
    # Current PyTorch names that forward_sync_buffers=False (broadcast_buffers is deprecated there).
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    buffer_option = {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters \
        else {"broadcast_buffers": False}
    return torch.nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if cuda else None,
        output_device=device.index if cuda else None,
        **buffer_option
    )
