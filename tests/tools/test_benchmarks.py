"""The benchmarks' device handling, exercised on the CPU: --device cuda, synchronised timings, the ratios printed."""
import os

import pytest
import torch

from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")


@pytest.fixture
def prroi_benchmark():
    return import_file("benchmark_prroi_pool_under_test", os.path.join(TOOLS, "benchmark_prroi_pool.py"))


def test_prroi_benchmark_synchronises_around_every_timed_run_and_prints_the_ratios(prroi_benchmark, monkeypatch,
                                                                                   capsys):
    events = []
    monkeypatch.setattr(prroi_benchmark, "synchronizer", lambda device: lambda: events.append(str(device)))
    real_time = prroi_benchmark.time_fwd_bwd

    def recording_time(fn, features, rois, repeats, synchronize):
        events.append("timing")
        return real_time(fn, features, rois, repeats, synchronize)

    monkeypatch.setattr(prroi_benchmark, "time_fwd_bwd", recording_time)
    prroi_benchmark.main(["--rois", "6", "--channels", "3", "--map", "12x16", "--sizes", "2,3", "--repeats", "2"])
    out = capsys.readouterr().out
    # five timings per size (roi_align, compiled twice, torch: warm-up + 2 repeats; reference: warm-up + 1), each
    # run between two synchronisations on the benchmark's device
    timings = "".join("T" if e == "timing" else "s" for e in events)
    assert timings.split("T")[1:] == ["s" * 6] * 4 + ["s" * 4] + ["s" * 6] * 4 + ["s" * 4]
    assert set(e for e in events if e != "timing") == {"cpu"}
    assert "MODEL.PRROI_POOL_IMPL auto -> compiled" in out
    for size in (2, 3):
        assert f"{size}x{size}: compiled/roi_align = " in out and "torch/roi_align = " in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when there is no GPU")
@pytest.mark.parametrize("tool", ["benchmark_prroi_pool.py", "benchmark_gan.py"])
def test_device_cuda_without_a_gpu_is_refused_by_name(tool, capsys):
    module = import_file("bench_under_test_" + tool[:-3], os.path.join(TOOLS, tool))
    with pytest.raises(SystemExit):
        module.main(["--device", "cuda"])
    assert "--device cuda: torch sees no CUDA GPU on this machine; use --device cpu" in capsys.readouterr().err


@pytest.fixture
def detector_benchmark():
    return import_file("benchmark_under_test", os.path.join(TOOLS, "benchmark.py"))


def test_detector_benchmark_gives_its_memory_workers_the_same_settings_and_overrides(detector_benchmark):
    # the peak-memory column comes from fresh processes: they must build the model the timed column measured
    parser = detector_benchmark.build_parser()
    args = parser.parse_args(["--warmup", "1", "--threads", "1", "--ours-like-torchvision",
                              "MODEL.RESNETS.ACTIVATION_CHECKPOINTING", "True"])
    cmd = detector_benchmark.memory_worker_command("ours", "train", args)
    assert cmd[1] == os.path.join(TOOLS, "benchmark.py")
    worker = parser.parse_args(cmd[2:])
    assert worker.worker == ["ours", "train"] and worker.warmup == 1 and worker.threads == 1
    assert worker.ours_like_torchvision and not worker.torchvision_like_ours
    assert worker.opts == ["MODEL.RESNETS.ACTIVATION_CHECKPOINTING", "True"]


def test_detector_benchmark_applies_the_overrides_to_ours_only(detector_benchmark):
    session = detector_benchmark._Session("ours", "train", "torchvision", opts=[
        "MODEL.RESNETS.ACTIVATION_CHECKPOINTING", True, "MODEL.CHANNELS_LAST", False])
    settings = session.runner.settings()
    assert settings["activation_checkpointing"] is True and settings["channels_last"] is False
    # the like-for-like settings still hold
    assert "BottleneckWithBatchNorm" in settings["backbone"] and "frozen up to stage 0" in settings["backbone"]
    assert session.runner.model.backbone.body.activation_checkpointing
