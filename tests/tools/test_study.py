"""tools/study.py: every variant trained for every seed at one schedule, the dataset generated once, the table."""
import copy
import json
import os

import numpy as np
import pytest

from maskrcnn_benchmark.data.datasets.evaluation.coco.bootstrap import load_coco_gt
from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import evaluate_predictions_on_coco
from maskrcnn_benchmark.utils import intervals, run_settings, tables, training_runs
from maskrcnn_benchmark.utils.imports import import_file

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "study.py")


def _write_run(run_dir, dataset, ap, boundary=None):
    out = os.path.join(run_dir, "inference", dataset)
    os.makedirs(out)
    results = {"bbox": {"AP": ap}, "segm": {"AP": ap - 0.05}, "max_dets": 100}
    if boundary is not None:
        results["boundary"] = {"AP": boundary}
    with open(os.path.join(out, "coco_results.json"), "w") as f:
        json.dump(results, f)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        for iteration, value in ((10, ap / 2), (20, ap)):
            f.write(json.dumps({"iteration": iteration, "eval": {dataset + "/bbox/AP": value,
                                                                 dataset + "/segm/AP": value - 0.05}}) + "\n")
    return out


def test_study_runs_every_variant_per_seed_at_one_schedule_and_reports_mean_and_std(tmp_path):
    tool = import_file("study_tool", TOOL)
    calls = []
    ap = {"baseline": 0.30, "gan_paper": 0.32, "gan_authors": 0.31, "gan_mask_pixels": 0.29, "gan_box_coords": 0.28}

    def fake_run(config_file, seed, schedule, run_dir, opts, settings, check_code):
        name = os.path.basename(run_dir).split("_seed")[0]
        assert settings == {"variant": name, "data_seed": 100, "iters": 20} and check_code
        calls.append((name, seed, tuple(schedule), tuple(opts), os.path.basename(config_file)))
        return _write_run(run_dir, "study_test", ap[name] + 0.01 * seed, boundary=ap[name] - 0.1)

    dataset_opts = tool.make_dataset(str(tmp_path / "data"), 3, 2, 64)
    assert dataset_opts[0] == "DATASETS.CUSTOM" and "study_train:" in dataset_opts[1]
    for split, count in (("train_n3_px64_seed100", 3), ("test_n2_px64_seed200", 2)):
        with open(str(tmp_path / "data" / split / "annotations.json")) as f:
            assert len(json.load(f)["images"]) == count
    summary = tool.study(str(tmp_path / "out"), list(tool.VARIANTS), [0, 1], 20, dataset_opts, test_period=10,
                         run_fn=fake_run)
    assert summary["data_seeds"] == [100, 100] and summary["differences"]["bootstrap"] is None
    assert summary["runs"]["baseline"][1].startswith(str(tmp_path / "out" / "baseline_seed1_data100_iter20"))
    assert [(c[0], c[1]) for c in calls] == [(v, s) for s in (0, 1) for v in tool.VARIANTS]
    assert len({c[2] for c in calls}) == 1  # one schedule for all
    by_name = {c[0]: c for c in calls}
    assert by_name["baseline"][4] == "synthetic_R_18_FPN.yaml"
    assert all(by_name[v][4] == "synthetic_R_18_FPN_gan.yaml" for v in tool.VARIANTS if v != "baseline")
    assert "MODEL.GAN.D_LOSS_WEIGHTED" in by_name["gan_authors"][3]
    assert by_name["gan_mask_pixels"][3][-2:] == ("MODEL.GAN.MASK_DISC.INPUT", "pixels")
    assert by_name["gan_box_coords"][3][-2:] == ("MODEL.GAN.BOX_DISC.INPUT", "coordinates")
    assert all(c[3][:6] == tuple(dataset_opts) for c in calls)
    stats = summary["variants"]
    assert stats["gan_paper"]["bbox"]["AP"]["mean"] == pytest.approx(32.5)
    assert stats["gan_paper"]["bbox"]["AP"]["std"] == pytest.approx(0.7071, abs=1e-3)
    text = tables.format_study(stats, "t")
    assert "32.5 ± 0.7" in text and "22.0 ± 0.0" in text  # box AP, Boundary AP of gan_paper
    one_seed = tables.format_study({"baseline": tables.aggregate_seeds([{"bbox": {"AP": 0.3}, "segm": {"AP": 0.2}}])},
                                   "t")
    assert "30.0" in one_seed and "±" not in one_seed.split("\n", 1)[1].replace("mean ± sample std", "")
    diff = [line for line in text.splitlines() if line.startswith("gan_paper - baseline")][0].split()
    assert diff[-3:] == ["+2.0", "+2.0", "+2.0"]
    curve = tool.baseline_curve_text(summary)
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in curve.splitlines()[1:3]}
    # baseline AP 0.30 (seed 0) and 0.31 (seed 1); half of it at iteration 10; mask AP 5 points below
    assert rows[10] == pytest.approx([15.25, 10.25], abs=0.051) and rows[20] == pytest.approx([30.5, 25.5])
    # box AP rose by 15.0 and 15.5 points from iteration 10 to 20: mean 15.25, sd 0.354, t_0.975(1) = 12.706,
    # half width 12.706 * 0.354 / sqrt(2) = 3.18
    assert "box AP change from iteration 10 to 20: +15.2 points, 95% CI [+12.1, +18.4]" in curve


def test_data_seeds_give_each_training_seed_its_own_draw_of_training_images(tmp_path):
    tool = import_file("study_tool", TOOL)
    assert tool.parse_args([]).data_seeds == {0: 100, 1: 100, 2: 100}  # one draw for all seeds, as before
    assert tool.parse_args(["--seeds", "0", "1", "--data-seeds", "100", "101"]).data_seeds == {0: 100, 1: 101}
    assert tool.parse_args(["--seeds", "0", "1", "--data-seeds", "7"]).data_seeds == {0: 7, 1: 7}
    with pytest.raises(ValueError, match="one seed per --seeds entry"):
        tool.data_seeds_per_seed([0, 1, 2], [100, 101])
    with pytest.raises(ValueError, match="200 is the test set's seed"):
        tool.data_seeds_per_seed([0, 1], [100, 200])
    data_dir = str(tmp_path / "data")
    opts = {seed: tool.make_dataset(data_dir, 3, 2, 64, data_seed) for seed, data_seed in ((0, 100), (1, 101))}
    train = {seed: os.path.join(data_dir, "train_n3_px64_seed{}".format(ds), "annotations.json")
             for seed, ds in ((0, 100), (1, 101))}
    assert train[0] in opts[0][1] and train[1] in opts[1][1]
    drawn = {}
    for seed, path in train.items():
        with open(path) as f:
            drawn[seed] = [(a["image_id"], a["bbox"]) for a in json.load(f)["annotations"]]
    assert drawn[0] != drawn[1]  # other data seed, other training images
    assert opts[0][1].split(",")[1] == opts[1][1].split(",")[1]  # one test set for all

    calls = []

    def fake_run(config_file, seed, schedule, run_dir, opts, settings, check_code):
        calls.append((os.path.basename(run_dir), settings["data_seed"], opts[1]))
        return _write_run(run_dir, "study_test", 0.3)

    tool.study(str(tmp_path / "out"), ["baseline"], [0, 1], 20, opts, run_fn=fake_run,
               data_seeds={0: 100, 1: 101})
    assert [c[:2] for c in calls] == [("baseline_seed0_data100_iter20", 100), ("baseline_seed1_data101_iter20", 101)]
    assert train[0] in calls[0][2] and train[1] in calls[1][2]


def _write_detections(run_dir, ann_file, jitter, seed):
    """A run whose boxes are the test set's, each shifted by up to `jitter` px, with random scores."""
    with open(ann_file) as f:
        gt = json.load(f)
    rng = np.random.default_rng(seed)
    dets = []
    for ann in gt["annotations"]:
        box = [float(v) for v in ann["bbox"]]
        box[0] += float(rng.uniform(-jitter, jitter))
        box[1] += float(rng.uniform(-jitter, jitter))
        dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box,
                     "score": float(rng.uniform(0.5, 1.0))})
    out = os.path.join(run_dir, "inference", "study_test")
    os.makedirs(out)
    ap = evaluate_predictions_on_coco(load_coco_gt(ann_file), copy.deepcopy(dets), os.path.join(out, "bbox.json"),
                                      "bbox").stats[0]
    with open(os.path.join(out, "coco_results.json"), "w") as f:
        json.dump({"bbox": {"AP": ap}, "max_dets": 100}, f)
    return out


def test_study_gives_each_variant_a_welch_and_a_paired_bootstrap_interval_against_the_baseline(tmp_path):
    tool = import_file("study_tool", TOOL)
    data_dir = str(tmp_path / "data")
    opts = tool.make_dataset(data_dir, 2, 8, 64)
    ann_file = tool.annotations_of_test_set(data_dir, 8, 64)
    jitter = {"baseline": 4.0, "gan_paper": 0.3, "gan_authors": 4.0}

    def fake_run(config_file, seed, schedule, run_dir, opts, settings, check_code):
        name = settings["variant"]
        # gan_authors draws the same boxes as the baseline: the same model
        return _write_detections(run_dir, ann_file, jitter[name], 10 * seed + (name == "gan_paper"))

    summary = tool.study(str(tmp_path / "out"), list(jitter), [0, 1], 20, opts, run_fn=fake_run,
                         test_ann_file=ann_file, bootstrap_samples=200, bootstrap_seed=1)
    welch, boot = summary["differences"]["welch"], summary["differences"]["bootstrap"]
    better = boot["gan_paper"]["bbox"]
    assert better["num_images"] == 8 and better["num_samples"] == 200
    assert better["diff"] == pytest.approx(welch["gan_paper"]["bbox"]["diff"])  # the same AP, computed twice
    assert better["low"] > 0
    same = boot["gan_authors"]["bbox"]
    assert same["diff"] == pytest.approx(0.0) and same["low"] == pytest.approx(0.0) == same["high"]
    text = intervals.format_differences(welch, boot, "t")
    row = [line for line in text.splitlines() if line.startswith("gan_paper - baseline") and "box AP" in line][0]
    assert "[{:+.1f}, {:+.1f}]".format(better["low"], better["high"]) in row


def test_a_stale_run_folder_stops_the_study_before_anything_trains_and_names_the_difference(tmp_path, capsys):
    tool = import_file("study_tool", TOOL)
    out = tmp_path / "out"
    argv = ["--output-dir", str(out), "--iters", "20", "--seeds", "0", "1", "--train-images", "3", "--test-images",
            "2", "--image-size", "64", "--variants", "baseline", "--bootstrap", "0"]
    old = out / "baseline_seed1_data100_iter20"  # made by the study before runs recorded their settings
    _write_run(str(old), "study_test", 0.3)
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of the 2 run folders cannot be reused; nothing was trained" in err
    assert str(old) in err and "no study_settings.json" in err
    assert not (out / "baseline_seed0_data100_iter20").exists()  # seed 0 was not trained either

    # a folder recorded by this study with another image size is refused, naming the setting and both values
    dataset = tool.make_dataset(str(out / "data"), 3, 2, 64) + tool.input_size_options(96)
    planned = str(out / "baseline_seed0_data100_iter20")
    cmd_opts, record = training_runs._run_record(
        tool.BASE_CONFIG, 0, training_runs.scaled_schedule(tool.BASE_CONFIG, 20), planned,
        dataset + ["SOLVER.TEST_PERIOD", "0"],
        {"train_images": 3, "test_images": 2, "image_size": 96, "overrides": [], "variant": "baseline",
         "data_seed": 100, "iters": 20})
    assert run_settings.prepare_run_dir(planned, record) is False
    assert tool.main(argv[:6] + argv[7:]) == 2  # seed 0 only
    err = capsys.readouterr().err
    assert "image_size: recorded 96, now 64" in err and "INPUT.MIN_SIZE_TEST: recorded 144, now 96" in err
