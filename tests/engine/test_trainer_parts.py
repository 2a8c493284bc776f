"""The parts do_train is made of, each on its own: the non-finite guard, the metrics writer, the periodic
checkpoint and the periodic evaluation."""
import json
import logging

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.engine.trainer import (
    NonFiniteGuard,
    NonFiniteLossError,
    PeriodicCheckpoint,
    PeriodicEvaluation,
    TrainingMetrics,
)
from maskrcnn_benchmark.modeling.utils import NonFiniteTensorError
from maskrcnn_benchmark.utils.checkpoint import Checkpointer

LOGGER = logging.getLogger("test_trainer_parts")


def _checkpointer(tmp_path):
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Checkpointer(model, optimizer, None, str(tmp_path))


def _raising(error):
    def step(images, targets, iteration):
        raise error
    return step


def test_guard_skips_up_to_the_limit_then_stops_naming_the_term_the_iteration_and_the_checkpoint(tmp_path):
    arguments = {"iteration": 0}
    guard = NonFiniteGuard(2, arguments, _checkpointer(tmp_path), LOGGER)
    nan_loss = _raising(NonFiniteLossError(["loss_mask"], 4, {"loss_mask": float("nan")}))
    assert guard.run(nan_loss, None, None, 4) is None
    # a NaN found inside the forward pass counts like a NaN loss
    in_forward = _raising(NonFiniteTensorError("the RPN proposals", 3, 10))
    assert guard.run(in_forward, None, None, 5) is None
    assert arguments["skipped_nonfinite_steps"] == 2
    with pytest.raises(FloatingPointError) as info:
        guard.run(nan_loss, None, None, 6)
    message = str(info.value)
    assert "loss_mask is not finite at iteration 6" in message and "none written yet" in message
    assert "SOLVER.SKIP_NONFINITE_STEPS (now 2, 2 step(s) skipped before)" in message


def test_guard_passes_finite_values_through_and_stops_a_step_that_updated_with_a_nan(tmp_path):
    arguments = {"iteration": 0, "skipped_nonfinite_steps": 0}
    guard = NonFiniteGuard(5, arguments, _checkpointer(tmp_path), LOGGER)
    logged = {"loss_mask": torch.tensor(0.5), "d_box_real_prob": torch.tensor(float("nan"))}
    assert guard.run(lambda *args: logged, None, None, 1) is logged  # statistics are not losses
    with pytest.raises(FloatingPointError, match="loss_box_reg is not finite at iteration 2"):
        # returned (so already applied) rather than raised: cannot be skipped, whatever the limit
        guard.run(lambda *args: {"loss_box_reg": torch.tensor(float("inf"))}, None, None, 2)
    assert arguments["skipped_nonfinite_steps"] == 0


def test_metrics_log_and_write_the_objective_without_the_discriminator_losses(tmp_path, caplog):
    metrics = TrainingMetrics(str(tmp_path), max_iter=3, device=torch.device("cpu"), log_period=2, logger=LOGGER)
    values = {"loss_mask": torch.tensor(0.25), "loss_box_adv": torch.tensor(0.5),
              "loss_mask_disc": torch.tensor(-3.0), "d_lr": torch.tensor(0.002)}
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        for iteration in (1, 2, 3):
            metrics.update(values, iteration, batch_time=0.5, data_time=0.1, lr=0.01, skipped_steps=0)
        metrics.write_evaluation(3, {"val/bbox/AP": 0.5})
        metrics.write_evaluation(3, None)  # nothing to write
    metrics.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("eta: ") and "iter: 2" in lines[0] and "iter: 3" in lines[1]
    records = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert [r["iteration"] for r in records] == [2, 3, 3]
    assert records[0]["loss"] == pytest.approx(0.75)  # loss_mask + loss_box_adv; loss_mask_disc left out
    assert records[0]["losses"]["loss_mask_disc"] == -3.0 and records[0]["lr"] == 0.01
    assert records[2] == {"iteration": 3, "eval": {"val/bbox/AP": 0.5}}


def test_periodic_checkpoint_saves_on_its_period_and_keeps_the_newest(tmp_path):
    checkpointer = _checkpointer(tmp_path)
    arguments = {"iteration": 0}
    periodic = PeriodicCheckpoint(checkpointer, period=2, keep=2, max_iter=7, arguments=arguments)
    for iteration in range(1, 8):
        arguments["iteration"] = iteration
        periodic.after_iteration(iteration)
    saved = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert saved == ["model_0000004.pth", "model_0000006.pth"]
    state = torch.load(str(tmp_path / "model_0000006.pth"), weights_only=True)
    assert state["iteration"] == 6 and len(state["rng_states"]) == 1
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_KEEP must be >= 0"):
        PeriodicCheckpoint(checkpointer, 2, -1, 7, arguments)


def test_periodic_evaluation_runs_on_its_period_but_not_at_the_last_iteration(tmp_path):
    model = nn.Linear(2, 1)
    metrics = TrainingMetrics(str(tmp_path), max_iter=6, device=torch.device("cpu"))
    called = []

    def test_fn(iteration):
        model.eval()
        called.append(iteration)
        return {"val/segm/AP": iteration / 10.0}

    evaluation = PeriodicEvaluation(test_fn, period=3, max_iter=6, model=model, metrics=metrics)
    for iteration in range(1, 7):
        evaluation.after_iteration(iteration)
    metrics.close()
    assert called == [3] and model.training  # 6 is the last: the final test is the caller's
    assert [json.loads(line) for line in open(tmp_path / "metrics.json")] == [
        {"iteration": 3, "eval": {"val/segm/AP": 0.3}}]
    PeriodicEvaluation(None, 3, 6, model, metrics).after_iteration(3)  # no test_fn: nothing happens
