"""The alternating generator / discriminator iteration of Le et al. (Section 4.2).

The detector is the generator G; the box and mask discriminators (modeling/discriminators) are D.
Each iteration runs the detector once; D is updated first, on detached inputs, then G with D frozen.
``AdversarialTrainStep`` packages that as the ``train_step(images, targets, iteration) -> dict`` callable
that ``engine.trainer.do_train`` accepts.
"""
import contextlib

import torch

from maskrcnn_benchmark.engine.trainer import make_baseline_train_step
from maskrcnn_benchmark.modeling.discriminators.loss import (
    box_adv_discriminator_loss,
    box_adv_generator_loss,
    mask_adv_discriminator_loss,
    mask_adv_generator_loss,
)

# Detection losses that Table 5's adversarial-only variant drops from Eq. (2).
SUPERVISED_LOSSES_REPLACED_BY_ADV = ("loss_box_reg", "loss_mask")


@contextlib.contextmanager
def frozen(module):
    """Sets requires_grad False on the module's parameters inside the block and restores each flag after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def discriminator_losses(discriminators, inputs):
    """D's side, Eq. (3): loss_box_disc = L_adv^Db (Eq. (5)), loss_mask_disc = L_adv^Dm (Eq. (6)).

    Arguments:
        discriminators (AdversarialDiscriminators)
        inputs (dict[str, Tensor]): ``discriminators.pool_inputs(...)`` output (detach it for the D update).
    Returns:
        (dict[str, Tensor] losses, dict[str, Tensor[]] statistics: mean D_b probability on real / fake boxes)
    """
    losses, stats = {}, {}
    if "box_real" in inputs:
        real, fake = discriminators.box_logits(inputs["box_real"], inputs["box_fake"])
        losses["loss_box_disc"] = box_adv_discriminator_loss(real, fake)
        if real.numel() > 0:
            stats["d_box_real_prob"] = real.detach().sigmoid().mean()
            stats["d_box_fake_prob"] = fake.detach().sigmoid().mean()
    if "mask_real" in inputs:
        real, fake = discriminators.mask_embeddings(inputs["mask_real"], inputs["mask_fake"])
        losses["loss_mask_disc"] = mask_adv_discriminator_loss(real, fake)
    return losses, stats


def generator_adversarial_losses(discriminators, inputs):
    """G's adversarial terms: loss_box_adv = L_adv^Gb (Eq. (4)), loss_mask_adv = L_adv^Gm (Eq. (6)).

    Arguments:
        discriminators (AdversarialDiscriminators): frozen by the caller.
        inputs (dict[str, Tensor]): ``discriminators.pool_inputs(...)`` output, attached to G's graph.
    Returns:
        dict[str, Tensor]: the unweighted losses.
    """
    losses = {}
    if "box_real" in inputs:
        _, fake = discriminators.box_logits(inputs["box_real"], inputs["box_fake"])
        losses["loss_box_adv"] = box_adv_generator_loss(fake)
    if "mask_real" in inputs:
        losses["loss_mask_adv"] = mask_adv_generator_loss(
            *discriminators.mask_embeddings(inputs["mask_real"], inputs["mask_fake"])
        )
    return losses


def adversarial_iteration(model, discriminators, g_optimizer, d_optimizer, images, targets,
                          box_weight, mask_weight, adv_only=False, d_steps=1):
    """One training iteration of the detector (G) against the discriminators (D).

    Arguments:
        model (GeneralizedRCNN): the detector, in training mode.
        discriminators (AdversarialDiscriminators): in training mode.
        g_optimizer, d_optimizer (Optimizer): over the detector's and the discriminators' parameters.
        images (ImageList or list[Tensor[3, H, W]]), targets (list[BoxList]): one batch.
        box_weight, mask_weight (float): w_b and w_m of Eq. (2).
        adv_only (bool): drop L_bbox and L_mask from Eq. (2) (Table 5).
        d_steps (int): D updates (on this batch) per G update.
    Returns:
        dict[str, Tensor[]] (detached): the terms of L_G as they enter it (detection losses, w_b * loss_box_adv,
        w_m * loss_mask_adv; their sum is L_G), the terms of L_D (loss_box_disc, loss_mask_disc, from the last
        D update), and d_box_real_prob / d_box_fake_prob (mean D_b probability before that update).
    """
    # 1. One detector forward serves both updates.
    detection_losses, adv_inputs = model(images, targets, return_adv_inputs=True)
    d_inputs = discriminators.pool_inputs(adv_inputs)

    # 2. D update with G frozen (detached inputs): L_D = L_adv^Db + L_adv^Dm, Eq. (3).
    for _ in range(d_steps):
        d_losses, d_stats = discriminator_losses(discriminators, {k: v.detach() for k, v in d_inputs.items()})
        d_optimizer.zero_grad()
        sum(d_losses.values()).backward()
        d_optimizer.step()

    # 3. G update with D frozen: L_G = L_cls + L_bbox + L_mask + w_b L_adv^Gb + w_m L_adv^Gm, Eq. (2).
    with frozen(discriminators):
        weights = {"loss_box_adv": box_weight, "loss_mask_adv": mask_weight}
        g_adv_losses = {k: weights[k] * v for k, v in generator_adversarial_losses(discriminators, d_inputs).items()}
        g_terms = {k: v for k, v in detection_losses.items()
                   if not (adv_only and k in SUPERVISED_LOSSES_REPLACED_BY_ADV)}
        g_terms.update(g_adv_losses)
        g_optimizer.zero_grad()
        sum(g_terms.values()).backward()
        g_optimizer.step()

    return {k: v.detach() for k, v in {**g_terms, **d_losses, **d_stats}.items()}


class AdversarialTrainStep(object):
    """``train_step(images, targets, iteration) -> dict[str, Tensor[]]`` for ``engine.trainer.do_train``.

    Steps both optimizers and D's LR scheduler; do_train steps G's scheduler (once per iteration, as for the
    baseline). Iterations before ``start_iter`` are baseline iterations (no D update, no adversarial terms).
    """

    def __init__(self, model, discriminators, g_optimizer, d_optimizer, d_scheduler,
                 box_weight=0.025, mask_weight=0.5, adv_only=False, start_iter=0, d_steps_per_g_step=1):
        """
        Arguments:
            model (GeneralizedRCNN): the detector (G).
            discriminators (AdversarialDiscriminators): D.
            g_optimizer, d_optimizer (Optimizer): SGD over G's and D's parameters.
            d_scheduler: D's LR scheduler (G's schedule applied to D's lower base LR).
            box_weight, mask_weight (float): w_b and w_m of Eq. (2).
            adv_only (bool): Table 5's variant without L_bbox and L_mask.
            start_iter (int): first iteration with adversarial terms (do_train counts from 1).
            d_steps_per_g_step (int): D updates per G update (>= 1).
        """
        if d_steps_per_g_step < 1:
            raise ValueError("MODEL.GAN.D_STEPS_PER_G_STEP must be >= 1, got {}".format(d_steps_per_g_step))
        self.model = model
        self.discriminators = discriminators
        self.g_optimizer, self.d_optimizer, self.d_scheduler = g_optimizer, d_optimizer, d_scheduler
        self.box_weight, self.mask_weight = box_weight, mask_weight
        self.adv_only = adv_only
        self.start_iter = start_iter
        self.d_steps = d_steps_per_g_step

    def __call__(self, images, targets, iteration):
        """Runs one iteration; returns the values to log (0-dim tensors), plus D's learning rate "d_lr"."""
        self.discriminators.train()
        if iteration < self.start_iter:
            # built on the fly: train_net swaps self.model for its DistributedDataParallel wrapper
            baseline_step = make_baseline_train_step(self.model, self.g_optimizer)
            logged = {k: v.detach() for k, v in baseline_step(images, targets, iteration).items()}
        else:
            logged = adversarial_iteration(
                self.model, self.discriminators, self.g_optimizer, self.d_optimizer, images, targets,
                self.box_weight, self.mask_weight, self.adv_only, self.d_steps,
            )
        # D's schedule advances every iteration, like G's, so D's LR stays D_LR_FACTOR times G's
        self.d_scheduler.step()
        logged["d_lr"] = torch.tensor(self.d_optimizer.param_groups[0]["lr"])
        return logged


def make_discriminator_optimizer(cfg, discriminators):
    """SGD for D with the detector's settings (SOLVER.MOMENTUM, WEIGHT_DECAY, bias rules) and
    LR = SOLVER.BASE_LR * MODEL.GAN.D_LR_FACTOR (the paper: D's LR is one fifth of G's)."""
    from maskrcnn_benchmark.solver import make_optimizer

    return make_optimizer(cfg, discriminators, lr_factor=cfg.MODEL.GAN.D_LR_FACTOR)


def make_discriminator_scheduler(cfg, d_optimizer):
    """D's LR schedule: the detector's (SOLVER.STEPS, GAMMA, warm-up) applied to D's lower base LR."""
    from maskrcnn_benchmark.solver import make_lr_scheduler

    return make_lr_scheduler(cfg, d_optimizer)


def build_adversarial_train_step(cfg, model, g_optimizer, device="cpu"):
    """Builds the discriminators, their optimizer and scheduler, and the train step, from MODEL.GAN.

    Arguments:
        cfg (CfgNode), model (GeneralizedRCNN, with ``backbone.out_channels``), g_optimizer (the detector's).
        device (str or torch.device): where the discriminators live (the detector's device).
    Returns:
        AdversarialTrainStep (its ``discriminators``, ``d_optimizer`` and ``d_scheduler`` are attributes, to
        be checkpointed along with the detector).
    """
    from maskrcnn_benchmark.modeling.discriminators import build_discriminators

    discriminators = build_discriminators(cfg, model.backbone.out_channels).to(device)
    d_optimizer = make_discriminator_optimizer(cfg, discriminators)
    d_scheduler = make_discriminator_scheduler(cfg, d_optimizer)
    gan = cfg.MODEL.GAN
    return AdversarialTrainStep(
        model, discriminators, g_optimizer, d_optimizer, d_scheduler,
        box_weight=gan.BOX_WEIGHT, mask_weight=gan.MASK_WEIGHT, adv_only=gan.ADV_ONLY,
        start_iter=gan.START_ITER, d_steps_per_g_step=gan.D_STEPS_PER_G_STEP,
    )
