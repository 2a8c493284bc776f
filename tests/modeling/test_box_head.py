"""Box head: registry entries build from the default config, Fast R-CNN loss and sampling targets against hand
computations, and the post-processor's score threshold / per-class NMS / +1 IoU convention."""
import math

import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.matcher import Matcher
from maskrcnn_benchmark.modeling.roi_heads.box_head.inference import PostProcessor
from maskrcnn_benchmark.modeling.roi_heads.box_head.loss import FastRCNNLossComputation, fast_rcnn_losses
from maskrcnn_benchmark.modeling.roi_heads.box_head.roi_box_feature_extractors import make_roi_box_feature_extractor
from maskrcnn_benchmark.modeling.roi_heads.box_head.roi_box_predictors import make_roi_box_predictor
from maskrcnn_benchmark.structures.bounding_box import BoxList

# Input channels each extractor expects with the default (C4, stride 16) config: res5 takes res4's 1024 channels.
_IN_CHANNELS = {"ResNet50Conv5ROIFeatureExtractor": 1024}


def _proposals(num_boxes, image_size=(128, 96)):
    boxes = torch.tensor([[4.0, 8.0, 60.0, 70.0]]).repeat(num_boxes, 1) + torch.arange(num_boxes)[:, None]
    return [BoxList(boxes, image_size)]


@pytest.mark.parametrize("name", sorted(registry.ROI_BOX_FEATURE_EXTRACTORS))
def test_every_box_feature_extractor_builds_from_default_config(name):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = name
    in_channels = _IN_CHANNELS.get(name, 8)
    extractor = make_roi_box_feature_extractor(cfg, in_channels).eval()
    spatial = name in ("ResNet50Conv5ROIFeatureExtractor", "FBNet.roi_head")  # RoI feature maps, not vectors
    predictor_name = "FastRCNNPredictor" if spatial else "FPNPredictor"
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = predictor_name
    predictor = make_roi_box_predictor(cfg, extractor.out_channels)
    features = [torch.randn(1, in_channels, 6, 8)]  # stride 16 of a 96 x 128 image
    resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    for num_rois in (3, 0):
        with torch.no_grad():
            out = extractor(features, _proposals(num_rois))
            class_logits, box_regression = predictor(out)
        if name == "ResNet50Conv5ROIFeatureExtractor":
            expected = (num_rois, 2048, resolution // 2, resolution // 2)
        elif name == "FBNet.roi_head":  # default arch: first block stride 2, 240 channels
            expected = (num_rois, 240, resolution // 2, resolution // 2)
        else:
            expected = (num_rois, cfg.MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM)
        assert tuple(out.shape) == expected
        assert tuple(class_logits.shape) == (num_rois, 81)
        assert tuple(box_regression.shape) == (num_rois, 81 * 4)


@pytest.mark.parametrize("name", sorted(registry.ROI_BOX_PREDICTOR))
@pytest.mark.parametrize("agnostic", [False, True])
def test_every_box_predictor_output_shapes(name, agnostic):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = name
    cfg.MODEL.CLS_AGNOSTIC_BBOX_REG = agnostic
    predictor = make_roi_box_predictor(cfg, 16)
    x = torch.randn(5, 16, 7, 7) if name == "FastRCNNPredictor" else torch.randn(5, 16)
    class_logits, box_regression = predictor(x)
    assert tuple(class_logits.shape) == (5, 81)
    assert tuple(box_regression.shape) == (5, 8 if agnostic else 324)
    class_logits, box_regression = predictor(x[:0])
    assert class_logits.shape[0] == 0 and box_regression.shape[0] == 0


def test_unknown_extractor_name_is_reported_with_its_key():
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = "NoSuchExtractor"
    with pytest.raises(KeyError, match="MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR"):
        make_roi_box_feature_extractor(cfg, 8)


def test_fast_rcnn_loss_matches_hand_computation():
    num_classes = 3
    class_logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([2, 0])
    # Only the GT class's 4 columns of the foreground RoI count; 100s elsewhere would dominate otherwise.
    box_regression = torch.full((2, 4 * num_classes), 100.0)
    box_regression[0, 8:12] = torch.tensor([0.5, 2.0, 0.0, -1.5])
    regression_targets = torch.zeros(2, 4)
    loss_cls, loss_box = fast_rcnn_losses(class_logits, box_regression, labels, regression_targets)

    expected_cls = (math.log(3.0) + (math.log(math.exp(2) + 1 + math.exp(1)) - 2.0)) / 2
    # smooth L1 (beta 1): 0.5 x^2 below 1, |x| - 0.5 above: 0.125 + 1.5 + 0 + 1.0, over 2 sampled RoIs
    expected_box = (0.125 + 1.5 + 0.0 + 1.0) / 2
    assert loss_cls.item() == pytest.approx(expected_cls, rel=1e-6)
    assert loss_box.item() == pytest.approx(expected_box, rel=1e-6)

    agnostic_regression = torch.full((2, 8), 100.0)
    agnostic_regression[0, 4:8] = torch.tensor([0.5, 2.0, 0.0, -1.5])
    _, loss_box_agnostic = fast_rcnn_losses(class_logits, agnostic_regression, labels, regression_targets,
                                            cls_agnostic_bbox_reg=True)
    assert loss_box_agnostic.item() == pytest.approx(expected_box, rel=1e-6)


def test_fast_rcnn_loss_with_no_rois_is_zero_and_differentiable():
    class_logits = torch.zeros(0, 3, requires_grad=True)
    box_regression = torch.zeros(0, 12, requires_grad=True)
    loss_cls, loss_box = fast_rcnn_losses(class_logits, box_regression, torch.zeros(0, dtype=torch.long),
                                          torch.zeros(0, 4))
    (loss_cls + loss_box).backward()
    assert loss_cls.item() == 0 and loss_box.item() == 0


def _loss_evaluator(batch_size=8, positive_fraction=0.5):
    return FastRCNNLossComputation(Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(batch_size, positive_fraction),
                                   BoxCoder((10.0, 10.0, 5.0, 5.0)))


def test_subsample_labels_regression_targets_and_matches():
    target = BoxList(torch.tensor([[10.0, 10.0, 29.0, 29.0], [50.0, 50.0, 69.0, 69.0]]), (100, 100))
    target.add_field("labels", torch.tensor([3, 1]))
    proposals = BoxList(torch.tensor([
        [10.0, 10.0, 29.0, 29.0],   # the first GT exactly: label 3, zero regression target
        [52.0, 50.0, 71.0, 69.0],   # IoU 18*20 / (2*400 - 360) = 0.818 with the second GT: label 1
        [80.0, 0.0, 99.0, 9.0],     # no overlap: background
    ]), (100, 100))
    sampled = _loss_evaluator().subsample([proposals], [target])[0]
    order = torch.argsort(sampled.bbox[:, 0])
    labels = sampled.get_field("labels")[order]
    assert labels.tolist() == [3, 1, 0]
    assert sampled.get_field("matched_idxs")[order][:2].tolist() == [0, 1]
    targets = sampled.get_field("regression_targets")[order]
    assert torch.allclose(targets[0], torch.zeros(4), atol=1e-6)
    # dx = wx * (gt_ctr - prop_ctr) / prop_w = 10 * (-2 / 20) = -1; dy = dw = dh = 0
    assert torch.allclose(targets[1], torch.tensor([-1.0, 0.0, 0.0, 0.0]), atol=1e-5)


def test_subsample_respects_batch_size_and_positive_fraction():
    target = BoxList(torch.tensor([[10.0, 10.0, 29.0, 29.0]]), (100, 100))
    target.add_field("labels", torch.tensor([1]))
    positives = torch.tensor([[10.0, 10.0, 29.0, 29.0]]).repeat(10, 1)
    negatives = torch.tensor([[60.0, 60.0, 79.0, 79.0]]).repeat(10, 1)
    proposals = BoxList(torch.cat([positives, negatives]), (100, 100))
    sampled = _loss_evaluator(batch_size=8, positive_fraction=0.25).subsample([proposals], [target])[0]
    labels = sampled.get_field("labels")
    assert len(sampled) == 8 and int((labels > 0).sum()) == 2


def test_subsample_image_without_objects_gives_background_only():
    target = BoxList(torch.zeros(0, 4), (100, 100))
    target.add_field("labels", torch.zeros(0, dtype=torch.long))
    proposals = BoxList(torch.tensor([[10.0, 10.0, 29.0, 29.0], [0.0, 0.0, 5.0, 5.0]]), (100, 100))
    sampled = _loss_evaluator().subsample([proposals], [target])[0]
    assert sampled.get_field("labels").tolist() == [0, 0]


def _logits_from_probs(probs):
    return torch.log(torch.tensor(probs))


def test_post_processor_score_threshold_and_per_class_nms():
    boxes = BoxList(torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 52.0, 52.0],
                                  [100.0, 100.0, 140.0, 140.0]]), (200, 200))
    class_logits = _logits_from_probs([[0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.97, 0.02, 0.01]])
    post = PostProcessor(score_thresh=0.05, nms=0.5, detections_per_img=100)
    result = post((class_logits, torch.zeros(3, 12)), [boxes])[0]
    # class 1: B (0.7) suppresses A (0.6); class 2: A (0.3) suppresses B (0.1) - NMS never crosses classes;
    # C scores below 0.05 in both classes.
    assert result.get_field("labels").tolist() == [1, 2]
    assert result.get_field("scores").tolist() == pytest.approx([0.7, 0.3])
    assert torch.equal(result.bbox, boxes.bbox[[1, 0]])
    assert result.size == (200, 200)

    capped = PostProcessor(score_thresh=0.05, nms=0.5, detections_per_img=1)((class_logits, torch.zeros(3, 12)),
                                                                              [boxes])[0]
    assert capped.get_field("scores").tolist() == pytest.approx([0.7])


def test_post_processor_nms_uses_plus_one_iou():
    # IoU with the +1 width convention: 50 / 150 = 0.333; without it 36 / 126 = 0.286.
    boxes = BoxList(torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]]), (50, 50))
    class_logits = _logits_from_probs([[0.1, 0.9], [0.2, 0.8]])
    result = PostProcessor(score_thresh=0.05, nms=0.3)((class_logits, torch.zeros(2, 8)), [boxes])[0]
    assert len(result) == 1


def test_post_processor_decodes_clips_and_supports_class_agnostic_regression():
    boxes = BoxList(torch.tensor([[10.0, 10.0, 29.0, 29.0]]), (40, 40))
    class_logits = _logits_from_probs([[0.1, 0.5, 0.4]])
    # agnostic: columns 4:8 (the foreground box) apply to every class; dx = 10 * shift / width
    regression = torch.tensor([[0.0, 0.0, 0.0, 0.0, 10 * 5.0 / 20, 0.0, 0.0, 0.0]])
    post = PostProcessor(score_thresh=0.05, nms=0.5, cls_agnostic_bbox_reg=True)
    result = post((class_logits, regression), [boxes])[0]
    assert result.get_field("labels").tolist() == [1, 2]
    expected = torch.tensor([15.0, 10.0, 34.0, 29.0])
    assert torch.allclose(result.bbox, expected.expand(2, 4), atol=1e-4)

    # a box pushed past the right edge is clipped to w - 1
    regression[0, 4] = 10 * 20.0 / 20
    clipped = post((class_logits, regression), [boxes])[0]
    assert clipped.bbox[:, 2].max().item() == pytest.approx(39.0)


def test_adversarial_boxes_decode_the_gt_class_regression_per_image():
    evaluator = _loss_evaluator()
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    images = []
    for image_size, labels, matched in [((50, 40), [2, 0], [1, -1]), ((30, 30), [1], [0])]:
        proposals = BoxList(torch.tensor([[5.0, 5.0, 24.0, 24.0]]).repeat(len(labels), 1), image_size)
        proposals.add_field("labels", torch.tensor(labels))
        proposals.add_field("matched_idxs", torch.tensor(matched))
        images.append(proposals)
    targets = [BoxList(torch.tensor([[0.0, 0.0, 9.0, 9.0], [4.0, 6.0, 20.0, 22.0]]), (50, 40)),
               BoxList(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), (30, 30))]
    box_regression = torch.full((3, 12), 7.0)  # other classes' columns would move the boxes far away
    box_regression[0, 8:12] = torch.tensor([1.0, -0.5, 0.2, 0.0])
    box_regression[2, 4:8] = torch.tensor([10.0, 0.0, 0.0, 0.0])  # shifted by a whole width: clipped at x 29
    box_regression.requires_grad_(True)
    pred, gt = evaluator.adversarial_boxes(box_regression, images, targets)

    expected_first = coder.decode(box_regression[0:1, 8:12].detach(), images[0].bbox[:1])[0]
    assert torch.allclose(pred[0], torch.cat([torch.tensor([0.0]), expected_first]))
    assert pred[1, 0].item() == 1 and pred[1, 3].item() == pytest.approx(29.0)
    assert torch.equal(gt, torch.tensor([[0.0, 4.0, 6.0, 20.0, 22.0], [1.0, 1.0, 2.0, 3.0, 4.0]]))
    grad, = torch.autograd.grad(pred[0, 1:].sum(), box_regression)
    assert grad[0, 8:12].abs().sum() > 0 and grad[0, :8].abs().sum() == 0 and grad[1].abs().sum() == 0


@pytest.mark.parametrize("clip_gt_boxes", [False, True])
def test_adversarial_gt_boxes_are_clipped_to_their_image_only_with_clip_gt_boxes(clip_gt_boxes):
    """MODEL.GAN.CLIP_GT_BOXES (the authors' code): D_b's real boxes clipped like its predicted ones, per image."""
    evaluator = FastRCNNLossComputation(Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(8, 0.5),
                                        BoxCoder((10.0, 10.0, 5.0, 5.0)), clip_gt_boxes=clip_gt_boxes)
    images, targets = [], []
    for image_size, gt in [((50, 40), [-3.0, 2.0, 55.5, 41.0]), ((30, 20), [4.0, -1.5, 12.0, 25.0])]:
        proposals = BoxList(torch.tensor([[5.0, 5.0, 15.0, 15.0]]), image_size)
        proposals.add_field("labels", torch.tensor([1]))
        proposals.add_field("matched_idxs", torch.tensor([0]))
        images.append(proposals)
        targets.append(BoxList(torch.tensor([gt]), image_size))
    _, gt = evaluator.adversarial_boxes(torch.zeros(2, 8), images, targets)
    if clip_gt_boxes:  # to (0, 0, w - 1, h - 1) of each box's own image
        expected = [[0.0, 0.0, 2.0, 49.0, 39.0], [1.0, 4.0, 0.0, 12.0, 19.0]]
    else:
        expected = [[0.0, -3.0, 2.0, 55.5, 41.0], [1.0, 4.0, -1.5, 12.0, 25.0]]
    assert gt.tolist() == expected


def test_clip_gt_boxes_key_reaches_the_box_head_loss_evaluator():
    from maskrcnn_benchmark.modeling.roi_heads.box_head.loss import make_roi_box_loss_evaluator

    c = default_cfg.clone()
    assert make_roi_box_loss_evaluator(c).clip_gt_boxes is False
    c.MODEL.GAN.CLIP_GT_BOXES = True
    assert make_roi_box_loss_evaluator(c).clip_gt_boxes is True


def test_fast_rcnn_box_loss_trains_class_one_like_every_foreground_class():
    class_logits = torch.zeros(2, 3)
    box_regression = torch.zeros(2, 12)
    box_regression[0, 4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 1's box of the first RoI
    _, loss_box = fast_rcnn_losses(class_logits, box_regression, torch.tensor([1, 0]), torch.zeros(2, 4))
    assert loss_box.item() == pytest.approx(0.5 * 0.5 ** 2 / 2)


def test_loss_evaluator_honours_class_agnostic_regression_and_the_config():
    from maskrcnn_benchmark.modeling.box_coder import box_convention_to_remove
    from maskrcnn_benchmark.modeling.roi_heads.box_head.loss import make_roi_box_loss_evaluator

    evaluator = FastRCNNLossComputation(Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(8, 0.5),
                                        BoxCoder((10.0, 10.0, 5.0, 5.0)), cls_agnostic_bbox_reg=True)
    proposals = BoxList(torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]]), (32, 32))
    proposals.add_field("labels", torch.tensor([2, 0]))
    proposals.add_field("regression_targets", torch.zeros(2, 4))
    box_regression = torch.zeros(2, 8)  # background and foreground box: class 2 is trained on columns 4:8
    box_regression[0, 4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])
    _, loss_box = evaluator(torch.zeros(2, 3), box_regression, [proposals])
    assert loss_box.item() == pytest.approx(0.5 * 0.5 ** 2 / 2)

    c = default_cfg.clone()
    c.MODEL.CLS_AGNOSTIC_BBOX_REG = True
    built = make_roi_box_loss_evaluator(c)
    assert built.cls_agnostic_bbox_reg is True
    assert built.proposal_matcher.allow_low_quality_matches is False  # Fast R-CNN: no low-quality positives
    assert built.box_coder.to_remove == box_convention_to_remove(c)


def test_subsample_ignores_proposals_between_the_thresholds_and_names_a_list_mismatch():
    target = BoxList(torch.tensor([[10.0, 10.0, 29.0, 29.0]]), (100, 100))
    target.add_field("labels", torch.tensor([3]))
    proposals = BoxList(torch.tensor([
        [10.0, 10.0, 29.0, 29.0],   # IoU 1: label 3
        [15.0, 10.0, 34.0, 29.0],   # IoU 15*20 / (2*400 - 300) = 0.6, between 0.3 and 0.7: ignored
        [80.0, 80.0, 99.0, 99.0],   # IoU 0: background
    ]), (100, 100))
    evaluator = FastRCNNLossComputation(Matcher(0.7, 0.3), BalancedPositiveNegativeSampler(8, 0.5),
                                        BoxCoder((10.0, 10.0, 5.0, 5.0)))
    sampled = evaluator.subsample([proposals], [target])[0]
    order = torch.argsort(sampled.bbox[:, 0])
    assert sampled.bbox[order, 0].tolist() == [10.0, 80.0]
    assert sampled.get_field("labels")[order].tolist() == [3, 0]
    with pytest.raises(ValueError) as error:
        evaluator.subsample([proposals, proposals], [target])
    assert str(error.value) == "box head got 2 proposal lists but 1 target lists; pass one target BoxList per image"
