"""Cityscapes gtFine -> COCO conversion on a tiny tree written in Cityscapes' real on-disk format."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from maskrcnn_benchmark.data.datasets.cityscapes import (
    CityscapesDataset,
    CityscapesFormatError,
    cityscapes_to_coco,
    convert_cityscapes_split,
)
from maskrcnn_benchmark.utils.imports import import_file

H, W = 64, 96
# frame -> list of (instance id, (y0, y1, x0, x1)) drawn in order over road (7) / sky (23).
FRAMES = {
    ("aachen", "000000", "000019"): [(26001, (10, 30, 5, 35)), (26002, (12, 40, 40, 70)), (24001, (35, 60, 10, 25)),
                                     (26, (50, 60, 60, 90))],  # 26: a car group without instance number (crowd)
    ("aachen", "000001", "000019"): [(25001, (5, 25, 50, 80)), (29001, (30, 50, 5, 40))],  # rider, caravan
    ("bochum", "000000", "000313"): [],  # no instances at all
}


def _instance_ids(shapes):
    ids = np.full((H, W), 7, dtype=np.uint16)
    ids[:8] = 23
    for value, (y0, y1, x0, x1) in shapes:
        ids[y0:y1, x0:x1] = value
    return ids


def write_tree(root, split="val", frames=FRAMES):
    """Write gtFine/<split>/<city>/*_gtFine_{instanceIds.png,polygons.json} and leftImg8bit/<split>/..."""
    for (city, seq, frame), shapes in frames.items():
        stem = "{}_{}_{}".format(city, seq, frame)
        gt_dir = os.path.join(root, "gtFine", split, city)
        img_dir = os.path.join(root, "leftImg8bit", split, city)
        os.makedirs(gt_dir, exist_ok=True)
        os.makedirs(img_dir, exist_ok=True)
        Image.fromarray(_instance_ids(shapes)).save(os.path.join(gt_dir, stem + "_gtFine_instanceIds.png"))
        objects = [{"label": str(v), "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}
                   for v, (y0, y1, x0, x1) in shapes]
        with open(os.path.join(gt_dir, stem + "_gtFine_polygons.json"), "w") as f:
            json.dump({"imgHeight": H, "imgWidth": W, "objects": objects}, f)
        rgb = np.random.RandomState(0).randint(0, 255, (H, W, 3)).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(img_dir, stem + "_leftImg8bit.png"))
    return root


def _drawn_masks(shapes):
    """Final visible mask of every drawn id (later shapes paint over earlier ones)."""
    ids = _instance_ids(shapes)
    return {value: ids == value for value, _ in shapes}


def test_converter_matches_drawn_instances(tmp_path):
    import pycocotools.mask as mask_util

    root = write_tree(str(tmp_path / "cityscapes"))
    out = str(tmp_path / "annotations" / "instancesonly_gtFine_val.json")
    counts = convert_cityscapes_split(root, "val", out)
    assert counts == {"images": 3, "instances": 5, "crowd": 1}
    data = json.load(open(out))
    assert [(c["id"], c["name"]) for c in data["categories"]] == [
        (24, "person"), (25, "rider"), (26, "car"), (27, "truck"), (28, "bus"), (29, "caravan"), (30, "trailer"),
        (31, "train"), (32, "motorcycle"), (33, "bicycle")]
    by_name = {img["file_name"]: img for img in data["images"]}
    checked = 0
    for (city, seq, frame), shapes in FRAMES.items():
        image = by_name["{0}/{0}_{1}_{2}_leftImg8bit.png".format(city, seq, frame)]
        assert (image["width"], image["height"]) == (W, H)
        assert image["gt_file"] == "{0}/{0}_{1}_{2}_gtFine_instanceIds.png".format(city, seq, frame)
        anns = {a["cityscapes_instance_id"]: a for a in data["annotations"] if a["image_id"] == image["id"]}
        drawn = _drawn_masks(shapes)
        assert sorted(anns) == sorted(drawn)
        for value, mask in drawn.items():
            ann = anns[value]
            decoded = mask_util.decode(ann["segmentation"]).astype(bool)
            np.testing.assert_array_equal(decoded, mask)
            assert ann["category_id"] == (value // 1000 if value >= 1000 else value)
            assert ann["iscrowd"] == (0 if value >= 1000 else 1)
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == mask.sum()
            checked += 1
    assert checked == 6


def test_polygon_format_covers_the_drawn_masks(tmp_path):
    import pycocotools.mask as mask_util

    root = write_tree(str(tmp_path / "cityscapes"))
    poly = cityscapes_to_coco(root, "val", mask_format="poly")["annotations"]
    exact = cityscapes_to_coco(root, "val", mask_format="rle")["annotations"]
    assert len(poly) == len(exact) == 6
    for p, e in zip(poly, exact):
        if p["iscrowd"]:
            assert p["segmentation"] == e["segmentation"]  # crowd regions stay exact RLE
            continue
        assert isinstance(p["segmentation"], list) and all(len(ring) >= 6 for ring in p["segmentation"])
        rle = mask_util.merge(mask_util.frPyObjects(p["segmentation"], H, W))
        # Contours run through boundary pixel centres: a 15x20 rectangle loses about half a pixel per side.
        assert mask_util.iou([rle], [e["segmentation"]], [0])[0, 0] > 0.85


def test_dataset_reads_the_converted_split(tmp_path):
    root = write_tree(str(tmp_path / "cityscapes"))
    out = str(tmp_path / "val.json")
    convert_cityscapes_split(root, "val", out)
    dataset = CityscapesDataset(out, os.path.join(root, "leftImg8bit", "val"), os.path.join(root, "gtFine", "val"),
                                remove_images_without_annotations=False)
    assert len(dataset) == 3
    image, target, _ = dataset[0]
    assert image.size == (W, H)
    # aachen_000000_000019: two cars and a person; the car group is a crowd region, never a target.
    labels = sorted(dataset.contiguous_category_id_to_json_id[int(v)] for v in target.get_field("labels"))
    assert labels == [24, 26, 26]
    assert os.path.isfile(dataset.gt_instance_file(2))
    train_like = CityscapesDataset(out, os.path.join(root, "leftImg8bit", "val"),
                                   os.path.join(root, "gtFine", "val"), remove_images_without_annotations=True)
    assert len(train_like) == 2  # bochum has no instance


def test_not_a_cityscapes_tree_names_the_expected_file(tmp_path):
    (tmp_path / "somewhere" / "images").mkdir(parents=True)
    with pytest.raises(CityscapesFormatError) as info:
        cityscapes_to_coco(str(tmp_path / "somewhere"), "val")
    message = str(info.value)
    assert os.path.join(str(tmp_path / "somewhere"), "gtFine", "val") in message
    assert "_gtFine_instanceIds.png" in message


def test_bad_ids_and_empty_files_are_reported_per_file_and_nothing_is_written(tmp_path):
    root = write_tree(str(tmp_path / "cityscapes"))
    out = str(tmp_path / "annotations" / "val.json")
    convert_cityscapes_split(root, "val", out)
    before = open(out).read()
    gt = os.path.join(root, "gtFine", "val")
    bad_ids = _instance_ids([(26001, (10, 30, 5, 35))])
    bad_ids[0, 0] = 50  # not a label id
    bad_ids[1, 1] = 7001  # road has no instances
    Image.fromarray(bad_ids).save(os.path.join(gt, "aachen", "aachen_000001_000019_gtFine_instanceIds.png"))
    open(os.path.join(gt, "bochum", "bochum_000000_000313_gtFine_instanceIds.png"), "wb").close()
    with pytest.raises(CityscapesFormatError) as info:
        convert_cityscapes_split(root, "val", out)
    message = str(info.value)
    assert "aachen_000001_000019_gtFine_instanceIds.png: has ids [50, 7001]" in message
    assert "bochum_000000_000313_gtFine_instanceIds.png: empty file" in message
    assert "aachen_000000_000019" not in message  # the good frame is not blamed
    assert open(out).read() == before  # the previous conversion is untouched
    assert os.listdir(str(tmp_path / "annotations")) == ["val.json"]  # and no temporary file is left behind


def test_an_8bit_label_image_is_rejected(tmp_path):
    root = write_tree(str(tmp_path / "cityscapes"), frames={("aachen", "000000", "000019"): []})
    path = os.path.join(root, "gtFine", "val", "aachen", "aachen_000000_000019_gtFine_instanceIds.png")
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(path)
    with pytest.raises(CityscapesFormatError, match="mode 'L'.*16-bit"):
        cityscapes_to_coco(root, "val")


def test_missing_image_and_size_mismatch_are_named(tmp_path):
    root = write_tree(str(tmp_path / "cityscapes"))
    os.remove(os.path.join(root, "leftImg8bit", "val", "bochum", "bochum_000000_000313_leftImg8bit.png"))
    poly = os.path.join(root, "gtFine", "val", "aachen", "aachen_000000_000019_gtFine_polygons.json")
    json.dump({"imgHeight": H + 1, "imgWidth": W, "objects": []}, open(poly, "w"))
    with pytest.raises(CityscapesFormatError) as info:
        cityscapes_to_coco(root, "val")
    message = str(info.value)
    assert "bochum_000000_000313_leftImg8bit.png' is missing" in message
    assert "is 96x64 but '{}' says 96x65".format(poly) in message


def test_command_line_tool(tmp_path, capsys):
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "cityscapes", "convert_cityscapes_to_coco.py")
    module = import_file("convert_cityscapes_to_coco", tool)
    root = write_tree(str(tmp_path / "cityscapes"))
    assert module.main(["--datadir", root, "--splits", "val"]) == 0
    assert os.path.isfile(os.path.join(root, "annotations", "instancesonly_gtFine_val.json"))
    assert "val: 3 images, 5 instances, 1 crowd regions" in capsys.readouterr().out
    assert module.main(["--datadir", str(tmp_path / "nothing"), "--splits", "val"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_catalog_entry_builds_a_cityscapes_dataset(tmp_path, monkeypatch):
    from maskrcnn_benchmark.config.paths_catalog import DatasetCatalog
    from maskrcnn_benchmark.data.build import build_dataset

    root = write_tree(str(tmp_path / "cityscapes"))
    convert_cityscapes_split(root, "val", os.path.join(root, "annotations", "instancesonly_gtFine_val.json"))
    monkeypatch.setattr(DatasetCatalog, "DATA_DIR", str(tmp_path))
    (dataset,) = build_dataset(["cityscapes_fine_instanceonly_seg_val"], None, DatasetCatalog, is_train=False)
    assert isinstance(dataset, CityscapesDataset)
    assert len(dataset) == 3  # the test split keeps the image without instances
    assert dataset.gt_instance_file(0) == os.path.join(
        root, "gtFine", "val", "aachen", "aachen_000000_000019_gtFine_instanceIds.png")


def test_gt_file_of_a_flattened_coco_file_is_found_in_its_city_folder(tmp_path):
    # maskrcnn-benchmark / Detectron converted files name images without their city folder and have no gt_file.
    root = write_tree(str(tmp_path / "cityscapes"))
    data = cityscapes_to_coco(root, "val")
    for image in data["images"]:
        image["file_name"] = os.path.basename(image.pop("gt_file")).replace("_gtFine_instanceIds", "_leftImg8bit")
    ann_file = str(tmp_path / "flat.json")
    json.dump(data, open(ann_file, "w"))
    gt_dir = os.path.join(root, "gtFine", "val")
    dataset = CityscapesDataset(ann_file, str(tmp_path), gt_dir)
    assert [os.path.relpath(dataset.gt_instance_file(i), gt_dir) for i in range(3)] == [
        "aachen/aachen_000000_000019_gtFine_instanceIds.png", "aachen/aachen_000001_000019_gtFine_instanceIds.png",
        "bochum/bochum_000000_000313_gtFine_instanceIds.png"]
