"""Box / mask discriminators, the RoI feature pooling that feeds them, and their builder."""
import dataclasses

import pytest
import torch
from torch import nn
from torchvision.ops import roi_align

from maskrcnn_benchmark.modeling.discriminators import (
    BoxDiscriminator,
    DiscriminatorBatches,
    MaskDiscriminator,
    RoIFeaturePooler,
    build_discriminators,
)
from maskrcnn_benchmark.modeling.discriminators.box_discriminator import conv_plan
from maskrcnn_benchmark.modeling.discriminators.loss import box_adv_generator_loss
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs


@pytest.mark.parametrize("num_convs", [3, 4, 5])
@pytest.mark.parametrize("num_rois", [0, 3])
def test_discriminators_run_on_fpn_roi_features(num_convs, num_rois):
    torch.manual_seed(0)
    x = torch.randn(num_rois, 256, 28, 28)
    box_disc = BoxDiscriminator(256, channels=8, num_convs=num_convs)
    mask_disc = MaskDiscriminator(256, channels=8, num_convs=num_convs)
    assert box_disc(x).shape == (num_rois,)
    embedding = mask_disc(x)
    assert embedding.shape == (num_rois, mask_disc.embedding_size)
    convs = [m for m in box_disc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == num_convs
    # every mask conv is followed by BatchNorm: its embedding is the concatenation of num_convs layer outputs
    assert sum(isinstance(m, nn.BatchNorm2d) for m in mask_disc.modules()) == num_convs


@pytest.mark.parametrize("resolution", [7, 14, 28, 56])
@pytest.mark.parametrize("num_convs", [1, 3, 5])
def test_conv_plan_ends_at_one_by_one(resolution, num_convs):
    plan, sizes = conv_plan(resolution, num_convs)
    size = resolution
    for kernel, stride, padding in plan:
        size = (size + 2 * padding - kernel) // stride + 1
    assert size == 1 and sizes[-1] == 1 and len(plan) == num_convs


def test_discriminator_rejects_wrong_roi_size_naming_it():
    with pytest.raises(ValueError, match=r"K x C x 28 x 28, got \(2, 256, 14, 14\)"):
        BoxDiscriminator(256, channels=8)(torch.zeros(2, 256, 14, 14))
    with pytest.raises(ValueError, match="num_convs=0"):
        MaskDiscriminator(256, num_convs=0)


def test_max_fusion_is_elementwise_max_over_levels():
    torch.manual_seed(0)
    features = [torch.randn(2, 4, 32, 32), torch.randn(2, 4, 16, 16)]
    rois = torch.tensor([[0, 2.0, 3.0, 20.0, 30.0], [1, 10.0, 0.0, 60.0, 40.0]])
    pooled = RoIFeaturePooler(7, "ROIAlign", "max", sampling_ratio=2)(features, [2, 4], rois)
    expected = torch.max(
        roi_align(features[0], rois, (7, 7), 0.5, 2), roi_align(features[1], rois, (7, 7), 0.25, 2)
    )
    assert torch.allclose(pooled, expected)


def test_level_fusion_follows_fpn_assignment_and_keeps_roi_order():
    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    features = [torch.randn(2, 3, 256 // s, 256 // s) for s in strides]
    # image 1 first, then image 0: the output must follow this order, not the per-image grouping
    small = [4.0, 4.0, 36.0, 36.0]  # 33 px -> level 2 (stride 4)
    large = [0.0, 0.0, 255.0, 255.0]  # 256 px -> level 4 (stride 16)
    rois = torch.tensor([[1.0] + large, [0.0] + small, [1.0] + small])
    pooled = RoIFeaturePooler(7, "ROIAlign", "level", sampling_ratio=2)(features, strides, rois)
    assert torch.allclose(pooled[0], roi_align(features[2], rois[:1], (7, 7), 1 / 16, 2)[0], atol=1e-6)
    assert torch.allclose(pooled[1], roi_align(features[0], rois[1:2], (7, 7), 1 / 4, 2)[0], atol=1e-6)
    assert torch.allclose(pooled[2], roi_align(features[0], rois[2:3], (7, 7), 1 / 4, 2)[0], atol=1e-6)


def test_pooler_rejects_unknown_names_naming_the_key():
    with pytest.raises(ValueError, match=r"'RoIPool'.*POOLER_TYPE"):
        RoIFeaturePooler(28, "RoIPool")
    with pytest.raises(ValueError, match=r"FEATURE_FUSION 'mean'"):
        RoIFeaturePooler(28, "PrRoIPool", "mean")


def _box_adv_grad_on_regression(pooler_type):
    """Stand-in generator: a Linear regresses box coordinates; L_adv^Gb alone is backpropagated."""
    torch.manual_seed(0)
    features = [torch.randn(1, 256, 32, 32), torch.randn(1, 256, 16, 16)]
    regression = nn.Linear(4, 4)
    proposals = torch.tensor([[4.0, 4.0, 40.0, 48.0], [20.0, 10.0, 90.0, 70.0]])
    boxes = proposals + regression(proposals / 100.0)
    rois = torch.cat([torch.zeros(2, 1), boxes], dim=1)
    pooled = RoIFeaturePooler(28, pooler_type, "max")(features, [4, 8], rois)
    disc = BoxDiscriminator(256, channels=8, num_convs=3)
    box_adv_generator_loss(disc(pooled)).backward()
    return regression.weight.grad


def test_box_adversarial_loss_reaches_box_regression_through_prroipool():
    grad = _box_adv_grad_on_regression("PrRoIPool")
    assert grad is not None and grad.abs().sum() > 0


def test_box_adversarial_loss_does_not_reach_box_regression_through_roialign():
    # ROIAlign has no gradient w.r.t. the box coordinates: why the box discriminator uses PrRoIPool
    grad = _box_adv_grad_on_regression("ROIAlign")
    assert grad is None or grad.abs().sum() == 0


def _gan_cfg():
    from maskrcnn_benchmark.config import cfg

    c = cfg.clone()
    c.MODEL.GAN.ENABLED = True
    c.MODEL.ROI_MASK_HEAD.RESOLUTION = 28  # as in the FPN configs (the default 14 is the C4 head's)
    c.MODEL.GAN.BOX_DISC.CHANNELS = 8
    c.MODEL.GAN.MASK_DISC.CHANNELS = 8
    return c


def test_builder_follows_config():
    c = _gan_cfg()
    c.MODEL.GAN.BOX_DISC.NUM_CONVS = 3
    c.MODEL.GAN.MASK_DISC.ENABLED = False
    discs = build_discriminators(c, 256)
    assert discs.mask_disc is None and discs.box_pooler.pooler_type == c.MODEL.GAN.BOX_DISC.POOLER_TYPE
    assert sum(isinstance(m, nn.Conv2d) for m in discs.box_disc.modules()) == 3
    c.MODEL.GAN.BOX_DISC.ENABLED = False
    with pytest.raises(ValueError, match="BOX_DISC.ENABLED"):
        build_discriminators(c, 256)


def test_builder_rejects_mask_resolution_mismatch():
    c = _gan_cfg()
    c.MODEL.GAN.MASK_DISC.POOLER_RESOLUTION = 14
    with pytest.raises(ValueError, match="MODEL.GAN.MASK_DISC.POOLER_RESOLUTION"):
        build_discriminators(c, 256)


def test_pool_inputs_multiplies_masks_with_features_and_detaches_features():
    c = _gan_cfg()
    c.MODEL.GAN.BOX_DISC.POOLER_TYPE = "ROIAlign"
    discs = build_discriminators(c, 4)
    features = [torch.randn(1, 4, 32, 32, requires_grad=True)]
    rois = torch.tensor([[0, 2.0, 2.0, 20.0, 24.0]])
    logits = torch.randn(1, 28, 28, requires_grad=True)
    targets = (torch.rand(1, 28, 28) > 0.5).float()
    adv_inputs = AdversarialInputs(features=features, feature_strides=[4], box_rois_pred=rois, box_rois_gt=rois,
                                   mask_logits=logits, mask_targets=targets, mask_rois=rois)
    inputs = discs.pool_inputs(adv_inputs)
    roi_features = roi_align(features[0], rois, (28, 28), 0.25, c.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO)
    real, fake = inputs.mask.chunk(2)
    assert torch.allclose(real, targets[:, None] * roi_features)
    assert torch.allclose(fake, logits.sigmoid()[:, None] * roi_features)
    fake.sum().backward()
    assert features[0].grad is None and logits.grad.abs().sum() > 0


GAN_CONFIGS = {
    "configs/demo/nuclei_R_18_FPN_gan.yaml": "configs/demo/nuclei_R_18_FPN.yaml",
    "configs/demo/synthetic_R_18_FPN_gan.yaml": "configs/demo/synthetic_R_18_FPN.yaml",
    "configs/gan/e2e_mask_rcnn_R_50_FPN_1x_gan.yaml": "configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
}


@pytest.mark.parametrize("gan_file", sorted(GAN_CONFIGS))
def test_gan_configs_equal_their_baseline_except_the_gan_block(gan_file):
    import os

    from maskrcnn_benchmark.config import cfg

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    gan, base = cfg.clone(), cfg.clone()
    gan.merge_from_file(os.path.join(root, gan_file))
    base.merge_from_file(os.path.join(root, GAN_CONFIGS[gan_file]))
    assert gan.MODEL.GAN.ENABLED
    discs = build_discriminators(gan, gan.MODEL.RESNETS.BACKBONE_OUT_CHANNELS)
    assert discs.box_disc is not None and discs.mask_disc is not None
    base.MODEL.GAN = gan.MODEL.GAN
    base.OUTPUT_DIR = gan.OUTPUT_DIR
    assert gan == base  # same detector, data and schedule: only the adversarial heads differ


def test_channels_last_discriminators_score_as_nchw_and_pool_from_channels_last_maps():
    # MODEL.CHANNELS_LAST: D's weights in NHWC, its inputs made NHWC, the FPN maps arriving NHWC from the detector
    c = _gan_cfg()
    torch.manual_seed(0)
    c.MODEL.CHANNELS_LAST = False
    nchw = build_discriminators(c, 16)
    c.MODEL.CHANNELS_LAST = True
    nhwc = build_discriminators(c, 16)
    nhwc.load_state_dict(nchw.state_dict())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc.parameters() if p.dim() == 4)
    features = [torch.randn(2, 16, 40, 40), torch.randn(2, 16, 20, 20)]
    rois = torch.tensor([[0, 2.0, 2.0, 60.0, 64.0], [1, 30.0, 10.0, 90.0, 50.0], [1, 5.0, 50.0, 40.0, 150.0]])
    shifted = rois + torch.tensor([0.0, 3.0, -2.0, 3.0, 4.0])
    adv_inputs = AdversarialInputs(feature_strides=[4, 8], box_rois_pred=shifted, box_rois_gt=rois,
                                   mask_logits=torch.randn(3, 28, 28),
                                   mask_targets=(torch.rand(3, 28, 28) > 0.5).float(), mask_rois=rois)
    scores = {}
    for name, discs, maps in (("nchw", nchw, features),
                              ("nhwc", nhwc, [f.contiguous(memory_format=torch.channels_last) for f in features])):
        discs.train()
        inputs = discs.pool_inputs(dataclasses.replace(adv_inputs, features=maps))
        scores[name] = discs(inputs)
    for key in ("box", "mask"):
        for ours, ref in zip(scores["nhwc"][key], scores["nchw"][key]):
            torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_pool_inputs_forms_each_batch_once_with_the_values_and_gradients_of_pooling_real_and_fake_apart(
        channels_last):
    # pool_inputs forms each D batch once, in D's layout: the real and fake pooled boxes copied straight into it, D_m's
    # masked context written in it by one broadcast product. The values, D's scores and the gradient reaching the
    # predicted boxes are bitwise those of pooling each half on its own and concatenating them (the path D took
    # before); so is the masks' gradient in NCHW. In NHWC that gradient
    # (a sum over the channels) is summed in another order: equal up to float rounding.
    c = _gan_cfg()
    c.MODEL.GAN.MASK_DISC.POOLER_TYPE = "ROIAlign"  # the demo's: PrRoIPool for D_b, ROIAlign for D_m
    c.MODEL.CHANNELS_LAST = channels_last
    torch.manual_seed(0)
    discs = build_discriminators(c, 16).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    features = [torch.randn(2, 16, 40, 40).contiguous(memory_format=layout),
                torch.randn(2, 16, 20, 20).contiguous(memory_format=layout)]
    rois = torch.tensor([[0, 2.0, 2.0, 60.0, 64.0], [1, 30.0, 10.0, 90.0, 50.0], [1, 5.0, 50.0, 40.0, 150.0]])
    adv_inputs = AdversarialInputs(features=features, feature_strides=[4, 8], box_rois_gt=rois,
                                   mask_targets=(torch.rand(3, 28, 28) > 0.5).float(), mask_rois=rois)

    def attached():
        pred = (rois + torch.tensor([0.0, 3.0, -2.0, 3.0, 4.0])).requires_grad_()
        logits = torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(1)).requires_grad_()
        return dataclasses.replace(adv_inputs, box_rois_pred=pred, mask_logits=logits)

    batched_adv, apart_adv = attached(), attached()
    inputs = discs.pool_inputs(batched_adv)
    assert inputs.box.is_contiguous(memory_format=layout) and inputs.mask.is_contiguous(memory_format=layout)
    maps = [level.contiguous() for level in features]
    context = discs.mask_pooler(maps, [4, 8], rois)
    apart = DiscriminatorBatches(
        box=torch.cat([discs.box_pooler(maps, [4, 8], rois), discs.box_pooler(maps, [4, 8], apart_adv.box_rois_pred)]),
        mask=torch.cat([adv_inputs.mask_targets[:, None] * context,
                        apart_adv.mask_logits.sigmoid()[:, None] * context]))
    assert torch.equal(inputs.box, apart.box) and torch.equal(inputs.mask, apart.mask)
    scores, scores_apart = discs(inputs), discs(apart)
    for key in ("box", "mask"):
        for ours, ref in zip(scores[key], scores_apart[key]):
            assert torch.equal(ours, ref)
    for adv, found in ((batched_adv, scores), (apart_adv, scores_apart)):
        (found["box"][1].sum() + (found["mask"][0] - found["mask"][1]).abs().mean()).backward()
    assert batched_adv.box_rois_pred.grad.abs().sum() > 0
    assert torch.equal(batched_adv.box_rois_pred.grad, apart_adv.box_rois_pred.grad)
    if channels_last:
        torch.testing.assert_close(batched_adv.mask_logits.grad, apart_adv.mask_logits.grad, rtol=1e-5,
                                   atol=1e-9)
    else:
        assert torch.equal(batched_adv.mask_logits.grad, apart_adv.mask_logits.grad)


def test_discriminators_refuse_inputs_for_a_disabled_discriminator_naming_the_key():
    c = _gan_cfg()
    c.MODEL.GAN.BOX_DISC.ENABLED = False
    discs = build_discriminators(c, 4)
    with pytest.raises(ValueError, match="MODEL.GAN.BOX_DISC.ENABLED"):
        discs(DiscriminatorBatches(box=torch.randn(2, 4, 28, 28)))


def _chain_max(levels):
    fused = levels[0]
    for level in levels[1:]:
        fused = torch.maximum(fused, level)
    return fused


def _max_over_levels(levels):
    from maskrcnn_benchmark.modeling.poolers import max_over_levels

    return max_over_levels(levels)


def test_max_over_levels_gives_the_chain_of_maxima_and_its_gradient():
    max_over_levels = _max_over_levels
    torch.manual_seed(0)
    levels = [torch.randn(3, 4, 5, 5, requires_grad=True) for _ in range(4)]
    grad_output = torch.randn(3, 4, 5, 5)
    ours = max_over_levels(levels)
    ours_grads = torch.autograd.grad(ours, levels, grad_output)
    chain = _chain_max(levels)
    chain_grads = torch.autograd.grad(chain, levels, grad_output)
    assert torch.equal(ours, chain)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, chain_grads))  # random floats: no ties
    double = [level.detach().double().requires_grad_(True) for level in levels]
    assert torch.autograd.gradcheck(lambda *x: max_over_levels(list(x)), double)


def test_max_over_levels_gives_a_tie_s_whole_gradient_to_the_first_tied_level():
    max_over_levels = _max_over_levels
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 5.0, 3.0], requires_grad=True)
    c = torch.tensor([0.0, 5.0, 3.0], requires_grad=True)
    fused = max_over_levels([a, b, c])
    assert torch.equal(fused, torch.tensor([1.0, 5.0, 3.0]))
    fused.sum().backward()
    assert torch.equal(a.grad, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(b.grad, torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(c.grad, torch.zeros(3))
    with torch.no_grad():  # without a gradient to carry it is the plain chain
        assert max_over_levels([a, b, c]).grad_fn is None


def test_max_over_levels_propagates_nan_and_infinities_and_routes_their_gradient_to_their_level():
    # the definition: the chain of torch.maximum (NaN wins, +inf beats everything else), each element's gradient
    # to the last level at which the chain's running maximum changed (maximum(x, y) != x); NaN != NaN, so a NaN
    # element's gradient goes to the last level
    nan, inf = float("nan"), float("inf")
    a = torch.tensor([1.0, nan, 2.0, -inf], requires_grad=True)
    b = torch.tensor([nan, 3.0, inf, -inf], requires_grad=True)
    c = torch.tensor([4.0, 5.0, 6.0, -inf], requires_grad=True)
    fused = _max_over_levels([a, b, c])
    chain = _chain_max([a, b, c])
    assert torch.equal(torch.isnan(fused), torch.isnan(chain)) and torch.isnan(fused[:2]).all()
    assert fused[2] == inf and fused[3] == -inf
    fused.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert torch.equal(a.grad, torch.tensor([0.0, 0.0, 0.0, 4.0]))  # all -inf: a tie, the first level
    assert torch.equal(b.grad, torch.tensor([0.0, 0.0, 3.0, 0.0]))  # inf came in at b and stayed
    assert torch.equal(c.grad, torch.tensor([1.0, 2.0, 0.0, 0.0]))  # NaN elements: the last level


def test_box_coordinate_discriminator_layers_follow_its_arguments_and_defaults():
    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.modeling.discriminators.box_discriminator import BoxCoordinateDiscriminator

    def layers(disc):
        return ([(m.in_features, m.out_features, m.bias is not None) for m in disc.modules()
                 if isinstance(m, nn.Linear)], sum(isinstance(m, nn.BatchNorm1d) for m in disc.modules()))

    # the defaults are MODEL.GAN.BOX_DISC's: 64 wide, 5 layers, BatchNorm (so no bias before it)
    assert (cfg.MODEL.GAN.BOX_DISC.CHANNELS, cfg.MODEL.GAN.BOX_DISC.NUM_CONVS) == (64, 5)
    assert layers(BoxCoordinateDiscriminator()) == (
        [(4, 64, False), (64, 128, False), (128, 256, False), (256, 512, False), (512, 1, True)], 4)
    # the width doubles up to 8x, then stays
    assert layers(BoxCoordinateDiscriminator(2, 6))[0] == [
        (4, 2, False), (2, 4, False), (4, 8, False), (8, 16, False), (16, 16, False), (16, 1, True)]
    assert layers(BoxCoordinateDiscriminator(2, 3, batch_norm=False)) == (
        [(4, 2, True), (2, 4, True), (4, 1, True)], 0)
    assert layers(BoxCoordinateDiscriminator(2, 1)) == ([(4, 1, True)], 0)
    with pytest.raises(ValueError) as error:
        BoxCoordinateDiscriminator(2, 0)
    assert str(error.value) == "a discriminator needs at least one layer, got num_layers=0"
    for shape in ((3, 5), (4,)):
        with pytest.raises(ValueError) as error:
            BoxCoordinateDiscriminator(2, 2)(torch.zeros(shape))
        assert str(error.value) == "BoxCoordinateDiscriminator expects K x 4 normalised boxes, got {}".format(shape)


def test_level_fusion_pools_with_the_chosen_op():
    # FEATURE_FUSION "level" with POOLER_TYPE PrRoIPool: PrRoIPool at the assigned level, not the pooler's default op
    from maskrcnn_benchmark.layers.prroi_pool import prroi_pool2d

    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    features = [torch.randn(1, 3, 256 // s, 256 // s) for s in strides]
    rois = torch.tensor([[0.0, 4.0, 4.0, 36.0, 36.0]])  # 33 px -> level 2 (stride 4)
    pooled = RoIFeaturePooler(7, "PrRoIPool", "level")(features, strides, rois)
    torch.testing.assert_close(pooled, prroi_pool2d(features[0], rois, 7, 7, 1 / 4))


def test_mask_discriminator_convs_have_a_bias_only_without_batchnorm_and_defaults_are_the_config_s():
    from maskrcnn_benchmark.config import cfg

    assert (cfg.MODEL.GAN.MASK_DISC.CHANNELS, cfg.MODEL.GAN.MASK_DISC.NUM_CONVS) == (64, 5)
    default = MaskDiscriminator(1)
    convs = [m for m in default.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 1024]
    # BatchNorm's shift makes a conv bias redundant; a checkpoint of either kind holds exactly these parameters
    assert all(m.bias is None for m in convs)
    no_bn = MaskDiscriminator(1, channels=2, num_convs=2, batch_norm=False)
    assert all(m.bias is not None for m in no_bn.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules())
