"""predict_files on a tiny folder: nested folders, an unreadable file skipped and counted, label maps, COCO JSON.

The fake model reads object ids from the pixels (value = id) and returns one detection per id with its exact
mask, so every written value can be checked against the images.
"""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from maskrcnn_benchmark.data.image_io import to_display_bgr
from maskrcnn_benchmark.engine.predict_files import list_image_files, predict_files
from maskrcnn_benchmark.engine.predictor import DetectionVisualizer
from maskrcnn_benchmark.structures.bounding_box import BoxList


class FakeDemo(DetectionVisualizer):
    """COCODemo's interface: map_high_bit_depth, predict_raw(image as data.image_io.read_image returns it) ->
    BoxList with pasted masks; category_records; display_image; draw. An object is a grey level."""

    def __init__(self):
        super().__init__(["__background", "blob"])
        self.category_records = [{"id": 7, "name": "blob"}]

    def map_high_bit_depth(self, image):
        return image

    def display_image(self, image):
        return to_display_bgr(image)

    def predict_raw(self, image, mapped=False):
        assert mapped  # predict maps the whole image itself
        ids = np.asarray(image)[:, :, 0].astype(np.int64)
        height, width = ids.shape
        objects = [int(v) for v in np.unique(ids) if v]
        boxes, masks = [], []
        for obj in objects:
            rows, cols = np.flatnonzero((ids == obj).any(1)), np.flatnonzero((ids == obj).any(0))
            boxes.append([cols[0], rows[0], cols[-1], rows[-1]])
            masks.append(torch.from_numpy((ids == obj).astype(np.uint8))[None])
        result = BoxList(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), (width, height))
        result.add_field("scores", torch.tensor([obj / 10.0 for obj in objects], dtype=torch.float32))
        result.add_field("labels", torch.ones(len(objects), dtype=torch.int64))
        result.add_field("mask", torch.stack(masks) if masks else torch.zeros(0, 1, height, width, dtype=torch.uint8))
        return result


def _image(objects, size=(40, 50)):
    image = np.zeros(size + (3,), np.uint8)
    for obj, (y0, x0, y1, x1) in objects.items():
        image[y0:y1, x0:x1] = obj
    return image


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), _image({3: (2, 2, 10, 10), 6: (8, 8, 20, 20), 9: (30, 30, 35, 45)}))
    cv2.imwrite(str(root / "sub" / "b.png"), _image({2: (0, 0, 5, 5)}))
    cv2.imwrite(str(root / "sub" / "deeper" / "c.tif"), _image({}))
    (root / "sub" / "broken.jpg").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not listed")
    return root


def test_folder_is_searched_recursively_and_sorted(folder):
    assert [rel for _, rel in list_image_files(str(folder))] == ["a.png", "sub/b.png", "sub/broken.jpg",
                                                                "sub/deeper/c.tif"]


def test_predict_folder_writes_coco_json_and_label_maps(folder, tmp_path, capsys):
    out = tmp_path / "out"
    summary = predict_files(FakeDemo(), str(folder), str(out), confidence=0.25, overlays=True, progress=False)
    assert summary["unreadable"] == [str(folder / "sub" / "broken.jpg")]
    assert "broken.jpg" in capsys.readouterr().err
    assert summary["images"] == 3
    assert summary["detections"] == 3  # a.png's objects 3, 6, 9 score 0.3, 0.6, 0.9; b.png's 0.2 is below 0.25

    coco = COCO(str(out / "predictions.json"))
    files = {img["file_name"]: img for img in coco.dataset["images"]}
    assert sorted(files) == ["a.png", "sub/b.png", "sub/deeper/c.tif"]
    assert (files["a.png"]["width"], files["a.png"]["height"]) == (50, 40)
    assert coco.dataset["categories"][0]["id"] == 7 and coco.dataset["categories"][0]["name"] == "blob"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=files["a.png"]["id"]))
    assert [a["score"] for a in anns] == pytest.approx([0.9, 0.6, 0.3])
    assert all(a["category_id"] == 7 and a["iscrowd"] == 0 and isinstance(a["segmentation"]["counts"], str)
               for a in anns)
    image = cv2.imread(str(folder / "a.png"))[:, :, 0]
    for a, obj in zip(anns, (9, 6, 3)):
        np.testing.assert_array_equal(coco.annToMask(a), image == obj)
        assert a["area"] == int((image == obj).sum())
        rows, cols = np.flatnonzero((image == obj).any(1)), np.flatnonzero((image == obj).any(0))
        assert a["bbox"] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
    # loads as results too, against itself as ground truth
    results = coco.loadRes(json.loads((out / "predictions.json").read_text())["annotations"])
    assert len(results.getAnnIds()) == 3

    labels = cv2.imread(str(out / "instances" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == (40, 50)
    # label i = i-th detection (score order); where 3 and 6 overlap the higher score (6, label 2) is on top
    expected = np.zeros_like(labels)
    for label, obj in ((3, 3), (2, 6), (1, 9)):
        expected[image == obj] = label
    np.testing.assert_array_equal(labels, expected)
    assert labels[9, 9] == 2
    empty = cv2.imread(str(out / "instances" / "sub" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert empty.dtype == np.uint16 and not empty.any()
    assert os.path.isfile(out / "instances" / "sub" / "deeper" / "c.png")
    assert cv2.imread(str(out / "overlays" / "a.png")).shape == (40, 50, 3)
    assert not [name for _, _, names in os.walk(out) for name in names if name.startswith(".")]  # no temp files


def test_tiled_prediction_of_a_folder_equals_whole_images_for_small_objects(folder, tmp_path):
    whole, tiled = tmp_path / "whole", tmp_path / "tiled"
    predict_files(FakeDemo(), str(folder), str(whole), confidence=0.0, progress=False)
    predict_files(FakeDemo(), str(folder), str(tiled), tile=24, overlap=16, confidence=0.0, progress=False)
    for name in ("a.png", "sub/b.png"):
        np.testing.assert_array_equal(cv2.imread(str(whole / "instances" / name), cv2.IMREAD_UNCHANGED),
                                      cv2.imread(str(tiled / "instances" / name), cv2.IMREAD_UNCHANGED))
    assert json.loads((whole / "predictions.json").read_text())["annotations"] == \
        json.loads((tiled / "predictions.json").read_text())["annotations"]


def test_two_images_writing_one_label_map_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "x.png"), _image({}))
    cv2.imwrite(str(tmp_path / "x.tif"), _image({}))
    with pytest.raises(ValueError, match="x.png.*x.tif|x.tif.*x.png"):
        list_image_files(str(tmp_path))


def test_bad_tile_options_are_refused_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="--tile-overlap"):
        predict_files(FakeDemo(), str(folder), str(tmp_path / "out"), tile=64, overlap=64, progress=False)
    assert not (tmp_path / "out").exists()


def test_polygons_instead_of_rle_rasterise_close_to_the_masks(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    image = np.zeros((60, 70, 3), np.uint8)
    cv2.circle(image, (30, 28), 15, (4, 4, 4), -1)
    image[50:52, 60:61] = 8  # 2 pixels: too small for a contour, written as its outline box
    cv2.imwrite(str(root / "disc.png"), image)
    predict_files(FakeDemo(), str(root), str(tmp_path / "out"), confidence=0.0, polygons=True, progress=False)
    coco = COCO(str(tmp_path / "out" / "predictions.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert all(isinstance(a["segmentation"], list) and a["segmentation"] for a in anns)
    for a, obj in zip(anns, (8, 4)):
        exact = image[:, :, 0] == obj
        raster = coco.annToMask(a).astype(bool)
        assert (raster & exact).sum() / (raster | exact).sum() > (0.85 if obj == 4 else 0.3)


def test_overlays_drawn_from_mask_windows_equal_the_demo_drawing_of_full_masks(folder):
    from maskrcnn_benchmark.data.image_io import read_image
    from maskrcnn_benchmark.engine.predict_files import _boxlist
    from maskrcnn_benchmark.engine.tiling import detections_from_boxlist, to_tensor_masks

    demo = FakeDemo()
    image = demo.display_image(read_image(str(folder / "a.png")))
    detections = detections_from_boxlist(demo.predict_raw(image, mapped=True)).sorted_by_score()
    full = _boxlist(detections, 40, 50)
    full.add_field("mask", to_tensor_masks(detections, 40, 50))
    np.testing.assert_array_equal(demo.draw(image, _boxlist(detections, 40, 50), mask_windows=detections.masks),
                                  demo.draw(image, full))


def test_overlays_of_crowded_images_leave_out_the_text(tmp_path, monkeypatch):
    from maskrcnn_benchmark.engine import predict_files as module

    root = tmp_path / "images"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), _image({3: (2, 2, 10, 10), 6: (8, 8, 20, 20)}))
    drawn = []
    monkeypatch.setattr(FakeDemo, "overlay_class_names", lambda self, image, p: drawn.append(len(p)) or image)
    predict_files(FakeDemo(), str(root), str(tmp_path / "few"), confidence=0.0, overlays=True, progress=False)
    assert drawn == [2]
    monkeypatch.setattr(module, "OVERLAY_TEXT_MAX_DETECTIONS", 1)
    predict_files(FakeDemo(), str(root), str(tmp_path / "many"), confidence=0.0, overlays=True, progress=False)
    assert drawn == [2]  # not called again


def test_tiles_of_a_16_bit_image_are_cut_from_the_whole_image_mapped_once(tmp_path):
    """INPUT.HIGH_BIT_DEPTH "percentiles" stretches by the whole image's percentiles: every tile the model sees is
    a crop of the whole image mapped once, in 16-bit precision, not a tile stretched by its own range."""
    from maskrcnn_benchmark.data.image_io import map_high_bit_depth
    from maskrcnn_benchmark.engine.tiling import crop

    root = tmp_path / "images"
    root.mkdir()
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 3 + 1000)  # 12-bit-like values, 1000..13285
    cv2.imwrite(str(root / "slide.png"), np.dstack([ramp] * 3))
    seen = []

    class RecordingDemo(FakeDemo):
        def map_high_bit_depth(self, image):
            return map_high_bit_depth(image, "percentiles", (0.0, 100.0))

        def predict_raw(self, image, mapped=False):
            assert mapped
            seen.append(image)
            height, width = image.shape[-2:]
            empty = BoxList(torch.zeros(0, 4), (width, height))
            empty.add_field("scores", torch.zeros(0))
            empty.add_field("labels", torch.zeros(0, dtype=torch.int64))
            empty.add_field("mask", torch.zeros(0, 1, height, width, dtype=torch.uint8))
            return empty

    predict_files(RecordingDemo(), str(root), str(tmp_path / "out"), tile=32, overlap=8, progress=False)
    from maskrcnn_benchmark.data.image_io import read_image

    whole = map_high_bit_depth(read_image(str(root / "slide.png")), "percentiles", (0.0, 100.0))
    assert len(seen) == 9 and all(isinstance(part, torch.Tensor) for part in seen)
    origins = [(x0, y0) for y0 in (0, 24, 32) for x0 in (0, 24, 32)]
    for part, (x0, y0) in zip(seen, origins):
        torch.testing.assert_close(part, crop(whole, x0, y0, x0 + 32, y0 + 32), rtol=0, atol=0)
    assert float(seen[0].min()) == 0.0 and float(seen[-1].max()) == 1.0
    assert float(seen[-1].min()) > 0.5  # the last tile is not stretched to its own range
