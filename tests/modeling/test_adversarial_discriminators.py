"""Which half of D's joint (real, fake) batch is real: AdversarialDiscriminators.pool_inputs and forward.

A swap of the halves anywhere on the path (the order of the joint batch, the split of D's output) makes D learn to
call ground-truth boxes fake and predicted ones real, and the losses stay finite: only a test that knows which
inputs are real can see it. The reference is D scoring the real inputs alone and the fake inputs alone, which is
exact where D's output for one input does not depend on the rest of the batch (eval mode, or no BatchNorm); in
train mode the reference is D on the joint batch formed by hand, real first.
"""
import copy
import re

import pytest
import torch

from maskrcnn_benchmark.modeling.discriminators import (
    AdversarialDiscriminators,
    BoxDiscriminator,
    DiscriminatorBatches,
    MaskDiscriminator,
    RoIFeaturePooler,
)
from maskrcnn_benchmark.modeling.discriminators.box_discriminator import BoxCoordinateDiscriminator
from maskrcnn_benchmark.modeling.discriminators.loss import discriminator_losses
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs

STRIDES = [4, 8]
IMAGE_SIZES = [(64, 80), (72, 64)]
GT_ROIS = torch.tensor([[0, 4.0, 6.0, 40.0, 50.0], [0, 20.0, 10.0, 60.0, 30.0], [1, 8.0, 8.0, 30.0, 60.0]])
# predicted boxes far from their ground truth, so every real input differs from its fake one
PRED_ROIS = torch.tensor([[0, 30.0, 30.0, 76.0, 62.0], [0, 2.0, 36.0, 30.0, 60.0], [1, 34.0, 40.0, 62.0, 70.0]])


def _discriminators(box_input="features", batch_norm=True, channels=4):
    torch.manual_seed(0)
    if box_input == "coordinates":
        box_disc, box_pooler = BoxCoordinateDiscriminator(channels, 3, batch_norm), None
    else:
        box_disc = BoxDiscriminator(channels, channels=channels, num_convs=3, batch_norm=batch_norm)
        box_pooler = RoIFeaturePooler(28, "ROIAlign", "max", sampling_ratio=2)
    mask_disc = MaskDiscriminator(channels, channels=channels, num_convs=3, batch_norm=batch_norm)
    discs = AdversarialDiscriminators(box_disc, mask_disc, box_pooler, RoIFeaturePooler(28, "ROIAlign", "max", 2),
                                      box_input=box_input)
    # DCGAN's N(0, 0.02) start gives logits of ~1e-4: scale the weights up so real and fake scores differ by far
    # more than float rounding
    with torch.no_grad():
        for module in discs.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.normal_(std=0.5)
    return discs


def _adv_inputs(channels=4):
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(2, channels, 80 // s, 80 // s, generator=generator) for s in STRIDES]
    return AdversarialInputs(
        features=features, feature_strides=STRIDES, image_sizes=IMAGE_SIZES,
        box_rois_gt=GT_ROIS, box_rois_pred=PRED_ROIS,
        mask_targets=(torch.rand(3, 28, 28, generator=generator) > 0.5).float(),
        mask_logits=3 * torch.randn(3, 28, 28, generator=generator), mask_rois=GT_ROIS)


def _real_and_fake_inputs(discs, adv_inputs):
    """D_b's and D_m's real and fake inputs, each formed on its own from the named fields (not as one batch)."""
    if discs.box_input == "coordinates":
        scale = torch.tensor([[w, h, w, h] for h, w in IMAGE_SIZES])
        box = [rois[:, 1:] / scale[rois[:, 0].long()] for rois in (GT_ROIS, PRED_ROIS)]
    else:
        box = [discs.box_pooler(adv_inputs.features, STRIDES, rois) for rois in (GT_ROIS, PRED_ROIS)]
    context = discs.mask_pooler(adv_inputs.features, STRIDES, GT_ROIS)
    mask = [masks[:, None] * context for masks in (adv_inputs.mask_targets, adv_inputs.mask_logits.sigmoid())]
    return {"box": box, "mask": mask}


def _scores_and_each_half_alone(discs):
    """(D's scores of the pooled batch, the real and fake inputs formed on their own, D's scores of each of them
    alone) on the module's adversarial inputs."""
    adv_inputs = _adv_inputs()
    with torch.no_grad():
        scores = discs(discs.pool_inputs(adv_inputs))
        alone = _real_and_fake_inputs(discs, adv_inputs)
        expected = {"box": [discs.box_disc(x) for x in alone["box"]],
                    "mask": [discs.mask_disc(x) for x in alone["mask"]]}
    return scores, alone, expected


def _assert_halves(scores, expected):
    for key in ("box", "mask"):
        real, fake = scores[key]
        expected_real, expected_fake = expected[key]
        # the halves must be told apart by far more than the tolerance, or the comparison could not fail
        gap = (expected_real - expected_fake).abs().max()
        assert gap > 0.01, (key, gap)
        torch.testing.assert_close(real, expected_real, rtol=0, atol=1e-4 * gap)
        torch.testing.assert_close(fake, expected_fake, rtol=0, atol=1e-4 * gap)


@pytest.mark.parametrize("box_input", ["features", "coordinates"])
@pytest.mark.parametrize("mode", ["eval", "train without BatchNorm"])
def test_real_half_scores_are_d_s_scores_of_the_real_inputs_alone(box_input, mode):
    # eval mode: BatchNorm uses its running statistics, so D's score of an input does not depend on the batch;
    # train mode without BatchNorm (MODEL.GAN.SPECTRAL_NORM's D): nothing couples the inputs of a batch either
    if mode == "eval":
        discs = _discriminators(box_input).eval()
    else:
        discs = _discriminators(box_input, batch_norm=False).train()
    scores, _, expected = _scores_and_each_half_alone(discs)
    _assert_halves(scores, expected)


def test_real_half_scores_in_train_mode_are_the_real_rows_of_d_on_the_joint_batch():
    # train mode with BatchNorm: D normalises real and fake together, so each half's scores are the rows of D's
    # output on the batch [real; fake] (formed here by hand from the named fields) that hold that half
    discs = _discriminators().train()
    adv_inputs = _adv_inputs()
    with torch.no_grad():
        scores = discs(discs.pool_inputs(adv_inputs))
        alone = _real_and_fake_inputs(discs, adv_inputs)
        expected = {"box": discs.box_disc(torch.cat(alone["box"])).chunk(2),
                    "mask": discs.mask_disc(torch.cat(alone["mask"])).chunk(2)}
    _assert_halves(scores, expected)


def test_forward_returns_the_first_half_of_the_batch_as_real():
    # DiscriminatorBatches' contract: real first. Real and fake inputs of opposite sign get opposite scores
    # from a D without batch statistics, so the halves cannot be mistaken for one another.
    discs = _discriminators(batch_norm=False).eval()
    real, fake = torch.full((2, 4, 28, 28), 1.0), torch.full((2, 4, 28, 28), -1.0)
    with torch.no_grad():
        scores = discs(DiscriminatorBatches(box=torch.cat([real, fake]), mask=torch.cat([real, fake])))
        assert torch.equal(scores["box"][0], discs.box_disc(real))
        assert torch.equal(scores["box"][1], discs.box_disc(fake))
        assert torch.equal(scores["mask"][0], discs.mask_disc(real))
        assert torch.equal(scores["mask"][1], discs.mask_disc(fake))
    assert not torch.equal(scores["box"][0], scores["box"][1])


def test_d_s_probability_of_real_boxes_rises_over_a_few_d_steps_on_separable_inputs():
    # the ground-truth boxes lie on bright features, the predicted ones on dark features: a few SGD steps on
    # L_adv^Db (Eq. (5)) through pool_inputs, forward and discriminator_losses must raise D_b's probability for
    # the real boxes and lower it for the fake ones. The probabilities are read from D_b itself on the batch
    # [real; fake] pooled here by hand, not from the step's own statistics, which a swap of the halves would
    # swap along with the losses.
    torch.manual_seed(0)
    discs = AdversarialDiscriminators(BoxDiscriminator(2, channels=4, num_convs=3), None,
                                      RoIFeaturePooler(28, "ROIAlign", "max", 2), None)
    level = torch.randn(1, 2, 20, 20) * 0.1
    level[..., :10] += 1.0  # left half of the 80 x 80 image bright (stride 4)
    gt = torch.tensor([[0, 4.0, 4.0, 30.0, 36.0], [0, 2.0, 40.0, 34.0, 76.0], [0, 8.0, 20.0, 36.0, 60.0]])
    pred = gt + torch.tensor([0.0, 44.0, 0.0, 44.0, 0.0])  # the same boxes moved into the dark right half
    adv_inputs = AdversarialInputs(features=[level], feature_strides=[4], box_rois_gt=gt, box_rois_pred=pred)
    batches = discs.pool_inputs(adv_inputs).detach()
    by_hand = torch.cat([discs.box_pooler([level], [4], rois) for rois in (gt, pred)])
    optimizer = torch.optim.SGD(discs.parameters(), lr=0.05, momentum=0.9)

    def probabilities():
        with torch.no_grad():
            real, fake = discs.box_disc(by_hand).sigmoid().chunk(2)
        return real.mean().item(), fake.mean().item()

    history = [probabilities()]
    for _ in range(8):
        losses, _ = discriminator_losses(discs(batches))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(probabilities())
    (real_start, fake_start), (real_end, fake_end) = history[0], history[-1]
    assert real_end > real_start + 0.1 and real_end > 0.6, history
    assert fake_end < fake_start - 0.1 and fake_end < 0.4, history


def test_mask_only_discriminators_score_the_masks_and_report_d_m_s_scale():
    # the mask-only ablation (MODEL.GAN.BOX_DISC.ENABLED False): no box batch, D_m's scores and scale still come back
    torch.manual_seed(0)
    discs = AdversarialDiscriminators(None, MaskDiscriminator(4, channels=4, num_convs=3), None,
                                      RoIFeaturePooler(28, "ROIAlign", "max", 2))
    scores = discs(discs.pool_inputs(_adv_inputs()))
    assert set(scores) == {"mask"} and scores["mask"][0].shape == (3, discs.mask_disc.embedding_size)
    assert set(discs.scale_stats()) == {"d_mask_bn_gamma"}


def _pixels_discriminators():
    torch.manual_seed(0)
    return AdversarialDiscriminators(BoxCoordinateDiscriminator(4, 3), MaskDiscriminator(3, channels=4, num_convs=3),
                                     None, RoIFeaturePooler(28, "ROIAlign", "max", 2), box_input="coordinates",
                                     mask_input="pixels")


@pytest.mark.parametrize("field,needed_for", [
    ("features", "the discriminators"),
    ("feature_strides", "the discriminators"),
    ("box_rois_gt", "the box discriminator"),
    ("box_rois_pred", "the box discriminator"),
    ("image_sizes", "MODEL.GAN.BOX_DISC.INPUT 'coordinates'"),
    ("mask_targets", "the mask discriminator"),
    ("mask_logits", "the mask discriminator"),
    ("mask_rois", "the mask discriminator"),
    ("images", "MODEL.GAN.MASK_DISC.INPUT 'pixels'"),
])
def test_pool_inputs_names_the_missing_field_and_what_needs_it(field, needed_for):
    adv_inputs = _adv_inputs()
    adv_inputs.images = torch.randn(2, 3, 80, 80)
    discs = _pixels_discriminators() if field in ("image_sizes", "images") else _discriminators()
    setattr(adv_inputs, field, None)
    expected = "{} needs the detector's adversarial input {!r}, which is not filled".format(needed_for, field)
    with pytest.raises(ValueError, match=re.escape(expected)):
        discs.pool_inputs(adv_inputs)


def test_real_fake_batch_refuses_halves_of_different_shapes_naming_both():
    discs = _discriminators()
    with pytest.raises(ValueError) as error:
        discs.real_fake_batch(torch.zeros(2, 4, 28, 28), torch.zeros(3, 4, 28, 28))
    assert str(error.value) == ("the real and fake discriminator inputs must have the same shape (one real per fake "
                                "RoI), got (2, 4, 28, 28) and (3, 4, 28, 28)")


def test_forward_refuses_inputs_of_a_disabled_discriminator_naming_it_and_its_key():
    discs = AdversarialDiscriminators(None, MaskDiscriminator(4, channels=4, num_convs=3), None,
                                      RoIFeaturePooler(28, "ROIAlign", "max", 2))
    with pytest.raises(ValueError) as error:
        discs(DiscriminatorBatches(box=torch.zeros(2, 4, 28, 28)))
    assert str(error.value) == ("the discriminators were given 'box' inputs, but the box discriminator is disabled "
                                "(MODEL.GAN.BOX_DISC.ENABLED)")


# ---- MODEL.GAN.D_BATCH: one D call on the joint batch, or one call per half (the authors' code) ----

def _batch_norm_buffers(module):
    return {name: buffer.clone() for name, buffer in module.named_buffers()}


@pytest.mark.parametrize("box_input", ["features", "coordinates"])
def test_separate_d_batch_scores_each_half_by_d_on_that_half_alone_in_train_mode(box_input):
    # "separate" in train mode: D's BatchNorm normalises each half by its own statistics, so each half's scores are
    # D's output on that half alone; they differ from the rows of D's output on the joint batch ("joint")
    discs = _discriminators(box_input).train()
    discs.d_batch = "separate"
    scores, alone, expected = _scores_and_each_half_alone(discs)
    with torch.no_grad():
        joint = {"box": discs.box_disc(torch.cat(alone["box"])).chunk(2),
                 "mask": discs.mask_disc(torch.cat(alone["mask"])).chunk(2)}
    _assert_halves(scores, expected)
    for key in ("box", "mask"):
        for half, joint_half in zip(scores[key], joint[key]):
            # the option is not ignored: per-half statistics give other scores than the joint batch's
            assert (half - joint_half).abs().max() > 1e-3, key


@pytest.mark.parametrize("d_batch,calls", [("joint", 1), ("separate", 2)])
@pytest.mark.parametrize("key", ["box", "mask"])
def test_batch_norm_running_statistics_move_once_per_d_call(d_batch, calls, key):
    # the running statistics (what eval mode uses) follow the calls: "separate" updates them with the real half,
    # then with the fake half, like the authors' two calls; "joint" once with the whole batch
    discs = _discriminators().train()
    discs.d_batch = d_batch
    disc = discs.box_disc if key == "box" else discs.mask_disc
    reference = copy.deepcopy(disc)
    adv_inputs = _adv_inputs()
    with torch.no_grad():
        batches = discs.pool_inputs(adv_inputs)
        discs(batches)
        halves = _real_and_fake_inputs(discs, adv_inputs)[key]
        for part in (halves if calls == 2 else [torch.cat(halves)]):
            reference(part)
    moved, expected = _batch_norm_buffers(disc), _batch_norm_buffers(reference)
    assert any("running_mean" in name for name in moved)
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):
            assert value.item() == moved[name].item() == calls, name
        else:
            torch.testing.assert_close(moved[name], value, rtol=0, atol=1e-6, msg=name)


def test_separate_d_batch_gradients_are_those_of_two_calls():
    # D's update sees the gradients of its losses through the two calls (each half's BatchNorm statistics
    # depend on that half only): the gradient reaching the fake inputs does not depend on the real ones
    discs = _discriminators().train()
    discs.d_batch = "separate"
    real, fake = torch.randn(3, 4, 28, 28), torch.randn(3, 4, 28, 28, requires_grad=True)
    other_real = torch.randn(3, 4, 28, 28)
    grads = []
    for real_half in (real, other_real):
        _, fake_scores = discs(DiscriminatorBatches(box=torch.cat([real_half, fake])))["box"]
        grads.append(torch.autograd.grad(fake_scores.sum(), fake)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    discs.d_batch = "joint"
    _, fake_scores = discs(DiscriminatorBatches(box=torch.cat([other_real, fake])))["box"]
    assert not torch.allclose(torch.autograd.grad(fake_scores.sum(), fake)[0], grads[1])


def test_separate_d_batch_scores_a_single_roi_pair_as_one_batch_and_says_so():
    # one RoI: BatchNorm cannot normalise a single value per channel (D_m's last 1 x 1 layer), which PyTorch
    # refuses in training; the pair is scored as one batch instead of ending the run, with a warning
    discs = _discriminators().train()
    discs.d_batch = "separate"
    batch = torch.randn(2, 4, 28, 28)
    with pytest.warns(UserWarning, match="MODEL.GAN.D_BATCH 'separate'"):
        real, fake = discs(DiscriminatorBatches(mask=batch))["mask"]
    with torch.no_grad():
        expected = discs.mask_disc(batch)
    torch.testing.assert_close(torch.cat([real, fake]), expected)


def test_unknown_d_batch_is_refused_naming_the_key_and_the_values():
    with pytest.raises(ValueError) as error:
        AdversarialDiscriminators(None, MaskDiscriminator(4, channels=4, num_convs=3), None,
                                  RoIFeaturePooler(28, "ROIAlign", "max", 2), d_batch="split")
    assert str(error.value) == "unknown MODEL.GAN.D_BATCH 'split'; use one of ('joint', 'separate')"


@pytest.mark.parametrize("d_batch", ["joint", "separate"])
def test_build_discriminators_passes_model_gan_d_batch(d_batch):
    # the key reaches the built discriminators: their train-mode scores are D on the joint batch or on each half
    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.modeling.discriminators import build_discriminators

    c = cfg.clone()
    c.MODEL.GAN.D_BATCH = d_batch
    c.MODEL.ROI_MASK_HEAD.RESOLUTION = 28  # D_m reads 28 x 28 masks
    c.MODEL.GAN.MASK_DISC.CHANNELS, c.MODEL.GAN.MASK_DISC.NUM_CONVS = 4, 3
    c.MODEL.GAN.BOX_DISC.CHANNELS, c.MODEL.GAN.BOX_DISC.NUM_CONVS = 4, 3
    torch.manual_seed(0)
    discs = build_discriminators(c, 4).train()
    real, fake = torch.randn(3, 4, 28, 28), torch.randn(3, 4, 28, 28) + 1.0
    with torch.no_grad():
        scores = discs(DiscriminatorBatches(mask=torch.cat([real, fake])))["mask"]
        expected = ([discs.mask_disc(real), discs.mask_disc(fake)] if d_batch == "separate"
                    else discs.mask_disc(torch.cat([real, fake])).chunk(2))
    for half, expected_half in zip(scores, expected):
        torch.testing.assert_close(half, expected_half)
    c.MODEL.GAN.D_BATCH = "per_half"
    with pytest.raises(ValueError, match=r"^unknown MODEL\.GAN\.D_BATCH 'per_half'; use one of \('joint', "
                                         r"'separate'\)$"):
        build_discriminators(c, 4)
