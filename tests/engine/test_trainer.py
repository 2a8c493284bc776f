"""do_train on a tiny fake detector: logging, checkpoints, resume, pluggable step, periodic evaluation."""
import json
import logging

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.engine.trainer import do_train
from maskrcnn_benchmark.utils.checkpoint import Checkpointer


class _Batch:
    """Stands in for ImageList / BoxList: only .to(device) is used by the loop."""

    def __init__(self, tensor):
        self.tensor = tensor

    def to(self, device):
        return _Batch(self.tensor.to(device))


class _FakeLoader:
    """Deterministic batches keyed by iteration, resumable like IterationBasedBatchSampler."""

    def __init__(self, max_iter, start_iter=0):
        self.max_iter = max_iter
        self.start_iter = start_iter

    def __len__(self):
        return self.max_iter

    def __iter__(self):
        for i in range(self.start_iter, self.max_iter):
            g = torch.Generator().manual_seed(i)
            images = _Batch(torch.rand(2, 3, generator=g))
            targets = [_Batch(torch.rand(2, generator=g)), _Batch(torch.rand(2, generator=g))]
            yield images, targets, (2 * i, 2 * i + 1)


class _FakeDetector(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, images, targets):
        out = self.linear(images.tensor)
        target = torch.stack([t.tensor for t in targets])
        return {"loss_classifier": ((out - target) ** 2).mean(), "loss_box_reg": out.abs().mean() * 0.1}


def _setup(tmp_path, max_iter, start_iter=0):
    model = _FakeDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[8], gamma=0.1)
    checkpointer = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    return model, optimizer, scheduler, checkpointer


def test_logs_every_20_iterations_and_the_last_and_checkpoints(tmp_path, caplog):
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 25)
    arguments = {"iteration": 0}
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark.trainer"):
        do_train(model, _FakeLoader(25), optimizer, scheduler, checkpointer, torch.device("cpu"), 10, arguments,
                 output_dir=str(tmp_path))
    assert arguments["iteration"] == 25
    log_lines = [r.getMessage() for r in caplog.records if "iter:" in r.getMessage()]
    assert [line.split("iter: ")[1].split()[0] for line in log_lines] == ["20", "25"]
    for name in ("loss_classifier", "loss_box_reg", "lr:", "time:", "data:", "eta:", "max mem:"):
        assert name in log_lines[0]
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [20, 25]
    assert set(records[0]["losses"]) == {"loss_classifier", "loss_box_reg"}
    assert records[0]["lr"] == pytest.approx(0.01)
    assert all(r["time"] > 0 for r in records)
    for name in ("model_0000010.pth", "model_0000020.pth", "model_final.pth"):
        assert (tmp_path / name).exists()
    assert checkpointer.get_checkpoint_file().endswith("model_final.pth")
    assert torch.load(str(tmp_path / "model_final.pth"), weights_only=True)["iteration"] == 25


def test_resume_continues_at_the_saved_iteration_and_matches_uninterrupted_run(tmp_path):
    reference, opt, sched, ckpt = _setup(tmp_path / "ref", 15)
    do_train(reference, _FakeLoader(15), opt, sched, ckpt, torch.device("cpu"), 10, {"iteration": 0})

    model, optimizer, scheduler, checkpointer = _setup(tmp_path / "run", 15)
    baseline_step_calls = []

    def crashing_step(images, targets, iteration):
        if iteration == 13:
            raise KeyboardInterrupt("power cut")
        loss_dict = model(images, targets)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        return loss_dict

    with pytest.raises(KeyboardInterrupt):
        do_train(model, _FakeLoader(15), optimizer, scheduler, checkpointer, torch.device("cpu"), 10,
                 {"iteration": 0}, train_step=crashing_step)

    model, optimizer, scheduler, checkpointer = _setup(tmp_path / "run", 15)
    arguments = {"iteration": 0}
    arguments.update(checkpointer.load())
    assert arguments["iteration"] == 10

    def recording_step(images, targets, iteration):
        baseline_step_calls.append(iteration)
        loss_dict = model(images, targets)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        return loss_dict

    do_train(model, _FakeLoader(15, start_iter=arguments["iteration"]), optimizer, scheduler, checkpointer,
             torch.device("cpu"), 10, arguments, train_step=recording_step)
    assert baseline_step_calls == [11, 12, 13, 14, 15]
    assert scheduler.last_epoch == 15
    for a, b in zip(reference.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_custom_step_and_periodic_evaluation_plug_in(tmp_path):
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 6)
    evaluated = []

    def adversarial_like_step(images, targets, iteration):
        loss_dict = model(images, targets)
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        optimizer.step()
        loss_dict["loss_box_disc"] = torch.tensor(0.5)
        return loss_dict

    def test_fn(iteration):
        model.eval()
        evaluated.append(iteration)

    meters = do_train(model, _FakeLoader(6), optimizer, scheduler, checkpointer, torch.device("cpu"), 0,
                      {"iteration": 0}, train_step=adversarial_like_step, test_period=2, test_fn=test_fn,
                      output_dir=str(tmp_path), log_period=3)
    assert evaluated == [2, 4]  # the final evaluation is the caller's job (train_net tests after training)
    assert model.training
    assert meters.loss_box_disc.global_avg == pytest.approx(0.5)
    # The logged total is the detector's objective: the discriminator's loss is not part of it.
    assert meters.loss.global_avg == pytest.approx(meters.loss_classifier.global_avg + meters.loss_box_reg.global_avg)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [3, 6]
    assert records[-1]["losses"]["loss_box_disc"] == pytest.approx(0.5)
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_final.pth"]


def test_non_finite_loss_stops_with_its_name(tmp_path):
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 3)

    def nan_step(images, targets, iteration):
        return {"loss_mask": torch.tensor(float("nan"))}

    with pytest.raises(FloatingPointError, match="loss_mask"):
        do_train(model, _FakeLoader(3), optimizer, scheduler, checkpointer, torch.device("cpu"), 0,
                 {"iteration": 0}, train_step=nan_step)


def test_tensorboard_scalars_written_when_available(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class RecordingWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=RecordingWriter))
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 2)
    do_train(model, _FakeLoader(2), optimizer, scheduler, checkpointer, torch.device("cpu"), 0, {"iteration": 0},
             output_dir=str(tmp_path), log_period=1)
    assert calls[0] == ("init", str(tmp_path / "tensorboard"))
    assert ("train/loss_classifier", 1) in calls and ("train/lr", 2) in calls and calls[-1] == ("close",)


def test_checkpoint_keep_prunes_old_periodic_checkpoints_only_after_a_successful_save(tmp_path, monkeypatch):
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 6)
    do_train(model, _FakeLoader(6), optimizer, scheduler, checkpointer, torch.device("cpu"), 2, {"iteration": 0},
             checkpoint_keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000004.pth", "model_0000006.pth",
                                                                "model_final.pth"]
    # a save that fails deletes nothing
    resumed = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    resumed.tag_last_checkpoint(str(tmp_path / "model_0000004.pth"))

    def failing_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="OUTPUT_DIR"):
        do_train(model, _FakeLoader(8, start_iter=4), optimizer, scheduler, resumed, torch.device("cpu"), 2,
                 {"iteration": 4}, checkpoint_keep=1)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000004.pth", "model_0000006.pth",
                                                                "model_final.pth"]
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_KEEP must be >= 0"):
        do_train(model, _FakeLoader(8), optimizer, scheduler, resumed, torch.device("cpu"), 2, {"iteration": 0},
                 checkpoint_keep=-1)


def test_thread_count_is_saved_and_a_resume_with_another_count_warns(tmp_path, caplog):
    threads = torch.get_num_threads()
    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 4)
    do_train(model, _FakeLoader(2), optimizer, scheduler, checkpointer, torch.device("cpu"), 2, {"iteration": 0})
    assert torch.load(str(tmp_path / "model_0000002.pth"), weights_only=True)["num_threads"] == threads

    model, optimizer, scheduler, checkpointer = _setup(tmp_path, 4)
    arguments = {"iteration": 0}
    arguments.update(checkpointer.load())
    torch.set_num_threads(threads + 1)
    try:
        with caplog.at_level(logging.WARNING):
            do_train(model, _FakeLoader(4, start_iter=2), optimizer, scheduler, checkpointer, torch.device("cpu"),
                     2, arguments)
    finally:
        torch.set_num_threads(threads)
    assert "The checkpoint was written with {} CPU threads and this run uses {}".format(threads, threads + 1) \
        in caplog.text and "OMP_NUM_THREADS={}".format(threads) in caplog.text
    assert torch.load(str(tmp_path / "model_final.pth"), weights_only=True)["num_threads"] == threads + 1
