"""COCO evaluation: our numbers are pycocotools' numbers on the files we write."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn_benchmark.data.datasets.evaluation import evaluate
from maskrcnn_benchmark.structures.bounding_box import BoxList

IMAGE_SIZES = {11: (64, 48), 12: (80, 60)}  # COCO image id -> (width, height)
JSON_CATEGORY_IDS = [3, 7]  # deliberately not contiguous


class _HandMadeCocoDataset:
    """The parts of COCODataset the evaluator uses, around a COCO object built in memory."""

    def __init__(self, annotations):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": i, "width": w, "height": h, "file_name": "{}.png".format(i)}
                       for i, (w, h) in IMAGE_SIZES.items()],
            "categories": [{"id": c, "name": "cat{}".format(c)} for c in JSON_CATEGORY_IDS],
            "annotations": annotations,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco
        self.ids = sorted(IMAGE_SIZES)
        self.id_to_img_map = dict(enumerate(self.ids))
        self.json_category_id_to_contiguous_id = {c: i + 1 for i, c in enumerate(JSON_CATEGORY_IDS)}
        self.contiguous_category_id_to_json_id = {v: k for k, v in self.json_category_id_to_contiguous_id.items()}

    def get_img_info(self, index):
        w, h = IMAGE_SIZES[self.id_to_img_map[index]]
        return {"width": w, "height": h}

    def __len__(self):
        return len(self.ids)


def _rect_annotation(ann_id, image_id, category_id, x, y, w, h):
    """A rectangle GT whose polygon covers pixels x..x+w-1 (the +1 box convention) exactly."""
    x1, y1 = x + w, y + h
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h],
            "area": float(w * h), "iscrowd": 0,
            "segmentation": [[x, y, x1, y, x1, y1, x, y1]]}


GT = [
    _rect_annotation(1, 11, 3, 5, 6, 20, 15),
    _rect_annotation(2, 11, 7, 30, 20, 25, 20),
    _rect_annotation(3, 12, 3, 10, 10, 40, 30),
    _rect_annotation(4, 12, 7, 50, 5, 20, 45),
]


def _perfect_predictions(dataset, with_masks=False):
    predictions = []
    for index, image_id in dataset.id_to_img_map.items():
        anns = [a for a in GT if a["image_id"] == image_id]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        boxes = BoxList(xywh, IMAGE_SIZES[image_id], mode="xywh").convert("xyxy")
        boxes.add_field("scores", torch.linspace(0.9, 0.8, len(anns)))
        boxes.add_field("labels", torch.tensor([dataset.json_category_id_to_contiguous_id[a["category_id"]]
                                                for a in anns]))
        if with_masks:
            w, h = IMAGE_SIZES[image_id]
            masks = torch.zeros(len(anns), 1, h, w)
            for k, a in enumerate(anns):
                x, y, bw, bh = a["bbox"]
                masks[k, 0, y:y + bh, x:x + bw] = 1.0
            boxes.add_field("mask", masks)
        predictions.append(boxes)
    return predictions


def _direct_pycocotools_stats(gt_coco, results_file, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt_coco.loadRes(str(results_file))
        coco_eval = COCOeval(gt_coco, dt, iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_perfect_predictions_give_ap_one_for_boxes_and_masks(tmp_path):
    dataset = _HandMadeCocoDataset(GT)
    results, coco_results, _ = evaluate(dataset, _perfect_predictions(dataset, with_masks=True), str(tmp_path),
                                        iou_types=("bbox", "segm"))
    for task in ("bbox", "segm"):
        assert results.results[task]["AP"] == pytest.approx(1.0)
        assert results.results[task]["AP50"] == pytest.approx(1.0)
    # The boxes written are exactly the GT boxes (xywh, original image coordinates, json category ids).
    written = json.loads((tmp_path / "bbox.json").read_text())
    by_image = sorted((r["image_id"], r["category_id"], r["bbox"]) for r in written)
    assert by_image == sorted((a["image_id"], a["category_id"], [float(v) for v in a["bbox"]]) for a in GT)
    saved = json.loads((tmp_path / "coco_results.json").read_text())
    assert saved["bbox"]["AP"] == pytest.approx(1.0) and saved["max_dets"] == 100


def test_our_ap_equals_pycocotools_on_the_saved_results(tmp_path):
    dataset = _HandMadeCocoDataset(GT)
    rng = np.random.RandomState(0)
    predictions = []
    for p in _perfect_predictions(dataset):
        jitter = torch.from_numpy(rng.uniform(-4, 4, size=(len(p), 4))).float()
        noisy = BoxList(p.bbox + jitter, p.size)
        # Add a false positive per image and scramble scores so the precision-recall curve is non-trivial.
        noisy = BoxList(torch.cat([noisy.bbox, torch.tensor([[1.0, 1.0, 12.0, 9.0]])]), p.size)
        noisy.add_field("scores", torch.from_numpy(rng.uniform(0.1, 1.0, size=len(noisy))).float())
        noisy.add_field("labels", torch.cat([p.get_field("labels"), torch.tensor([1])]))
        predictions.append(noisy)
    results, _, _ = evaluate(dataset, predictions, str(tmp_path), iou_types=("bbox",))
    stats = _direct_pycocotools_stats(dataset.coco, tmp_path / "bbox.json", "bbox")
    ours = [results.results["bbox"][m] for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    assert ours == pytest.approx(list(stats[:6]), abs=1e-12)
    assert 0.0 < ours[0] < 1.0
    saved = json.loads((tmp_path / "coco_results.json").read_text())
    assert saved["bbox"]["AP"] == pytest.approx(stats[0], abs=1e-12)


def test_ap_counts_detections_up_to_max_dets(tmp_path):
    """With 110 higher-scored decoys per image and class, AP@100 is 0 but AP@150 is not.

    (pycocotools applies maxDets per image and category.)"""
    dataset = _HandMadeCocoDataset(GT)
    predictions = []
    for p in _perfect_predictions(dataset):
        decoys = torch.tensor([[0.0, 0.0, 2.0, 2.0]]).repeat(220, 1)
        decoy_labels = torch.tensor([1, 2]).repeat(110)
        boxes = BoxList(torch.cat([decoys, p.bbox]), p.size)
        boxes.add_field("scores", torch.linspace(1.0, 0.5, len(decoys) + len(p)))
        boxes.add_field("labels", torch.cat([decoy_labels, p.get_field("labels")]))
        predictions.append(boxes)
    at_100, _, _ = evaluate(dataset, predictions, str(tmp_path / "a"), iou_types=("bbox",), max_dets=100)
    at_150, _, _ = evaluate(dataset, predictions, str(tmp_path / "b"), iou_types=("bbox",), max_dets=150)
    assert at_100.results["bbox"]["AP"] == pytest.approx(0.0)
    assert at_150.results["bbox"]["AP"] > 0.0
    assert json.loads((tmp_path / "b" / "coco_results.json").read_text())["max_dets"] == 150


def test_own_summary_matches_pycocotools_summarize(tmp_path):
    """summarize_at_max_dets (used when maxDets[2] != 100) reproduces COCOeval.summarize() at 100."""
    from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import summarize_at_max_dets

    dataset = _HandMadeCocoDataset(GT)
    predictions = _perfect_predictions(dataset)
    predictions[0] = BoxList(predictions[0].bbox + torch.tensor([3.0, -2.0, 1.0, 4.0]), predictions[0].size)
    predictions[0].add_field("scores", torch.tensor([0.3, 0.9]))
    predictions[0].add_field("labels", torch.tensor([1, 2]))
    evaluate(dataset, predictions, str(tmp_path), iou_types=("bbox",))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(dataset.coco, dataset.coco.loadRes(str(tmp_path / "bbox.json")), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        reference = coco_eval.stats.copy()
        ours = summarize_at_max_dets(coco_eval)
    assert list(ours) == pytest.approx(list(reference), abs=1e-12)
    assert 0.0 < reference[0] < 1.0


def test_no_detections_give_zero_ap_and_unknown_label_is_named(tmp_path):
    dataset = _HandMadeCocoDataset(GT)
    empty = []
    for index in range(len(dataset)):
        e = BoxList(torch.zeros(0, 4), IMAGE_SIZES[dataset.id_to_img_map[index]])
        e.add_field("scores", torch.zeros(0))
        e.add_field("labels", torch.zeros(0, dtype=torch.int64))
        empty.append(e)
    results, _, _ = evaluate(dataset, empty, str(tmp_path), iou_types=("bbox",))
    assert results.results["bbox"]["AP"] == pytest.approx(0.0)

    bad = _perfect_predictions(dataset)
    bad[0].add_field("labels", torch.tensor([5, 1]))
    with pytest.raises(KeyError, match="label 5"):
        evaluate(dataset, bad, str(tmp_path), iou_types=("bbox",))


def test_masks_from_28x28_probabilities_are_pasted_with_the_masker(tmp_path):
    dataset = _HandMadeCocoDataset(GT)
    predictions = _perfect_predictions(dataset)
    for p in predictions:
        p.add_field("mask", torch.ones(len(p), 1, 28, 28))
    results, _, _ = evaluate(dataset, predictions, str(tmp_path), iou_types=("segm",))
    stats = _direct_pycocotools_stats(dataset.coco, tmp_path / "segm.json", "segm")
    assert results.results["segm"]["AP"] == pytest.approx(stats[0], abs=1e-12)
    # A full box-shaped mask pasted into its box reproduces the rectangle GT closely.
    assert results.results["segm"]["AP50"] == pytest.approx(1.0)


def test_box_only_reports_average_recall_of_proposals(tmp_path):
    dataset = _HandMadeCocoDataset(GT)
    proposals = []
    for p in _perfect_predictions(dataset):
        # GT boxes ranked first, then one far-off box; with limit 1 only the first GT of each image is found.
        boxes = BoxList(torch.cat([p.bbox, torch.tensor([[0.0, 0.0, 3.0, 3.0]])]), p.size)
        boxes.add_field("objectness", torch.tensor([0.9, 0.8, 0.1]))
        proposals.append(boxes)
    results, _, _ = evaluate(dataset, proposals, str(tmp_path), box_only=True)
    assert results.results["box_proposal"]["AR@100"] == pytest.approx(1.0)
    from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import evaluate_box_proposals

    assert float(evaluate_box_proposals(proposals, dataset, limit=1)["ar"]) == pytest.approx(0.5)
    assert json.loads((tmp_path / "box_proposals.json").read_text())["box_proposal"]["AR@100"] == pytest.approx(1.0)


def test_annotations_training_skips_are_left_out_of_evaluation_instead_of_crashing_it(tmp_path, caplog):
    """A 2-point polygon (skipped in training) and a NaN box must not reach pycocotools; an annotation without
    "area"/"iscrowd" is scored with the filled-in values; AP is that of the usable GT."""
    import logging

    from maskrcnn_benchmark.data.datasets import COCODataset

    broken = [
        dict(_rect_annotation(5, 11, 3, 40, 2, 10, 10), segmentation=[[40, 2, 50, 2]]),  # polygon with 2 points
        dict(_rect_annotation(6, 12, 7, 1, 1, 5, 5), bbox=[1, 1, float("nan"), 5]),  # non-finite box
    ]
    # GT itself: earlier evaluations replaced its polygons by RLEs in place (pycocotools does)
    fresh = [_rect_annotation(a["id"], a["image_id"], a["category_id"], *a["bbox"]) for a in GT]
    lacking = [{k: v for k, v in a.items() if k not in ("area", "iscrowd")} for a in fresh]
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps({
        "images": [{"id": i, "width": w, "height": h, "file_name": "{}.png".format(i)}
                   for i, (w, h) in IMAGE_SIZES.items()],
        "categories": [{"id": c, "name": "cat{}".format(c)} for c in JSON_CATEGORY_IDS],
        "annotations": lacking + broken}))
    with caplog.at_level(logging.WARNING):
        dataset = COCODataset(str(ann_file), str(tmp_path), remove_images_without_annotations=False)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "skipped 2 unusable annotation(s)" in warning[0]
    assert "polygon with < 3 points x1" in warning[0] and "bbox with a non-finite or non-numeric value x1" in warning[0]
    assert sorted(dataset.coco.anns) == [1, 2, 3, 4]
    results, _, _ = evaluate(dataset, _perfect_predictions(dataset, with_masks=True), str(tmp_path / "out"),
                             iou_types=("bbox", "segm"))
    assert results.results["bbox"]["AP"] == pytest.approx(1.0)
    assert results.results["segm"]["AP"] == pytest.approx(1.0)
