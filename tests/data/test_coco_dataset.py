"""COCODataset: category mapping, RLE/polygon targets, skipped annotations, and errors that name the bad input."""
import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_benchmark.data.datasets import COCODataset
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask


def _write_image(path, size=(40, 30)):
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)


def _coco_file(tmp_path, images, annotations, categories=({"id": 1, "name": "a"}, {"id": 5, "name": "b"})):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return str(path)


def _ann(ann_id, image_id, bbox, seg=None, category_id=1, iscrowd=0):
    x, y, w, h = bbox
    if seg is None:
        seg = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox),
            "segmentation": seg, "iscrowd": iscrowd, "area": w * h}


@pytest.fixture
def small_coco(tmp_path):
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _write_image(str(img_dir / name))
    images = [{"id": i + 1, "file_name": n, "width": 40, "height": 30} for i, n in enumerate(("a.png", "b.png",
                                                                                            "c.png"))]
    annotations = [
        _ann(1, 1, (2, 2, 10, 8)),                                  # good polygon, category 1
        _ann(2, 1, (20, 5, 6, 6), category_id=5),                   # good polygon, category 5 -> contiguous 2
        _ann(3, 1, (5, 5, 5, 5), seg=[[5, 5, 10, 5]]),              # polygon with 2 points
        _ann(4, 1, (5, 5, 0, 5)),                                   # zero-area box
        _ann(5, 1, (5, 5, 5, 5), category_id=9),                    # category not in the file
        _ann(6, 2, (0, 0, 40, 30), iscrowd=1),                      # crowd only: no training target
    ]
    return _coco_file(tmp_path, images, annotations), str(img_dir)


def test_bad_annotations_are_skipped_counted_and_reported_once(small_coco, caplog):
    ann_file, root = small_coco
    with caplog.at_level(logging.WARNING):
        dataset = COCODataset(ann_file, root, remove_images_without_annotations=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert ann_file in warnings[0] and "3" in warnings[0]
    assert dataset.skipped_annotations == {
        "polygon with < 3 points": 1, "zero-area box": 1, "category id not in the file's categories": 1}
    image, target, idx = dataset[0]
    assert isinstance(target, BoxList) and len(target) == 2
    assert target.get_field("labels").tolist() == [1, 2]
    assert target.get_field("labels").dtype == torch.int64
    assert torch.allclose(target.bbox[0], torch.tensor([2.0, 2.0, 11.0, 9.0]))  # xywh -> xyxy with +1 convention
    assert isinstance(target.get_field("masks"), SegmentationMask)


def test_images_without_usable_annotations_removed_only_for_training(small_coco, caplog):
    ann_file, root = small_coco
    with caplog.at_level(logging.INFO):
        train = COCODataset(ann_file, root, remove_images_without_annotations=True)
    assert train.ids == [1]  # image 2 has only a crowd region, image 3 nothing
    assert any("removed 2 of 3 images" in r.getMessage() for r in caplog.records)
    test = COCODataset(ann_file, root, remove_images_without_annotations=False)
    assert test.ids == [1, 2, 3]
    _, target, _ = test[1]
    assert len(target) == 0  # crowd regions are never targets
    assert test.get_img_info(2)["file_name"] == "c.png"


def test_category_ids_map_to_contiguous_labels(synthetic_dataset_dir):
    dataset = COCODataset(os.path.join(synthetic_dataset_dir, "annotations.json"),
                          os.path.join(synthetic_dataset_dir, "images"), True)
    assert dataset.json_category_id_to_contiguous_id == {1: 1, 3: 2, 7: 3}
    assert dataset.contiguous_category_id_to_json_id == {1: 1, 2: 3, 3: 7}
    assert len(dataset) == 8 and dataset.id_to_img_map[0] == dataset.ids[0]


def test_rle_and_polygon_targets_match_the_annotation_pixels(synthetic_dataset_dir):
    from pycocotools import mask as mask_utils

    dataset = COCODataset(os.path.join(synthetic_dataset_dir, "annotations.json"),
                          os.path.join(synthetic_dataset_dir, "images"), True)
    image, target, idx = dataset[0]
    image_id = dataset.id_to_img_map[idx]
    anns = [a for a in dataset.coco.imgToAnns[image_id] if not a["iscrowd"]]
    masks = target.get_field("masks").get_mask_tensor()
    assert masks.shape == (len(anns), image.size[1], image.size[0])
    for ann, mask in zip(anns, masks):
        expected = mask_utils.decode(dataset.coco.annToRLE(ann))
        assert (mask.numpy() == expected).all()


def test_polygon_only_dataset_keeps_polygon_mode(small_coco):
    ann_file, root = small_coco
    _, target, _ = COCODataset(ann_file, root, True)[0]
    assert target.get_field("masks").mode == "poly"


def test_rle_only_image_gives_mask_mode(tmp_path):
    from pycocotools import mask as mask_utils

    _write_image(str(tmp_path / "a.png"))
    binary = np.zeros((30, 40), np.uint8)
    binary[3:9, 4:14] = 1
    rle = mask_utils.encode(np.asfortranarray(binary))
    rle["counts"] = rle["counts"].decode("ascii")
    ann_file = _coco_file(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                          [_ann(1, 1, (4, 3, 10, 6), seg=rle)])
    _, target, _ = COCODataset(ann_file, str(tmp_path), True)[0]
    assert target.get_field("masks").mode == "mask"
    assert (target.get_field("masks").get_mask_tensor().numpy() == binary).all()


@pytest.mark.parametrize("content,expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not COCO format"),
    (json.dumps({"images": [], "categories": []}), "'annotations'"),
    (json.dumps({"images": [{"id": 1}], "annotations": [], "categories": []}), "images[0] lacks the field(s) "
                                                                               "['file_name']"),
])
def test_non_coco_json_names_file_and_what_is_missing(tmp_path, content, expected):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        COCODataset(str(path), str(tmp_path), True)
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("content,expected", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": []}), "missing top-level key(s) ['categories']"),
    (json.dumps({"categories": [{"name": "cell"}]}), "categories[0] lacks the field(s) ['id']"),
])
def test_category_names_reader_shares_the_dataset_checks(tmp_path, content, expected):
    # The demo's category-name reader goes through the same COCO JSON reader as COCODataset.
    from maskrcnn_benchmark.engine.predictor import category_names_from_coco_json

    path = tmp_path / "names.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        category_names_from_coco_json(str(path))
    assert str(path) in str(info.value) and expected in str(info.value)
    path.write_text(json.dumps({"categories": [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}]}))
    assert category_names_from_coco_json(str(path)) == ["__background", "a", "b"]  # only categories needed


def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        COCODataset(str(tmp_path / "nowhere.json"), str(tmp_path), True)


def test_missing_image_names_its_path(small_coco):
    ann_file, root = small_coco
    os.remove(os.path.join(root, "a.png"))
    dataset = COCODataset(ann_file, root, True)
    with pytest.raises(FileNotFoundError, match=os.path.join(root, "a.png")):
        dataset[0]


def test_unreadable_image_names_the_file(small_coco):
    ann_file, root = small_coco
    with open(os.path.join(root, "a.png"), "w") as f:
        f.write("this is not a png")
    dataset = COCODataset(ann_file, root, True)
    with pytest.raises(OSError, match="Cannot read image file .*a.png"):
        dataset[0]


def test_box_outside_the_image_is_skipped(tmp_path):
    _write_image(str(tmp_path / "a.png"))
    ann_file = _coco_file(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                          [_ann(1, 1, (2, 2, 5, 5)), _ann(2, 1, (45, 2, 5, 5))])
    dataset = COCODataset(ann_file, str(tmp_path), True)
    assert dataset.skipped_annotations == {"box outside the image": 1}
    assert len(dataset[0][1]) == 1


@pytest.mark.parametrize("with_rle", [False, True])
def test_image_without_annotations_loads_at_test_time(tmp_path, with_rle):
    from pycocotools import mask as mask_utils

    for name in ("a.png", "b.png"):
        _write_image(str(tmp_path / name))
    seg = None
    if with_rle:
        binary = np.zeros((30, 40), np.uint8)
        binary[3:9, 4:14] = 1
        seg = mask_utils.encode(np.asfortranarray(binary))
        seg["counts"] = seg["counts"].decode("ascii")
    images = [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
              {"id": 2, "file_name": "b.png", "width": 40, "height": 30}]
    ann_file = _coco_file(tmp_path, images, [_ann(1, 1, (4, 3, 10, 6), seg=seg)])
    from maskrcnn_benchmark.data.transforms import Compose, Resize, ToTensor

    dataset = COCODataset(ann_file, str(tmp_path), False, transforms=Compose([Resize(60, 100), ToTensor()]))
    image, target, _ = dataset[1]
    assert image.shape == (3, 60, 80) and len(target) == 0 and len(target.get_field("masks")) == 0


def test_person_keypoints_become_a_target_field(tmp_path):
    _write_image(str(tmp_path / "a.png"))
    keypoints = []
    for k in range(17):
        keypoints += [5 + k, 10, 2]
    ann = _ann(1, 1, (4, 3, 30, 20))
    ann["keypoints"], ann["num_keypoints"] = keypoints, 17
    ann_file = _coco_file(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}], [ann],
                          categories=[{"id": 1, "name": "person"}])
    _, target, _ = COCODataset(ann_file, str(tmp_path), True)[0]
    kp = target.get_field("keypoints").keypoints
    assert kp.shape == (1, 17, 3) and kp[0, 3].tolist() == [8.0, 10.0, 2.0]
