"""Label maps -> COCO (data/preparation/labelmaps.py, tools/labelmap_to_coco.py): the JSON loads in pycocotools,
each instance's mask is exactly its label region, COCODataset trains on it, and bad input is refused by name."""
import json
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from maskrcnn_benchmark.data.datasets.coco import COCODataset
from maskrcnn_benchmark.data.preparation.labelmaps import LabelMapError, convert_label_maps, label_maps_to_coco
from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _label_map(height, width):
    """Instances with non-contiguous values, one of them in two separate pieces, and background."""
    labels = np.zeros((height, width), np.uint16)
    labels[2:10, 3:12] = 7
    labels[12:20, 15:30] = 300  # needs 16 bits
    labels[22:26, 2:6] = 41
    labels[22:26, 30:34] = 41  # the same instance, a second piece
    return labels


@pytest.fixture
def folders(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    (images / "plate1").mkdir(parents=True)
    (labels / "plate1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "a.png"), rng.integers(0, 256, (30, 40, 3)).astype(np.uint8))
    tifffile.imwrite(str(images / "plate1" / "b.tif"), rng.integers(0, 4096, (30, 40)).astype(np.uint16))
    Image.fromarray(_label_map(30, 40)).save(str(labels / "a_masks.png"))  # 16-bit PNG
    tifffile.imwrite(str(labels / "plate1" / "b_masks.tif"), _label_map(30, 40)[:, ::-1].copy())
    return str(images), str(labels)


def test_json_loads_and_every_mask_is_its_label_region(folders, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images, labels = folders
    output = str(tmp_path / "out" / "ann.json")
    convert_label_maps(output, images, labels, category="nucleus", label_suffix="_masks")
    coco = COCO(output)
    assert [c["name"] for c in coco.dataset["categories"]] == ["nucleus"]
    files = {img["file_name"]: img for img in coco.dataset["images"]}
    assert sorted(files) == ["a.png", "plate1/b.tif"]
    for file_name, label_file in (("a.png", "a_masks.png"), ("plate1/b.tif", "plate1/b_masks.tif")):
        path = os.path.join(labels, label_file)
        label_map = np.asarray(Image.open(path)) if path.endswith(".png") else tifffile.imread(path)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=files[file_name]["id"]))
        assert sorted(a["label_value"] for a in anns) == [7, 41, 300]
        for ann in anns:
            mask = mask_utils.decode(ann["segmentation"])
            assert np.array_equal(mask.astype(bool), label_map == ann["label_value"])
            assert ann["area"] == (label_map == ann["label_value"]).sum()
    assert len({a["id"] for a in coco.dataset["annotations"]}) == 6


def test_a_coco_dataset_on_the_converted_folder_loads_for_training(folders, tmp_path):
    images, labels = folders
    output = str(tmp_path / "ann.json")
    convert_label_maps(output, images, labels, label_suffix="_masks")
    dataset = COCODataset(output, images, remove_images_without_annotations=True)
    assert len(dataset) == 2
    for index in range(2):
        image, target, _ = dataset[index]
        assert target.size == (40, 30) and len(target) == 3
        masks = target.get_field("masks").get_mask_tensor()
        assert masks.shape == (3, 30, 40) and int(masks.sum()) == 8 * 9 + 8 * 15 + 2 * 16
    assert isinstance(dataset[1][0], torch.Tensor)  # the 16-bit TIFF stays high-bit through the reader


def test_class_maps_give_each_instance_its_majority_class(folders, tmp_path):
    images, labels = folders
    classes = tmp_path / "classes"
    (classes / "plate1").mkdir(parents=True)
    for key in ("a", "plate1/b"):
        label_path = os.path.join(labels, key + "_masks" + (".png" if key == "a" else ".tif"))
        label_map = np.asarray(Image.open(label_path)) if key == "a" else tifffile.imread(label_path)
        class_map = np.where(label_map == 300, 2, np.where(label_map > 0, 1, 0)).astype(np.uint8)
        class_map[label_map == 7] = 1
        class_map[(label_map == 7) & (np.arange(40)[None, :] % 3 == 0)] = 2  # a minority of class 2 pixels
        Image.fromarray(class_map).save(str(classes / (key + ".png")))
    coco = label_maps_to_coco(images, labels, label_suffix="_masks", class_maps_dir=str(classes),
                              class_names=["cell", "debris"])
    assert [c["name"] for c in coco["categories"]] == ["cell", "debris"]
    by_value = {(a["image_id"], a["label_value"]): a["category_id"] for a in coco["annotations"]}
    assert all(by_value[(image_id, 7)] == 1 and by_value[(image_id, 41)] == 1 and by_value[(image_id, 300)] == 2
               for image_id in (1, 2))
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(str(classes / "a.png"))
    with pytest.raises(LabelMapError, match=r"instance 7 of '.*a_masks.png' has class 0"):
        label_maps_to_coco(images, labels, label_suffix="_masks", class_maps_dir=str(classes),
                           class_names=["cell", "debris"])


def test_unmatched_and_mismatched_files_are_refused_by_name_and_nothing_is_written(folders, tmp_path):
    images, labels = folders
    output = tmp_path / "ann.json"
    cv2.imwrite(os.path.join(images, "lonely.png"), np.zeros((30, 40, 3), np.uint8))
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(os.path.join(labels, "orphan_masks.png"))
    with pytest.raises(LabelMapError) as info:
        convert_label_maps(str(output), images, labels, label_suffix="_masks")
    assert "lonely.png' has no label file" in str(info.value)
    assert "orphan_masks.png' has no image" in str(info.value)
    os.remove(os.path.join(images, "lonely.png"))
    os.remove(os.path.join(labels, "orphan_masks.png"))
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(os.path.join(labels, "a_masks.png"))
    with pytest.raises(LabelMapError, match=r"a_masks.png' is 40x20 but its image '.*a.png' is 40x30"):
        convert_label_maps(str(output), images, labels, label_suffix="_masks")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(os.path.join(labels, "a_masks.png"))
    with pytest.raises(LabelMapError, match=r"a_masks.png' has shape \[30, 40, 3\]"):
        convert_label_maps(str(output), images, labels, label_suffix="_masks")
    assert not output.exists()


def test_tool_with_labels_next_to_the_images(tmp_path, capsys):
    # CellPose's layout: img.png and img_masks.png in one folder
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((30, 40, 3), np.uint8))
    Image.fromarray(_label_map(30, 40)).save(str(tmp_path / "img_masks.png"))
    tool = import_file("labelmap_to_coco_under_test", os.path.join(REPO, "tools", "labelmap_to_coco.py"))
    output = str(tmp_path / "ann.json")
    assert tool.main(["--images", str(tmp_path), "--labels", str(tmp_path), "--label-suffix", "_masks",
                      "--output", output, "--category", "cell"]) == 0
    assert "1 images, 3 instances (3 cell)" in capsys.readouterr().out
    with open(output) as f:
        assert [img["file_name"] for img in json.load(f)["images"]] == ["img.png"]
    assert tool.main(["--images", str(tmp_path), "--labels", str(tmp_path / "none"), "--output", output]) == 1
    assert "is not a folder" in capsys.readouterr().err
