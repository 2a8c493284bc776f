"""SOLVER.BEST_CHECKPOINT_METRIC keeps model_best.pth; SOLVER.EARLY_STOP_PATIENCE stops training; both survive a
resume. The evaluation is a scripted metric sequence, so the tests are fast and exact."""
import json
import logging

import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.engine.best_checkpoint import check_best_checkpoint_config, higher_is_better
from maskrcnn_benchmark.engine.trainer import do_train, resume_arguments
from maskrcnn_benchmark.utils.checkpoint import Checkpointer

from .test_trainer import _FakeLoader, _setup


class _ScriptedEvaluation:
    """test_fn returning the next value of ``values`` as "val/segm/AP"; records the weights it evaluated."""

    def __init__(self, model, values, start=0):
        self.model, self.values, self.calls, self.weights = model, list(values), start, {}

    def __call__(self, iteration):
        value = self.values[self.calls]
        self.calls += 1
        self.weights[iteration] = self.model.linear.weight.detach().clone()
        return {"val/segm/AP": value, "val/bbox/AP": 0.5}


def _train(tmp_path, max_iter, evaluation_values, patience=0, keep=0, checkpoint_period=2, arguments=None,
           start=0, metric="segm/AP", train_step=None):
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, max_iter)
    arguments = arguments if arguments is not None else {"iteration": 0}
    if arguments["iteration"] > 0:
        arguments = resume_arguments(checkpointer.resume()[1])
    evaluation = _ScriptedEvaluation(model, evaluation_values, start)
    do_train(model, _FakeLoader(max_iter, arguments["iteration"]), optimizer, scheduler, checkpointer,
             torch.device("cpu"), checkpoint_period, arguments, test_period=2, test_fn=evaluation,
             output_dir=str(tmp_path), checkpoint_keep=keep, best_checkpoint_metric=metric,
             early_stop_patience=patience, train_step=train_step)
    return model, arguments, evaluation


def test_model_best_holds_the_best_evaluation_and_survives_checkpoint_keep_1(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark.trainer"):
        _, arguments, evaluation = _train(tmp_path, 12, [0.1, 0.3, 0.2, 0.25, 0.1], keep=1)
    assert arguments["iteration"] == 12
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000012.pth", "model_best.pth",
                                                              "model_final.pth"]
    best = torch.load(str(tmp_path / "model_best.pth"), weights_only=True)
    assert best["iteration"] == 4 and best["best_checkpoint"]["value"] == 0.3
    assert torch.equal(best["model"]["linear.weight"], evaluation.weights[4])
    assert Checkpointer(None, save_dir=str(tmp_path)).get_checkpoint_file().endswith("model_final.pth")
    records = [json.loads(line)["best"] for line in open(tmp_path / "metrics.json") if '"best"' in line]
    assert [(r["value"], r["best"], r["best_iteration"], r["improved"]) for r in records] == [
        (0.1, 0.1, 2, True), (0.3, 0.3, 4, True), (0.2, 0.3, 4, False), (0.25, 0.3, 4, False), (0.1, 0.3, 4, False)]
    assert all(r["metric"] == "val/segm/AP" and r["higher_is_better"] for r in records)
    assert "New best val/segm/AP 0.3000 at iteration 4 (higher is better; previous best 0.1000 at iteration 2)" \
        in caplog.text


def test_early_stopping_stops_and_still_writes_model_final(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark.trainer"):
        _, arguments, evaluation = _train(tmp_path, 20, [0.1, 0.3, 0.2, 0.25, 0.9], patience=2)
    assert arguments["iteration"] == 8 and evaluation.calls == 4
    final = torch.load(str(tmp_path / "model_final.pth"), weights_only=True)
    assert final["iteration"] == 8 and final["best_checkpoint"]["stopped_early"]
    assert "Stopping early at iteration 8: val/segm/AP did not improve for 2 evaluations (SOLVER.EARLY_STOP_" \
           "PATIENCE 2); the best is 0.3000 at iteration 4" in caplog.text

    # a rerun of the stopped run does not train on
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark.trainer"):
        _, arguments, evaluation = _train(tmp_path, 20, [], patience=2, arguments={"iteration": 8})
    assert arguments["iteration"] == 8 and evaluation.calls == 0
    assert "This run stopped early at iteration 8" in caplog.text


def test_a_resumed_run_keeps_the_best_so_far(tmp_path):
    values = [0.1, 0.3, 0.2, 0.25]

    def step_killed_at_7(images, targets, iteration):
        if iteration == 7:
            raise KeyboardInterrupt("power cut")
        return {"loss_classifier": torch.tensor(1.0)}

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, 10, values, train_step=step_killed_at_7)
    # resumed from model_0000006.pth, which holds the best so far (0.3 at 4): 0.25 at 8 does not replace it
    _, arguments, _ = _train(tmp_path, 10, values, arguments={"iteration": 6}, start=3)
    best = torch.load(str(tmp_path / "model_best.pth"), weights_only=True)
    assert best["iteration"] == 4 and arguments["best_checkpoint"]["value"] == 0.3
    assert arguments["best_checkpoint"]["evaluations_without_improvement"] == 2


def test_a_best_written_after_the_resumed_checkpoint_is_not_overwritten_by_a_worse_one(tmp_path):
    def step_killed_at_7(images, targets, iteration):
        if iteration == 7:
            raise KeyboardInterrupt("power cut")
        return {"loss_classifier": torch.tensor(1.0)}

    # checkpoints every 4 iterations: model_best.pth of iteration 6 (0.5) is newer than model_0000004.pth
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, 8, [0.1, 0.3, 0.5], checkpoint_period=4, train_step=step_killed_at_7)
    # the repeated evaluation of iteration 6 gives less (e.g. non-deterministic GPU kernels)
    _train(tmp_path, 8, [0.1, 0.3, 0.45, 0.4], checkpoint_period=4, arguments={"iteration": 4}, start=2)
    best = torch.load(str(tmp_path / "model_best.pth"), weights_only=True)
    assert best["iteration"] == 6 and best["best_checkpoint"]["value"] == 0.5


def test_a_metric_the_evaluation_does_not_produce_is_refused_with_the_names(tmp_path):
    with pytest.raises(ValueError, match=r"SOLVER.BEST_CHECKPOINT_METRIC 'segm/AP60' is not a metric the "
                                         r"evaluation produces; it produced: val/bbox/AP, val/segm/AP"):
        _train(tmp_path, 4, [0.1, 0.2], metric="segm/AP60")


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.BEST_CHECKPOINT_METRIC", "AP"], r"'AP' is not '<iou type>/<metric>'.*bbox/AP or segm/AP"),
    (["SOLVER.BEST_CHECKPOINT_METRIC", "keypoints/AP"], r"evaluates \['bbox', 'segm', 'boundary'\], not 'keypoints'"),
    (["SOLVER.BEST_CHECKPOINT_METRIC", "other/segm/AP"], r"test set 'other', which is not in DATASETS.TEST"),
    (["SOLVER.BEST_CHECKPOINT_METRIC", "segm/AP", "SOLVER.TEST_PERIOD", 0], r"needs SOLVER.TEST_PERIOD > 0"),
    (["SOLVER.EARLY_STOP_PATIENCE", 3], r"EARLY_STOP_PATIENCE 3 needs SOLVER.BEST_CHECKPOINT_METRIC"),
    (["SOLVER.EARLY_STOP_PATIENCE", -1], r"EARLY_STOP_PATIENCE must be >= 0"),
    (["DATASETS.TEST", ("a", "b"), "SOLVER.BEST_CHECKPOINT_METRIC", "segm/AP"],
     r"ambiguous with 2 test sets.*'a/segm/AP'"),
])
def test_config_refusals_name_the_key(opts, message):
    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.MASK_ON", True, "SOLVER.TEST_PERIOD", 100, "DATASETS.TEST", ("val",)] + opts)
    with pytest.raises(ValueError, match=message):
        check_best_checkpoint_config(cfg)


def test_accepted_names_and_direction():
    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.MASK_ON", True, "SOLVER.TEST_PERIOD", 100, "DATASETS.TEST", ("val",),
                         "SOLVER.EARLY_STOP_PATIENCE", 2])
    for metric in ("segm/AP", "val/bbox/AP50"):
        cfg.SOLVER.BEST_CHECKPOINT_METRIC = metric
        check_best_checkpoint_config(cfg)
    assert higher_is_better("val/segm/AP") and higher_is_better("bbox/AR@100")
    assert not higher_is_better("val/loss")


def test_a_run_with_evaluations_killed_and_resumed_repeats_the_uninterrupted_one_exactly(tmp_path):
    """The evaluation draws from the generator (as creating the test loader's iterator does) and the step too: the
    checkpoint of an evaluated iteration must hold the states after that evaluation."""

    def run(folder, kill_at=None, resume=False):
        model, optimizer, scheduler, checkpointer = _setup(folder, 10)
        arguments = resume_arguments(checkpointer.resume()[1]) if resume else {"iteration": 0}

        def noisy_step(images, targets, iteration):
            if iteration == kill_at:
                raise KeyboardInterrupt("power cut")
            loss_dict = model(images, targets)
            optimizer.zero_grad()
            (sum(loss_dict.values()) * (1 + torch.rand(()))).backward()
            optimizer.step()
            return loss_dict

        def drawing_evaluation(iteration):
            return {"val/segm/AP": float(torch.rand(()))}

        torch.manual_seed(0)
        do_train(model, _FakeLoader(10, arguments["iteration"]), optimizer, scheduler, checkpointer,
                 torch.device("cpu"), 3, arguments, train_step=noisy_step, test_period=3, test_fn=drawing_evaluation,
                 best_checkpoint_metric="segm/AP")
        return model

    reference = run(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", kill_at=8)
    resumed = run(tmp_path / "killed", resume=True)  # from model_0000006.pth, evaluated at 6 before it was saved
    assert torch.equal(reference.linear.weight, resumed.linear.weight)
    assert torch.load(str(tmp_path / "reference" / "model_best.pth"), weights_only=True)["best_checkpoint"] == \
        torch.load(str(tmp_path / "killed" / "model_best.pth"), weights_only=True)["best_checkpoint"]
