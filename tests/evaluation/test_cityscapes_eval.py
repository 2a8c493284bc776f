"""Cityscapes evaluation end to end: converted tiny gtFine tree -> predictions -> cityscapesscripts' evaluator."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_benchmark.data.datasets.cityscapes import CityscapesDataset, convert_cityscapes_split
from maskrcnn_benchmark.data.datasets.evaluation import evaluate
from maskrcnn_benchmark.data.datasets.evaluation.cityscapes.cityscapes_eval import cityscapes_instance_ap
from maskrcnn_benchmark.structures.bounding_box import BoxList

H, W = 64, 96
# Every instance is larger than the evaluator's 100-pixel minimum region size.
FRAMES = {
    ("frankfurt", "000000", "000294"): [(26001, (10, 30, 5, 35)), (26002, (12, 40, 40, 70)),
                                        (24001, (35, 60, 10, 25))],
    ("lindau", "000000", "000019"): [(25001, (5, 25, 50, 80)), (24001, (30, 60, 60, 75)),
                                     (29001, (30, 50, 5, 40))],  # caravan: ignored by the official evaluation
}


def _instance_ids(shapes):
    ids = np.full((H, W), 7, dtype=np.uint16)
    for value, (y0, y1, x0, x1) in shapes:
        ids[y0:y1, x0:x1] = value
    return ids


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cityscapes"))
    for (city, seq, frame), shapes in FRAMES.items():
        stem = "{}_{}_{}".format(city, seq, frame)
        for kind in ("gtFine", "leftImg8bit"):
            os.makedirs(os.path.join(root, kind, "val", city), exist_ok=True)
        gt_prefix = os.path.join(root, "gtFine", "val", city, stem)
        Image.fromarray(_instance_ids(shapes)).save(gt_prefix + "_gtFine_instanceIds.png")
        json.dump({"imgHeight": H, "imgWidth": W, "objects": []}, open(gt_prefix + "_gtFine_polygons.json", "w"))
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(
            os.path.join(root, "leftImg8bit", "val", city, stem + "_leftImg8bit.png"))
    ann_file = os.path.join(root, "annotations", "instancesonly_gtFine_val.json")
    convert_cityscapes_split(root, "val", ann_file)
    return CityscapesDataset(ann_file, os.path.join(root, "leftImg8bit", "val"), os.path.join(root, "gtFine", "val"))


def perfect_predictions(dataset, drop=()):
    """One BoxList per image with every GT instance as a pasted mask (Tensor[N,1,H,W]), score 0.9.

    drop: cityscapes instance ids (per image, as (image_index, instance_id)) to leave out.
    """
    import pycocotools.mask as mask_util

    predictions = []
    for index in range(len(dataset)):
        anns = dataset.coco.imgToAnns[dataset.id_to_img_map[index]]
        anns = [a for a in anns if not a["iscrowd"] and (index, a["cityscapes_instance_id"]) not in drop]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        prediction = BoxList(boxes, (W, H), mode="xywh").convert("xyxy")
        masks = np.stack([mask_util.decode(a["segmentation"]) for a in anns]) if anns else np.zeros((0, H, W))
        prediction.add_field("mask", torch.as_tensor(masks, dtype=torch.float32)[:, None])
        prediction.add_field("scores", torch.full((len(anns),), 0.9))
        prediction.add_field("labels", torch.tensor(
            [dataset.json_category_id_to_contiguous_id[a["category_id"]] for a in anns], dtype=torch.int64))
        predictions.append(prediction)
    return predictions


def test_perfect_predictions_give_ap_1(dataset):
    summary = cityscapes_instance_ap(dataset, perfect_predictions(dataset))
    assert summary["AP"] == pytest.approx(1.0)
    assert summary["AP50"] == pytest.approx(1.0)
    classes = summary["classes"]
    # The official evaluation scores 8 classes; caravan and trailer are ignoreInEval.
    assert list(classes) == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    for name in ("person", "rider", "car"):
        assert classes[name]["AP"] == pytest.approx(1.0)
    assert classes["truck"]["AP"] is None  # no ground truth, no prediction: not a number, not a zero


def test_a_missed_instance_lowers_ap(dataset):
    # lindau (index 1): drop its person 24001; person then has 2 GT and 1 true positive.
    summary = cityscapes_instance_ap(dataset, perfect_predictions(dataset, drop={(1, 24001)}))
    assert summary["classes"]["person"]["AP"] == pytest.approx(0.5, abs=0.02)
    assert summary["classes"]["car"]["AP"] == pytest.approx(1.0)
    assert summary["AP"] < 0.99


def test_a_wrong_label_is_a_false_positive_and_a_miss(dataset):
    predictions = perfect_predictions(dataset)
    labels = predictions[0].get_field("labels")
    person = dataset.json_category_id_to_contiguous_id[24]
    rider = dataset.json_category_id_to_contiguous_id[25]
    labels[labels == person] = rider  # frankfurt's person predicted as rider
    summary = cityscapes_instance_ap(dataset, predictions)
    assert summary["classes"]["person"]["AP"] < 0.6
    assert summary["classes"]["rider"]["AP"] < 1.0


def test_evaluate_dispatches_cityscapes_and_writes_results(dataset, tmp_path):
    results, _, _ = evaluate(dataset, perfect_predictions(dataset, drop={(1, 24001)}), str(tmp_path),
                             iou_types=("bbox", "segm"),
                             expected_results=[("cityscapes", "AP50", 0.75, 0.1)])
    written = json.load(open(str(tmp_path / "cityscapes_results.json")))
    assert written["classes"]["person"]["AP50"] == pytest.approx(0.5, abs=0.02)
    assert results.results["cityscapes"]["AP"] == pytest.approx(written["AP"])
    # COCO-style numbers are computed as well, from the same predictions (5 of 6 instances found, all exact).
    coco = json.load(open(str(tmp_path / "coco_results.json")))
    assert 0.5 < coco["segm"]["AP"] < 1.0
    assert os.path.isfile(str(tmp_path / "segm.json"))


def test_28x28_mask_probabilities_are_pasted_into_the_boxes(dataset):
    # The detector's eval output: per-RoI 28x28 probabilities, pasted by the mask head's Masker.
    predictions = perfect_predictions(dataset)
    for prediction in predictions:
        prediction.add_field("mask", torch.ones(len(prediction), 1, 28, 28))
    summary = cityscapes_instance_ap(dataset, predictions)
    assert summary["AP50"] == pytest.approx(1.0)  # the instances are rectangles: the box is the mask
