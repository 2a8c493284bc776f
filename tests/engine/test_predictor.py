"""COCODemo: maskrcnn-benchmark's demo predictor API on a tiny randomly initialised checkpoint."""
import importlib
import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from maskrcnn_benchmark.engine.predictor import COCODemo, category_names_from_coco_json
from maskrcnn_benchmark.modeling.detector import build_detection_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def checkpoint(tiny_cfg, tmp_path):
    """A randomly initialised tiny model saved as a maskrcnn_benchmark checkpoint; returns (path, state_dict)."""
    torch.manual_seed(0)
    model = build_detection_model(tiny_cfg)
    path = str(tmp_path / "random.pth")
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path, model.state_dict()


def _image(synthetic_dataset_dir, size=(160, 128)):
    image = cv2.imread(os.path.join(synthetic_dataset_dir, "images", "000000.png"))
    return cv2.resize(image, size)  # not the training size: predictions must come back in this size


def test_compute_prediction_in_original_size_with_pasted_masks(tiny_cfg, checkpoint, synthetic_dataset_dir):
    path, state = checkpoint
    ann_file = os.path.join(synthetic_dataset_dir, "annotations.json")
    demo = COCODemo(tiny_cfg, confidence_threshold=0.0, min_image_size=128, weight=path, ann_file=ann_file)
    for name, value in demo.model.state_dict().items():
        assert torch.equal(value, state[name]), name  # the checkpoint's weights, not a fresh initialisation
    assert demo.CATEGORIES == ["__background", "disc", "square", "blob"]  # COCO ids 1, 3, 7 sorted

    image = _image(synthetic_dataset_dir)
    prediction = demo.compute_prediction(image)
    assert prediction.size == (160, 128)
    assert len(prediction) > 0
    masks = prediction.get_field("mask")
    assert masks.shape == (len(prediction), 1, 128, 160) and masks.dtype == torch.uint8

    demo.confidence_threshold = float(prediction.get_field("scores").median())
    top = demo.select_top_predictions(prediction)
    scores = top.get_field("scores")
    assert (scores > demo.confidence_threshold).all() and len(top) < len(prediction)
    assert torch.equal(scores, scores.sort(descending=True)[0])


@pytest.mark.slow
def test_run_on_opencv_image_draws_on_an_image_of_the_same_size(tiny_cfg, checkpoint, synthetic_dataset_dir):
    demo = COCODemo(tiny_cfg, confidence_threshold=0.0, min_image_size=128, weight=checkpoint[0])
    image = _image(synthetic_dataset_dir)
    overlay = demo.run_on_opencv_image(image)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    assert (overlay != image).any(axis=2).mean() > 0.01  # masks and boxes were drawn
    assert demo.CATEGORIES[1] == "class 1"  # no annotation file: generic names
    demo.show_text = False
    without_text = demo.run_on_opencv_image(image)
    assert (without_text != overlay).any() and (without_text != image).any()  # text gone, masks still drawn

    heatmap_demo = COCODemo(tiny_cfg, confidence_threshold=0.0, min_image_size=128, weight=checkpoint[0],
                            show_mask_heatmaps=True, masks_per_dim=3)
    montage = heatmap_demo.run_on_opencv_image(image)
    assert montage.shape == image.shape


def test_category_names_must_cover_the_model_classes(tiny_cfg, checkpoint, tmp_path):
    ann_file = tmp_path / "one_class.json"
    ann_file.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cell"}]}))
    assert category_names_from_coco_json(str(ann_file)) == ["__background", "cell"]
    with pytest.raises(ValueError, match="NUM_CLASSES = 4"):
        COCODemo(tiny_cfg, weight=checkpoint[0], ann_file=str(ann_file))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        category_names_from_coco_json(str(tmp_path / "missing.json"))


def test_demo_folder_import_gives_the_same_class():
    sys.path.insert(0, os.path.join(REPO, "demo"))
    try:
        module = importlib.import_module("predictor")
    finally:
        sys.path.remove(os.path.join(REPO, "demo"))
    assert module.COCODemo is COCODemo
