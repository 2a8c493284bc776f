"""engine/defaults.py: the command line and start-up shared by tools/train_net.py and tools/test_net.py."""
import logging
import os

import pytest

from maskrcnn_benchmark.engine.defaults import default_argument_parser, default_setup, stalled_processes_reported
from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool(name):
    """The module holding tools/<name>.py's parse_args (train_net's body lives in engine/train_net.py)."""
    if name == "train_net":
        from maskrcnn_benchmark.engine import train_net

        return train_net
    return import_file(name + "_under_test", os.path.join(REPO, "tools", name + ".py"))


@pytest.mark.parametrize("tool, extra, expected", [("train_net", ["--skip-test"], {"skip_test": True}),
                                                   ("test_net", ["--ckpt", "m.pth"], {"ckpt": "m.pth"})])
def test_both_tools_take_the_shared_options_and_their_own(tool, extra, expected):
    args = _tool(tool).parse_args(["--config-file", "c.yaml", "--local-rank", "3"] + extra
                                  + ["SOLVER.MAX_ITER", "5"])
    assert (args.config_file, args.local_rank, args.opts) == ("c.yaml", 3, ["SOLVER.MAX_ITER", "5"])
    assert {k: getattr(args, k) for k in expected} == expected


def test_options_after_the_overrides_are_config_overrides():
    parser = default_argument_parser("t", lambda p: p.add_argument("--flag", action="store_true"))
    args = parser.parse_args(["A", "1", "--flag"])
    assert args.opts == ["A", "1", "--flag"] and not args.flag


@pytest.mark.parametrize("describe_run, log_file", [(True, "log.txt"), (False, "test_log.txt")])
def test_setup_freezes_the_config_and_logs_the_run(tmp_path, describe_run, log_file):
    out = tmp_path / "out"
    args = default_argument_parser("t").parse_args(["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(out)])
    try:
        cfg, distributed, local_rank, device, logger = default_setup(args, log_file=log_file,
                                                                     describe_run=describe_run)
    finally:
        package_logger = logging.getLogger("maskrcnn_benchmark")
        for handler in list(package_logger.handlers):  # leave no handler on a tmp file for later tests
            package_logger.removeHandler(handler)
            handler.close()
    assert cfg.is_frozen() and cfg.OUTPUT_DIR == str(out) and cfg.MODEL.DEVICE == str(device) == "cpu"
    assert (distributed, local_rank) == (False, 0)
    log = (out / log_file).read_text()
    assert "Running with config:" in log and "Namespace(config_file=''" in log
    assert ("Using 1 processes" in log) is describe_run


def test_a_collective_timeout_becomes_the_stalled_process_error():
    from maskrcnn_benchmark.config import cfg
    from maskrcnn_benchmark.utils.comm import StalledProcessError, is_collective_timeout

    timeout = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 1000ms")
    if not is_collective_timeout(timeout):
        pytest.fail("the sample message is no longer recognised as a collective timeout: update it")
    with pytest.raises(RuntimeError) as caught:
        with stalled_processes_reported(cfg, distributed=True):
            raise timeout
    assert isinstance(caught.value, StalledProcessError) and caught.value.__cause__ is timeout
    with pytest.raises(RuntimeError) as caught:  # one process alone has nobody to wait for: unchanged
        with stalled_processes_reported(cfg, distributed=False):
            raise timeout
    assert caught.value is timeout
