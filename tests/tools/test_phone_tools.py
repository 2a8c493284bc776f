"""Phone data tools: grouped split keeps every model in val; offline augmentation writes N changed images with
the source's annotations."""
import json
import os

import cv2
import numpy as np
import pytest

from maskrcnn_benchmark.data.preparation.phone import augment_coco_dataset, make_group_key, split_by_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _images(counts):
    images, next_id = [], 1
    for model, count in counts.items():
        for k in range(count):
            images.append({"id": next_id, "file_name": "{}_{:04d}.jpg".format(model, k), "model": model,
                           "width": 8, "height": 8})
            next_id += 1
    return images


def test_every_group_has_an_image_outside_training():
    counts = {"iphone_6": 30, "galaxy_s7": 25, "pixel_2": 2, "nokia_3310": 1, "moto_g": 42}
    images = _images(counts)
    key = make_group_key(pattern=r"^(.+)_\d+\.jpg$")
    train, val = split_by_group(images, key, val_fraction=0.1, seed=3)
    assert sorted(train + val) == [im["id"] for im in images] and not set(train) & set(val)
    by_id = {im["id"]: im for im in images}
    val_models = {by_id[i]["model"] for i in val}
    train_models = {by_id[i]["model"] for i in train}
    assert val_models == set(counts)
    assert train_models == set(counts) - {"nokia_3310"}  # models with >= 2 images are also trained on
    assert len(val) == round(0.1 * len(images))
    # same split from the image-level field
    assert split_by_group(images, make_group_key(field="model"), 0.1, seed=3) == (train, val)


def test_group_key_errors_name_the_image():
    with pytest.raises(KeyError, match="iphone_0000.jpg.*no field 'phone_model'"):
        make_group_key(field="phone_model")({"id": 1, "file_name": "iphone_0000.jpg"})
    with pytest.raises(KeyError, match="'x.png'.*regex"):
        make_group_key(pattern=r"^(\w+)_\d+")({"id": 2, "file_name": "x.png"})


def _tiny_coco(root, num_images=3):
    os.makedirs(os.path.join(root, "images"))
    rng = np.random.RandomState(0)
    images, anns = [], []
    for i in range(1, num_images + 1):
        name = "phone_{}.png".format(i)
        cv2.imwrite(os.path.join(root, "images", name), rng.randint(0, 256, (24, 32, 3)).astype(np.uint8))
        images.append({"id": i, "file_name": name, "width": 32, "height": 24})
        for k in range(i):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1 + k % 11, "bbox": [k, k, 5, 6],
                         "area": 30.0, "iscrowd": 0, "segmentation": [[k, k, k + 5, k, k + 5, k + 6]]})
    cats = [{"id": c, "name": "part{}".format(c)} for c in range(1, 12)]
    path = os.path.join(root, "train.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return path


def _strip(ann):
    return {k: v for k, v in ann.items() if k not in ("id", "image_id")}


def test_augmentation_writes_n_changed_images_with_identical_annotations(tmp_path):
    ann_file = _tiny_coco(str(tmp_path / "src"))
    out = str(tmp_path / "aug")
    augment_coco_dataset(ann_file, str(tmp_path / "src" / "images"), out, num_images=10, seed=1)
    with open(ann_file) as f:
        src = json.load(f)
    with open(os.path.join(out, "annotations.json")) as f:
        aug = json.load(f)
    assert len(aug["images"]) == 10 and len(os.listdir(os.path.join(out, "images"))) == 10
    assert aug["categories"] == src["categories"]
    assert len({im["id"] for im in aug["images"]}) == 10 and len({a["id"] for a in aug["annotations"]}) == len(
        aug["annotations"])
    src_by_name = {im["file_name"]: im for im in src["images"]}
    augmented = [im for im in aug["images"] if "aug_source" in im]
    assert len(augmented) == 7
    for image in aug["images"]:
        source = src_by_name[image.get("aug_source", image["file_name"])]
        got = [_strip(a) for a in aug["annotations"] if a["image_id"] == image["id"]]
        want = [_strip(a) for a in src["annotations"] if a["image_id"] == source["id"]]
        assert got == want
        pixels = cv2.imread(os.path.join(out, "images", image["file_name"]))
        original = cv2.imread(os.path.join(str(tmp_path / "src" / "images"), source["file_name"]))
        assert pixels.shape == original.shape
        if "aug_source" in image:
            assert not np.array_equal(pixels, original)
        else:
            assert np.array_equal(pixels, original)
    with pytest.raises(FileExistsError, match="aug"):
        augment_coco_dataset(ann_file, str(tmp_path / "src" / "images"), out, num_images=10)


def test_split_cli(tmp_path, capsys):
    from maskrcnn_benchmark.utils.imports import import_file

    tool = import_file("split_dataset_under_test", os.path.join(REPO, "tools", "phone", "split_dataset.py"))
    images = _images({"a": 5, "b": 6})
    path = str(tmp_path / "all.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": [], "categories": []}, f)
    assert tool.main([path, str(tmp_path / "out"), "--group-field", "model"]) == 0
    assert "val: 2 images covering 2 groups" in capsys.readouterr().out
    assert tool.main([path, str(tmp_path / "bad"), "--group-regex", r"^zzz_(\d+)"]) == 1
    assert "does not match the grouping regex" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with open(tmp_path / "out" / "val.json") as f:
        val = json.load(f)
    assert {im["model"] for im in val["images"]} == {"a", "b"}


def test_augmentation_missing_image_named_and_nothing_written(tmp_path):
    ann_file = _tiny_coco(str(tmp_path / "src"))
    os.remove(str(tmp_path / "src" / "images" / "phone_2.png"))
    with pytest.raises(FileNotFoundError, match="phone_2.png"):
        augment_coco_dataset(ann_file, str(tmp_path / "src" / "images"), str(tmp_path / "aug"), num_images=6)
    assert not (tmp_path / "aug").exists()
    assert [n for n in os.listdir(str(tmp_path)) if n.startswith(".aug")] == []


@pytest.mark.parametrize("content, expected", [("images: [1, 2]\n", "is not valid JSON"),
                                               ('{"images": []}', "missing top-level key(s)")])
def test_split_cli_on_a_file_that_is_not_coco_json_names_it(tmp_path, capsys, content, expected):
    from maskrcnn_benchmark.utils.imports import import_file

    tool = import_file("split_dataset_under_test", os.path.join(REPO, "tools", "phone", "split_dataset.py"))
    path = tmp_path / "all.yaml"
    path.write_text(content)
    assert tool.main([str(path), str(tmp_path / "out"), "--group-field", "model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'{}'".format(path) in err and expected in err
    assert not (tmp_path / "out").exists()
