"""CompiledOpCheck: a compiled op is used on a device only after matching its plain-PyTorch twin there; the
verdict is taken once per device (also when threads ask at once), and a refusal warns once, naming the op, the
device and the reason."""
import sys
import threading
import warnings

import pytest

import maskrcnn_benchmark
from maskrcnn_benchmark.layers.compiled_op_check import CompiledOpCheck

NAME = "MyOp (MODEL.MY_OP_IMPL 'auto')"


def test_an_agreeing_op_is_compared_once_per_device_even_when_threads_ask_together():
    calls = []
    barrier = threading.Barrier(4)

    def compare(device):
        calls.append(str(device))
        return 0.0

    check = CompiledOpCheck(NAME, compare, tolerance=1e-9)
    results = []

    def ask():
        barrier.wait()
        results.append(check.check("cpu"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert check.check("cpu") is True
    assert results == [True] * 4 and calls == ["cpu"] and check.verdicts == {"cpu": True}


def test_a_disagreeing_op_is_refused_with_one_warning_naming_the_op_device_and_error():
    check = CompiledOpCheck(NAME, lambda device: 3e-4, tolerance=lambda device: 1e-4)
    with pytest.warns(UserWarning, match=r"MyOp \(MODEL.MY_OP_IMPL 'auto'\): the compiled op disagrees with the "
                                         r"torch implementation on cpu \(max relative error 0.0003, tolerance "
                                         r"0.0001.*using the torch implementation on cpu"):
        assert check.check("cpu") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided: no second comparison, no second warning
        assert check.check("cpu") is False


def test_a_nan_disagreement_and_a_failing_op_are_refused():
    assert_refused = pytest.warns(UserWarning, match="disagrees")
    with assert_refused:
        assert CompiledOpCheck(NAME, lambda device: float("nan"), 1e-4).check("cpu") is False

    def no_kernel(device):
        raise RuntimeError("no kernel image is available for execution on the device")

    with pytest.warns(UserWarning, match="failed its self-check on cpu .*RuntimeError: no kernel image"):
        assert CompiledOpCheck(NAME, no_kernel, 1e-4).check("cpu") is False


def test_without_the_extension_the_op_is_refused_with_how_to_build_it(monkeypatch):
    monkeypatch.delattr(maskrcnn_benchmark, "_C", raising=False)
    monkeypatch.setitem(sys.modules, "maskrcnn_benchmark._C", None)  # import fails as if it were not built
    compared = []
    check = CompiledOpCheck(NAME, lambda device: compared.append(device) or 0.0, 1e-4)
    with pytest.warns(UserWarning, match=r"maskrcnn_benchmark._C is not built .*python setup.py build_ext"):
        assert check.check("cpu") is False
    assert compared == []
