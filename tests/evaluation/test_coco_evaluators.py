"""TEST.COCO_EVALUATOR: faster-coco-eval and pycocotools give the same AP; per-category AP against hand-computed
values."""
import contextlib
import io
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from maskrcnn_benchmark.config import CHOICE_KEYS, load_config
from maskrcnn_benchmark.data.datasets.coco import _coco_from_dict
from maskrcnn_benchmark.data.datasets.evaluation import evaluate
from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import (
    COCO_EVALUATORS,
    evaluate_predictions_on_coco,
    per_category_ap,
)
from maskrcnn_benchmark.data.datasets.evaluation.coco.synthetic_case import synthetic_coco_case
from maskrcnn_benchmark.structures.bounding_box import BoxList

TOLERANCE = 1e-4


def _scores(gt, results, iou_type, evaluator, max_dets=100):
    """(12 summary numbers, per-category AP) of one evaluator on a fresh ground truth."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = evaluate_predictions_on_coco(_coco_from_dict(json.loads(json.dumps(gt))), results, None,
                                                 iou_type, max_dets=max_dets, evaluator=evaluator)
    return np.asarray(coco_eval.stats[:12], dtype=float), per_category_ap(coco_eval)


def _assert_same(gt, results, iou_type, max_dets=100):
    fast_stats, fast_per_category = _scores(gt, results, iou_type, "faster_coco_eval", max_dets)
    ref_stats, ref_per_category = _scores(gt, results, iou_type, "pycocotools", max_dets)
    np.testing.assert_allclose(fast_stats, ref_stats, atol=TOLERANCE, rtol=0)
    assert list(fast_per_category) == list(ref_per_category)
    np.testing.assert_allclose(list(fast_per_category.values()), list(ref_per_category.values()), atol=TOLERANCE,
                               rtol=0)
    return ref_stats


# ------------------------------------------------------------------------------------------- the suite's cases
def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _rect(height, width, x0, y0, x1, y1):
    mask = np.zeros((height, width), np.uint8)
    mask[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)] = 1
    return mask


def _suite_case():
    """Crowd region, an image without ground truth, an image without detections, 130 detections on one image
    (more than maxDets 100) and masks cut by the image border, in two categories."""
    height, width = 90, 120
    images = [{"id": i, "width": width, "height": height, "file_name": "{}.png".format(i)} for i in (1, 2, 3, 4)]
    gt_masks = [  # (image, category, iscrowd, mask)
        (1, 1, 0, _rect(height, width, 10, 10, 50, 40)),
        (1, 2, 0, _rect(height, width, 60, 50, 130, 100)),  # cut by the right and bottom border
        (1, 1, 1, _rect(height, width, 70, 0, 120, 30)),  # crowd region
        (3, 1, 0, _rect(height, width, -10, -5, 30, 25)),  # cut by the top-left corner
        (3, 2, 0, _rect(height, width, 40, 20, 80, 70)),
        (4, 2, 0, _rect(height, width, 5, 5, 45, 45)),  # image 4 gets no detection
    ]
    annotations = []
    for k, (image_id, category, crowd, mask) in enumerate(gt_masks):
        rle = _rle(mask)
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": category, "segmentation": rle,
                            "area": float(mask.sum()), "bbox": mask_util.toBbox(rle).tolist(), "iscrowd": crowd})
    gt = {"images": images, "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "gland"}],
          "annotations": annotations}
    rng = np.random.RandomState(3)
    detections = [  # (image, category, score, mask): image 2 has no ground truth, only false positives
        (1, 1, 0.9, _rect(height, width, 11, 10, 50, 41)),
        (1, 2, 0.8, _rect(height, width, 62, 52, 130, 100)),
        (1, 1, 0.7, _rect(height, width, 75, 2, 100, 20)),  # inside the crowd region: ignored, not a false positive
        (2, 1, 0.95, _rect(height, width, 0, 0, 30, 30)),
        (3, 1, 0.6, _rect(height, width, 0, 0, 28, 25)),
        (3, 2, 0.85, _rect(height, width, 43, 22, 80, 66)),
    ]
    for k in range(130):  # decoys above and below the true detections' scores on image 3
        x, y = rng.randint(0, width - 10), rng.randint(0, height - 10)
        detections.append((3, 1 + k % 2, float(rng.uniform(0.5, 1.0)), _rect(height, width, x, y, x + 8, y + 8)))
    segm = []
    for image_id, category, score, mask in detections:
        segm.append({"image_id": image_id, "category_id": category, "segmentation": _rle(mask), "score": score})
    bbox = [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
             "bbox": mask_util.toBbox(r["segmentation"]).tolist()} for r in segm]
    return gt, segm, bbox


@pytest.mark.parametrize("max_dets", [100, 150, 5])  # 5: maxDets [1, 5, 5]
@pytest.mark.parametrize("iou_type", ["bbox", "segm", "boundary"])
def test_both_evaluators_agree_on_the_suite_case(iou_type, max_dets):
    gt, segm, bbox = _suite_case()
    stats = _assert_same(gt, bbox if iou_type == "bbox" else segm, iou_type, max_dets)
    assert 0.0 < stats[0] < 1.0  # a case where matching, crowd and maxDets all matter


def test_both_evaluators_agree_when_nothing_is_detected():
    gt, _, _ = _suite_case()
    for iou_type in ("bbox", "segm", "boundary"):
        stats = _assert_same(gt, [], iou_type)
        assert stats[0] == 0.0


def test_both_evaluators_agree_on_keypoints():
    images = [{"id": 1, "width": 100, "height": 80, "file_name": "1.png"}]
    keypoints = [[20, 20, 2, 30, 25, 2, 0, 0, 0] + [0, 0, 0] * 14, [60, 40, 2, 70, 50, 1, 65, 60, 2] + [0] * 42]
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "keypoints": kp, "num_keypoints": 2 + k,
             "bbox": [10 + 40 * k, 10 + 20 * k, 30, 40], "area": 1200.0, "iscrowd": 0}
            for k, kp in enumerate(keypoints)]
    gt = {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": anns}
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "keypoints": [21, 19, 1, 31, 27, 1] + [0] * 45},
               {"image_id": 1, "category_id": 1, "score": 0.8,
                "keypoints": [63, 41, 1, 69, 52, 1, 66, 58, 1] + [0] * 42}]
    with contextlib.redirect_stdout(io.StringIO()):
        stats = [evaluate_predictions_on_coco(_coco_from_dict(json.loads(json.dumps(gt))), results, None,
                                              "keypoints", evaluator=e).stats[:10] for e in COCO_EVALUATORS]
    np.testing.assert_allclose(stats[0], stats[1], atol=TOLERANCE, rtol=0)
    assert 0.0 < stats[1][0] < 1.0


@pytest.mark.parametrize("width, height", [(160, 120), (140, 105)])
def test_both_evaluators_agree_on_a_randomised_case(width, height):
    """Seeded ellipses: jittered, wrong-category and false detections, crowds, border cuts, an empty category.

    140 x 105 has a diagonal of 175 px, so the boundary band is 0.02 * 175 = 3.5 px: a rounding tie where
    faster-coco-eval's own C++ band is 1 px narrower than the Boundary IoU reference (see coco_eval.py)."""
    gt, segm, bbox = synthetic_coco_case(num_images=12, width=width, height=height, detections_per_image=40, seed=1)
    for iou_type, results in (("bbox", bbox), ("segm", segm), ("boundary", segm)):
        stats = _assert_same(gt, results, iou_type)
        assert 0.05 < stats[0] < 0.95


def test_faster_coco_eval_alone_rounds_the_band_differently_on_a_tie_image():
    """Why coco_eval.py recomputes the bands of tie images: without it, Boundary AP differs from the reference."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt, segm, _ = synthetic_coco_case(num_images=6, width=140, height=105, detections_per_image=40, seed=1)
    coco = COCO(json.loads(json.dumps(gt)))
    plain = COCOeval_faster(coco, coco.loadRes(json.loads(json.dumps(segm))), "boundary",
                            print_function=lambda *args: None)
    plain.run()
    reference, _ = _scores(gt, segm, "boundary", "pycocotools")
    assert abs(plain.stats[0] - reference[0]) > 0.01


# ------------------------------------------------------------------------------------------- per-category AP
IMAGE_SIZES = {1: (64, 48), 2: (64, 48)}


class _Dataset:
    """The parts of COCODataset the evaluator reads: two categories with GT, one without."""

    def __init__(self):
        annotations = []
        for image_id in IMAGE_SIZES:
            for category, (x, y) in ((3, (4, 4)), (7, (30, 20))):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "bbox": [x, y, 20, 16], "area": 320.0, "iscrowd": 0,
                                    "segmentation": [[x, y, x + 20, y, x + 20, y + 16, x, y + 16]]})
        self.coco = _coco_from_dict({
            "images": [{"id": i, "width": w, "height": h, "file_name": "x.png"} for i, (w, h) in IMAGE_SIZES.items()],
            "categories": [{"id": 3, "name": "nucleus"}, {"id": 7, "name": "gland"}, {"id": 9, "name": "unseen"}],
            "annotations": annotations})
        self.id_to_img_map = {0: 1, 1: 2}
        self.contiguous_category_id_to_json_id = {1: 3, 2: 7, 3: 9}

    def get_img_info(self, index):
        w, h = IMAGE_SIZES[self.id_to_img_map[index]]
        return {"width": w, "height": h}

    def __len__(self):
        return len(IMAGE_SIZES)


def _predictions(gland_offset):
    """Exact nucleus boxes and masks; gland ones shifted right by ``gland_offset`` px (30: no overlap at all)."""
    predictions = []
    for image_id, (w, h) in IMAGE_SIZES.items():
        corners = [(4, 4), (30 + gland_offset, 20)]
        # xyxy with maskrcnn-benchmark's +1 width: x1 = x0 + 19 is a 20 px wide box, as the GT's.
        prediction = BoxList(torch.tensor([[x, y, x + 19, y + 15] for x, y in corners], dtype=torch.float32), (w, h))
        prediction.add_field("scores", torch.tensor([0.9, 0.8]))
        prediction.add_field("labels", torch.tensor([1, 2]))
        masks = torch.zeros(2, 1, h, w)
        for k, (x, y) in enumerate(corners):
            masks[k, 0, y:y + 16, x:x + 20] = 1
        prediction.add_field("mask", masks)
        predictions.append(prediction)
    return predictions


@pytest.mark.parametrize("evaluator", COCO_EVALUATORS)
def test_per_category_ap_is_one_for_the_found_category_and_zero_for_the_missed_one(tmp_path, caplog, evaluator):
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark.inference"), \
            contextlib.redirect_stdout(io.StringIO()):
        results, _, _ = evaluate(_Dataset(), _predictions(gland_offset=30), str(tmp_path),
                                 iou_types=("bbox", "segm", "boundary"), coco_evaluator=evaluator)
    expected = {"nucleus": 1.0, "gland": 0.0, "unseen": -1.0}
    for task in ("bbox", "segm", "boundary"):
        assert dict(results.per_category[task]) == pytest.approx(expected)
        assert results.results[task]["AP"] == pytest.approx(0.5)  # mean over the categories with GT
    written = json.loads((tmp_path / "coco_results.json").read_text())
    assert written["per_category_ap"]["segm"] == pytest.approx(expected)
    assert written["segm"]["AP"] == pytest.approx(0.5)  # task -> metric -> value is unchanged
    assert written["coco_evaluator"] == evaluator
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "Per-category AP, task: boundary" in log
    assert "gland" in log and "unseen   |      n/a" in log


@pytest.mark.parametrize("evaluator", COCO_EVALUATORS)
def test_mean_of_per_category_ap_is_the_overall_ap_when_every_category_has_gt(evaluator):
    gt, segm, _ = synthetic_coco_case(num_images=6, detections_per_image=20, num_categories=3, seed=4)
    gt["categories"] = gt["categories"][:2]  # drop the category without GT
    segm = [r for r in segm if r["category_id"] in (1, 3)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = evaluate_predictions_on_coco(_coco_from_dict(gt), segm, None, "segm", evaluator=evaluator)
    per_category = per_category_ap(coco_eval)
    assert len(per_category) == 2 and len(set(per_category.values())) == 2
    assert np.mean(list(per_category.values())) == pytest.approx(coco_eval.stats[0], abs=1e-12)


# ------------------------------------------------------------------------------------------- the key
def test_an_unknown_evaluator_is_refused_by_name(tmp_path):
    assert CHOICE_KEYS["TEST.COCO_EVALUATOR"] == COCO_EVALUATORS
    assert load_config(None).TEST.COCO_EVALUATOR == "faster_coco_eval"
    with pytest.raises(ValueError, match="TEST.COCO_EVALUATOR' = 'pycocotool'.*did you mean 'pycocotools'"):
        load_config(None, ["TEST.COCO_EVALUATOR", "pycocotool"])
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("TEST:\n  COCO_EVALUATOR: lvis\n")
    with pytest.raises(ValueError, match="'lvis' in config file '.*bad.yaml'"):
        load_config(str(config_file))
    with pytest.raises(ValueError, match="TEST.COCO_EVALUATOR 'fast' is unknown"):
        evaluate(_Dataset(), _predictions(0), None, coco_evaluator="fast")


def test_run_test_refuses_an_unknown_evaluator_before_any_inference(tiny_cfg):
    from maskrcnn_benchmark.engine.inference import run_test

    tiny_cfg.TEST.COCO_EVALUATOR = "pycocotool"  # set in Python: the config merge's check is bypassed
    with pytest.raises(ValueError, match="TEST.COCO_EVALUATOR 'pycocotool' is unknown"):
        run_test(tiny_cfg, model=None, distributed=False)  # no model needed: refused before it is used
