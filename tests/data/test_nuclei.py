"""Nuclei tiles from the stardist sample: disjoint tiles, every nucleus of each tile present, exact masks."""
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_benchmark.data.preparation import nuclei


@pytest.fixture(scope="module")
def nuclei_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("nuclei"))
    nuclei.generate_nuclei_coco(root)
    return root


def _load(root, split):
    return json.load(open(os.path.join(root, split, "annotations.json")))


def test_tiles_do_not_overlap(nuclei_root):
    covered = np.zeros((512, 512), int)
    for split in ("train", "val"):
        for info in _load(nuclei_root, split)["images"]:
            row, col = info["tile_origin_yx"]
            covered[row:row + info["height"], col:col + info["width"]] += 1
    assert covered.max() == 1
    assert len(_load(nuclei_root, "train")["images"]) >= 3 and len(_load(nuclei_root, "val")["images"]) >= 1


def test_instance_counts_and_masks_match_the_label_map(nuclei_root):
    _, labels = nuclei.load_image_and_labels()
    assert len(np.unique(labels)) - 1 == 125
    total = 0
    for split in ("train", "val"):
        data = _load(nuclei_root, split)
        for info in data["images"]:
            row, col = info["tile_origin_yx"]
            tile = labels[row:row + info["height"], col:col + info["width"]]
            counts = np.bincount(tile.ravel())
            expected_ids = [k for k in range(1, len(counts)) if counts[k] >= nuclei.MIN_FRAGMENT_AREA]
            anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
            assert len(anns) == len(expected_ids)
            total += len(anns)
            for ann in anns:
                mask = mask_utils.decode(ann["segmentation"]).astype(bool)
                ids_under = np.unique(tile[mask])
                assert len(ids_under) == 1 and ids_under[0] > 0
                assert mask.sum() == counts[ids_under[0]]  # the whole (clipped) nucleus, nothing else
            assert {a["category_id"] for a in anns} == {1}
    assert total >= 125  # nuclei cut by a tile border appear in each tile they touch


def test_images_are_8bit_rgb_contrast_stretched(nuclei_root):
    images = []
    for split in ("train", "val"):
        for info in _load(nuclei_root, split)["images"]:
            images.append(np.asarray(Image.open(os.path.join(nuclei_root, split, "images", info["file_name"]))))
    for image in images:
        assert image.dtype == np.uint8 and image.shape == (256, 256, 3)
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    # one stretch for the whole image: the darkest tiles reach 0, the brightest 255
    assert min(im.min() for im in images) == 0 and max(im.max() for im in images) == 255


def test_missing_stardist_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "stardist" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install --no-deps stardist==0\.9\.2"):
        nuclei.stardist_data_files()


def test_dataset_is_generated_on_first_use(tmp_path, monkeypatch):
    from maskrcnn_benchmark.config.paths_catalog import DatasetCatalog
    from maskrcnn_benchmark.data.build import resolve_dataset

    monkeypatch.setattr(DatasetCatalog, "DATA_DIR", str(tmp_path))
    entry = resolve_dataset("nuclei_dsb2018_val", DatasetCatalog)
    assert os.path.isfile(entry["args"]["ann_file"]) and os.path.isdir(entry["args"]["root"])
    assert entry["args"]["ann_file"].startswith(os.path.join(str(tmp_path), "nuclei"))
