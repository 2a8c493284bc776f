"""Boundary AP (Cheng et al. 2021) next to mask AP: band definition, hand-computed IoU, and AP behaviour."""
import contextlib
import io
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO

from maskrcnn_benchmark.data.datasets.evaluation.coco.boundary_eval import (
    boundary_iou,
    boundary_width,
    mask_to_boundary,
)
from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import do_coco_evaluation, evaluate_predictions_on_coco

IMAGE_SIZE = 400  # diagonal 565.7 px -> band width d = round(0.02 * 565.7) = 11 px
SQUARE = 150
CORNERS = [(30, 30), (220, 30), (30, 220), (220, 220)]


def _brute_force_band(mask, d):
    """Mask pixels with a background pixel (or the outside of the image) within chessboard distance d."""
    height, width = mask.shape
    padded = np.zeros((height + 2 * d, width + 2 * d), dtype=np.uint8)
    padded[d:d + height, d:d + width] = mask
    band = np.zeros_like(mask)
    for y in range(height):
        for x in range(width):
            if mask[y, x] and padded[y:y + 2 * d + 1, x:x + 2 * d + 1].min() == 0:
                band[y, x] = 1
    return band


def test_band_width_is_two_percent_of_the_diagonal():
    assert boundary_width(400, 400) == 11
    assert boundary_width(10, 10) == 1  # round(0.28) = 0, clamped to one pixel
    assert boundary_width(60, 60) == 2


def test_boundary_iou_hand_computed_small_case():
    # 10x10 image, d = 1: the band of a solid rectangle is its one-pixel outline.
    gt = np.zeros((10, 10), np.uint8)
    gt[2:8, 2:8] = 1  # 6x6: outline of 36 - 16 = 20 px
    dt = np.zeros((10, 10), np.uint8)
    dt[2:8, 2:7] = 1  # 6 rows x 5 cols: outline of 30 - 12 = 18 px
    # Shared outline: top and bottom rows of dt (2 x 5) and its left column (4) = 14; union 20 + 18 - 14 = 24.
    assert mask_to_boundary(gt).sum() == 20
    assert mask_to_boundary(dt).sum() == 18
    assert boundary_iou(gt, dt) == pytest.approx(14 / 24)
    assert boundary_iou(gt, gt) == 1.0


def test_band_matches_brute_force_definition_including_image_border():
    rng = np.random.RandomState(0)
    mask = np.zeros((60, 60), np.uint8)  # d = 2
    cv2.circle(mask, (20, 25), 14, 1, -1)
    mask[40:, 35:] = 1  # touches the bottom and right image border: those edges are contours too
    mask[rng.rand(60, 60) < 0.03] ^= 1  # holes and specks
    np.testing.assert_array_equal(mask_to_boundary(mask), _brute_force_band(mask, 2))


def _squares(offset):
    """Binary masks of the four squares grown (offset > 0) or shrunk (< 0) by |offset| px on every side."""
    masks = []
    for x, y in CORNERS:
        mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        mask[y - offset:y + SQUARE + offset, x - offset:x + SQUARE + offset] = 1
        masks.append(mask)
    return masks


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _coco_gt():
    anns = []
    for k, mask in enumerate(_squares(0)):
        rle = _rle(mask)
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": rle, "iscrowd": 0,
                     "area": float(mask.sum()), "bbox": mask_util.toBbox(rle).tolist()})
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE, "file_name": "a.png"}],
                    "annotations": anns, "categories": [{"id": 1, "name": "square"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _ap(masks, iou_type):
    results = [{"image_id": 1, "category_id": 1, "segmentation": _rle(m), "score": 0.9 - 0.1 * k}
               for k, m in enumerate(masks)]
    with contextlib.redirect_stdout(io.StringIO()):
        return float(evaluate_predictions_on_coco(_coco_gt(), results, None, iou_type).stats[0])


def test_boundary_ap_is_one_for_perfect_masks():
    assert _ap(_squares(0), "segm") == pytest.approx(1.0)
    assert _ap(_squares(0), "boundary") == pytest.approx(1.0)


@pytest.mark.parametrize("offset, mask_ap, boundary_ap", [
    # 1 px dilation: Mask IoU 150^2/152^2 = 0.974 passes all ten thresholds; Boundary IoU
    # (150^2 - 130^2) / (152^2 - 128^2) = 0.833 passes 0.50..0.80 -> 7/10.
    (1, 1.0, 0.7),
    # 2 px erosion: Mask IoU 146^2/150^2 = 0.947 fails only 0.95; Boundary IoU
    # (146^2 - 128^2) / (150^2 - 124^2) = 0.692 passes 0.50..0.65 -> 4/10.
    (-2, 0.9, 0.4),
])
def test_boundary_ap_drops_for_small_boundary_errors_where_mask_ap_barely_moves(offset, mask_ap, boundary_ap):
    masks = _squares(offset)
    segm, boundary = _ap(masks, "segm"), _ap(masks, "boundary")
    print("offset {:+d} px: mask AP {:.3f}, boundary AP {:.3f}".format(offset, segm, boundary))
    assert segm == pytest.approx(mask_ap)
    assert boundary == pytest.approx(boundary_ap)


def test_a_ring_predicted_for_a_solid_object_is_not_a_match():
    # The ring equals the GT band (Boundary IoU 1) but misses the interior (Mask IoU 0.27): min() rejects it.
    rings = [mask_to_boundary(m) for m in _squares(0)]
    assert boundary_iou(_squares(0)[0], rings[0]) == 1.0
    assert _ap(rings, "boundary") == pytest.approx(0.0)


class _FakeCOCODataset:
    """The attributes the COCO evaluator reads, around the four-square image."""

    def __init__(self):
        self.coco = _coco_gt()
        self.id_to_img_map = {0: 1}
        self.contiguous_category_id_to_json_id = {1: 1}

    def get_img_info(self, index):
        return {"width": IMAGE_SIZE, "height": IMAGE_SIZE}

    def __len__(self):
        return 1


def test_evaluation_reports_boundary_next_to_segm_in_coco_results_json(tmp_path):
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    masks = torch.as_tensor(np.stack(_squares(1)))[:, None]  # [4, 1, H, W] pasted masks
    boxes = torch.tensor([[x - 1, y - 1, x + SQUARE, y + SQUARE] for x, y in CORNERS], dtype=torch.float32)
    prediction = BoxList(boxes, (IMAGE_SIZE, IMAGE_SIZE))
    prediction.add_field("scores", torch.tensor([0.9, 0.8, 0.7, 0.6]))
    prediction.add_field("labels", torch.ones(4, dtype=torch.int64))
    prediction.add_field("mask", masks)
    with contextlib.redirect_stdout(io.StringIO()):
        results, _, _ = do_coco_evaluation(_FakeCOCODataset(), [prediction], box_only=False,
                                           output_folder=str(tmp_path), iou_types=("bbox", "segm", "boundary"),
                                           expected_results=(), expected_results_sigma_tol=4)
    with open(tmp_path / "coco_results.json") as f:
        written = json.load(f)
    assert written["segm"]["AP"] == pytest.approx(1.0)
    assert written["boundary"]["AP"] == pytest.approx(0.7)
    assert results.results["boundary"]["AP"] == pytest.approx(0.7)
    assert not (tmp_path / "boundary.json").exists()  # scored from segm.json's results, not a second copy


@pytest.mark.slow
@pytest.mark.parametrize("enabled", [True, False])
def test_run_test_reports_boundary_ap_when_enabled(tiny_cfg, enabled):
    from maskrcnn_benchmark.engine.inference import run_test
    from maskrcnn_benchmark.modeling.detector import build_detection_model

    tiny_cfg.merge_from_list(["TEST.BOUNDARY_AP", enabled])
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        (result,) = run_test(tiny_cfg, build_detection_model(tiny_cfg), distributed=False)
    with open("{}/inference/synthetic_fixture/coco_results.json".format(tiny_cfg.OUTPUT_DIR)) as f:
        written = json.load(f)
    assert ("boundary" in written) == enabled
    assert ("boundary" in result[0].results) == enabled
    assert "segm" in written
