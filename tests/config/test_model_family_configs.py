"""configs/: one file per model family (maskrcnn-benchmark's names), each built as the family it names, trained for
one step and run on a tiny input; only the sizes (input, proposals, head widths) are shrunk by options."""
import os

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.modeling.roi_heads.box_head.roi_box_feature_extractors import (
    FPN2MLPFeatureExtractor,
    ResNet50Conv5ROIFeatureExtractor,
)
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import to_image_list
from maskrcnn_benchmark.structures.keypoint import PersonKeypoints
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# family -> shipped configs; Faster and Mask R-CNN in the C4, FPN and X-101-32x8d variants, keypoints, GroupNorm.
FAMILIES = {
    "faster_rcnn_C4": ["e2e_faster_rcnn_R_50_C4_1x.yaml"],
    "mask_rcnn_C4": ["e2e_mask_rcnn_R_50_C4_1x.yaml"],
    "faster_rcnn_FPN": ["e2e_faster_rcnn_R_50_FPN_1x.yaml"],
    "mask_rcnn_FPN": ["e2e_mask_rcnn_R_50_FPN_1x.yaml"],
    "faster_rcnn_X_101_32x8d": ["e2e_faster_rcnn_X_101_32x8d_FPN_1x.yaml"],
    "mask_rcnn_X_101_32x8d": ["e2e_mask_rcnn_X_101_32x8d_FPN_1x.yaml"],
    "keypoint_rcnn": ["e2e_keypoint_rcnn_R_50_FPN_1x.yaml"],
    "group_norm": ["gn_baselines/e2e_faster_rcnn_R_50_FPN_1x_gn.yaml",
                   "gn_baselines/e2e_mask_rcnn_R_50_FPN_1x_gn.yaml"],
}
CASES = [(family, name) for family, names in sorted(FAMILIES.items()) for name in names]

# Sizes only: the architecture (body, FPN, heads, normalisation) stays the file's.
SHRINK = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHT", "",
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 100, "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 50, "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 50, "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 10,
    "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 64,
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (32, 32),
    "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", (32, 32),
]


def _load(name):
    return load_config(os.path.join(REPO, "configs", name), SHRINK)


def test_every_family_has_a_shipped_config():
    for family, names in FAMILIES.items():
        for name in names:
            assert os.path.isfile(os.path.join(REPO, "configs", name)), (family, name)


def _images(size_divisible):
    torch.manual_seed(0)
    return to_image_list([torch.randn(3, 96, 128) * 50, torch.randn(3, 128, 96) * 50], size_divisible=size_divisible)


def _targets(cfg):
    targets = []
    specs = [((128, 96), [[10., 12., 60., 70.], [64., 20., 120., 90.]]), ((96, 128), [[5., 5., 60., 80.]])]
    for (w, h), boxes in specs:
        target = BoxList(torch.tensor(boxes), (w, h))
        target.add_field("labels", torch.ones(len(boxes), dtype=torch.int64))
        if cfg.MODEL.MASK_ON:
            polygons = [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in boxes]
            target.add_field("masks", SegmentationMask(polygons, (w, h), mode="poly"))
        if cfg.MODEL.KEYPOINT_ON:
            generator = torch.Generator().manual_seed(len(boxes))
            box = torch.tensor(boxes)
            fraction = torch.rand(len(boxes), 17, 2, generator=generator)
            xy = box[:, None, :2] + fraction * (box[:, None, 2:] - box[:, None, :2])
            keypoints = torch.cat([xy, torch.full((len(boxes), 17, 1), 2.0)], dim=2)
            target.add_field("keypoints", PersonKeypoints(keypoints, (w, h)))
        targets.append(target)
    return targets


def _check_family(family, model, cfg):
    heads = model.roi_heads
    has_fpn = hasattr(model.backbone, "fpn")
    assert has_fpn == ("C4" not in family)
    extractor = heads.box.feature_extractor
    assert isinstance(extractor, ResNet50Conv5ROIFeatureExtractor if "C4" in family else FPN2MLPFeatureExtractor)
    assert ("mask" in heads) == family.startswith("mask") or family == "group_norm" and cfg.MODEL.MASK_ON
    assert ("keypoint" in heads) == (family == "keypoint_rcnn")
    if family == "mask_rcnn_C4":
        assert heads.mask.feature_extractor is heads.box.feature_extractor  # res5 shared with the box head
    if "X_101_32x8d" in family:
        grouped = [m for m in model.backbone.body.modules() if isinstance(m, nn.Conv2d) and m.groups == 32]
        assert grouped and grouped[0].in_channels // 32 == 8  # res2's 3x3: 32 groups of 8 channels
        assert len([m for m in model.backbone.body.modules() if type(m).__name__.startswith("Bottleneck")]) == 33
    norms = [type(m) for m in model.modules() if isinstance(m, nn.GroupNorm)]
    if family == "group_norm":
        assert all(any(isinstance(m, nn.GroupNorm) for m in part.modules())
                   for part in (model.backbone.body, model.backbone.fpn, heads.box.feature_extractor))
        if cfg.MODEL.MASK_ON:
            assert any(isinstance(m, nn.GroupNorm) for m in heads.mask.feature_extractor.modules())
    else:
        assert not norms


@pytest.mark.slow
@pytest.mark.parametrize("family,name", CASES, ids=[name for _, name in CASES])
def test_family_config_builds_trains_a_step_and_infers(family, name):
    cfg = _load(name)
    torch.manual_seed(0)
    model = build_detection_model(cfg)
    _check_family(family, model, cfg)

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # random weights without ImageNet init give large gradients (FrozenBatchNorm is the identity): a small step
    optimizer = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    rpn_before = model.rpn.head.cls_logits.weight.detach().clone()
    box_before = model.roi_heads.box.predictor.cls_score.weight.detach().clone()
    losses = model(_images(cfg.DATALOADER.SIZE_DIVISIBILITY), _targets(cfg))
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    expected |= {"loss_mask"} if cfg.MODEL.MASK_ON else set()
    expected |= {"loss_kp"} if cfg.MODEL.KEYPOINT_ON else set()
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(model.rpn.head.cls_logits.weight, rpn_before)
    assert not torch.equal(model.roi_heads.box.predictor.cls_score.weight, box_before)

    model.eval()
    with torch.no_grad():
        detections = model(_images(cfg.DATALOADER.SIZE_DIVISIBILITY))
    assert [d.size for d in detections] == [(128, 96), (96, 128)]
    assert all(0 < len(d) <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG for d in detections)
    for d in detections:
        assert d.has_field("scores") and d.has_field("labels")
        assert d.has_field("mask") == cfg.MODEL.MASK_ON
        if cfg.MODEL.MASK_ON:
            # unpasted per-RoI probabilities, RESOLUTION cells (C4: 14, FPN: 28)
            assert d.get_field("mask").shape[-2:] == (cfg.MODEL.ROI_MASK_HEAD.RESOLUTION,) * 2
        assert d.has_field("keypoints") == cfg.MODEL.KEYPOINT_ON
        if cfg.MODEL.KEYPOINT_ON:
            assert d.get_field("keypoints").keypoints.shape == (len(d), 17, 3)
