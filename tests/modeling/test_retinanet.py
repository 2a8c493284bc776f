"""RetinaNet (MODEL.RETINANET_ON): anchors, focal / box losses, head, post-processing, the shipped configs and a
short training run on the synthetic data."""
import math
import os

import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.layers import sigmoid_focal_loss
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.modeling.matcher import Matcher
from maskrcnn_benchmark.modeling.rpn.anchor_generator import make_anchor_generator_retinanet, retinanet_anchor_sizes
from maskrcnn_benchmark.modeling.rpn.retinanet.inference import RetinaNetPostProcessor
from maskrcnn_benchmark.modeling.rpn.retinanet.loss import RetinaNetLossComputation, retinanet_losses
from maskrcnn_benchmark.modeling.rpn.retinanet.retinanet import RetinaNetHead, RetinaNetModule
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import to_image_list

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(REPO, "configs", "demo", "synthetic_retinanet_R_18_FPN.yaml")
R50_CONFIG = os.path.join(REPO, "configs", "retinanet", "retinanet_R-50-FPN_1x.yaml")


def _focal_reference(logit, y, gamma, alpha):
    p = 1.0 / (1.0 + math.exp(-logit))
    if y:
        return -alpha * (1 - p) ** gamma * math.log(p)
    return -(1 - alpha) * p ** gamma * math.log(1 - p)


def test_focal_loss_matches_hand_computed_values_and_ignores_negative_labels():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5], [3.0, 3.0], [1.5, -2.0]], dtype=torch.float64)
    targets = torch.tensor([2, 0, -1, 1])  # anchor 2 ignored (between IoU thresholds)
    gamma, alpha = 2.0, 0.25
    expected = 0.0
    for row, label in ((0, 2), (1, 0), (3, 1)):
        for c in range(2):
            expected += _focal_reference(float(logits[row, c]), label == c + 1, gamma, alpha)
    loss = sigmoid_focal_loss(logits, targets, gamma=gamma, alpha=alpha)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # gamma 0 and alpha 0.5 is half the binary cross-entropy
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[[0, 1, 3]], torch.tensor([[0., 1.], [0., 0.], [1., 0.]], dtype=torch.float64), reduction="sum")
    assert sigmoid_focal_loss(logits, targets, gamma=0.0, alpha=0.5).item() == pytest.approx(0.5 * bce.item())


def test_focal_loss_refuses_labels_beyond_the_classes():
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.tensor([1, 4]))


def test_retinanet_anchor_sizes_and_cell_anchors():
    sizes = retinanet_anchor_sizes((32, 64), 2.0, 3)
    assert sizes[0] == pytest.approx((32.0, 32.0 * 2 ** (1 / 3), 32.0 * 2 ** (2 / 3)))
    assert sizes[1] == pytest.approx((64.0, 64.0 * 2 ** (1 / 3), 64.0 * 2 ** (2 / 3)))

    cfg = default_cfg.clone()
    generator = make_anchor_generator_retinanet(cfg)  # defaults: 5 levels, 3 ratios x 3 scales
    assert generator.num_anchors_per_location() == [9] * 5
    cell = list(generator.cell_anchors)[0]
    # stride 8: base box 8x8 centred on 3.5; ratio 1 (anchors 3..5) keeps w = h = size, so x0 = 3.5 - (size - 1) / 2.
    for i, size in enumerate(sizes[0]):
        half = (size - 1) / 2
        assert cell[3 + i].tolist() == pytest.approx([3.5 - half, 3.5 - half, 3.5 + half, 3.5 + half])
    # ratio 0.5 (anchors 0..2): w = round(sqrt(64 / 0.5)) = 11, h = round(5.5) = 6, scaled by size / 8.
    w, h = 11 * 32 / 8, 6 * 32 / 8
    half_w, half_h = (w - 1) / 2, (h - 1) / 2
    assert cell[0].tolist() == pytest.approx([3.5 - half_w, 3.5 - half_h, 3.5 + half_w, 3.5 + half_h])

    cfg.MODEL.RETINANET.ANCHOR_STRIDES = (8, 16)
    with pytest.raises(ValueError, match="ANCHOR_STRIDES"):
        make_anchor_generator_retinanet(cfg)


def test_retinanet_losses_reference_values():
    box_cls = torch.tensor([[2.0, -1.0], [0.0, 0.0], [-3.0, 1.0]])
    box_regression = torch.tensor([[0.05, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.0]])
    labels = torch.tensor([1, 0, 2])
    regression_targets = torch.zeros(3, 4)
    beta, norm = 0.11, 4.0
    loss_cls, loss_reg = retinanet_losses(box_cls, box_regression, labels, regression_targets, num_images=1,
                                          gamma=2.0, alpha=0.25, beta=beta, regress_norm=norm)
    expected_cls = sum(_focal_reference(float(box_cls[i, c]), int(labels[i]) == c + 1, 2.0, 0.25)
                       for i in range(3) for c in range(2)) / (2 + 1)  # P = 2 positives, N = 1 image
    # positives 0 and 2: |0.05| < beta (quadratic), |0.5| >= beta (linear); anchor 1 (background) not regressed
    expected_reg = (0.5 * 0.05 ** 2 / beta + (0.5 - 0.5 * beta)) / (2 * norm)
    assert loss_cls.item() == pytest.approx(expected_cls, rel=1e-6)
    assert loss_reg.item() == pytest.approx(expected_reg, rel=1e-6)


def test_prepare_targets_labels_positives_background_and_ignored_anchors():
    anchors = BoxList(torch.tensor([
        [0., 0., 9., 9.],      # IoU 1 with GT 0 -> label of GT 0
        [0., 0., 9., 13.],     # IoU 100/140 = 0.71 with GT 0 -> positive
        [0., 0., 9., 21.],     # IoU 100/220 = 0.45 -> between thresholds, ignored
        [30., 30., 39., 39.],  # IoU 1 with GT 1
        [60., 60., 69., 69.],  # no overlap -> background
        [95., 0., 110., 9.],   # background but reaching outside the 100 px wide image
    ]), (100, 100))
    anchors.add_field("visibility", torch.tensor([True, True, True, True, True, False]))
    target = BoxList(torch.tensor([[0., 0., 9., 9.], [30., 30., 39., 39.]]), (100, 100))
    target.add_field("labels", torch.tensor([3, 1]))
    evaluator = RetinaNetLossComputation(Matcher(0.5, 0.4, allow_low_quality_matches=True),
                                         BoxCoder((10., 10., 5., 5.)))
    labels, regression_targets = evaluator.prepare_targets([anchors], [target])
    assert labels[0].tolist() == [3, 3, -1, 1, 0, -1]
    assert torch.allclose(regression_targets[0][[0, 3]], torch.zeros(2, 4))

    empty = BoxList(torch.zeros(0, 4), (100, 100))
    empty.add_field("labels", torch.zeros(0, dtype=torch.int64))
    labels, _ = evaluator.prepare_targets([anchors], [empty])
    assert labels[0].tolist() == [0, 0, 0, 0, 0, -1]


def test_head_towers_shapes_and_prior_initialisation():
    torch.manual_seed(0)
    head = RetinaNetHead(in_channels=16, num_classes=3, num_anchors=9, num_convs=3, prior_prob=0.01)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in head.cls_tower) == 3
    assert sum(isinstance(m, torch.nn.Conv2d) for m in head.bbox_tower) == 3
    assert torch.allclose(head.cls_logits.bias, torch.full((27,), -math.log(99.0)))
    features = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4)]
    logits, deltas = head(features)
    assert [tuple(t.shape) for t in logits] == [(2, 27, 8, 8), (2, 27, 4, 4)]
    assert [tuple(t.shape) for t in deltas] == [(2, 36, 8, 8), (2, 36, 4, 4)]
    # with weights N(0, 0.01) the initial class probabilities are close to the prior
    assert torch.sigmoid(logits[0]).mean().item() == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match="PRIOR_PROB"):
        RetinaNetHead(16, 3, 9, prior_prob=1.0)


def _one_level_outputs(scores, deltas):
    """scores Tensor[H*W, C] probabilities, deltas [H*W, 4] for one image, one anchor per location, on a 1 x L grid
    -> (box_cls [1, C, 1, L] logits, box_regression [1, 4, 1, L])."""
    logits = torch.logit(scores)
    return logits.t().reshape(1, -1, 1, scores.shape[0]), deltas.t().reshape(1, 4, 1, scores.shape[0])


def test_postprocessor_threshold_topk_per_class_nms_and_detections_per_image():
    anchor_boxes = torch.tensor([[0., 0., 19., 19.], [1., 0., 20., 19.], [40., 40., 59., 59.], [80., 0., 99., 19.]])
    anchors = BoxList(anchor_boxes, (100, 100))
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.7], [0.02, 0.6], [0.3, 0.5]])
    box_cls, box_regression = _one_level_outputs(scores, torch.zeros(4, 4))

    post = RetinaNetPostProcessor(pre_nms_thresh=0.05, pre_nms_top_n=100, nms_thresh=0.5, detections_per_img=100)
    result = post([[anchors]], [box_cls], [box_regression])[0]
    # class 1: anchors 0 (0.9) and 1 (0.8) overlap (IoU 0.9) -> anchor 1 suppressed; anchor 3 (0.3) kept.
    # class 2: anchors 1 (0.7), 2 (0.6), 3 (0.5), no overlap. Below 0.05: anchor 0 / class 2, anchor 2 / class 1.
    assert result.get_field("scores").tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.3])
    assert result.get_field("labels").tolist() == [1, 2, 2, 2, 1]
    assert torch.equal(result.bbox, anchor_boxes[[0, 1, 2, 3, 3]])

    # pre-NMS top-k per level keeps the 2 best (anchor, class) pairs before NMS
    post.pre_nms_top_n = 2
    result = post([[anchors]], [box_cls], [box_regression])[0]
    assert result.get_field("scores").tolist() == pytest.approx([0.9])  # 0.8 of the same class suppressed by NMS
    post.pre_nms_top_n, post.detections_per_img = 100, 3
    result = post([[anchors]], [box_cls], [box_regression])[0]
    assert result.get_field("scores").tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_postprocessor_decodes_and_clips_boxes():
    anchors = BoxList(torch.tensor([[10., 10., 29., 29.]]), (40, 30))
    deltas = torch.tensor([[10 * 0.5, 0.0, 0.0, 5 * math.log(2.0)]])  # shift by half a width, double the height
    box_cls, box_regression = _one_level_outputs(torch.tensor([[0.5]]), deltas)
    result = RetinaNetPostProcessor()([[anchors]], [box_cls], [box_regression])[0]
    # centre (20 + 10, 20), size 20 x 40 -> [20, 0, 39, 39], clipped to the 40 x 30 image
    assert result.bbox.tolist() == [[20.0, 0.0, 39.0, 29.0]]


def _tiny_targets():
    specs = [((64, 64), [[4., 6., 30., 40.], [30., 20., 60., 60.]], [1, 3]), ((64, 48), [[10., 10., 25., 20.]], [2])]
    targets = []
    for size, boxes, labels in specs:
        target = BoxList(torch.tensor(boxes), size)
        target.add_field("labels", torch.tensor(labels))
        targets.append(target)
    return targets


def _tiny_images():
    torch.manual_seed(0)
    return to_image_list([torch.randn(3, 64, 64) * 30, torch.randn(3, 48, 64) * 30], size_divisible=32)


def _train_step_and_inference(cfg):
    model = build_detection_model(cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = model.rpn.head.cls_logits.weight.detach().clone()
    losses = model(_tiny_images(), _tiny_targets())
    assert set(losses) == {"loss_retina_cls", "loss_retina_reg"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.rpn.head.cls_logits.weight)
    model.eval()
    with torch.no_grad():
        detections = model(_tiny_images())
    assert len(detections) == 2 and detections[1].size == (64, 48)
    for d in detections:
        assert set(d.fields()) == {"scores", "labels"}
        assert len(d) <= cfg.TEST.DETECTIONS_PER_IMG
        assert ((d.get_field("labels") >= 1) & (d.get_field("labels") < cfg.MODEL.RETINANET.NUM_CLASSES)).all()
    return model


def _has_roi_head_modules(model):
    from maskrcnn_benchmark.modeling.roi_heads.roi_heads import CombinedROIHeads

    return model.roi_heads is not None or any(isinstance(m, CombinedROIHeads) for m in model.modules())


def test_demo_config_builds_retinanet_without_roi_heads_and_trains_one_step():
    cfg = load_config(DEMO_CONFIG, ["MODEL.RETINANET.INFERENCE_TH", 0.0, "TEST.DETECTIONS_PER_IMG", 7])
    torch.manual_seed(0)
    model = _train_step_and_inference(cfg)
    assert isinstance(model.rpn, RetinaNetModule)
    assert not _has_roi_head_modules(model)
    assert model.backbone.feature_strides == [8, 16, 32, 64, 128]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.rpn.head.cls_tower) == cfg.MODEL.RETINANET.NUM_CONVS
    # threshold 0: every image returns exactly DETECTIONS_PER_IMG boxes
    model.eval()
    with torch.no_grad():
        assert [len(d) for d in model(_tiny_images())] == [7, 7]


@pytest.mark.slow
def test_r50_config_builds_retinanet_with_maskrcnn_benchmark_names_and_p6_from_c5_or_p5():
    cfg = load_config(R50_CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.RETINANET.NUM_CLASSES", 4])
    torch.manual_seed(0)
    model = _train_step_and_inference(cfg)
    assert isinstance(model.rpn, RetinaNetModule) and not _has_roi_head_modules(model)
    assert model.backbone.fpn.top_blocks.p6.in_channels == 2048  # USE_C5 True: P6 = conv(C5)
    keys = set(model.state_dict())
    # maskrcnn-benchmark's checkpoint names for the RetinaNet module
    for key in ("rpn.head.cls_tower.0.weight", "rpn.head.cls_tower.6.weight", "rpn.head.bbox_tower.6.bias",
                "rpn.head.cls_logits.weight", "rpn.head.bbox_pred.weight", "rpn.anchor_generator.cell_anchors.4",
                "backbone.fpn.top_blocks.p6.weight", "backbone.fpn.top_blocks.p7.weight",
                "backbone.fpn.fpn_inner2.weight"):
        assert key in keys, key
    assert "backbone.fpn.fpn_inner1.weight" not in keys  # no P2
    assert model.rpn.head.cls_logits.out_channels == 9 * 3

    cfg.MODEL.RETINANET.USE_C5 = False
    p5_model = build_detection_model(cfg)
    assert p5_model.backbone.fpn.top_blocks.p6.in_channels == 256  # P6 = conv(P5)
    features = p5_model.backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [8, 4, 2, 1, 1]


def test_unimplemented_retinanet_combinations_are_refused_by_key():
    cfg = load_config(DEMO_CONFIG, ["MODEL.MASK_ON", True])
    with pytest.raises(ValueError, match="MODEL.MASK_ON"):
        build_detection_model(cfg)
    cfg = load_config(DEMO_CONFIG, ["MODEL.KEYPOINT_ON", True])
    with pytest.raises(ValueError, match="MODEL.KEYPOINT_ON"):
        build_detection_model(cfg)
    cfg = load_config(DEMO_CONFIG, ["MODEL.GAN.ENABLED", True])
    with pytest.raises(ValueError, match="MODEL.GAN.ENABLED"):
        build_detection_model(cfg)
    # a P2-P6 backbone does not have the strides RetinaNet's anchors are placed with
    cfg = load_config(DEMO_CONFIG, ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN"])
    with pytest.raises(ValueError, match="ANCHOR_STRIDES"):
        build_detection_model(cfg)


@pytest.mark.slow
def test_loss_falls_over_a_short_training_on_synthetic_data(tiny_cfg):
    from maskrcnn_benchmark.data import make_data_loader

    tiny_cfg.merge_from_list([
        "MODEL.MASK_ON", False, "MODEL.RETINANET_ON", True, "MODEL.RPN_ONLY", True,
        "MODEL.BACKBONE.CONV_BODY", "R-18-FPN-RETINANET",
        "MODEL.RETINANET.NUM_CLASSES", 4, "MODEL.RETINANET.ANCHOR_SIZES", (8, 16, 32, 64, 128),
        "MODEL.RETINANET.NUM_CONVS", 1, "MODEL.RETINANET.STRADDLE_THRESH", -1,
        "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", 0.0, "SOLVER.MAX_ITER", 1,
    ])
    torch.manual_seed(0)
    images, targets, _ = next(iter(make_data_loader(tiny_cfg, is_train=True)))
    model = build_detection_model(tiny_cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.004, momentum=0.9)
    totals = []
    for _ in range(20):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-5:]) / 5 < 0.7 * sum(totals[:5]) / 5, totals


@pytest.mark.slow
def test_train_net_and_test_net_evaluate_retinanet_by_bbox_ap(tiny_cfg, tmp_path):
    import json

    from maskrcnn_benchmark.utils.imports import import_file

    tiny_cfg.merge_from_list([
        "MODEL.MASK_ON", False, "MODEL.RETINANET_ON", True, "MODEL.RPN_ONLY", True,
        "MODEL.BACKBONE.CONV_BODY", "R-18-FPN-RETINANET",
        "MODEL.RETINANET.NUM_CLASSES", 4, "MODEL.RETINANET.NUM_CONVS", 1, "MODEL.RETINANET.INFERENCE_TH", 0.0,
    ])
    config_file = tmp_path / "retinanet.yaml"
    config_file.write_text(tiny_cfg.dump())
    from maskrcnn_benchmark.engine import train_net
    train_net.main(["--config-file", str(config_file), "SOLVER.MAX_ITER", "2"])
    folder = os.path.join(tiny_cfg.OUTPUT_DIR, "inference", "synthetic_fixture")
    results = json.load(open(os.path.join(folder, "coco_results.json")))
    assert set(results["bbox"]) >= {"AP", "AP50"} and "segm" not in results
    assert 0.0 <= results["bbox"]["AP"] <= 1.0
    assert json.load(open(os.path.join(folder, "bbox.json")))  # threshold 0: detections were written
    assert not os.path.exists(os.path.join(folder, "box_proposals.json"))  # detections, not RPN proposals
    os.remove(os.path.join(folder, "coco_results.json"))
    test_net = import_file("test_net_retinanet_test", os.path.join(REPO, "tools", "test_net.py"))
    test_net.main(["--config-file", str(config_file)])
    assert json.load(open(os.path.join(folder, "coco_results.json")))["bbox"]["AP"] == results["bbox"]["AP"]
