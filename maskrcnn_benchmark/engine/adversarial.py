"""The alternating generator / discriminator iteration of Le et al. (Section 4.2).

The detector is the generator G; the box and mask discriminators (modeling/discriminators) are D.
Each iteration runs the detector once; D is updated first, on detached inputs, then G with D frozen.
``AdversarialTrainStep`` packages that as the ``train_step(images, targets, iteration) -> dict`` callable
that ``engine.trainer.do_train`` accepts.
"""
import contextlib
import warnings

import torch
from torch import nn

from maskrcnn_benchmark.engine.mixed_precision import backward_and_step
from maskrcnn_benchmark.engine.trainer import (
    NonFiniteLossError,
    check_finite_losses,
    distribute_module,
    make_baseline_train_step,
    unwrap_model,
)
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


class DiscriminatorScores(nn.Module):
    """D_b and D_m scoring pooled real and fake inputs in one ``forward``, so that DistributedDataParallel
    (which averages gradients only of modules called through its own forward) can wrap the discriminators
    apart from the detector."""

    def __init__(self, discriminators):
        """
        Arguments:
            discriminators (AdversarialDiscriminators)
        """
        super(DiscriminatorScores, self).__init__()
        self.discriminators = discriminators

    def forward(self, inputs):
        """
        Arguments:
            inputs (dict[str, Tensor]): ``discriminators.pool_inputs(...)`` output.
        Returns:
            dict: "box" -> (real Tensor[P], fake Tensor[P]) logits when D_b is on; "mask" -> (real Tensor[M, L],
            fake Tensor[M, L]) embeddings when D_m is on; all float32.
        """
        scores = {}
        if "box_real" in inputs:
            scores["box"] = self.discriminators.box_logits(inputs["box_real"], inputs["box_fake"])
        if "mask_real" in inputs:
            scores["mask"] = self.discriminators.mask_embeddings(inputs["mask_real"], inputs["mask_fake"])
        # the losses take logs of sigmoids: compute them in float32 whatever autocast ran D in
        return {k: (real.float(), fake.float()) for k, (real, fake) in scores.items()}


def _scorers(discriminators):
    """(scorer for the D update, bare scorer for the G update, bare AdversarialDiscriminators)."""
    if isinstance(discriminators, torch.nn.parallel.DistributedDataParallel):
        return discriminators, discriminators.module, discriminators.module.discriminators
    if isinstance(discriminators, DiscriminatorScores):
        return discriminators, discriminators, discriminators.discriminators
    scorer = DiscriminatorScores(discriminators)
    return scorer, scorer, discriminators


def discriminator_losses(scores, weights=None):
    """D's side, Eq. (3): loss_box_disc = L_adv^Db (Eq. (5)), loss_mask_disc = L_adv^Dm (Eq. (6)).

    Arguments:
        scores (dict): ``DiscriminatorScores`` output on detached inputs.
        weights (dict or None): {"loss_box_disc": w_b, "loss_mask_disc": w_m} to weight the terms as the authors'
            code does (MODEL.GAN.D_LOSS_WEIGHTED); None: unweighted, as Eq. (3).
    Returns:
        (dict[str, Tensor] losses as they enter L_D, dict[str, Tensor[]] statistics: mean D_b probability on real /
        fake boxes, mean L2 norm of D_m's embedding of the real inputs, a measure of D_m's scale)
    """
    losses, stats = {}, {}
    if "box" in scores:
        real, fake = scores["box"]
        losses["loss_box_disc"] = box_adv_discriminator_loss(real, fake)
        if real.numel() > 0:
            stats["d_box_real_prob"] = real.detach().sigmoid().mean()
            stats["d_box_fake_prob"] = fake.detach().sigmoid().mean()
    if "mask" in scores:
        real, fake = scores["mask"]
        losses["loss_mask_disc"] = mask_adv_discriminator_loss(real, fake)
        if real.shape[0] > 0:
            stats["d_mask_real_embedding_norm"] = real.detach().norm(dim=1).mean()
    if weights is not None:
        losses = {k: weights[k] * v for k, v in losses.items()}
    return losses, stats


def generator_adversarial_losses(scores):
    """G's adversarial terms: loss_box_adv = L_adv^Gb (Eq. (4)), loss_mask_adv = L_adv^Gm (Eq. (6)).

    Arguments:
        scores (dict): ``DiscriminatorScores`` output of frozen discriminators on inputs attached to G's graph.
    Returns:
        dict[str, Tensor]: the unweighted losses.
    """
    losses = {}
    if "box" in scores:
        losses["loss_box_adv"] = box_adv_generator_loss(scores["box"][1])
    if "mask" in scores:
        losses["loss_mask_adv"] = mask_adv_generator_loss(*scores["mask"])
    return losses


def _float32_adv_inputs(adv_inputs):
    # The discriminators pool in float32: the compiled PrRoIPool CPU kernel takes float32/float64 only, and
    # the pooled values feed log-sigmoid losses. Casting keeps the graph (the cast is differentiable).
    cast = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in adv_inputs.items()}
    cast["features"] = [level.float() for level in adv_inputs["features"]]
    return cast


def adversarial_iteration(model, discriminators, g_optimizer, d_optimizer, images, targets,
                          box_weight, mask_weight, adv_only=False, d_steps=1, precision=None,
                          g_scaler=None, d_scaler=None, iteration=None, weight_d_losses=False):
    """One training iteration of the detector (G) against the discriminators (D).

    Arguments:
        model (GeneralizedRCNN or its DistributedDataParallel wrapper): the detector, in training mode.
        discriminators (AdversarialDiscriminators, DiscriminatorScores, or DistributedDataParallel around a
            DiscriminatorScores): in training mode.
        g_optimizer, d_optimizer (Optimizer): over the detector's and the discriminators' parameters.
        images (ImageList or list[Tensor[3, H, W]]), targets (list[BoxList]): one batch.
        box_weight, mask_weight (float): w_b and w_m of Eq. (2).
        adv_only (bool): drop L_bbox and L_mask from Eq. (2) (Table 5).
        d_steps (int): D updates (on this batch) per G update.
        precision (MixedPrecision or None): autocast region of the detector's and D's forward passes.
        g_scaler, d_scaler (GradScaler or None): one loss scaler per optimizer (float16).
        iteration (int or None): for the message of a non-finite loss.
        weight_d_losses (bool): weight D's losses by w_b and w_m too (the authors' code; MODEL.GAN.D_LOSS_WEIGHTED).
    Returns:
        dict[str, Tensor[]] (detached): the terms of L_G as they enter it (detection losses, w_b * loss_box_adv,
        w_m * loss_mask_adv; their sum is L_G), the terms of L_D as they enter it (loss_box_disc, loss_mask_disc,
        from the last D update), d_box_real_prob / d_box_fake_prob (mean D_b probability before that update),
        and D's scale: d_mask_real_embedding_norm (mean L2 norm of D_m's embedding of the real inputs) and
        d_box_bn_gamma / d_mask_bn_gamma (mean |gamma| of each D's BatchNorms, after the G update).
    Raises:
        NonFiniteLossError before the update that a NaN/inf term would enter (a non-finite G term found
        after the D update leaves that D update done and skips the G update).
    """
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    d_scorer, bare_scorer, bare_discriminators = _scorers(discriminators)

    # 1. One detector forward serves both updates.
    with autocast():
        detection_losses, adv_inputs = model(images, targets, return_adv_inputs=True)
    detection_losses = {k: v.float() for k, v in detection_losses.items()}
    check_finite_losses(detection_losses, iteration)
    with torch.autocast(device_type=adv_inputs["features"][0].device.type, enabled=False):
        d_inputs = bare_discriminators.pool_inputs(_float32_adv_inputs(adv_inputs))

    # 2. D update with G frozen (detached inputs): L_D = L_adv^Db + L_adv^Dm, Eq. (3)
    # (the authors' variant: L_D = w_b L_adv^Db + w_m L_adv^Dm).
    d_weights = {"loss_box_disc": box_weight, "loss_mask_disc": mask_weight} if weight_d_losses else None
    for _ in range(d_steps):
        with autocast():
            scores = d_scorer({k: v.detach() for k, v in d_inputs.items()})
        d_losses, d_stats = discriminator_losses(scores, d_weights)
        check_finite_losses(d_losses, iteration)
        backward_and_step(sum(d_losses.values()), d_optimizer, d_scaler)

    # 3. G update with D frozen: L_G = L_cls + L_bbox + L_mask + w_b L_adv^Gb + w_m L_adv^Gm, Eq. (2).
    # D is called past its DDP wrapper (the bare module): frozen, it gets no gradient, nothing to average.
    with frozen(bare_discriminators):
        with autocast():
            scores = bare_scorer(d_inputs)
        weights = {"loss_box_adv": box_weight, "loss_mask_adv": mask_weight}
        g_adv_losses = {k: weights[k] * v for k, v in generator_adversarial_losses(scores).items()}
        g_terms = {k: v for k, v in detection_losses.items()
                   if not (adv_only and k in SUPERVISED_LOSSES_REPLACED_BY_ADV)}
        g_terms.update(g_adv_losses)
        check_finite_losses(g_terms, iteration)
        objective = sum(g_terms.values())
        if adv_only:
            # zero times the dropped losses: the parameters only they reach (the box regression when D_b pools
            # with ROIAlign) get a zero gradient instead of none, so DDP without find_unused_parameters sees
            # every detector parameter used (older PyTorch fails at the next forward otherwise). Side effect:
            # weight decay and momentum still act on them, in one process and in many alike.
            objective = objective + sum(0.0 * v for k, v in detection_losses.items() if k not in g_terms)
        backward_and_step(objective, g_optimizer, g_scaler)

    d_stats.update(bare_discriminators.scale_stats())
    return {k: v.detach() for k, v in {**g_terms, **d_losses, **d_stats}.items()}


def _advance_schedule(scheduler):
    """Move ``scheduler`` one iteration on without an optimizer step having been taken.

    D is not trained before MODEL.GAN.START_ITER, but its schedule must reach START_ITER in step with G's.
    Stepping the scheduler itself there makes PyTorch warn that lr_scheduler.step() came before
    optimizer.step(); schedules with a closed form (WarmupMultiStepLR, MultiStepLR, StepLR...) are moved by it.
    """
    closed_form = getattr(scheduler, "_get_closed_form_lr", None)
    if closed_form is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")
            scheduler.step()
        return
    scheduler.last_epoch += 1
    for group, lr in zip(scheduler.optimizer.param_groups, closed_form()):
        group["lr"] = lr
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


class AdversarialTrainStep(object):
    """``train_step(images, targets, iteration) -> dict[str, Tensor[]]`` for ``engine.trainer.do_train``.

    Steps both optimizers and D's LR scheduler; do_train steps G's scheduler (once per iteration, as for the
    baseline). Iterations before ``start_iter`` are baseline iterations (no D update, no adversarial terms),
    run through the same (possibly DDP-wrapped) detector.
    """

    def __init__(self, model, discriminators, g_optimizer, d_optimizer, d_scheduler,
                 box_weight=0.025, mask_weight=0.5, adv_only=False, start_iter=0, d_steps_per_g_step=1,
                 precision=None, g_scaler=None, d_scaler=None, distributed=False, weight_d_losses=False):
        """
        Arguments:
            model (GeneralizedRCNN or its DistributedDataParallel wrapper): the detector (G).
            discriminators (AdversarialDiscriminators): D (unwrapped; it is checkpointed as is).
            g_optimizer, d_optimizer (Optimizer): SGD over G's and D's parameters.
            d_scheduler: D's LR scheduler (G's schedule applied to D's lower base LR).
            box_weight, mask_weight (float): w_b and w_m of Eq. (2).
            adv_only (bool): Table 5's variant without L_bbox and L_mask.
            start_iter (int): first iteration with adversarial terms (do_train counts from 1).
            d_steps_per_g_step (int): D updates per G update (>= 1).
            precision (MixedPrecision or None): autocast of the forward passes (DTYPE).
            g_scaler, d_scaler (GradScaler or None): loss scalers of the two optimizers (float16).
            distributed (bool): wrap D in its own DistributedDataParallel (the detector comes wrapped).
            weight_d_losses (bool): weight D's losses by w_b and w_m (the authors' variant).
        """
        if d_steps_per_g_step < 1:
            raise ValueError("MODEL.GAN.D_STEPS_PER_G_STEP must be >= 1, got {}".format(d_steps_per_g_step))
        self.model = model
        self.discriminators = discriminators
        scorer = DiscriminatorScores(discriminators)
        self.d_scorer = distribute_module(scorer, next(discriminators.parameters()).device) if distributed \
            else scorer
        self.g_optimizer, self.d_optimizer, self.d_scheduler = g_optimizer, d_optimizer, d_scheduler
        self.box_weight, self.mask_weight = box_weight, mask_weight
        self.adv_only = adv_only
        self.start_iter = start_iter
        self.d_steps = d_steps_per_g_step
        self.precision = precision
        self.g_scaler, self.d_scaler = g_scaler, d_scaler
        self.weight_d_losses = weight_d_losses

    def __call__(self, images, targets, iteration):
        """Runs one iteration; returns the values to log (0-dim tensors), plus D's learning rate "d_lr"."""
        self.discriminators.train()
        try:
            if iteration < self.start_iter:
                baseline_step = make_baseline_train_step(self.model, self.g_optimizer, self.precision, self.g_scaler)
                logged = baseline_step(images, targets, iteration)
            else:
                logged = adversarial_iteration(
                    self.model, self.d_scorer, self.g_optimizer, self.d_optimizer, images, targets,
                    self.box_weight, self.mask_weight, self.adv_only, self.d_steps,
                    precision=self.precision, g_scaler=self.g_scaler, d_scaler=self.d_scaler, iteration=iteration,
                    weight_d_losses=self.weight_d_losses,
                )
        except NonFiniteLossError:
            # do_train steps G's scheduler on a skipped step too: D's must move with it, or D's LR falls one
            # iteration behind G's per skipped step
            _advance_schedule(self.d_scheduler)
            raise
        # D's schedule advances every iteration, like G's, so D's LR stays D_LR_FACTOR times G's; silently
        # where D's optimizer has not stepped (baseline iterations before START_ITER)
        if iteration < self.start_iter:
            _advance_schedule(self.d_scheduler)
        else:
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


def build_adversarial_train_step(cfg, model, g_optimizer, device="cpu", precision=None, g_scaler=None,
                                 distributed=False):
    """Builds the discriminators, their optimizer, scheduler and loss scaler, and the train step, from MODEL.GAN.

    Arguments:
        cfg (CfgNode), model (GeneralizedRCNN with ``backbone.out_channels``, or its DDP wrapper),
        g_optimizer (the detector's).
        device (str or torch.device): where the discriminators live (the detector's device).
        precision (MixedPrecision or None): DTYPE's autocast; D gets its own GradScaler from it.
        g_scaler (GradScaler or None): the detector optimizer's scaler.
        distributed (bool): give D its own DistributedDataParallel wrapper.
    Returns:
        AdversarialTrainStep (its ``discriminators``, ``d_optimizer``, ``d_scheduler`` and ``d_scaler`` are
        attributes, to be checkpointed along with the detector).
    """
    from maskrcnn_benchmark.modeling.discriminators import build_discriminators

    discriminators = build_discriminators(cfg, unwrap_model(model).backbone.out_channels).to(device)
    d_optimizer = make_discriminator_optimizer(cfg, discriminators)
    d_scheduler = make_discriminator_scheduler(cfg, d_optimizer)
    d_scaler = precision.grad_scaler() if precision is not None else None
    gan = cfg.MODEL.GAN
    return AdversarialTrainStep(
        model, discriminators, g_optimizer, d_optimizer, d_scheduler,
        box_weight=gan.BOX_WEIGHT, mask_weight=gan.MASK_WEIGHT, adv_only=gan.ADV_ONLY,
        start_iter=gan.START_ITER, d_steps_per_g_step=gan.D_STEPS_PER_G_STEP,
        precision=precision, g_scaler=g_scaler, d_scaler=d_scaler, distributed=distributed,
        weight_d_losses=gan.D_LOSS_WEIGHTED,
    )
