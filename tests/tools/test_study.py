"""tools/study.py: every variant trained for every seed at one schedule, the dataset generated once, the table."""
import json
import os

import pytest

from maskrcnn_benchmark.utils import tables
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

    def fake_run(config_file, seed, schedule, run_dir, opts):
        name = os.path.basename(run_dir).split("_seed")[0]
        calls.append((name, seed, tuple(schedule), tuple(opts), os.path.basename(config_file)))
        return _write_run(run_dir, "study_test", ap[name] + 0.01 * seed, boundary=ap[name] - 0.1)

    dataset_opts = tool.make_dataset(str(tmp_path / "data"), 3, 2, 64)
    assert dataset_opts[0] == "DATASETS.CUSTOM" and "study_train:" in dataset_opts[1]
    for split, count in (("train_n3_px64_seed100", 3), ("test_n2_px64_seed200", 2)):
        with open(str(tmp_path / "data" / split / "annotations.json")) as f:
            assert len(json.load(f)["images"]) == count
    summary = tool.study(str(tmp_path / "out"), list(tool.VARIANTS), [0, 1], 20, dataset_opts, test_period=10,
                         run_fn=fake_run)
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
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in curve.splitlines()[1:]}
    # baseline AP 0.30 (seed 0) and 0.31 (seed 1); half of it at iteration 10; mask AP 5 points below
    assert rows[10] == pytest.approx([15.25, 10.25], abs=0.051) and rows[20] == pytest.approx([30.5, 25.5])
