"""The synthetic dataset is deterministic, hard in the paper's sense, and its masks are exactly the drawn shapes."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn_benchmark.data.preparation import _atomic
from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco


def _decode(ann, height, width):
    seg = ann["segmentation"]
    rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width)) if isinstance(seg, list) else seg
    return mask_utils.decode(rle).astype(bool)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_synthetic_coco(str(tmp_path / "a"), num_images=3, image_size=96, seed=5)
    b = generate_synthetic_coco(str(tmp_path / "b"), num_images=3, image_size=96, seed=5)
    c = generate_synthetic_coco(str(tmp_path / "c"), num_images=3, image_size=96, seed=6)
    assert filecmp.cmp(a["ann_file"], b["ann_file"], shallow=False)
    names = sorted(os.listdir(a["img_dir"]))
    assert len(names) == 3
    for name in names:
        assert filecmp.cmp(os.path.join(a["img_dir"], name), os.path.join(b["img_dir"], name), shallow=False)
    assert not filecmp.cmp(os.path.join(a["img_dir"], names[0]), os.path.join(c["img_dir"], names[0]), shallow=False)


def test_masks_decode_to_the_drawn_shapes(synthetic_dataset_dir):
    data = json.load(open(os.path.join(synthetic_dataset_dir, "annotations.json")))
    assert {c["id"] for c in data["categories"]} == {1, 3, 7}
    kernel = np.ones((3, 3), np.uint8)
    for info in data["images"]:
        image = cv2.imread(os.path.join(synthetic_dataset_dir, "images", info["file_name"])).astype(np.float64)
        anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
        union = np.zeros((info["height"], info["width"]), int)
        for ann in anns:
            mask = _decode(ann, info["height"], info["width"])
            union += mask
            inside = image[mask]
            # flat fill (+ small noise) inside; a different colour on the 1-px ring just outside: crisp boundary
            assert inside.std(axis=0).max() < 6
            ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask
            assert np.abs(image[ring].mean(axis=0) - inside.mean(axis=0)).max() > 15
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert ann["area"] == mask.sum()
        assert union.max() == 1  # instances never overlap


def test_contains_small_objects_and_touching_blobs(synthetic_dataset_dir):
    data = json.load(open(os.path.join(synthetic_dataset_dir, "annotations.json")))
    assert min(a["area"] for a in data["annotations"]) < 64  # a few pixels across at 128 px
    kernel = np.ones((3, 3), np.uint8)
    touching = 0
    for info in data["images"]:
        blobs = [_decode(a, info["height"], info["width"]) for a in data["annotations"]
                 if a["image_id"] == info["id"] and a["category_id"] == 7]
        for i in range(len(blobs)):
            grown = cv2.dilate(blobs[i].astype(np.uint8), kernel).astype(bool)
            touching += sum(bool((grown & blobs[j]).any()) for j in range(len(blobs)) if j != i)
    assert touching > 0
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds == {"list", "dict"}  # polygons and RLE both exercised


def test_killed_generation_leaves_no_dataset(tmp_path):
    out_dir = str(tmp_path / "half")

    def dies_midway(tmp_dir):
        open(os.path.join(tmp_dir, "images.partial"), "w").close()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic.write_atomically(out_dir, dies_midway)
    assert not os.path.exists(out_dir)
    assert os.listdir(str(tmp_path)) == []
    generate_synthetic_coco(out_dir, num_images=1, image_size=64, seed=0)
    assert _atomic.is_complete(out_dir)
