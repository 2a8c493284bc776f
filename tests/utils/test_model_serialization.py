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
