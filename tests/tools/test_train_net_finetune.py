"""MODEL.WEIGHT initialises a new run (weights only, the full new schedule); OUTPUT_DIR/last_checkpoint resumes."""
import json
import os

import pytest
import torch

pytestmark = pytest.mark.slow  # long: see README, "Development"

GAN = ["MODEL.GAN.ENABLED", "True", "MODEL.GAN.START_ITER", "2", "MODEL.GAN.BOX_DISC.CHANNELS", "8",
       "MODEL.GAN.MASK_DISC.CHANNELS", "8", "MODEL.GAN.BOX_DISC.NUM_CONVS", "3", "MODEL.GAN.MASK_DISC.NUM_CONVS", "3"]


@pytest.fixture
def train_net(monkeypatch):
    """tools/train_net.py whose do_train records the weights each run starts from in ``train_net.started``."""
    from maskrcnn_benchmark.engine import train_net as module

    monkeypatch.setattr(module, "started", [], raising=False)
    real_do_train = module.do_train

    def recording_do_train(model, *args, **kwargs):
        step = kwargs["train_step"]
        module.started.append({
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "discriminators": {k: v.clone() for k, v in step.discriminators.state_dict().items()}
            if hasattr(step, "discriminators") else None,
            "iteration": args[6]["iteration"]})
        return real_do_train(model, *args, **kwargs)

    monkeypatch.setattr(module, "do_train", recording_do_train)
    return module


def _other_categories_dataset(tiny_cfg, tmp_path, add_ring=True):
    """The synthetic fixture with "blob" renamed "star" and (``add_ring``) one more category "ring", never
    annotated."""
    name, ann_file, image_dir = tiny_cfg.DATASETS.CUSTOM[0].split(":")
    with open(ann_file) as f:
        data = json.load(f)
    for category in data["categories"]:
        if category["name"] == "blob":
            category["name"] = "star"
    if add_ring:
        data["categories"].append({"id": 9, "name": "ring", "supercategory": "shape"})
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    return ["DATASETS.CUSTOM", ("other:{}:{}".format(other, image_dir),), "DATASETS.TRAIN", ("other",),
            "DATASETS.TEST", ("other",), "MODEL.ROI_BOX_HEAD.NUM_CLASSES", str(len(data["categories"]) + 1)]


def _final(out):
    return torch.load(os.path.join(out, "model_final.pth"), weights_only=True)


def _log(out):
    with open(os.path.join(out, "log.txt")) as f:
        return f.read()


def test_finetuning_from_another_runs_checkpoint_trains_the_full_new_schedule(tiny_cfg, tmp_path, train_net):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", first])
    source = os.path.join(first, "model_final.pth")
    saved = _final(first)

    # same categories: everything that fits is taken, class layers included; never the iteration or optimizer
    train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", second,
                    "MODEL.WEIGHT", source])
    start = train_net.started[-1]
    assert start["iteration"] == 0
    for name, value in saved["model"].items():
        assert torch.equal(start["model"][name], value), name
    final = _final(second)
    assert final["iteration"] == 3 and final["scheduler"]["last_epoch"] == 3
    records = [json.loads(line) for line in open(os.path.join(second, "metrics.json"))]
    assert [r["iteration"] for r in records if "losses" in r] == [3]
    log = _log(second)
    assert "Initialising from {} (MODEL.WEIGHT): weights only, training starts at iteration 0 of 3".format(source) \
        in log
    assert "Class-specific layers kept (roi_heads.box.predictor.bbox_pred, roi_heads.box.predictor.cls_score, " \
           "roi_heads.mask.predictor.mask_fcn_logits): checkpoint categories ['disc', 'square', 'blob'] are the " \
           "training set's" in log
    assert "Resuming" not in log

    # a rerun in the same OUTPUT_DIR resumes from its own last_checkpoint, not from MODEL.WEIGHT
    train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", second,
                    "MODEL.WEIGHT", source])
    assert train_net.started[-1]["iteration"] == 3
    assert "Resuming at iteration 3 of 4 from {} (OUTPUT_DIR/last_checkpoint)".format(
        os.path.join(second, "model_final.pth")) in _log(second)

    # ... and only with its own categories
    with pytest.raises(ValueError, match=r"holds a run trained on categories \['disc', 'square', 'blob'\].*"
                                         r"has \['disc', 'square', 'star'\].*choose a new OUTPUT_DIR"):
        train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "5", "OUTPUT_DIR", second]
                       + _other_categories_dataset(tiny_cfg, tmp_path, add_ring=False))


def test_gan_checkpoint_of_other_categories_initialises_g_and_d_and_reinitialises_class_layers(
        tiny_cfg, tmp_path, train_net):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", first] + GAN)
    saved = _final(first)
    source = os.path.join(first, "model_final.pth")

    train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", second,
                    "MODEL.WEIGHT", source] + GAN + _other_categories_dataset(tiny_cfg, tmp_path))
    start = train_net.started[-1]
    class_layers = ("predictor.cls_score", "predictor.bbox_pred", "mask_fcn_logits")
    for name, value in saved["model"].items():
        if any(layer in name for layer in class_layers):
            assert start["model"][name].shape != value.shape, name  # 5 classes now: left at initialisation
        else:
            assert torch.equal(start["model"][name], value), name
    for name, value in saved["discriminators"].items():
        assert torch.equal(start["discriminators"][name], value), name
    final = _final(second)
    assert final["iteration"] == 2 and final["scheduler"]["last_epoch"] == 2
    assert final["d_scheduler"]["last_epoch"] == 2  # D's schedule is this run's, not continued from the file
    assert [c["name"] for c in final["categories"]] == ["disc", "square", "star", "ring"]
    log = _log(second)
    assert "Class-specific layers re-initialised (roi_heads.box.predictor.bbox_pred, roi_heads.box.predictor." \
           "cls_score, roi_heads.mask.predictor.mask_fcn_logits): checkpoint categories ['disc', 'square', " \
           "'blob'] vs training set ['disc', 'square', 'star', 'ring']: ['star', 'ring'] not in the checkpoint" in log
    assert "Initialising discriminators from {} where the weights fit".format(source) in log


def test_best_checkpoint_and_early_stopping_through_train_net(tiny_cfg, tmp_path, train_net, monkeypatch):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    values = iter([0.1, 0.3, 0.2, 0.2, 0.25])
    # the scripted evaluation below replaces inference
    monkeypatch.setattr(train_net, "run_test", lambda *args, **kwargs: [None])
    monkeypatch.setattr(train_net, "evaluation_metrics",
                        lambda results, names: {"synthetic_fixture/segm/AP": next(values)})
    out = tiny_cfg.OUTPUT_DIR
    train_net.main(["--config-file", config_file, "SOLVER.MAX_ITER", "6", "SOLVER.TEST_PERIOD", "1",
                    "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.CHECKPOINT_KEEP", "1",
                    "SOLVER.BEST_CHECKPOINT_METRIC", "segm/AP", "SOLVER.EARLY_STOP_PATIENCE", "2"])
    assert sorted(p for p in os.listdir(out) if p.endswith(".pth")) == ["model_0000004.pth", "model_best.pth",
                                                                        "model_final.pth"]
    assert torch.load(os.path.join(out, "model_best.pth"), weights_only=True)["iteration"] == 2
    assert _final(out)["iteration"] == 4
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    assert [(r["iteration"], r["eval"]["synthetic_fixture/segm/AP"]) for r in records if "eval" in r] == [
        (1, 0.1), (2, 0.3), (3, 0.2), (4, 0.2), (4, 0.25)]  # the last: the final evaluation, after the stop
    assert [(r["iteration"], r["best"]["best"]) for r in records if "best" in r] == [(1, 0.1), (2, 0.3), (3, 0.3),
                                                                                      (4, 0.3)]
    assert "Stopping early at iteration 4" in _log(out)
