"""The alternating generator / discriminator iteration of Le et al. (Section 4.2).

The detector is the generator G; the box and mask discriminators (modeling/discriminators) are D.
Each iteration runs the detector once; D is updated first, on detached inputs, then G with D frozen
(MODEL.GAN.UPDATE_ORDER "d_then_g"; "g_then_d" computes both losses from the same D, then steps G, then D).
``AdversarialTrainStep`` packages that as the ``train_step(images, targets, iteration) -> dict`` callable
that ``engine.trainer.do_train`` accepts. The data path: the detector returns its losses and the
discriminators' inputs (``AdversarialInputs``); ``AdversarialDiscriminators.pool_inputs`` turns those into D's
inputs and its ``forward`` scores them; the losses of modeling/discriminators/loss.py turn the scores into L_D and L_G.
"""
import contextlib
import warnings

import torch

from maskrcnn_benchmark.engine.mixed_precision import backward_and_step
from maskrcnn_benchmark.engine.train_step import (
    NonFiniteLossError,
    check_finite_losses,
    distribute_module,
    make_baseline_train_step,
)
from maskrcnn_benchmark.modeling.discriminators.loss import discriminator_losses, generator_adversarial_losses
from maskrcnn_benchmark.utils.comm import unwrap_model

# Detection losses that Table 5's adversarial-only variant drops from Eq. (2).
SUPERVISED_LOSSES_REPLACED_BY_ADV = ("loss_box_reg", "loss_mask")
# MODEL.GAN.UPDATE_ORDER: D's update(s) first, then G against the updated D (Section 4.2); or L_D and L_G both from
# the not yet updated D, then G's step, then D's (the authors' train.py)
UPDATE_ORDERS = ("d_then_g", "g_then_d")


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
    """The adversarial step: ``train_step(images, targets, iteration) -> dict[str, Tensor[]]`` for
    ``engine.trainer.do_train``, holding D, both optimizers, D's LR schedule and both loss scalers.

    Each call runs :meth:`adversarial_iteration` (or, before ``start_iter``, a baseline iteration through the
    same, possibly DDP-wrapped, detector) and advances D's schedule; do_train advances G's (once per
    iteration, as for the baseline), skipped iterations included, so D's LR stays D_LR_FACTOR times G's.
    :meth:`state_dict` is D's side of a checkpoint; :meth:`checkpoint_entries` names its parts as the
    checkpoint file stores them.
    """

    def __init__(self, model, discriminators, g_optimizer, d_optimizer, d_scheduler=None,
                 box_weight=0.025, mask_weight=0.5, adv_only=False, start_iter=0, d_steps_per_g_step=1,
                 precision=None, g_scaler=None, d_scaler=None, distributed=False, weight_d_losses=False,
                 update_order="d_then_g"):
        """
        Arguments:
            model (GeneralizedRCNN or its DistributedDataParallel wrapper): the detector (G).
            discriminators (AdversarialDiscriminators): D (unwrapped; it is checkpointed as is).
            g_optimizer, d_optimizer (Optimizer): SGD over G's and D's parameters.
            d_scheduler: D's LR scheduler (G's schedule applied to D's lower base LR), or None (no schedule).
            box_weight, mask_weight (float): w_b and w_m of Eq. (2).
            adv_only (bool): Table 5's variant without L_bbox and L_mask.
            start_iter (int): first iteration with adversarial terms (do_train counts from 1).
            d_steps_per_g_step (int): D updates (on the same batch) per G update (>= 1).
            precision (MixedPrecision or None): autocast of the forward passes (DTYPE).
            g_scaler, d_scaler (GradScaler or None): loss scalers of the two optimizers (float16).
            distributed (bool): give D its own DistributedDataParallel wrapper for its update (the detector
                comes wrapped).
            weight_d_losses (bool): weight D's losses by w_b and w_m (the authors' variant).
            update_order (str): one of UPDATE_ORDERS (MODEL.GAN.UPDATE_ORDER); "g_then_d" needs
                d_steps_per_g_step 1.
        """
        if d_steps_per_g_step < 1:
            raise ValueError("MODEL.GAN.D_STEPS_PER_G_STEP must be >= 1, got {}".format(d_steps_per_g_step))
        if update_order not in UPDATE_ORDERS:
            raise ValueError("unknown MODEL.GAN.UPDATE_ORDER {!r}; use one of {}".format(update_order, UPDATE_ORDERS))
        if update_order == "g_then_d" and d_steps_per_g_step != 1:
            raise ValueError(
                "MODEL.GAN.UPDATE_ORDER 'g_then_d' takes L_D and L_G from one D forward, so one D update per G "
                "update: MODEL.GAN.D_STEPS_PER_G_STEP must be 1 with it, got {} (or use UPDATE_ORDER 'd_then_g')"
                .format(d_steps_per_g_step))
        self.model = model
        self.discriminators = discriminators
        # D's update goes through DDP (its gradients are averaged); the frozen D of G's update is called bare
        self.d_update_module = distribute_module(discriminators, next(discriminators.parameters()).device) \
            if distributed else discriminators
        self.g_optimizer, self.d_optimizer, self.d_scheduler = g_optimizer, d_optimizer, d_scheduler
        self.g_scaler, self.d_scaler = g_scaler, d_scaler
        self.g_weights = {"loss_box_adv": box_weight, "loss_mask_adv": mask_weight}
        self.d_weights = {"loss_box_disc": box_weight, "loss_mask_disc": mask_weight} if weight_d_losses else None
        self.adv_only = adv_only
        self.start_iter = start_iter
        self.d_steps = d_steps_per_g_step
        self.update_order = update_order
        self.precision = precision
        self.baseline_step = make_baseline_train_step(model, g_optimizer, precision, g_scaler)

    def checkpoint_entries(self):
        """{name in the checkpoint file: object with state_dict()/load_state_dict()} of D's side, for the
        Checkpointer's ``extra`` (the names checkpoints have always used)."""
        entries = {"discriminators": self.discriminators, "d_optimizer": self.d_optimizer,
                   "d_scheduler": self.d_scheduler, "d_grad_scaler": self.d_scaler}
        return {name: obj for name, obj in entries.items() if obj is not None}

    def state_dict(self):
        return {name: obj.state_dict() for name, obj in self.checkpoint_entries().items()}

    def load_state_dict(self, state):
        entries = self.checkpoint_entries()
        missing = sorted(set(entries) - set(state))
        if missing:
            raise KeyError("the adversarial step's state has no {} entry".format(", ".join(missing)))
        for name, obj in entries.items():
            obj.load_state_dict(state[name])

    def __call__(self, images, targets, iteration):
        """Runs one iteration; returns the values to log (0-dim tensors), plus D's learning rate "d_lr"."""
        self.discriminators.train()
        adversarial = iteration >= self.start_iter
        try:
            if adversarial:
                logged = self.adversarial_iteration(images, targets, iteration)
            else:
                logged = self.baseline_step(images, targets, iteration)
        except NonFiniteLossError:
            # do_train steps G's scheduler on a skipped step too: D's must move with it
            self._advance_d_schedule(optimizer_stepped=False)
            raise
        self._advance_d_schedule(optimizer_stepped=adversarial)
        logged["d_lr"] = torch.tensor(self.d_optimizer.param_groups[0]["lr"])
        return logged

    def adversarial_iteration(self, images, targets, iteration=None):
        """One iteration of the detector (G) against the discriminators (D), Section 4.2, in MODEL.GAN.UPDATE_ORDER.

        Returns:
            dict[str, Tensor[]] (detached): the terms of L_G as they enter it (detection losses, w_b *
            loss_box_adv, w_m * loss_mask_adv), the terms of L_D (from the last D update), d_box_real_prob /
            d_box_fake_prob (before that update) and D's scale: d_mask_real_embedding_norm, d_box_bn_gamma,
            d_mask_bn_gamma (after both updates); the same keys in both orders.
        Raises:
            NonFiniteLossError before the update a NaN/inf term would enter ("d_then_g": a non-finite G term found
            after the D update leaves that D update done and skips the G update; "g_then_d": every term is checked
            before either update).
        """
        # 1. One detector forward serves both updates.
        with self._autocast():
            detection_losses, adv_inputs = self.model(images, targets, return_adv_inputs=True)
        detection_losses = {k: v.float() for k, v in detection_losses.items()}
        check_finite_losses(detection_losses, iteration)
        d_inputs = self.discriminators.pool_inputs(adv_inputs)

        if self.update_order == "g_then_d":
            # the authors' train.py: L_D and L_G from the same, not yet updated D; G steps first, then D
            d_losses, d_stats = self._discriminator_losses(d_inputs, iteration)
            g_terms = self._generator_terms(d_inputs, detection_losses, iteration)
            self._step_generator(g_terms, detection_losses)
            backward_and_step(sum(d_losses.values()), self.d_optimizer, self.d_scaler)
        else:
            # 2. D update(s), then 3. G update against the updated, frozen D
            for _ in range(self.d_steps):
                d_losses, d_stats = self._discriminator_losses(d_inputs, iteration)
                backward_and_step(sum(d_losses.values()), self.d_optimizer, self.d_scaler)
            g_terms = self._generator_terms(d_inputs, detection_losses, iteration)
            self._step_generator(g_terms, detection_losses)

        d_stats.update(self.discriminators.scale_stats())
        return {k: v.detach() for k, v in {**g_terms, **d_losses, **d_stats}.items()}

    def _discriminator_losses(self, d_inputs, iteration):
        """D's side with G out of the graph (detached inputs), through D's DDP wrapper when distributed:
        (terms of L_D = L_adv^Db + L_adv^Dm, Eq. (3), checked finite; D's statistics)."""
        with self._autocast():
            scores = self.d_update_module(d_inputs.detach())
        d_losses, d_stats = discriminator_losses(scores, self.d_weights)
        check_finite_losses(d_losses, iteration)
        return d_losses, d_stats

    def _generator_terms(self, d_inputs, detection_losses, iteration):
        """G's side with D frozen (its parameters out of the graph): the terms of L_G = L_cls + L_bbox + L_mask +
        w_b L_adv^Gb + w_m L_adv^Gm, Eq. (2), checked finite."""
        with frozen(self.discriminators):
            with self._autocast():
                scores = self.discriminators(d_inputs)
        g_terms = {k: v for k, v in detection_losses.items()
                   if not (self.adv_only and k in SUPERVISED_LOSSES_REPLACED_BY_ADV)}
        g_terms.update({k: self.g_weights[k] * v for k, v in generator_adversarial_losses(scores).items()})
        check_finite_losses(g_terms, iteration)
        return g_terms

    def _step_generator(self, g_terms, detection_losses):
        # D's parameters did not require grad when G's scores were computed: this backward leaves D's gradients
        backward_and_step(self._generator_objective(g_terms, detection_losses), self.g_optimizer, self.g_scaler)

    def _generator_objective(self, g_terms, detection_losses):
        objective = sum(g_terms.values())
        if self.adv_only:
            # zero times the dropped losses: the parameters only they reach (the box regression when D_b pools
            # with ROIAlign) get a zero gradient instead of none, so DDP without find_unused_parameters sees
            # every detector parameter used (older PyTorch fails at the next forward otherwise). Side effect:
            # weight decay and momentum still act on them, in one process and in many alike.
            objective = objective + sum(0.0 * v for k, v in detection_losses.items() if k not in g_terms)
        return objective

    def _autocast(self):
        return self.precision.autocast() if self.precision is not None else contextlib.nullcontext()

    def _advance_d_schedule(self, optimizer_stepped):
        # D's schedule advances every iteration, like G's; silently where D's optimizer has not stepped
        # (baseline iterations before START_ITER, skipped steps)
        if self.d_scheduler is None:
            return
        if optimizer_stepped:
            self.d_scheduler.step()
        else:
            _advance_schedule(self.d_scheduler)


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
        weight_d_losses=gan.D_LOSS_WEIGHTED, update_order=gan.UPDATE_ORDER,
    )
