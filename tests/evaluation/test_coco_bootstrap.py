"""Paired bootstrap over test images: the per-image accumulation is pycocotools' AP, resamples count an image drawn
twice as two copies, and the interval tells identical models from a clearly better one."""
import contextlib
import copy
import io

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from maskrcnn_benchmark.data.datasets.evaluation.coco import bootstrap
from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import evaluate_predictions_on_coco

SIDE = 48
CATEGORIES = (1, 2)


def _coco(data):
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _rle(x, y, w, h):
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8, order="F")
    mask[int(y):int(y + h), int(x):int(x + w)] = 1
    rle = mask_util.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _dataset(num_images=24, seed=0):
    """Ground truth: 1-3 boxes per image over two categories (every 7th object of category 2 is a crowd)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": SIDE, "height": SIDE, "file_name": "{}.png".format(image_id)})
        for _ in range(rng.integers(1, 4)):
            x, y = rng.integers(0, SIDE - 20, size=2)
            w, h = rng.integers(6, 20, size=2)
            category = int(rng.choice(CATEGORIES))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category,
                         "bbox": [int(x), int(y), int(w), int(h)], "area": float(w * h),
                         "iscrowd": int(category == 2 and len(anns) % 7 == 6), "segmentation": _rle(x, y, w, h)})
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in CATEGORIES]}


def _detections(data, jitter, seed, false_positives=1):
    """Each GT box shifted by up to `jitter` px with a random score, plus random false positives per image."""
    rng = np.random.default_rng(seed)
    results = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        dx, dy = rng.uniform(-jitter, jitter, size=2)
        box = [float(np.clip(x + dx, 0, SIDE - w)), float(np.clip(y + dy, 0, SIDE - h)), float(w), float(h)]
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box,
                        "score": float(rng.uniform(0.3, 1.0)), "segmentation": _rle(*box)})
    for image in data["images"]:
        for _ in range(false_positives):
            x, y = rng.integers(0, SIDE - 10, size=2)
            box = [float(x), float(y), 8.0, 8.0]
            results.append({"image_id": image["id"], "category_id": int(rng.choice(CATEGORIES)), "bbox": box,
                            "score": float(rng.uniform(0.0, 0.6)), "segmentation": _rle(*box)})
    return results


def _with_copies(data, results, counts):
    """The test set (and detections) with image i written out counts[i] times under new ids."""
    images, anns, dets = [], [], []
    for index, (image, count) in enumerate(zip(data["images"], counts)):
        for copy_index in range(count):
            new_id = 1000 * (copy_index + 1) + image["id"]
            images.append(dict(image, id=new_id))
            anns += [dict(a, id=len(anns) + 1 + j, image_id=new_id)
                     for j, a in enumerate(a for a in data["annotations"] if a["image_id"] == image["id"])]
            dets += [dict(d, image_id=new_id) for d in results if d["image_id"] == image["id"]]
    return dict(data, images=images, annotations=anns), dets


def _pycocotools_ap(data, results, task, max_dets=100):
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate_predictions_on_coco(_coco(copy.deepcopy(data)), copy.deepcopy(results), None, task,
                                            max_dets=max_dets).stats[0]


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_resampled_ap_is_pycocotools_ap_on_the_test_set_and_on_a_set_with_the_drawn_copies(task):
    data = _dataset()
    results = _detections(data, jitter=4, seed=1, false_positives=2)
    matches = bootstrap.match_images(_coco(copy.deepcopy(data)), results, task, max_dets=100)
    counts = np.random.default_rng(3).multinomial(len(data["images"]), [1 / len(data["images"])] * 24)
    assert counts.max() >= 2 and (counts == 0).any()  # the resample both repeats and leaves out images
    aps = bootstrap.resampled_ap(matches, np.vstack([np.ones(24, dtype=int), counts]))
    assert aps[0] == pytest.approx(_pycocotools_ap(data, results, task), abs=1e-12)
    assert aps[1] == pytest.approx(_pycocotools_ap(*_with_copies(data, results, counts), task), abs=1e-12)
    # more detections per image than max_dets: the cut pycocotools makes is made here too
    crowded = _detections(data, jitter=4, seed=1, false_positives=40)
    cut = bootstrap.match_images(_coco(copy.deepcopy(data)), crowded, task, max_dets=10)
    uncut = bootstrap.match_images(_coco(copy.deepcopy(data)), crowded, task, max_dets=100)
    cut_ap = bootstrap.resampled_ap(cut, np.ones((1, 24)))[0]
    assert cut_ap == pytest.approx(_pycocotools_ap(data, crowded, task, max_dets=10), abs=1e-12)
    assert cut_ap != pytest.approx(bootstrap.resampled_ap(uncut, np.ones((1, 24)))[0], abs=1e-4)


def test_paired_bootstrap_identical_models_give_an_interval_at_zero():
    data = _dataset()
    results = _detections(data, jitter=3, seed=1)
    runs = [bootstrap.match_images(_coco(copy.deepcopy(data)), results, "bbox") for _ in range(2)]
    out = bootstrap.paired_bootstrap([runs[0]], [runs[1]], num_samples=200, seed=0)
    assert out["diff"] == 0.0 and out["low"] <= 0.0 <= out["high"]
    assert out["low"] == pytest.approx(0.0, abs=1e-9) and out["high"] == pytest.approx(0.0, abs=1e-9)


def test_paired_bootstrap_a_clearly_better_model_is_above_zero_and_the_seed_fixes_the_interval():
    data = _dataset(num_images=30)
    coco = _coco(copy.deepcopy(data))
    worse = bootstrap.match_images(coco, _detections(data, jitter=5, seed=1), "bbox")
    better = bootstrap.match_images(coco, _detections(data, jitter=0.5, seed=2), "bbox")
    out = bootstrap.paired_bootstrap([worse], [better], num_samples=300, seed=4)
    assert out["diff"] > 10 and 0 < out["low"] < out["diff"] < out["high"]
    assert out == bootstrap.paired_bootstrap([worse], [better], num_samples=300, seed=4)
    assert out["low"] != bootstrap.paired_bootstrap([worse], [better], num_samples=300, seed=5)["low"]
    flipped = bootstrap.paired_bootstrap([better], [worse], num_samples=300, seed=4)
    assert flipped["high"] == pytest.approx(-out["low"]) and flipped["diff"] == pytest.approx(-out["diff"])


def test_paired_bootstrap_refuses_runs_on_different_test_sets():
    small, large = _dataset(num_images=10), _dataset(num_images=12)
    a = bootstrap.match_images(_coco(small), _detections(small, 2, 0), "bbox")
    b = bootstrap.match_images(_coco(large), _detections(large, 2, 0), "bbox")
    with pytest.raises(ValueError, match="different test images"):
        bootstrap.paired_bootstrap([a], [b], num_samples=10)


def test_load_matches_names_the_missing_detections_file(tmp_path):
    (tmp_path / "coco_results.json").write_text('{"bbox": {"AP": 0.5}, "max_dets": 100}')
    with pytest.raises(FileNotFoundError, match="bbox.json"):
        bootstrap.load_matches(str(tmp_path), str(tmp_path / "gt.json"), "bbox")
