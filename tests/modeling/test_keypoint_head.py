"""Keypoint head: registry entries build from the default config, the heat-map loss by hand, RoI selection
(visible keypoints inside the RoI) and the Keypointer's argmax location."""
import math

import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.inference import (
    heatmaps_to_keypoints,
)
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.keypoint_head import (
    build_roi_keypoint_head,
)
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.loss import (
    KeypointRCNNLossComputation,
    keypoint_rcnn_loss,
)
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.roi_keypoint_feature_extractors import (
    make_roi_keypoint_feature_extractor,
)
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.roi_keypoint_predictors import (
    make_roi_keypoint_predictor,
)
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.keypoint import PersonKeypoints


@pytest.mark.parametrize("extractor_name", sorted(registry.ROI_KEYPOINT_FEATURE_EXTRACTORS))
@pytest.mark.parametrize("predictor_name", sorted(registry.ROI_KEYPOINT_PREDICTOR))
def test_every_keypoint_entry_builds_from_default_config(extractor_name, predictor_name):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR = extractor_name
    cfg.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR = predictor_name
    extractor = make_roi_keypoint_feature_extractor(cfg, 8).eval()
    predictor = make_roi_keypoint_predictor(cfg, extractor.out_channels)
    resolution = cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION
    for num_rois in (1, 0):  # one RoI: eight 512-channel convs are slow on a shared CPU
        proposals = [BoxList(torch.tensor([[4.0, 8.0, 60.0, 70.0]]).repeat(num_rois, 1), (128, 96))]
        with torch.no_grad():
            x = extractor([torch.randn(1, 8, 6, 8)], proposals)
            logits = predictor(x)
        assert tuple(x.shape) == (num_rois, 512, resolution, resolution)
        assert tuple(logits.shape) == (num_rois, 17, 4 * resolution, 4 * resolution)


def test_keypoint_loss_matches_hand_computation():
    logits = torch.zeros(1, 2, 3, 3)
    logits[0, 0, 1, 2] = 1.0  # the first keypoint's target cell (y 1, x 2) = 5
    heatmaps = torch.tensor([[5, 0]])
    valid = torch.tensor([[1, 0]])  # the second keypoint is invisible and must not count
    expected = -(1.0 - math.log(math.exp(1.0) + 8))
    assert keypoint_rcnn_loss(logits, heatmaps, valid).item() == pytest.approx(expected, rel=1e-6)
    assert keypoint_rcnn_loss(logits, heatmaps, torch.zeros_like(valid)).item() == 0


def test_subsample_keeps_positives_with_a_visible_keypoint_inside():
    target = BoxList(torch.tensor([[0.0, 0.0, 20.0, 20.0]]), (50, 50))
    keypoints = torch.zeros(1, 17, 3)
    keypoints[0, 0] = torch.tensor([5.0, 5.0, 2.0])
    target.add_field("keypoints", PersonKeypoints(keypoints, (50, 50)))
    proposals = BoxList(torch.tensor([[0.0, 0.0, 20.0, 20.0], [4.0, 4.0, 20.0, 20.0], [6.0, 6.0, 20.0, 20.0],
                                      [30.0, 30.0, 40.0, 40.0]]), (50, 50))
    proposals.add_field("labels", torch.tensor([1, 1, 1, 0]))
    proposals.add_field("matched_idxs", torch.tensor([0, 0, 0, -1]))
    kept, keep_masks = KeypointRCNNLossComputation().subsample([proposals], [target])
    # the third RoI is positive but its only visible keypoint (5, 5) lies outside it; the fourth is background
    assert keep_masks[0].tolist() == [True, True, False, False]
    assert kept[0].get_field("keypoint_targets").shape == (2, 17, 3)


def test_heatmaps_to_keypoints_finds_the_peak_in_image_coordinates():
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 0, 2, 5] = 10.0
    maps[0, 1, 7, 0] = 10.0
    keypoints, scores = heatmaps_to_keypoints(maps, torch.tensor([[100.0, 200.0, 132.0, 232.0]]))
    # cell (y 2, x 5) of an 8-cell map over 32 px covers x 120..124, y 208..212
    assert 120 <= keypoints[0, 0, 0] <= 124 and 208 <= keypoints[0, 0, 1] <= 212
    assert 100 <= keypoints[0, 1, 0] <= 104 and 228 <= keypoints[0, 1, 1] <= 232
    assert keypoints.shape == (1, 2, 3) and scores.shape == (1, 2)


def test_keypoint_head_trains_and_predicts():
    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", (8, 8),
                         "MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION", 4,
                         "MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False])
    head = build_roi_keypoint_head(cfg, 8).train()
    target = BoxList(torch.tensor([[10.0, 10.0, 60.0, 60.0]]), (64, 64))
    keypoints = torch.rand(1, 17, 3) * 40 + 15
    keypoints[..., 2] = 2
    target.add_field("keypoints", PersonKeypoints(keypoints, (64, 64)))
    proposals = BoxList(torch.tensor([[10.0, 10.0, 60.0, 60.0], [0.0, 0.0, 5.0, 5.0]]), (64, 64))
    proposals.add_field("labels", torch.tensor([1, 0]))
    proposals.add_field("matched_idxs", torch.tensor([0, -1]))
    features = [torch.randn(1, 8, 4, 4)]
    _, _, losses, adv_inputs = head(features, [proposals], [target])
    losses["loss_kp"].backward()
    assert losses["loss_kp"].item() > 0
    assert head.predictor.kps_score.weight.grad.abs().sum() > 0
    assert adv_inputs == AdversarialInputs()  # every head returns the same 4-tuple; no discriminator reads keypoints

    head.eval()
    detections = BoxList(torch.tensor([[10.0, 10.0, 60.0, 60.0]]), (64, 64))
    detections.add_field("labels", torch.tensor([1]))
    with torch.no_grad():
        _, result, _, _ = head(features, [detections])
    assert result[0].get_field("keypoints").keypoints.shape == (1, 17, 3)
