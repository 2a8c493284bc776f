"""Suffix-aligned state dict loading and the torchvision ResNet -> maskrcnn-benchmark name mapping."""
import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.utils.model_serialization import load_state_dict


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 1)
        self.xconv1 = nn.Conv2d(2, 3, 1)
        self.cls_score = nn.Linear(4, 5)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(OrderedDict(body=_Head()))
        self.roi_heads = _Head()


def test_keys_align_by_dotted_suffix_and_longest_match_wins():
    model = _Model()
    loaded = {
        "module.body.conv1.weight": torch.full((3, 2, 1, 1), 1.0),  # "module." stripped, matches backbone only
        "module.conv1.weight": torch.full((3, 2, 1, 1), 2.0),  # shorter suffix: used for roi_heads.conv1 only
        "module.conv1.bias": torch.full((3,), 3.0),
    }
    report = load_state_dict(model, loaded)
    assert torch.all(model.backbone.body.conv1.weight == 1.0)
    assert torch.all(model.roi_heads.conv1.weight == 2.0)
    assert torch.all(model.roi_heads.conv1.bias == 3.0)
    # "conv1.weight" must not leak into "xconv1.weight" (whole dotted components only).
    assert not torch.all(model.roi_heads.xconv1.weight == 2.0)
    assert "roi_heads.xconv1.weight" in report["missing"]


def test_shape_mismatch_is_reported_and_not_loaded(caplog):
    model = _Model()
    before = model.roi_heads.cls_score.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = load_state_dict(model, {"roi_heads.cls_score.weight": torch.zeros(81, 4)})
    assert report["mismatched"] == [("roi_heads.cls_score.weight", "roi_heads.cls_score.weight", (5, 4), (81, 4))]
    assert torch.equal(model.roi_heads.cls_score.weight, before)
    assert "roi_heads.cls_score.weight" in caplog.text and "(81, 4)" in caplog.text


def test_torchvision_resnet_checkpoint_maps_onto_backbone_names(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from maskrcnn_benchmark.config import cfg as base_cfg
    from maskrcnn_benchmark.modeling.backbone import build_backbone
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    cfg = base_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = "R-18-FPN"
    cfg.MODEL.RESNETS.TRANS_FUNC = "BasicBlockWithFixedBatchNorm"
    cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 64
    cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 0

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = build_backbone(cfg)

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-default BN statistics, so the buffers are visibly copied
        for module in resnet.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    tv_state = resnet.state_dict()
    path = tmp_path / "resnet18-tv.pth"
    torch.save(tv_state, str(path))

    model = Detector()
    fpn_before = {k: v.clone() for k, v in model.state_dict().items() if ".fpn" in k or k.startswith("backbone.fpn")}
    DetectronCheckpointer(cfg, model).load(str(path), use_latest=False)
    ours = model.state_dict()

    assert torch.equal(ours["backbone.body.stem.conv1.weight"], tv_state["conv1.weight"])
    assert torch.equal(ours["backbone.body.stem.bn1.running_var"], tv_state["bn1.running_var"])
    assert torch.equal(ours["backbone.body.layer3.0.downsample.1.running_mean"],
                       tv_state["layer3.0.downsample.1.running_mean"])
    mapped = 0
    for key, value in tv_state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        our_key = "backbone.body." + key.replace("conv1.", "stem.conv1.", 1).replace("bn1.", "stem.bn1.", 1) \
            if key.startswith(("conv1.", "bn1.")) else "backbone.body." + key
        assert torch.equal(ours[our_key], value), key
        mapped += 1
    assert mapped == 100  # every conv and BN tensor of ResNet-18
    for key, value in fpn_before.items():
        assert torch.equal(ours[key], value)


def _detectron_name(our_name):
    """Inverse of the C2 renaming, written out independently for the test."""
    import re

    affine = {"weight": "s", "bias": "b"}
    m = re.match(r"^stem\.conv1\.weight$", our_name)
    if m:
        return "conv1_w"
    m = re.match(r"^stem\.bn1\.(weight|bias)$", our_name)
    if m:
        return "res_conv1_bn_" + affine[m.group(1)]
    m = re.match(r"^layer(\d)\.(\d+)\.conv(\d)\.weight$", our_name)
    if m:
        return "res{}_{}_branch2{}_w".format(int(m.group(1)) + 1, m.group(2), "abc"[int(m.group(3)) - 1])
    m = re.match(r"^layer(\d)\.(\d+)\.bn(\d)\.(weight|bias)$", our_name)
    if m:
        return "res{}_{}_branch2{}_bn_{}".format(int(m.group(1)) + 1, m.group(2), "abc"[int(m.group(3)) - 1],
                                                affine[m.group(4)])
    m = re.match(r"^layer(\d)\.(\d+)\.downsample\.0\.weight$", our_name)
    if m:
        return "res{}_{}_branch1_w".format(int(m.group(1)) + 1, m.group(2))
    m = re.match(r"^layer(\d)\.(\d+)\.downsample\.1\.(weight|bias)$", our_name)
    if m:
        return "res{}_{}_branch1_bn_{}".format(int(m.group(1)) + 1, m.group(2), affine[m.group(3)])
    return None


def test_detectron_pkl_loads_onto_r50_backbone_and_code_is_refused(tmp_path):
    import pickle

    import numpy as np

    from maskrcnn_benchmark.config import cfg as base_cfg
    from maskrcnn_benchmark.modeling.backbone import build_backbone
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    cfg = base_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = "R-50-FPN"

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = build_backbone(cfg)

    model = Detector()
    body = {k[len("backbone.body."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.body.")}
    rng = np.random.RandomState(0)
    blobs = {}
    for name, value in body.items():
        c2 = _detectron_name(name)
        if c2 is not None:
            blobs[c2] = rng.standard_normal(tuple(value.shape)).astype(np.float32)
            blobs[c2 + "_momentum"] = np.zeros(tuple(value.shape), np.float32)
    blobs["fc1000_w"] = np.zeros((1000, 2048), np.float32)
    path = tmp_path / "R-50.pkl"
    with open(str(path), "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)

    DetectronCheckpointer(cfg, model).load(str(path), use_latest=False)
    ours = model.state_dict()
    checked = 0
    for name in body:
        c2 = _detectron_name(name)
        if c2 is not None:
            assert np.array_equal(ours["backbone.body." + name].numpy(), blobs[c2]), name
            checked += 1
    assert checked == 53 + 53 * 2  # every conv (53 of ResNet-50) plus the weight and bias of each norm
    # Detectron's affine BN folds the statistics in: running stats stay at mean 0 / var 1.
    assert torch.all(ours["backbone.body.stem.bn1.running_var"] == 1)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pkl"
    with open(str(evil), "wb") as f:
        pickle.dump({"blobs": {"conv1_w": Evil()}}, f, protocol=2)
    with pytest.raises(RuntimeError, match=r"Refusing.*evil.pkl.*io.open"):
        DetectronCheckpointer(cfg, model).load(str(evil), use_latest=False)
    assert not marker.exists()


def test_strict_loading_refuses_a_missing_tensor_but_not_anchors_the_config_gives():
    from maskrcnn_benchmark.modeling.rpn.anchor_generator import AnchorGenerator
    from maskrcnn_benchmark.utils.model_serialization import CheckpointMismatchError

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 2)
            self.anchor_generator = AnchorGenerator((32,), (0.5, 1.0, 2.0), (16,))

    model = Detector()
    weights = {"head.weight": torch.ones(2, 3), "head.bias": torch.zeros(2)}
    report = load_state_dict(model, dict(weights), strict=True)  # no anchors in the file: they follow from the config
    assert report["missing"] == ["anchor_generator.cell_anchors.0"]
    assert torch.equal(model.head.weight, torch.ones(2, 3))
    with pytest.raises(CheckpointMismatchError, match="no tensor for 'head.bias'"):
        load_state_dict(Detector(), {"head.weight": torch.ones(2, 3)}, strict=True)
    before = Detector()
    load_state_dict(before, {"head.weight": torch.ones(2, 3)})  # not strict (fine-tuning): what fits is loaded
    assert torch.equal(before.head.weight, torch.ones(2, 3))
