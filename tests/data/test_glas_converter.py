"""GlaS bmp tree -> COCO JSON: instances match the drawn label maps; bad trees are reported per file."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_benchmark.data.preparation.glas import GlaSInputError, convert_glas


def _draw_pair(folder, name, label_map, palette=False):
    h, w = label_map.shape
    image = np.random.RandomState(0).randint(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(os.path.join(folder, name + ".bmp"))
    anno = Image.fromarray(label_map.astype(np.uint8), mode="L")
    if palette:
        anno = anno.convert("P")
    anno.save(os.path.join(folder, name + "_anno.bmp"))


def _glas_tree(root):
    """Two train and one testA image; returns {file_name: label map}."""
    os.makedirs(root, exist_ok=True)
    maps = {}
    a = np.zeros((40, 60), np.int64)
    a[2:10, 3:20] = 1
    a[20:35, 30:55] = 2
    a[12:16, 40:44] = 2  # a gland label with two components stays one instance
    b = np.zeros((30, 50), np.int64)
    b[5:25, 5:25] = 7  # non-contiguous label ids
    c = np.zeros((32, 32), np.int64)
    c[0:32, 0:10] = 3
    c[10:20, 20:30] = 5
    for name, m in (("train_1", a), ("train_2", b), ("testA_1", c)):
        _draw_pair(root, name, m, palette=(name == "train_2"))
        maps[name + ".bmp"] = m
    with open(os.path.join(root, "Grade.csv"), "w") as f:
        f.write("name,patient ID,grade (GlaS)\ntrain_1,1,benign\n")
    return maps


def test_instances_match_drawn_masks(tmp_path):
    maps = _glas_tree(str(tmp_path / "glas"))
    summary = convert_glas(str(tmp_path / "glas"), str(tmp_path / "out"), splits=("train", "testA"))
    assert summary["train"][1:] == (2, 3) and summary["testA"][1:] == (1, 2)
    for split in ("train", "testA"):
        with open(os.path.join(str(tmp_path / "out"), split, "annotations.json")) as f:
            coco = json.load(f)
        assert coco["categories"] == [{"id": 1, "name": "gland", "supercategory": "gland"}]
        for image in coco["images"]:
            drawn = maps[image["file_name"]]
            assert (image["height"], image["width"]) == drawn.shape
            assert os.path.isfile(os.path.join(str(tmp_path / "out"), split, "images", image["file_name"]))
            anns = sorted((a for a in coco["annotations"] if a["image_id"] == image["id"]),
                          key=lambda a: a["glas_label"])
            labels = [k for k in np.unique(drawn) if k > 0]
            assert [a["glas_label"] for a in anns] == labels
            for ann, label in zip(anns, labels):
                expected = drawn == label
                decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
                np.testing.assert_array_equal(decoded, expected)
                assert ann["area"] == expected.sum()
                ys, xs = np.nonzero(expected)
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert ann["category_id"] == 1 and ann["iscrowd"] == 0
    with open(os.path.join(str(tmp_path / "out"), "train", "annotations.json")) as f:
        train = json.load(f)
    assert train["images"][0]["grade"] == {"patient ID": "1", "grade (GlaS)": "benign"}


def test_loads_as_coco_dataset(tmp_path):
    from maskrcnn_benchmark.data.datasets import COCODataset

    _glas_tree(str(tmp_path / "glas"))
    convert_glas(str(tmp_path / "glas"), str(tmp_path / "out"), splits=("train",))
    ds = COCODataset(str(tmp_path / "out" / "train" / "annotations.json"), str(tmp_path / "out" / "train" / "images"),
                     remove_images_without_annotations=True)
    image, target, _ = ds[0]
    assert image.size == (60, 40) and len(target) == 2


def test_not_a_glas_folder_names_expected_file(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "image.png").write_bytes(b"x")
    with pytest.raises(GlaSInputError, match=r"train_1\.bmp.*train_1_anno\.bmp"):
        convert_glas(str(tmp_path / "other"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_bad_files_reported_together_nothing_written(tmp_path):
    root = str(tmp_path / "glas")
    _glas_tree(root)
    _draw_pair(root, "train_3", np.zeros((20, 20), np.int64))  # no gland
    open(os.path.join(root, "train_4.bmp"), "wb").close()  # empty image
    _draw_pair(root, "train_4", np.ones((20, 20), np.int64))
    open(os.path.join(root, "train_4.bmp"), "wb").close()
    _draw_pair(root, "train_5", np.ones((20, 20), np.int64))
    Image.fromarray(np.ones((21, 20), np.uint8)).save(os.path.join(root, "train_5_anno.bmp"))  # size mismatch
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(root, "train_6.bmp"))  # no annotation
    with pytest.raises(GlaSInputError) as info:
        convert_glas(root, str(tmp_path / "out"))
    message = str(info.value)
    assert "train_3_anno.bmp: the annotation has no gland" in message
    assert "train_4.bmp: the file is empty" in message
    assert "train_5_anno.bmp: annotation is 20x21 but its image train_5.bmp is 20x20" in message
    assert "expected its annotation 'train_6_anno.bmp'" in message
    assert not (tmp_path / "out").exists() or os.listdir(str(tmp_path / "out")) == []


def test_cli_reports_bad_folder(tmp_path, capsys):
    from maskrcnn_benchmark.utils.imports import import_file

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = import_file("convert_glas_under_test", os.path.join(repo, "tools", "glas", "convert_glas_to_coco.py"))
    assert tool.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "GlaS folder" in err and str(tmp_path / "missing") in err
    _glas_tree(str(tmp_path / "glas"))
    assert tool.main([str(tmp_path / "glas"), str(tmp_path / "out"), "--splits", "testA"]) == 0
    assert "testA: 1 images, 2 glands" in capsys.readouterr().out


def test_converted_split_is_evaluated_with_glas_metrics(tmp_path):
    """Predictions equal to the ground truth give AP 1 and F1 1 / Dice 1 / Hausdorff 0 through evaluate()."""
    import torch

    from maskrcnn_benchmark.data.datasets import COCODataset
    from maskrcnn_benchmark.data.datasets.evaluation import evaluate
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    _glas_tree(str(tmp_path / "glas"))
    convert_glas(str(tmp_path / "glas"), str(tmp_path / "out"), splits=("train",))
    ds = COCODataset(str(tmp_path / "out" / "train" / "annotations.json"), str(tmp_path / "out" / "train" / "images"),
                     remove_images_without_annotations=False)
    predictions = []
    for index in range(len(ds)):
        info = ds.get_img_info(index)
        anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=ds.id_to_img_map[index]))
        masks = torch.stack([torch.from_numpy(ds.coco.annToMask(a)).float() for a in anns])[:, None]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2] - 1,
                               a["bbox"][1] + a["bbox"][3] - 1] for a in anns])
        prediction = BoxList(boxes, (info["width"], info["height"]))
        prediction.add_field("scores", torch.linspace(0.9, 0.8, len(anns)))
        prediction.add_field("labels", torch.ones(len(anns), dtype=torch.int64))
        prediction.add_field("mask", masks)
        predictions.append(prediction)
    results = evaluate(ds, predictions, str(tmp_path / "eval"), iou_types=("segm",))[0]
    assert results.results["glas"] == {"F1": 1.0, "ObjDice": 1.0, "ObjHausdorff": 0.0}
    assert results.results["segm"]["AP"] == pytest.approx(1.0)
    with open(str(tmp_path / "eval" / "glas_results.json")) as f:
        saved = json.load(f)
    assert saved["metrics"]["TP"] == 3 and [im["file_name"] for im in saved["per_image"]] == ["train_1.bmp",
                                                                                             "train_2.bmp"]
