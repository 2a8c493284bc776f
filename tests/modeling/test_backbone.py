import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.backbone import build_backbone

FPN_CHANNELS = default_cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
# body name -> (strides of the returned maps, channels per map) with the default config
EXPECTED = {
    "R-50-C4": ([16], 1024),
    "R-101-C4": ([16], 1024),
    "R-50-C5": ([32], 2048),
    "R-101-C5": ([32], 2048),
    "R-18-FPN": ([4, 8, 16, 32, 64], FPN_CHANNELS),
    "R-34-FPN": ([4, 8, 16, 32, 64], FPN_CHANNELS),
    "R-50-FPN": ([4, 8, 16, 32, 64], FPN_CHANNELS),
    "R-101-FPN": ([4, 8, 16, 32, 64], FPN_CHANNELS),
    "R-152-FPN": ([4, 8, 16, 32, 64], FPN_CHANNELS),
    "R-50-FPN-RETINANET": ([8, 16, 32, 64, 128], FPN_CHANNELS),
    "R-101-FPN-RETINANET": ([8, 16, 32, 64, 128], FPN_CHANNELS),
    "R-18-FPN-RETINANET": ([8, 16, 32, 64, 128], FPN_CHANNELS),
    "R-34-FPN-RETINANET": ([8, 16, 32, 64, 128], FPN_CHANNELS),
    "FBNet": ([16], 96),  # MODEL.FBNET.ARCH "default"
}


def _cfg(conv_body, **resnets):
    cfg = default_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = conv_body
    for key, value in resnets.items():
        cfg.MODEL.RESNETS[key] = value
    return cfg


def _build_on_meta(cfg):
    # Shapes only: the meta device skips weight init and arithmetic, so big bodies check in ms.
    with torch.device("meta"):
        return build_backbone(cfg)


def test_every_registered_backbone_is_covered():
    assert set(registry.BACKBONES) == set(EXPECTED)


@pytest.mark.parametrize("conv_body", sorted(EXPECTED))
def test_backbone_maps_channels_strides(conv_body):
    strides, channels = EXPECTED[conv_body]
    model = _build_on_meta(_cfg(conv_body)).eval()
    assert model.out_channels == channels
    assert model.feature_strides == strides
    with torch.no_grad():
        outputs = model(torch.empty(1, 3, 128, 128, device="meta"))
    assert len(outputs) == len(strides)
    for out, stride in zip(outputs, strides):
        assert out.shape[1] == channels
        assert out.shape[-2:] == (max(128 // stride, 1), max(128 // stride, 1))


def test_r18_fpn_forward_is_finite_and_shaped():
    cfg = _cfg("R-18-FPN")
    cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 32
    model = build_backbone(cfg).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 96, 128))
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 24, 32), (2, 32, 12, 16), (2, 32, 6, 8), (2, 32, 3, 4),
                                                 (2, 32, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outputs)
    # P6 is a stride-2 subsampling of P5.
    assert torch.equal(outputs[4], outputs[3][:, :, ::2, ::2])


def test_fpn_input_channels_are_derived_from_the_body():
    r18 = _build_on_meta(_cfg("R-18-FPN"))
    assert [getattr(r18.fpn, "fpn_inner%d" % i).in_channels for i in range(1, 5)] == [64, 128, 256, 512]
    r50 = _build_on_meta(_cfg("R-50-FPN"))
    assert [getattr(r50.fpn, "fpn_inner%d" % i).in_channels for i in range(1, 5)] == [256, 512, 1024, 2048]


def test_state_dict_names_match_maskrcnn_benchmark():
    keys = set(_build_on_meta(_cfg("R-50-FPN")).state_dict().keys())
    for key in [
        "body.stem.conv1.weight", "body.stem.bn1.weight", "body.stem.bn1.bias", "body.stem.bn1.running_mean",
        "body.stem.bn1.running_var", "body.layer1.0.conv1.weight", "body.layer1.0.bn1.weight",
        "body.layer1.0.conv3.weight", "body.layer1.0.downsample.0.weight", "body.layer1.0.downsample.1.weight",
        "body.layer4.2.bn3.running_var", "fpn.fpn_inner1.weight", "fpn.fpn_inner1.bias", "fpn.fpn_layer1.weight",
        "fpn.fpn_inner4.weight", "fpn.fpn_layer4.bias",
    ]:
        assert key in keys, key
    # ResNet-18 uses basic blocks: two convs per block and no downsample in layer1 (64 -> 64).
    keys18 = set(_build_on_meta(_cfg("R-18-FPN")).state_dict().keys())
    assert "body.layer1.0.conv2.weight" in keys18 and "body.layer1.0.conv3.weight" not in keys18
    assert "body.layer1.0.downsample.0.weight" not in keys18 and "body.layer2.0.downsample.0.weight" in keys18
    assert "body.layer2.1.conv2.weight" in keys18 and "body.layer2.2.conv1.weight" not in keys18


def test_frozen_batchnorm_by_default_and_freeze_at():
    from maskrcnn_benchmark.layers import FrozenBatchNorm2d

    model = _build_on_meta(_cfg("R-18-FPN"))
    assert isinstance(model.body.stem.bn1, FrozenBatchNorm2d)
    assert not any(p.requires_grad for p in model.body.stem.parameters())
    assert not any(p.requires_grad for p in model.body.layer1.parameters())  # FREEZE_CONV_BODY_AT = 2
    assert all(p.requires_grad for p in model.body.layer2.parameters())
    cfg = _cfg("R-18-FPN")
    cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 0
    assert all(p.requires_grad for p in _build_on_meta(cfg).parameters())


@pytest.mark.parametrize("norm, module", [("GN", torch.nn.GroupNorm), ("BatchNorm", torch.nn.BatchNorm2d)])
def test_norm_options(norm, module):
    cfg = _cfg("R-18-FPN", TRANS_FUNC="BasicBlockWith" + norm, STEM_FUNC="StemWith" + norm)
    model = _build_on_meta(cfg)
    assert isinstance(model.body.stem.bn1, module)
    assert isinstance(getattr(model.body.layer3, "0").bn1, module)
    cfg = _cfg("R-50-C4", TRANS_FUNC="BottleneckWith" + norm, STEM_FUNC="StemWith" + norm)
    assert isinstance(getattr(_build_on_meta(cfg).body.layer2, "0").bn3, module)


def test_stride_in_1x1_and_dilation():
    cfg = _cfg("R-50-C5", STRIDE_IN_1X1=False, RES5_DILATION=2)
    model = _build_on_meta(cfg).eval()
    block = getattr(model.body.layer2, "0")
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert model.feature_strides == [16]
    with torch.no_grad():
        assert model(torch.empty(1, 3, 64, 64, device="meta"))[0].shape[-2:] == (4, 4)


def test_bad_trans_func_names_the_key():
    cfg = _cfg("R-50-FPN", TRANS_FUNC="BottleneckWithMagic")
    with pytest.raises(KeyError, match="TRANS_FUNC"):
        build_backbone(cfg)


def test_group_norm_follows_model_group_norm():
    cfg = _cfg("R-18-FPN", TRANS_FUNC="BasicBlockWithGN", STEM_FUNC="StemWithGN")
    cfg.MODEL.GROUP_NORM.NUM_GROUPS = 16
    cfg.MODEL.FPN.USE_GN = True
    model = _build_on_meta(cfg)
    assert model.body.stem.bn1.num_groups == 16
    assert getattr(model.body.layer4, "1").bn2.num_groups == 16
    assert isinstance(model.fpn.fpn_inner1[1], torch.nn.GroupNorm) and model.fpn.fpn_inner1[1].num_groups == 16
