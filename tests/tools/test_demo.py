"""tools/demo.py: overlays of one checkpoint, side-by-side panels of two (+ ground truth), ground-truth browsing."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def demo_tool():
    return import_file("demo_tool", os.path.join(REPO, "tools", "demo.py"))


@pytest.fixture
def setup(tiny_cfg, tmp_path, synthetic_dataset_dir):
    """Config file, two random checkpoints and a folder of two 128x128 synthetic images."""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = str(tmp_path / "model_{}.pth".format(seed))
        torch.save({"model": build_detection_model(tiny_cfg).state_dict()}, path)
        checkpoints.append(path)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000.png", "000001.png"):
        shutil.copy(os.path.join(synthetic_dataset_dir, "images", name), images / name)
    ann_file = os.path.join(synthetic_dataset_dir, "annotations.json")
    return str(config_file), checkpoints, str(images), ann_file


def _common(config_file):
    return ["--config-file", config_file, "--confidence-threshold", "0.0", "--min-image-size", "128"]


def test_one_checkpoint_writes_one_overlay_per_image(demo_tool, setup, tmp_path):
    config_file, checkpoints, images, _ = setup
    out = str(tmp_path / "single")
    written = demo_tool.main(_common(config_file) + ["--ckpt", checkpoints[0], "--input", images, "--output-dir", out])
    assert sorted(os.path.basename(p) for p in written) == ["000000.png", "000001.png"]
    overlay = cv2.imread(written[0])
    original = cv2.imread(os.path.join(images, "000000.png"))
    assert overlay.shape == original.shape == (128, 128, 3)
    assert (overlay != original).any()


@pytest.mark.parametrize("with_gt, scale", [(False, 1.0), (True, 2.0)])
def test_two_checkpoints_give_side_by_side_panels(demo_tool, setup, tmp_path, with_gt, scale):
    config_file, checkpoints, images, ann_file = setup
    args = _common(config_file) + ["--ckpt", checkpoints[0], "--ckpt-2", checkpoints[1], "--scale", str(scale),
                                   "--input", os.path.join(images, "000001.png"), "--output-dir", str(tmp_path)]
    if with_gt:
        args += ["--ann-file", ann_file]
    (written,) = demo_tool.main(args)
    panel = cv2.imread(written)
    panels = 3 if with_gt else 2
    side = int(128 * scale)
    assert panel.shape == (side, panels * side, 3)
    left, right = panel[:, :side], panel[:, side:2 * side]
    assert not np.array_equal(left, right)  # two different models


def test_show_gt_draws_the_annotations_of_every_image(demo_tool, synthetic_dataset_dir, tmp_path):
    ann_file = os.path.join(synthetic_dataset_dir, "annotations.json")
    image_dir = os.path.join(synthetic_dataset_dir, "images")
    written = demo_tool.main(["--show-gt", "--ann-file", ann_file, "--image-dir", image_dir, "--output-dir",
                              str(tmp_path), "--limit", "3"])
    assert len(written) == 3
    gt = demo_tool.GroundTruth(ann_file)
    info = gt.image_info(written[0])
    target = gt.boxlist(info)
    drawn = cv2.imread(written[0])
    original = cv2.imread(os.path.join(image_dir, info["file_name"]))
    assert drawn.shape == original.shape
    inside = target.get_field("mask").sum(dim=(0, 1)).numpy() > 0
    # Every annotated pixel is tinted by its mask colour (the title strip in the corner aside).
    changed = (drawn != original).any(axis=2)
    assert changed[inside].mean() > 0.9


def test_show_gt_reports_an_image_whose_size_disagrees_with_the_json(demo_tool, synthetic_dataset_dir, tmp_path):
    image_dir = tmp_path / "images"
    shutil.copytree(os.path.join(synthetic_dataset_dir, "images"), image_dir)
    cv2.imwrite(str(image_dir / "000000.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="000000.png"):
        demo_tool.main(["--show-gt", "--ann-file", os.path.join(synthetic_dataset_dir, "annotations.json"),
                        "--image-dir", str(image_dir), "--output-dir", str(tmp_path / "out"), "--limit", "1"])


def test_show_gt_from_a_dataset_name(demo_tool, synthetic_dataset_dir, tmp_path):
    # A DATASETS.CUSTOM entry (given as a config option) resolves like a catalog name.
    spec = "gt_check:{}:{}".format(os.path.join(synthetic_dataset_dir, "annotations.json"),
                                   os.path.join(synthetic_dataset_dir, "images"))
    written = demo_tool.main(["--show-gt", "--dataset", "gt_check", "--output-dir", str(tmp_path), "--limit", "1",
                              "DATASETS.CUSTOM", "('{}',)".format(spec)])
    assert len(written) == 1 and cv2.imread(written[0]).shape == (128, 128, 3)


def test_scale_sets_the_panel_size_only_not_the_predictions(demo_tool, setup, tmp_path, monkeypatch):
    from maskrcnn_benchmark.engine.predictor import COCODemo

    config_file, checkpoints, images, _ = setup
    recorded = []
    real = COCODemo.select_top_predictions

    def recording(self, predictions):
        top = real(self, predictions)
        recorded.append(top)
        return top

    monkeypatch.setattr(COCODemo, "select_top_predictions", recording)
    image = os.path.join(images, "000001.png")
    for scale in ("1", "1.25"):
        demo_tool.main(_common(config_file) + ["--ckpt", checkpoints[0], "--input", image, "--scale", scale,
                                               "--output-dir", str(tmp_path / scale)])
    plain, scaled = recorded
    assert len(plain) > 0
    assert scaled.size == (160, 160)
    assert torch.equal(plain.get_field("scores"), scaled.get_field("scores"))
    assert torch.equal(plain.get_field("labels"), scaled.get_field("labels"))
    torch.testing.assert_close(scaled.bbox, plain.bbox * 1.25)
    assert tuple(scaled.get_field("mask").shape[-2:]) == (160, 160)


def test_an_unreadable_image_is_reported_and_the_others_are_still_drawn(demo_tool, setup, tmp_path, capsys):
    config_file, checkpoints, images, _ = setup
    broken = os.path.join(images, "000000_broken.png")
    with open(broken, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        demo_tool.main(_common(config_file) + ["--ckpt", checkpoints[0], "--input", images, "--output-dir", str(out)])
    assert str(info.value) == "could not read 1 image(s): {}".format(broken)
    assert sorted(os.listdir(str(out))) == ["000000.png", "000001.png"]
    assert "skipped: Cannot read image file '{}'".format(broken) in capsys.readouterr().err


def test_show_gt_draws_a_16bit_image_as_the_model_sees_it(demo_tool, tmp_path):
    from PIL import Image

    from maskrcnn_benchmark.data.preparation.labelmaps import convert_label_maps

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    grey = np.tile(np.arange(40, dtype=np.uint16) * 100, (30, 1))  # 12-bit-like data, 0 .. 3900
    Image.fromarray(grey).save(str(images / "cells.png"))
    label_map = np.zeros((30, 40), np.uint8)
    label_map[5:15, 5:15] = 1
    Image.fromarray(label_map).save(str(labels / "cells.png"))
    ann_file = str(tmp_path / "ann.json")
    convert_label_maps(ann_file, str(images), str(labels))
    common = ["--show-gt", "--ann-file", ann_file, "--image-dir", str(images), "--no-text"]
    full = cv2.imread(demo_tool.main(common + ["--output-dir", str(tmp_path / "full")])[0])
    stretched = cv2.imread(demo_tool.main(common + ["--output-dir", str(tmp_path / "stretch"),
                                                    "INPUT.HIGH_BIT_DEPTH", "percentiles"])[0])
    # value / 65535 * 255 for full_range (at most 15), min-max to 0..255 for percentiles; never clipped at 255
    assert full.shape == stretched.shape == (30, 40, 3)
    assert full[25, 39, 0] == round(3900 / 65535 * 255) and stretched[25, 39, 0] == 255
    assert stretched[25, 20, 0] == round(2000 / 3900 * 255)
