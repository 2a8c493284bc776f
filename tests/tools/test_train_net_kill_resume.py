"""tools/train_net.py killed with SIGKILL mid-iteration resumes to the uninterrupted run's exact parameters."""
import os
import signal
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow  # long: see docs/contributing.md, "The quick test loop"

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# GAN from iteration 2 (so iterations 1 (baseline), 2, 3, 4 (adversarial) all occur), random flips and random
# RPN / RoI sampling on: everything a resumed run must repeat.
OPTS = [
    "--skip-test", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", "0.5",
    "MODEL.GAN.ENABLED", "True", "MODEL.GAN.START_ITER", "2",
    "MODEL.GAN.BOX_DISC.CHANNELS", "8", "MODEL.GAN.MASK_DISC.CHANNELS", "8",
    "MODEL.GAN.BOX_DISC.NUM_CONVS", "3", "MODEL.GAN.MASK_DISC.NUM_CONVS", "3",
]

# Runs train_net and SIGKILLs the process inside iteration 3, right after D's update and before G's: the worst
# moment (the two networks are out of step and nothing of iteration 3 is saved).
KILLER = r"""
import os, signal, sys
from maskrcnn_benchmark.engine import adversarial
from maskrcnn_benchmark.engine.train_net import main

real = adversarial.backward_and_step
calls = []

def backward_and_step(*args, **kwargs):
    real(*args, **kwargs)
    calls.append(1)
    if len(calls) == 3:  # iteration 2: D, G; iteration 3: D
        os.kill(os.getpid(), signal.SIGKILL)

adversarial.backward_and_step = backward_and_step
main(sys.argv[1:])
"""


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _train(config_file, out_dir, extra=()):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
                             config_file] + OPTS + ["OUTPUT_DIR", out_dir] + list(extra),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_sigkill_then_resume_is_bit_identical_and_a_truncated_checkpoint_is_refused(tiny_cfg, tmp_path):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    reference_dir, killed_dir = str(tmp_path / "reference"), str(tmp_path / "killed")

    reference = _train(config_file, reference_dir)
    killed = subprocess.Popen([sys.executable, "-c", KILLER, "--config-file", config_file] + OPTS
                              + ["OUTPUT_DIR", killed_dir], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    killed.communicate(timeout=300)
    _check(reference)
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p for p in os.listdir(killed_dir) if p.endswith(".pth")) == ["model_0000002.pth"]
    with open(os.path.join(killed_dir, "last_checkpoint")) as f:
        assert f.read() == "model_0000002.pth"

    _check(_train(config_file, killed_dir))
    with open(os.path.join(killed_dir, "log.txt")) as f:
        assert "Resuming at iteration 2 of 4" in f.read()

    expected = torch.load(os.path.join(reference_dir, "model_final.pth"), weights_only=True)
    resumed = torch.load(os.path.join(killed_dir, "model_final.pth"), weights_only=True)
    assert expected["iteration"] == resumed["iteration"] == 4
    # Same seed, same data order (from the iteration), same generator states: bit-identical, not just close.
    for entry in ("model", "discriminators"):
        for name, value in expected[entry].items():
            assert torch.equal(value, resumed[entry][name]), (entry, name)
    for entry in ("optimizer", "d_optimizer"):
        for index, state in expected[entry]["state"].items():
            assert torch.equal(state["momentum_buffer"], resumed[entry]["state"][index]["momentum_buffer"])
    assert expected["scheduler"] == resumed["scheduler"] and expected["d_scheduler"] == resumed["d_scheduler"]

    # A checkpoint cut short (a disk filled up, a copy interrupted) is refused with a message naming it.
    final = os.path.join(killed_dir, "model_final.pth")
    with open(final, "r+b") as f:
        f.truncate(os.path.getsize(final) // 2)
    from maskrcnn_benchmark.engine import train_net

    with pytest.raises(RuntimeError, match=r"model_final\.pth.*truncated or corrupt"):
        train_net.main(["--config-file", config_file] + OPTS + ["OUTPUT_DIR", killed_dir, "SOLVER.MAX_ITER", "5"])
