"""The alternating G / D iteration (engine/adversarial.py) on a tiny stand-in detector."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from maskrcnn_benchmark.engine.adversarial import AdversarialTrainStep
from maskrcnn_benchmark.modeling.discriminators import (
    AdversarialDiscriminators,
    BoxDiscriminator,
    MaskDiscriminator,
    RoIFeaturePooler,
)
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs

STRIDE = 4


def adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight, mask_weight, **options):
    """One AdversarialTrainStep.adversarial_iteration with the given weights and options."""
    step = AdversarialTrainStep(model, discs, g_opt, d_opt, box_weight=box_weight, mask_weight=mask_weight,
                                **options)
    return step.adversarial_iteration(images, targets)


class TinyGenerator(nn.Module):
    """Stand-in detector honouring the adversarial-inputs contract: a conv "backbone" (stride 4), a Linear box
    regression on the proposals and a conv mask head on 28x28 RoI features. targets = (gt_rois [P, 5],
    gt_masks [P, 28, 28]); the proposals are the ground-truth boxes shifted by a fixed offset."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.box_regression = nn.Linear(4, 4)
        self.mask_head = nn.Conv2d(8, 1, 3, padding=1)
        self.forward_calls = 0

    def forward(self, images, targets, return_adv_inputs=False):
        self.forward_calls += 1
        gt_rois, gt_masks = targets
        features = [F.avg_pool2d(self.backbone(images), STRIDE)]
        proposals = torch.cat([gt_rois[:, :1], gt_rois[:, 1:] + 3.0], dim=1)
        pred_boxes = proposals[:, 1:] + self.box_regression(proposals[:, 1:] / 64.0)
        pred_rois = torch.cat([gt_rois[:, :1], pred_boxes], dim=1)
        mask_logits = self.mask_head(roi_align(features[0], proposals, (28, 28), 1.0 / STRIDE, 2))[:, 0]
        losses = {
            "loss_classifier": features[0].pow(2).mean(),
            "loss_box_reg": F.smooth_l1_loss(pred_boxes, gt_rois[:, 1:]),
            "loss_mask": F.binary_cross_entropy_with_logits(mask_logits, gt_masks),
        }
        if not return_adv_inputs:
            return losses
        adv_inputs = AdversarialInputs(features=features, feature_strides=[STRIDE], box_rois_pred=pred_rois,
                                       box_rois_gt=gt_rois, mask_logits=mask_logits, mask_targets=gt_masks,
                                       mask_rois=proposals)
        return losses, adv_inputs


def _setup(seed=0):
    torch.manual_seed(seed)
    model = TinyGenerator()
    discs = AdversarialDiscriminators(
        BoxDiscriminator(8, channels=4, num_convs=3), MaskDiscriminator(8, channels=4, num_convs=3),
        RoIFeaturePooler(28, "ROIAlign", "max"), RoIFeaturePooler(28, "ROIAlign", "max"), detach_features=True,
    )
    images = torch.randn(2, 3, 64, 64)
    gt_rois = torch.tensor([[0, 4.0, 6.0, 40.0, 50.0], [0, 20.0, 10.0, 60.0, 30.0], [1, 8.0, 8.0, 30.0, 60.0]])
    gt_masks = (torch.rand(3, 28, 28) > 0.5).float()
    g_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    d_opt = torch.optim.SGD(discs.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    return model, discs, g_opt, d_opt, images, (gt_rois, gt_masks)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _identical(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _after_step(optimizer, callback):
    step = optimizer.step

    def wrapped(*args, **kwargs):
        result = step(*args, **kwargs)
        callback()
        return result

    optimizer.step = wrapped


def test_d_step_keeps_detector_and_g_step_keeps_discriminators_bit_identical():
    model, discs, g_opt, d_opt, images, targets = _setup()
    g_before, d_before = _params(model), _params(discs)
    after_d_step = {}
    _after_step(d_opt, lambda: after_d_step.update(
        g=_params(model), d=_params(discs), d_grad=[p.grad.clone() for p in discs.parameters()]))
    adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight=1.0, mask_weight=1.0)

    assert _identical(after_d_step["g"], g_before)  # the D update does not touch G ...
    assert not _identical(after_d_step["d"], d_before)  # ... but does move D
    assert _identical(_params(discs), after_d_step["d"])  # the G update does not touch D ...
    assert _identical([p.grad for p in discs.parameters()], after_d_step["d_grad"])  # nor D's gradients
    assert not _identical(_params(model), g_before)  # ... but does move G
    assert all(p.requires_grad for p in discs.parameters())  # D is unfrozen afterwards


def test_zero_adversarial_weights_give_the_baseline_generator_update():
    model, discs, g_opt, d_opt, images, targets = _setup()
    baseline = copy.deepcopy(model)
    baseline_opt = torch.optim.SGD(baseline.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sum(baseline(images, targets).values()).backward()
    baseline_opt.step()
    adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight=0.0, mask_weight=0.0)
    assert _identical(_params(model), _params(baseline))


def test_adversarial_terms_change_the_generator_update():
    updates = []
    for weight in (0.0, 1.0):
        model, discs, g_opt, d_opt, images, targets = _setup()
        adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight=weight, mask_weight=weight)
        updates.append(_params(model))
    # with ROIAlign the box term does not reach the regression; the mask term reaches the mask head
    assert not torch.equal(updates[0][-2], updates[1][-2])


def test_logged_values_and_weights():
    model, discs, g_opt, d_opt, images, targets = _setup()
    logged = adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight=0.0, mask_weight=0.5)
    assert set(logged) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_box_adv", "loss_mask_adv",
                           "loss_box_disc", "loss_mask_disc", "d_box_real_prob", "d_box_fake_prob",
                           "d_mask_real_embedding_norm", "d_box_bn_gamma", "d_mask_bn_gamma"}
    assert logged["loss_box_adv"].item() == 0.0  # logged as it enters L_G, i.e. weighted
    assert logged["loss_mask_adv"].item() > 0 and logged["loss_mask_disc"].item() < 0
    assert 0 < logged["d_box_real_prob"].item() < 1 and 0 < logged["d_box_fake_prob"].item() < 1
    assert all(v.dim() == 0 and not v.requires_grad for v in logged.values())


def test_adv_only_drops_box_and_mask_supervision():
    model, discs, g_opt, d_opt, images, targets = _setup()
    logged = adversarial_iteration(model, discs, g_opt, d_opt, images, targets, 0.025, 0.5, adv_only=True)
    assert "loss_box_reg" not in logged and "loss_mask" not in logged
    # box regression is then trained only by L_adv^Gb, which ROIAlign cannot carry: it gets a zero gradient, not
    # none, so DDP without find_unused_parameters sees every detector parameter used
    assert model.box_regression.weight.grad is not None and model.box_regression.weight.grad.abs().sum() == 0


def test_train_step_runs_one_forward_and_k_d_updates_and_honours_start_iter():
    model, discs, g_opt, d_opt, images, targets = _setup()
    d_sched = torch.optim.lr_scheduler.StepLR(d_opt, step_size=1, gamma=0.5)
    counts = {"d": 0}  # D_b forwards: one per D update plus one in the G update
    discs.box_disc.register_forward_hook(lambda *_: counts.update(d=counts["d"] + 1))
    step = AdversarialTrainStep(model, discs, g_opt, d_opt, d_sched, start_iter=3, d_steps_per_g_step=2)

    d_before = _params(discs)
    logged = step(images, targets, iteration=2)  # before START_ITER: the baseline iteration
    assert counts["d"] == 0 and _identical(_params(discs), d_before)
    assert not any(k.endswith("_adv") or k.endswith("_disc") for k in logged)

    logged = step(images, targets, iteration=3)
    assert counts["d"] == 2 + 1 and model.forward_calls == 2
    assert "loss_box_disc" in logged
    assert logged["d_lr"].item() == pytest.approx(0.02 * 0.25)  # D's scheduler stepped every iteration

    with pytest.raises(ValueError, match=r"^MODEL\.GAN\.D_STEPS_PER_G_STEP must be >= 1, got 0$"):
        AdversarialTrainStep(model, discs, g_opt, d_opt, d_sched, d_steps_per_g_step=0)


def test_step_defaults_are_the_paper_s_as_in_the_config_defaults():
    # a step built by hand (without build_adversarial_train_step) trains as MODEL.GAN's defaults say
    from maskrcnn_benchmark.config import cfg

    model, discs, g_opt, d_opt, _, _ = _setup()
    step = AdversarialTrainStep(model, discs, g_opt, d_opt)
    gan = cfg.MODEL.GAN
    assert step.g_weights == {"loss_box_adv": gan.BOX_WEIGHT, "loss_mask_adv": gan.MASK_WEIGHT}
    assert (step.start_iter, step.d_steps, step.adv_only) == (gan.START_ITER, gan.D_STEPS_PER_G_STEP, gan.ADV_ONLY)
    assert step.d_weights is None and not gan.D_LOSS_WEIGHTED
    assert (step.update_order, discs.d_batch) == (gan.UPDATE_ORDER, gan.D_BATCH) == ("d_then_g", "joint")


def test_iteration_without_positive_rois_is_finite():
    model, discs, g_opt, d_opt, images, _ = _setup()
    targets = (torch.zeros(0, 5), torch.zeros(0, 28, 28))
    model.forward = lambda images, targets, return_adv_inputs=False: _empty_forward(model, images, targets)
    logged = adversarial_iteration(model, discs, g_opt, d_opt, images, targets, 0.025, 0.5)
    assert all(torch.isfinite(v) for v in logged.values())
    assert logged["loss_box_disc"].item() == 0 and "d_box_real_prob" not in logged


def test_adv_only_iteration_without_positive_rois_keeps_the_detector_finite():
    # an image without objects: the box and mask losses are exact zeros, which adv_only drops (times zero) from
    # L_G; the detector's weights must stay finite
    model, discs, g_opt, d_opt, images, _ = _setup()
    targets = (torch.zeros(0, 5), torch.zeros(0, 28, 28))

    def forward(images, targets, return_adv_inputs=False):
        losses, adv_inputs = _empty_forward(model, images, targets)
        losses["loss_box_reg"] = model.box_regression.weight.sum() * 0
        losses["loss_mask"] = model.mask_head.weight.sum() * 0
        return losses, adv_inputs

    model.forward = forward
    adversarial_iteration(model, discs, g_opt, d_opt, images, targets, 0.025, 0.5, adv_only=True)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _empty_forward(model, images, targets):
    features = [F.avg_pool2d(model.backbone(images), STRIDE)]
    empty_rois = torch.zeros(0, 5)
    pred = torch.cat([empty_rois[:, :1], model.box_regression(empty_rois[:, 1:])], dim=1)
    losses = {"loss_classifier": features[0].pow(2).mean()}
    return losses, AdversarialInputs(features=features, feature_strides=[STRIDE], box_rois_pred=pred,
                                     box_rois_gt=empty_rois, mask_logits=torch.zeros(0, 28, 28, requires_grad=True),
                                     mask_targets=torch.zeros(0, 28, 28), mask_rois=empty_rois)


# ---- on the real detector (tiny R-18-FPN config from tests/conftest.py) ----

def _gan_cfg(tiny_cfg):
    tiny_cfg.MODEL.GAN.ENABLED = True
    tiny_cfg.MODEL.GAN.BOX_DISC.CHANNELS = 8
    tiny_cfg.MODEL.GAN.MASK_DISC.CHANNELS = 8
    tiny_cfg.MODEL.GAN.BOX_DISC.NUM_CONVS = 3
    tiny_cfg.MODEL.GAN.MASK_DISC.NUM_CONVS = 3
    return tiny_cfg


def _first_batch(cfg):
    from maskrcnn_benchmark.data import make_data_loader

    images, targets, _ = next(iter(make_data_loader(cfg, is_train=True)))
    return images, list(targets)


def _detector(cfg, seed=0):
    from maskrcnn_benchmark.modeling.detector import build_detection_model

    torch.manual_seed(seed)
    return build_detection_model(cfg).train()


def test_gan_off_detector_and_losses_equal_the_baseline(tiny_cfg):
    images, targets = _first_batch(tiny_cfg)
    baseline = _detector(tiny_cfg)
    torch.manual_seed(1)  # the RPN / RoI samplers draw from the global generator
    baseline_losses = baseline(images, targets)

    from maskrcnn_benchmark.modeling.discriminators import build_discriminators

    gan_cfg = _gan_cfg(tiny_cfg.clone())
    model = _detector(gan_cfg)
    build_discriminators(gan_cfg, model.backbone.out_channels)
    torch.manual_seed(1)
    losses, adv_inputs = model(images, targets, return_adv_inputs=True)
    assert set(losses) == set(baseline_losses)
    assert all(torch.equal(losses[k], baseline_losses[k]) for k in losses)
    assert adv_inputs.box_rois_pred.shape[0] > 0


@pytest.mark.parametrize("pooler_type", ["PrRoIPool", "ROIAlign"])
def test_box_adversarial_loss_reaches_detector_box_regression_only_through_prroipool(tiny_cfg, pooler_type):
    from maskrcnn_benchmark.modeling.discriminators import build_discriminators
    from maskrcnn_benchmark.modeling.discriminators.loss import box_adv_generator_loss

    cfg = _gan_cfg(tiny_cfg)
    cfg.MODEL.GAN.BOX_DISC.POOLER_TYPE = pooler_type
    images, targets = _first_batch(cfg)
    model = _detector(cfg)
    discs = build_discriminators(cfg, model.backbone.out_channels)
    _, adv_inputs = model(images, targets, return_adv_inputs=True)
    inputs = discs.pool_inputs(adv_inputs)
    _, fake = discs(inputs)["box"]
    loss = box_adv_generator_loss(fake)  # L_adv^Gb alone; features detached (DETACH_FEATURES default True)
    weight = model.roi_heads.box.predictor.bbox_pred.weight
    grad = torch.autograd.grad(loss, weight, allow_unused=True)[0] if loss.requires_grad else None
    if pooler_type == "PrRoIPool":
        assert grad is not None and grad.abs().sum() > 0
    else:
        assert grad is None or grad.abs().sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("authors_options", [
    [], ["MODEL.GAN.D_BATCH", "separate", "MODEL.GAN.UPDATE_ORDER", "g_then_d"],
], ids=["paper", "authors_d_batch_and_order"])
def test_tiny_gan_config_trains_with_do_train(tiny_cfg, authors_options):
    from maskrcnn_benchmark.data import make_data_loader
    from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step
    from maskrcnn_benchmark.engine.trainer import do_train
    from maskrcnn_benchmark.solver import make_lr_scheduler, make_optimizer
    from maskrcnn_benchmark.utils.checkpoint import Checkpointer

    cfg = _gan_cfg(tiny_cfg)
    cfg.merge_from_list(authors_options)
    cfg.SOLVER.MAX_ITER = 2
    model = _detector(cfg)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_lr_scheduler(cfg, optimizer)
    train_step = build_adversarial_train_step(cfg, model, optimizer)
    assert train_step.d_optimizer.param_groups[0]["lr"] == pytest.approx(
        optimizer.param_groups[0]["lr"] * cfg.MODEL.GAN.D_LR_FACTOR)
    d_before = _params(train_step.discriminators)
    checkpointer = Checkpointer(model, optimizer, scheduler, cfg.OUTPUT_DIR, extra={
        "discriminators": train_step.discriminators, "d_optimizer": train_step.d_optimizer,
        "d_scheduler": train_step.d_scheduler})
    meters = do_train(model, make_data_loader(cfg, is_train=True), optimizer, scheduler, checkpointer,
                      torch.device("cpu"), 0, {"iteration": 0}, train_step=train_step)
    for name in ("loss_box_adv", "loss_mask_adv", "loss_box_disc", "loss_mask_disc", "loss_mask"):
        assert torch.isfinite(torch.tensor(meters.meters[name].global_avg)), name
    assert not _identical(_params(train_step.discriminators), d_before)
    assert "discriminators" in torch.load(checkpointer.get_checkpoint_file(), weights_only=True)


# ---- MODEL.GAN.UPDATE_ORDER: "d_then_g" (Section 4.2) or "g_then_d" (the authors' train.py) ----

def _one_iteration(update_order, d_lr=0.02, d_state=None):
    """G's and D's parameters after one adversarial iteration of _setup(), D optionally starting from `d_state`
    and stepping with learning rate `d_lr`."""
    model, discs, g_opt, _, images, targets = _setup()
    if d_state is not None:
        discs.load_state_dict(d_state)
    d_opt = torch.optim.SGD(discs.parameters(), lr=d_lr, momentum=0.9, weight_decay=1e-4)
    d_start = copy.deepcopy(discs.state_dict())
    logged = adversarial_iteration(model, discs, g_opt, d_opt, images, targets, box_weight=1.0, mask_weight=1.0,
                                   update_order=update_order)
    return {"g": _params(model), "d": _params(discs), "d_start": d_start, "d_end": copy.deepcopy(discs.state_dict()),
            "logged": logged}


def test_g_then_d_steps_g_against_d_before_its_update_and_d_as_d_then_g_does():
    g_then_d = _one_iteration("g_then_d")
    d_then_g = _one_iteration("d_then_g")
    # the reference G update against the pre-update D: D's step taken with learning rate 0 leaves D as it was
    against_old_d = _one_iteration("d_then_g", d_lr=0.0)
    assert _identical(g_then_d["g"], against_old_d["g"])
    # ... which is not d_then_g's G update (the mask term reaches the mask head): the orders are told apart
    assert not _identical(g_then_d["g"], d_then_g["g"])
    # D's update comes from the same forward and the same D in both orders
    assert _identical(g_then_d["d"], d_then_g["d"])
    assert not _identical(g_then_d["d"], against_old_d["d"])  # and it is taken


def test_d_then_g_steps_g_against_the_updated_d():
    d_then_g = _one_iteration("d_then_g")
    # the same G update as one taken against a D that starts where d_then_g's D step ended and does not move
    against_new_d = _one_iteration("d_then_g", d_lr=0.0, d_state=d_then_g["d_end"])
    assert _identical(d_then_g["g"], against_new_d["g"])
    against_old_d = _one_iteration("d_then_g", d_lr=0.0)
    assert not _identical(d_then_g["g"], against_old_d["g"])


def test_g_then_d_logs_the_same_keys_as_d_then_g_and_the_losses_of_the_one_forward():
    g_then_d, d_then_g = _one_iteration("g_then_d")["logged"], _one_iteration("d_then_g")["logged"]
    assert set(g_then_d) == set(d_then_g)
    # D's losses and probabilities come from D before its update in both orders; G's adversarial terms only in
    # g_then_d
    for key in ("loss_box_disc", "loss_mask_disc", "d_box_real_prob", "d_box_fake_prob", "loss_mask"):
        assert torch.equal(g_then_d[key], d_then_g[key]), key
    assert not torch.equal(g_then_d["loss_mask_adv"], d_then_g["loss_mask_adv"])


def test_g_then_d_runs_one_forward_of_each_d_per_loss_and_keeps_d_out_of_g_s_update():
    model, discs, g_opt, d_opt, images, targets = _setup()
    counts = {"d": 0}
    discs.box_disc.register_forward_hook(lambda *_: counts.update(d=counts["d"] + 1))
    d_before = _params(discs)
    after_g_step = {}
    _after_step(g_opt, lambda: after_g_step.update(d=_params(discs), d_grad=[p.grad for p in discs.parameters()]))
    adversarial_iteration(model, discs, g_opt, d_opt, images, targets, 1.0, 1.0, update_order="g_then_d")
    assert counts["d"] == 2 and model.forward_calls == 1  # L_D's and L_G's, from one detector forward
    assert _identical(after_g_step["d"], d_before)  # G's step comes first and leaves D ...
    assert all(g is None or g.abs().sum() == 0 for g in after_g_step["d_grad"])  # ... and D's gradients
    assert not _identical(_params(discs), d_before)  # D's step follows
    assert all(p.requires_grad for p in discs.parameters())


@pytest.mark.parametrize("update_order,d_moves", [("g_then_d", False), ("d_then_g", True)])
def test_a_non_finite_generator_term_stops_g_s_update_and_in_g_then_d_d_s_too(monkeypatch, update_order, d_moves):
    # g_then_d checks L_D's and L_G's terms before either update: nothing moves. d_then_g finds L_G's terms after
    # D's update, which stays done (the documented contract of adversarial_iteration)
    from maskrcnn_benchmark.engine import adversarial
    from maskrcnn_benchmark.engine.train_step import NonFiniteLossError

    real_losses = adversarial.generator_adversarial_losses

    def nan_mask_term(scores):
        losses = real_losses(scores)
        losses["loss_mask_adv"] = losses["loss_mask_adv"] * float("nan")
        return losses

    monkeypatch.setattr(adversarial, "generator_adversarial_losses", nan_mask_term)
    model, discs, g_opt, d_opt, images, targets = _setup()
    g_before, d_before = _params(model), _params(discs)
    with pytest.raises(NonFiniteLossError, match="loss_mask_adv"):
        adversarial_iteration(model, discs, g_opt, d_opt, images, targets, 1.0, 1.0, update_order=update_order)
    assert _identical(_params(model), g_before)
    assert _identical(_params(discs), d_before) != d_moves


@pytest.mark.parametrize("update_order,d_steps,message", [
    ("g_then_d", 2, r"^MODEL\.GAN\.UPDATE_ORDER 'g_then_d' takes L_D and L_G from one D forward, so one D update "
                    r"per G update: MODEL\.GAN\.D_STEPS_PER_G_STEP must be 1 with it, got 2 \(or use "
                    r"UPDATE_ORDER 'd_then_g'\)$"),
    ("authors", 1, r"^unknown MODEL\.GAN\.UPDATE_ORDER 'authors'; use one of \('d_then_g', 'g_then_d'\)$"),
])
def test_built_step_refuses_an_update_order_it_cannot_honour_naming_the_keys(update_order, d_steps, message):
    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step

    c = cfg.clone()
    c.MODEL.GAN.ENABLED, c.MODEL.ROI_MASK_HEAD.RESOLUTION = True, 28
    c.MODEL.GAN.UPDATE_ORDER, c.MODEL.GAN.D_STEPS_PER_G_STEP = update_order, d_steps
    model, _, g_opt, _, _, _ = _setup()  # TinyGenerator's backbone has out_channels
    with pytest.raises(ValueError, match=message):
        build_adversarial_train_step(c, model, g_opt)


@pytest.mark.parametrize("update_order", ["d_then_g", "g_then_d"])
def test_built_step_follows_model_gan_update_order(update_order):
    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step

    c = cfg.clone()
    c.MODEL.GAN.ENABLED, c.MODEL.ROI_MASK_HEAD.RESOLUTION = True, 28
    c.MODEL.GAN.UPDATE_ORDER = update_order
    model, _, g_opt, _, _, _ = _setup()
    assert build_adversarial_train_step(c, model, g_opt).update_order == update_order
