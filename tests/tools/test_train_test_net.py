"""End to end: tools/train_net.py trains, checkpoints and resumes on synthetic data; tools/test_net.py evaluates."""
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest
import torch

from maskrcnn_benchmark.utils.imports import import_file

pytestmark = pytest.mark.slow  # long: see docs/contributing.md, "The quick test loop"

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def train_net():
    from maskrcnn_benchmark.engine import train_net

    return train_net


def test_train_resume_then_test_net_writes_and_prints_coco_results(tiny_cfg, tmp_path, train_net):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    out = tiny_cfg.OUTPUT_DIR

    # 1) two iterations, checkpoint every iteration, no test
    train_net.main(["--config-file", str(config_file), "--skip-test",
                    "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1"])
    for name in ("model_0000001.pth", "model_final.pth", "last_checkpoint", "config.yml", "metrics.json", "log.txt"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "inference"))
    saved_cfg = open(os.path.join(out, "config.yml")).read()
    assert "MAX_ITER: 2" in saved_cfg
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == 2 and {"model", "optimizer", "scheduler"} <= set(final)

    # 2) raise MAX_ITER: resumes at iteration 2 from last_checkpoint, trains one more, then tests
    train_net.main(["--config-file", str(config_file), "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100"])
    log = open(os.path.join(out, "log.txt")).read()
    assert "Resuming at iteration 2 of 3" in log
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    assert [r["iteration"] for r in records if "losses" in r] == [2, 3]
    assert [r["iteration"] for r in records if "eval" in r] == [3]  # the evaluation after training
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["iteration"] == 3
    folder = os.path.join(out, "inference", "synthetic_fixture")
    for name in ("predictions.pth", "bbox.json", "segm.json", "coco_results.json"):
        assert os.path.exists(os.path.join(folder, name)), name
    os.remove(os.path.join(folder, "coco_results.json"))

    # 3) test_net as a user runs it, from an explicit checkpoint
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "test_net.py"), "--config-file", str(config_file),
         "--ckpt", os.path.join(out, "model_0000001.pth")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loading checkpoint from {}".format(os.path.join(out, "model_0000001.pth")) in proc.stdout
    match = re.search(r"Task: bbox\n\s*AP \|\s*AP50 \|\s*AP75 \|\s*APs \|\s*APm \|\s*APl\n([-\d. |]+)\n", proc.stdout)
    assert match, proc.stdout[-3000:]
    printed_ap = float(match.group(1).split("|")[0])
    assert "Task: segm" in proc.stdout

    results = json.load(open(os.path.join(folder, "coco_results.json")))
    assert results["max_dets"] == 100
    gt = COCO(os.path.join(tiny_cfg.DATASETS.CUSTOM[0].split(":")[1]))
    with contextlib.redirect_stdout(io.StringIO()):
        detections = json.load(open(os.path.join(folder, "bbox.json")))
        if detections:
            coco_eval = COCOeval(gt, gt.loadRes(os.path.join(folder, "bbox.json")), "bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            direct_ap = float(coco_eval.stats[0])
        else:
            direct_ap = 0.0
    assert results["bbox"]["AP"] == pytest.approx(direct_ap, abs=1e-12)
    assert printed_ap == pytest.approx(direct_ap, abs=5e-5)


def test_adversarial_training_saves_discriminators_in_the_same_checkpoint(tiny_cfg, tmp_path, train_net):
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    # START_ITER 2: the one iteration run is a baseline step (fast); the discriminators exist all the same.
    train_net.main(["--config-file", str(config_file), "--skip-test", "SOLVER.MAX_ITER", "1",
                    "MODEL.GAN.ENABLED", "True", "MODEL.GAN.START_ITER", "2"])
    path = os.path.join(tiny_cfg.OUTPUT_DIR, "model_final.pth")
    saved = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scheduler", "discriminators", "d_optimizer", "d_scheduler"} <= set(saved)
    assert saved["d_scheduler"]["last_epoch"] == 1

    # test_net's path: the detector alone loads it, the discriminator entries are left over.
    cfg = tiny_cfg.clone()
    detector = build_detection_model(cfg)
    leftover = DetectronCheckpointer(cfg, detector, save_dir=tiny_cfg.OUTPUT_DIR).load()
    assert "discriminators" in leftover
    for name, value in detector.state_dict().items():
        assert torch.equal(value, saved["model"][name]), name


@pytest.fixture
def trained_once(tiny_cfg, tmp_path, train_net):
    """(config file, checkpoint) of the tiny model trained for one iteration on the synthetic fixture."""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    train_net.main(["--config-file", str(config_file), "--skip-test", "SOLVER.MAX_ITER", "1"])
    return str(config_file), os.path.join(tiny_cfg.OUTPUT_DIR, "model_final.pth")


@pytest.fixture
def test_net():
    return import_file("test_net_under_test", os.path.join(REPO, "tools", "test_net.py"))


def test_the_checkpoint_records_the_training_categories(tiny_cfg, trained_once):
    _, checkpoint = trained_once
    saved = torch.load(checkpoint, weights_only=True)["categories"]
    ann_file = tiny_cfg.DATASETS.CUSTOM[0].split(":")[1]
    expected = sorted(json.load(open(ann_file))["categories"], key=lambda c: c["id"])
    assert saved == [{"id": c["id"], "name": c["name"]} for c in expected]


def test_test_net_refuses_a_checkpoint_whose_heads_do_not_fit(trained_once, test_net, tmp_path):
    from maskrcnn_benchmark.utils.model_serialization import CheckpointMismatchError

    config_file, checkpoint = trained_once
    with pytest.raises(CheckpointMismatchError) as e:
        test_net.main(["--config-file", config_file, "--ckpt", checkpoint, "MODEL.ROI_BOX_HEAD.NUM_CLASSES", "5",
                       "OUTPUT_DIR", str(tmp_path / "other")])
    message = str(e.value)
    assert checkpoint in message
    # the first mismatching key in sorted order, with both shapes (4 and 5 classes x 4 coordinates)
    assert "'roi_heads.box.predictor.bbox_pred.bias' has shape [16] in the checkpoint" in message
    assert "but [20] in the model" in message


def _write_test_set(tiny_cfg, tmp_path, rename):
    """A copy of the fixture's annotations whose category names are changed by ``rename`` (id -> new name or
    None to keep); returns its DATASETS.CUSTOM spec name and entry."""
    _, ann_file, img_dir = tiny_cfg.DATASETS.CUSTOM[0].split(":")
    data = json.load(open(ann_file))
    for category in data["categories"]:
        category["name"] = rename.get(category["id"], category["name"])
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(data))
    return "renamed", "renamed:{}:{}".format(path, img_dir)


def _detections_per_category(folder):
    counts = {}
    for det in json.load(open(os.path.join(folder, "bbox.json"))):
        counts[det["category_id"]] = counts.get(det["category_id"], 0) + 1
    return counts


def test_test_net_matches_other_categories_by_name(tiny_cfg, trained_once, test_net, tmp_path, caplog):
    config_file, checkpoint = trained_once
    _, ann_file, _ = tiny_cfg.DATASETS.CUSTOM[0].split(":")
    names = {c["id"]: c["name"] for c in json.load(open(ann_file))["categories"]}
    a, b, c = sorted(names)  # the fixture's category ids
    # a and b swap their names, c gets a name the model never saw
    name, spec = _write_test_set(tiny_cfg, tmp_path, {a: names[b], b: names[a], c: "hexagon"})
    common = ["--config-file", config_file, "--ckpt", checkpoint, "MODEL.ROI_HEADS.SCORE_THRESH", "0.0"]
    test_net.main(common + ["OUTPUT_DIR", str(tmp_path / "same")])
    same = _detections_per_category(os.path.join(str(tmp_path / "same"), "inference", "synthetic_fixture"))
    assert set(same) == {a, b, c}
    with caplog.at_level(logging.WARNING, logger="maskrcnn_benchmark"):
        test_net.main(common + ["OUTPUT_DIR", str(tmp_path / "renamed"), "DATASETS.CUSTOM",
                                str(tuple(tiny_cfg.DATASETS.CUSTOM) + (spec,)), "DATASETS.TEST", "('renamed',)"])
    assert "only the model has: {}".format(names[c]) in caplog.text and "only the test set has: hexagon" in caplog.text
    renamed = _detections_per_category(os.path.join(str(tmp_path / "renamed"), "inference", "renamed"))
    assert renamed == {a: same[b], b: same[a]}


def test_test_net_refuses_a_test_set_with_no_category_of_the_model(tiny_cfg, trained_once, test_net, tmp_path):
    config_file, checkpoint = trained_once
    ids = sorted(c["id"] for c in json.load(open(tiny_cfg.DATASETS.CUSTOM[0].split(":")[1]))["categories"])
    name, spec = _write_test_set(tiny_cfg, tmp_path, dict(zip(ids, ["person", "car", "bicycle"])))
    with pytest.raises(ValueError) as e:
        test_net.main(["--config-file", config_file, "--ckpt", checkpoint, "OUTPUT_DIR", str(tmp_path / "o"),
                       "DATASETS.CUSTOM", str(tuple(tiny_cfg.DATASETS.CUSTOM) + (spec,)),
                       "DATASETS.TEST", "('renamed',)"])
    message = str(e.value)
    assert "'renamed'" in message and "person" in message and "bicycle" in message
