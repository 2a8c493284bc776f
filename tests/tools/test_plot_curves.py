"""tools/plot_curves.py: reading metrics.json and the evaluations of a run, and plotting two runs overlaid."""
import json
import os

import cv2
import pytest

from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def plot_curves():
    return import_file("plot_curves", os.path.join(REPO, "tools", "plot_curves.py"))


def _write_run(run_dir, gan):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        for iteration in (20, 40, 60, 40, 60, 80):  # resumed after 60 from the checkpoint at 20
            losses = {"loss_classifier": 1.0 / iteration, "loss_mask": 0.5}
            if gan:
                losses.update({"loss_mask_adv": 0.7, "loss_box_disc": 1.3, "loss_mask_disc": 1.2,
                               "d_box_real_prob": 0.6, "d_box_fake_prob": 0.4, "d_lr": 0.002,
                               "d_mask_bn_gamma": 1.0 + iteration / 100.0, "d_mask_real_embedding_norm": 4.0})
            f.write(json.dumps({"iteration": iteration, "losses": losses, "loss": 2.0, "lr": 0.01,
                                "time": 1.0, "data_time": 0.1}) + "\n")
            if iteration == 60:  # a periodic evaluation logged by the trainer at the same iteration
                f.write(json.dumps({"iteration": 60, "eval": {"val/segm/AP": 0.2, "val/segm/AP50": 0.5}}) + "\n")
    for subdir, ap in (("iter_0000040", 0.1), ("", 0.3)):
        folder = os.path.join(run_dir, "inference", "val", subdir)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "coco_results.json"), "w") as f:
            json.dump({"bbox": {"AP": ap}, "segm": {"AP": ap / 2}, "boundary": {"AP": ap / 4}, "max_dets": 100}, f)


def test_metrics_keep_the_latest_record_of_a_repeated_iteration_and_evaluations_apart(plot_curves, tmp_path):
    run = str(tmp_path / "run")
    _write_run(run, gan=True)
    series = plot_curves.read_metrics(run)
    assert series["loss_classifier"][0] == [20, 40, 60, 80]
    assert series["loss_classifier"][1] == pytest.approx([1 / 20, 1 / 40, 1 / 60, 1 / 80])
    assert series["d_box_fake_prob"][1] == pytest.approx([0.4] * 4)
    ap = plot_curves.read_ap(run, last_iteration=80)
    assert ap["val/segm"] == ([40, 60, 80], pytest.approx([0.05, 0.2, 0.15]))
    assert ap["val/boundary"] == ([40, 80], pytest.approx([0.025, 0.075]))


def test_two_runs_overlaid_in_one_png(plot_curves, tmp_path):
    base, gan = str(tmp_path / "base"), str(tmp_path / "gan")
    _write_run(base, gan=False)
    _write_run(gan, gan=True)
    output = str(tmp_path / "curves.png")
    plotted = plot_curves.main([base, gan, "--labels", "baseline", "GAN", "--output", output])
    image = cv2.imread(output)
    assert image is not None and image.shape == (520, 1200, 3)  # 15 x 6.5 in at 80 dpi
    assert "baseline loss_mask" in plotted["detector (G) losses"]
    assert "GAN loss_mask_adv" in plotted["detector (G) losses"]
    assert plotted["discriminator (D) losses"] == ["GAN loss_box_disc", "GAN loss_mask_disc"]
    assert plotted["D_b probability (real / fake boxes)"] == ["GAN d_box_real_prob", "GAN d_box_fake_prob"]
    assert "baseline boundary AP" in plotted["AP on the test set"]
    # D's scale relative to its first logged value (1.2 at iteration 20), the legend giving that value
    assert plotted[plot_curves.D_SCALE_PANEL] == ["GAN d_mask_bn_gamma (first 1.2)",
                                                  "GAN d_mask_real_embedding_norm (first 4)"]
    assert plotted[plot_curves.LR_PANEL] == ["baseline lr", "GAN lr", "GAN d_lr"]


def test_missing_metrics_file_is_named(plot_curves, tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        plot_curves.main([str(tmp_path), "--output", str(tmp_path / "x.png")])
