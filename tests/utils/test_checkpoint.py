"""Checkpointer: round trip of all training state, atomic saves, safe and explicit loading."""
import os

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.utils.checkpoint import Checkpointer, DetectronCheckpointer


def _make_state(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(2, 3, 6, 6))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.1)
    disc = nn.Linear(3, 1)
    disc_optimizer = torch.optim.Adam(disc.parameters(), lr=1e-3)
    return model, optimizer, scheduler, disc, disc_optimizer


def _train_steps(model, optimizer, scheduler, disc, disc_optimizer, steps):
    for _ in range(steps):
        loss = model(torch.rand(2, 3, 6, 6)).sum() + disc(torch.rand(5, 3)).sum()
        optimizer.zero_grad()
        disc_optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        disc_optimizer.step()
        scheduler.step()


def test_round_trip_restores_model_optimizer_scheduler_and_extra(tmp_path):
    model, optimizer, scheduler, disc, disc_opt = _make_state(0)
    _train_steps(model, optimizer, scheduler, disc, disc_opt, 3)
    saver = Checkpointer(model, optimizer, scheduler, str(tmp_path),
                         extra={"discriminator": disc, "disc_optimizer": disc_opt})
    saver.save("model_0000003", iteration=3)

    model2, optimizer2, scheduler2, disc2, disc_opt2 = _make_state(1)
    loader = Checkpointer(model2, optimizer2, scheduler2, str(tmp_path),
                          extra={"discriminator": disc2, "disc_optimizer": disc_opt2})
    extra = loader.load()
    assert extra == {"iteration": 3}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(disc.state_dict().values(), disc2.state_dict().values()):
        assert torch.equal(a, b)
    assert scheduler2.last_epoch == 3
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(0.01)
    assert torch.equal(optimizer.state_dict()["state"][0]["momentum_buffer"],
                       optimizer2.state_dict()["state"][0]["momentum_buffer"])
    assert disc_opt2.state_dict()["state"][0]["exp_avg"].equal(disc_opt.state_dict()["state"][0]["exp_avg"])
    # Both copies continue identically: the state really is complete.
    torch.manual_seed(5)
    _train_steps(model, optimizer, scheduler, disc, disc_opt, 2)
    torch.manual_seed(5)
    _train_steps(model2, optimizer2, scheduler2, disc2, disc_opt2, 2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.allclose(a, b)


def test_last_checkpoint_points_to_newest_and_no_checkpoint_means_scratch(tmp_path):
    model, optimizer, scheduler, *_ = _make_state(0)
    ckpt = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    assert ckpt.load() == {}
    ckpt.save("model_0000001", iteration=1)
    ckpt.save("model_0000002", iteration=2)
    assert ckpt.get_checkpoint_file() == os.path.join(str(tmp_path), "model_0000002.pth")
    assert Checkpointer(model, optimizer, scheduler, str(tmp_path)).load()["iteration"] == 2


def test_crash_during_save_keeps_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    model, optimizer, scheduler, *_ = _make_state(0)
    ckpt = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    ckpt.save("model_0000002", iteration=2)
    before = (tmp_path / "model_0000002.pth").read_bytes()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04partial")  # half-written file, then the process "dies"
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000002", iteration=99)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000003", iteration=3)
    monkeypatch.setattr(torch, "save", real_save)

    assert (tmp_path / "model_0000002.pth").read_bytes() == before
    assert not (tmp_path / "model_0000003.pth").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert ckpt.get_checkpoint_file().endswith("model_0000002.pth")
    assert Checkpointer(model, optimizer, scheduler, str(tmp_path)).load()["iteration"] == 2


def test_truncated_file_error_names_the_file(tmp_path):
    model, *_ = _make_state(0)
    ckpt = Checkpointer(model, save_dir=str(tmp_path))
    path = ckpt.save("model_final", iteration=7)
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="truncated") as info:
        Checkpointer(model).load(str(truncated), use_latest=False)
    assert str(truncated) in str(info.value)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        Checkpointer(model).load(str(tmp_path / "nothere.pth"), use_latest=False)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model, *_ = _make_state(0)
    evil = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "payload": _RunsCodeWhenUnpickled(str(marker))}, str(evil))
    with pytest.raises(RuntimeError, match="Refusing") as info:
        Checkpointer(model).load(str(evil), use_latest=False)
    assert str(evil) in str(info.value)
    assert not marker.exists()


def test_strips_module_prefix_and_loads_from_file_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    model, *_ = _make_state(0)
    wrapped = {"module." + k: v for k, v in model.state_dict().items()}
    src = tmp_path / "weights" / "my_model.pth"
    src.parent.mkdir()
    torch.save({"model": wrapped}, str(src))

    from yacs.config import CfgNode

    model2, *_ = _make_state(1)
    DetectronCheckpointer(CfgNode(), model2).load("file://" + str(src), use_latest=False)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    cached = list((tmp_path / "torch_home").rglob("my_model.pth"))
    assert len(cached) == 1 and "maskrcnn_benchmark" in str(cached[0])


def test_detector_alone_loads_from_an_adversarial_checkpoint(tmp_path):
    """test_net builds only the detector: the discriminator entries of a GAN checkpoint are ignored."""
    from yacs.config import CfgNode

    model, optimizer, scheduler, disc, disc_opt = _make_state(0)
    Checkpointer(model, optimizer, scheduler, str(tmp_path),
                 extra={"discriminators": disc, "d_optimizer": disc_opt}).save("model_final", iteration=5)
    detector, *_ = _make_state(1)
    leftover = DetectronCheckpointer(CfgNode(), detector, save_dir=str(tmp_path)).load()
    for a, b in zip(model.state_dict().values(), detector.state_dict().values()):
        assert torch.equal(a, b)
    assert leftover["iteration"] == 5 and "discriminators" in leftover


def _space_error_checks(message, tmp_path, needed_at_least, free):
    assert "OUTPUT_DIR '{}'".format(tmp_path) in message and "model_0000003.pth" in message
    needed = int(message.split("needs about ")[1].split(" bytes")[0])
    assert needed >= needed_at_least
    assert "and {} bytes".format(free) in message


def test_save_refuses_when_free_space_is_below_the_last_checkpoint_size(tmp_path, monkeypatch):
    import collections

    from maskrcnn_benchmark.utils import checkpoint as checkpoint_module

    model, optimizer, scheduler, *_ = _make_state(0)
    ckpt = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    ckpt.save("model_0000002", iteration=2)
    before = (tmp_path / "model_0000002.pth").read_bytes()
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    with pytest.raises(checkpoint_module.CheckpointSpaceError) as info:
        ckpt.save("model_0000003", iteration=3)
    _space_error_checks(str(info.value), tmp_path, len(before), 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000002.pth"]
    assert (tmp_path / "model_0000002.pth").read_bytes() == before


def test_disk_filling_up_during_the_write_gives_the_space_message_and_keeps_the_last_checkpoint(tmp_path,
                                                                                                 monkeypatch):
    from maskrcnn_benchmark.utils import checkpoint as checkpoint_module

    model, optimizer, scheduler, *_ = _make_state(0)
    ckpt = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    ckpt.save("model_0000002", iteration=2)
    real_save = torch.save

    def save_to_full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04partial")
        real_save(obj, "/dev/full")  # the RuntimeError torch raises when the disk is full

    monkeypatch.setattr(torch, "save", save_to_full_disk)
    with pytest.raises(checkpoint_module.CheckpointSpaceError) as info:
        ckpt.save("model_0000003", iteration=3)
    free = int(str(info.value).split(" bytes (")[1].split("and ")[-1])
    _space_error_checks(str(info.value), tmp_path, 1, free)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000002.pth"]
    monkeypatch.setattr(torch, "save", real_save)
    assert Checkpointer(model, optimizer, scheduler, str(tmp_path)).load()["iteration"] == 2


def test_prune_keeps_the_newest_periodic_checkpoints_and_model_final(tmp_path):
    model, optimizer, scheduler, *_ = _make_state(0)
    ckpt = Checkpointer(model, optimizer, scheduler, str(tmp_path))
    for iteration in (1, 2, 3, 10):
        ckpt.save("model_{:07d}".format(iteration), iteration=iteration)
        ckpt.prune_periodic_checkpoints(2)
    ckpt.save("model_final", iteration=10)
    ckpt.prune_periodic_checkpoints(2)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000003.pth", "model_0000010.pth",
                                                                "model_final.pth"]
    assert ckpt.prune_periodic_checkpoints(0) == []
