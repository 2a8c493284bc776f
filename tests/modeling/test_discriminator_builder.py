"""build_discriminators follows every MODEL.GAN key it passes on: what D_b and D_m are given (pooling op, its
implementation, the fusion of the FPN levels) and how they are built (D_m's embedding, the widths and depths), each
checked against the same thing computed by hand from the key, with a second value of the key that must differ."""
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from maskrcnn_benchmark.layers import prroi_pool
from maskrcnn_benchmark.layers.prroi_pool import prroi_pool2d
from maskrcnn_benchmark.modeling.discriminators import build_discriminators
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.utils.imports import import_file

CHANNELS = 4
STRIDES = [4, 8, 16, 32]
# image 0: a 33-pixel box (FPN level 2, stride 4) and a 200-pixel one (level 3, stride 8); image 1: 256 pixels
# (level 4, stride 16). The predicted boxes are the same sizes, shifted.
GT_ROIS = torch.tensor([[0, 4.0, 4.0, 36.0, 36.0], [0, 20.0, 30.0, 219.0, 229.0], [1, 0.0, 0.0, 255.0, 255.0]])
PRED_ROIS = GT_ROIS + torch.tensor([0.0, 6.0, -3.0, 6.0, -3.0])


def _gan_cfg(**keys):
    """The default config with both discriminators on and narrow (test_discriminator_variants.py's helper)."""
    return import_file("discriminator_variant_tests_for_{}".format(__name__),
                       os.path.join(os.path.dirname(__file__), "test_discriminator_variants.py"))._gan_cfg(**keys)


def _adv_inputs():
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(2, CHANNELS, 256 // s, 256 // s, generator=generator) for s in STRIDES]
    return AdversarialInputs(
        features=features, feature_strides=STRIDES, box_rois_gt=GT_ROIS, box_rois_pred=PRED_ROIS,
        mask_targets=(torch.rand(3, 28, 28, generator=generator) > 0.5).float(),
        mask_logits=torch.randn(3, 28, 28, generator=generator), mask_rois=GT_ROIS)


def _pool_level(pooler_type, features, rois, scale, sampling_ratio):
    if pooler_type == "PrRoIPool":
        return prroi_pool2d(features, rois, 28, 28, scale, impl="torch")
    return roi_align(features, rois, (28, 28), scale, sampling_ratio, aligned=False)


def _max_over_levels_by_hand(pooler_type, features, rois, sampling_ratio):
    """Every RoI pooled at every level with `pooler_type` at the level's scale, element-wise max over the levels."""
    pooled = [_pool_level(pooler_type, level, rois, 1.0 / stride, sampling_ratio)
              for level, stride in zip(features, STRIDES)]
    fused = pooled[0]
    for level in pooled[1:]:
        fused = torch.max(fused, level)
    return fused


def _assigned_level_by_hand(pooler_type, features, rois, sampling_ratio):
    """Each RoI pooled with `pooler_type` at its FPN level only (levels 2, 3, 4 for GT_ROIS and PRED_ROIS)."""
    levels = [0, 1, 2]
    return torch.cat([_pool_level(pooler_type, features[level], rois[i:i + 1], 1.0 / STRIDES[level], sampling_ratio)
                      for i, level in enumerate(levels)])


OTHER_OP = {"PrRoIPool": "ROIAlign", "ROIAlign": "PrRoIPool"}


def _assert_equal_and_not_the_other(found, expected, other):
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-5)
    # the other op (or fusion) gives clearly different values, so a key ignored cannot pass
    assert (found - other).abs().max() > 0.05


@pytest.mark.parametrize("pooler_type", ["PrRoIPool", "ROIAlign"])
def test_mask_disc_pooler_type_pools_d_m_s_context_with_that_op_max_over_levels(pooler_type):
    # MODEL.GAN.MASK_DISC.POOLER_TYPE "PrRoIPool" is the authors' mask_feat = PrPooler(features, positive_proposals)
    c = _gan_cfg(**{"MODEL.GAN.MASK_DISC.POOLER_TYPE": pooler_type, "MODEL.PRROI_POOL_IMPL": "torch"})
    sampling_ratio = c.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO
    discs = build_discriminators(c, CHANNELS)
    adv = _adv_inputs()
    real, fake = discs.pool_inputs(adv).mask.chunk(2)
    context = _max_over_levels_by_hand(pooler_type, adv.features, GT_ROIS, sampling_ratio)
    other = _max_over_levels_by_hand(OTHER_OP[pooler_type], adv.features, GT_ROIS, sampling_ratio)
    _assert_equal_and_not_the_other(real, adv.mask_targets[:, None] * context, adv.mask_targets[:, None] * other)
    probabilities = adv.mask_logits.sigmoid()[:, None]
    _assert_equal_and_not_the_other(fake, probabilities * context, probabilities * other)


@pytest.mark.parametrize("pooler_type", ["PrRoIPool", "ROIAlign"])
def test_box_disc_pooler_type_pools_d_b_s_real_and_fake_boxes_with_that_op(pooler_type):
    c = _gan_cfg(**{"MODEL.GAN.BOX_DISC.POOLER_TYPE": pooler_type, "MODEL.PRROI_POOL_IMPL": "torch"})
    sampling_ratio = c.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO
    adv = _adv_inputs()
    real, fake = build_discriminators(c, CHANNELS).pool_inputs(adv).box.chunk(2)
    for found, rois in ((real, GT_ROIS), (fake, PRED_ROIS)):
        expected = _max_over_levels_by_hand(pooler_type, adv.features, rois, sampling_ratio)
        other = _max_over_levels_by_hand(OTHER_OP[pooler_type], adv.features, rois, sampling_ratio)
        _assert_equal_and_not_the_other(found, expected, other)


def test_feature_fusion_level_reaches_both_poolers():
    # MODEL.GAN.FEATURE_FUSION "level": each RoI read at its FPN level only, by D_b (PrRoIPool) and D_m (ROIAlign)
    c = _gan_cfg(**{"MODEL.GAN.FEATURE_FUSION": "level", "MODEL.GAN.BOX_DISC.POOLER_TYPE": "PrRoIPool",
                    "MODEL.GAN.MASK_DISC.POOLER_TYPE": "ROIAlign", "MODEL.PRROI_POOL_IMPL": "torch"})
    sampling_ratio = c.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO
    adv = _adv_inputs()
    inputs = build_discriminators(c, CHANNELS).pool_inputs(adv)
    for found, rois in zip(inputs.box.chunk(2), (GT_ROIS, PRED_ROIS)):
        _assert_equal_and_not_the_other(found, _assigned_level_by_hand("PrRoIPool", adv.features, rois, sampling_ratio),
                                        _max_over_levels_by_hand("PrRoIPool", adv.features, rois, sampling_ratio))
    real = inputs.mask.chunk(2)[0]
    targets = adv.mask_targets[:, None]
    _assert_equal_and_not_the_other(
        real, targets * _assigned_level_by_hand("ROIAlign", adv.features, GT_ROIS, sampling_ratio),
        targets * _max_over_levels_by_hand("ROIAlign", adv.features, GT_ROIS, sampling_ratio))


@pytest.mark.parametrize("fusion", ["max", "level"])
@pytest.mark.parametrize("impl", ["torch", "compiled"])
def test_prroi_pool_impl_reaches_every_prroipool_call_of_the_discriminators(monkeypatch, fusion, impl):
    calls = []
    original = prroi_pool.prroi_pool2d

    def recording(*args, **kwargs):
        calls.append(kwargs.get("impl", args[5] if len(args) > 5 else "auto"))
        return original(*args, **kwargs)

    monkeypatch.setattr(prroi_pool, "prroi_pool2d", recording)
    c = _gan_cfg(**{"MODEL.GAN.FEATURE_FUSION": fusion, "MODEL.GAN.BOX_DISC.POOLER_TYPE": "PrRoIPool",
                    "MODEL.GAN.MASK_DISC.POOLER_TYPE": "PrRoIPool", "MODEL.PRROI_POOL_IMPL": impl})
    build_discriminators(c, CHANNELS).pool_inputs(_adv_inputs())
    # D_b's real and fake halves and D_m's context, each at every level ("max") or once per level in use ("level")
    assert len(calls) >= 3 and set(calls) == {impl}


def test_mask_disc_embed_input_and_layer_weights_shape_d_m_s_embedding():
    c = _gan_cfg(**{"MODEL.GAN.MASK_DISC.EMBED_INPUT": True, "MODEL.GAN.MASK_DISC.LAYER_WEIGHTS": (1.0, 2.0, 3.0),
                    "MODEL.GAN.MASK_DISC.NUM_CONVS": 3})
    torch.manual_seed(0)
    disc = build_discriminators(c, CHANNELS).mask_disc.eval()
    x = torch.randn(2, CHANNELS, 28, 28)
    with torch.no_grad():
        embedding = disc(x)
        parts, h = [x.flatten(1)], x
        for weight, block in zip((1.0, 2.0, 3.0), disc.blocks):
            h = block(h)
            parts.append(weight * h.flatten(1))
    torch.testing.assert_close(embedding, torch.cat(parts, dim=1))
    # the defaults: no input, every layer weight 1
    torch.manual_seed(0)
    plain = build_discriminators(_gan_cfg(**{"MODEL.GAN.MASK_DISC.NUM_CONVS": 3}), CHANNELS).mask_disc.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), torch.cat([p / w for p, w in zip(parts[1:], (1.0, 2.0, 3.0))], dim=1))


def test_channels_and_depths_reach_every_discriminator():
    def widths(module, kind):
        return [(m.in_features, m.out_features) if kind is nn.Linear else (m.in_channels, m.out_channels)
                for m in module.modules() if isinstance(m, kind)]

    coordinates = build_discriminators(_gan_cfg(**{"MODEL.GAN.BOX_DISC.INPUT": "coordinates",
                                                   "MODEL.GAN.BOX_DISC.CHANNELS": 3,
                                                   "MODEL.GAN.BOX_DISC.NUM_CONVS": 4,
                                                   "MODEL.GAN.MASK_DISC.ENABLED": False}), CHANNELS)
    assert widths(coordinates.box_disc, nn.Linear) == [(4, 3), (3, 6), (6, 12), (12, 1)]
    discs = build_discriminators(_gan_cfg(**{"MODEL.GAN.BOX_DISC.CHANNELS": 5, "MODEL.GAN.BOX_DISC.NUM_CONVS": 3,
                                             "MODEL.GAN.MASK_DISC.CHANNELS": 6, "MODEL.GAN.MASK_DISC.NUM_CONVS": 4}),
                                 CHANNELS)
    assert widths(discs.box_disc, nn.Conv2d) == [(CHANNELS, 5), (5, 10), (10, 1)]
    assert widths(discs.mask_disc, nn.Conv2d) == [(CHANNELS, 6), (6, 12), (12, 24), (24, 48)]


def test_coordinate_discriminator_scores_by_hand():
    # the coordinate D's forward through its Linear layers, BatchNorm in eval mode and LeakyReLU(0.2)
    c = _gan_cfg(**{"MODEL.GAN.BOX_DISC.INPUT": "coordinates", "MODEL.GAN.BOX_DISC.CHANNELS": 3,
                    "MODEL.GAN.BOX_DISC.NUM_CONVS": 2, "MODEL.GAN.MASK_DISC.ENABLED": False})
    torch.manual_seed(0)
    disc = build_discriminators(c, CHANNELS).box_disc.eval()
    first, norm, _, last = disc.layers
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        x = torch.rand(5, 4)
        hidden = (x @ first.weight.T - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
        expected = F.leaky_relu(hidden * norm.weight + norm.bias, 0.2) @ last.weight.T + last.bias
        torch.testing.assert_close(disc(x), expected[:, 0])
