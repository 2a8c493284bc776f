"""tools/selfcheck.py: its CPU subset passes here, and a failing check makes a FAIL row with a fix and exit 1."""
import os
import subprocess
import sys

import pytest

from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SELFCHECK = os.path.join(REPO, "tools", "selfcheck.py")


@pytest.mark.slow
def test_cpu_subset_passes_and_prints_the_table():
    result = subprocess.run([sys.executable, SELFCHECK, "--devices", "cpu"], capture_output=True, text=True,
                            timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line[:30].strip(): line[30:].split()[:2] for line in result.stdout.splitlines()
            if line[30:].split()[:1] == ["cpu"]}
    assert rows == {
        "extension": ["cpu", "PASS"],
        "prroi_pool compiled vs torch": ["cpu", "PASS"],
        "train GAN float16 autocast": ["cpu", "SKIP"],  # MixedPrecision refuses float16 on the CPU
        "train GAN bfloat16 autocast": ["cpu", "PASS"],
        "checkpoint save/resume": ["cpu", "PASS"],
        "ddp 2-process step": ["cpu", "PASS"],
    }, result.stdout
    assert "6 checks: 5 PASS, 0 FAIL, 1 SKIP" in result.stdout


def _quick_selfcheck_exit_code_and_output(monkeypatch, capsys, tmp_path):
    """selfcheck.main on the CPU with the training, checkpoint and DDP checks replaced by a stub (seconds, not
    minutes): (exit code, printed table)."""
    selfcheck = import_file("selfcheck_under_test", SELFCHECK)
    for name in ("_check_training", "check_checkpoint", "check_ddp"):
        monkeypatch.setattr(selfcheck, name, lambda *args: "skipped in this test")
    monkeypatch.setattr(selfcheck, "Workspace", lambda root: None)
    code = selfcheck.main(["--devices", "cpu", "--keep", str(tmp_path)])
    return code, capsys.readouterr().out


def test_a_failing_check_is_a_fail_row_with_what_to_do_and_exit_code_1(monkeypatch, capsys, tmp_path):
    import maskrcnn_benchmark.layers.prroi_pool as prroi_pool

    monkeypatch.setattr(prroi_pool, "compare_implementations", lambda device, dtype=None: 3e-4)
    code, out = _quick_selfcheck_exit_code_and_output(monkeypatch, capsys, tmp_path)
    assert code == 1
    assert "prroi_pool compiled vs torch   cpu     FAIL" in out
    assert "differs from the torch implementation by 0.0003" in out
    assert "-> train with MODEL.PRROI_POOL_IMPL torch" in out
    assert "0 SKIP" in out and "1 FAIL" in out
