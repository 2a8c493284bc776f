"""Matcher thresholds and the low-quality-match rule."""
import pytest
import torch

from maskrcnn_benchmark.modeling.matcher import Matcher

IOU = torch.tensor([
    [0.90, 0.50, 0.20, 0.10, 0.70],
    [0.10, 0.60, 0.35, 0.05, 0.69],
])


def test_thresholds():
    matches = Matcher(0.7, 0.3)(IOU)
    # 0.9 -> gt 0; 0.6 and 0.35 in [0.3, 0.7) -> -2; 0.1 -> -1; 0.70 (== high) -> gt 0
    assert matches.tolist() == [0, Matcher.BETWEEN_THRESHOLDS, Matcher.BETWEEN_THRESHOLDS,
                                Matcher.BELOW_LOW_THRESHOLD, 0]
    assert Matcher.BELOW_LOW_THRESHOLD == -1 and Matcher.BETWEEN_THRESHOLDS == -2
    # low == high: nothing is ignored
    assert Matcher(0.5, 0.5)(IOU).tolist() == [0, 1, -1, -1, 0]


def test_low_quality_matches_give_each_gt_its_best_predictions():
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(IOU)
    # gt 1's best IoU is 0.69 at prediction 4, but prediction 4 matches gt 0 better (0.70): its best stays gt 0
    assert matches.tolist() == [0, -2, -2, -1, 0]
    iou = torch.tensor([[0.9, 0.2, 0.0], [0.1, 0.4, 0.4]])
    # gt 1's best IoU 0.4 is shared by predictions 1 and 2: both get gt 1 (ties included)
    assert Matcher(0.7, 0.5, allow_low_quality_matches=True)(iou).tolist() == [0, 1, 1]
    assert Matcher(0.7, 0.5)(iou).tolist() == [0, -1, -1]


def test_low_quality_matches_ignore_a_gt_that_overlaps_nothing():
    iou = torch.tensor([[0.8, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # gt 1 has IoU 0 with everything: it must not turn predictions 1..3 into matches of gt 0
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou).tolist() == [0, -1, -1, -1]


def test_empty_inputs_and_bad_thresholds_raise_clear_errors():
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        Matcher(0.7, 0.3)(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="no proposal boxes"):
        Matcher(0.7, 0.3)(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)
