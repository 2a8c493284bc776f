"""Use a compiled op of ``maskrcnn_benchmark._C`` on a device only after it has matched its plain-PyTorch twin
there: checked once per device and process, at the op's first use on that device, with one warning (naming the
op, the device and the reason) and the plain-PyTorch op from then on where it does not."""
import threading
import warnings

import torch


class CompiledOpCheck(object):
    """The once-per-device verdict on one compiled op.

    Args:
        name (str): how the warning names the op and the setting that chose it, e.g.
            "PrRoIPool (MODEL.PRROI_POOL_IMPL 'auto')".
        compare (callable): ``compare(device) -> float``, the largest disagreement of the compiled op with its
            plain-PyTorch twin on a small input on ``device`` (forward and backward); it may raise (e.g. no
            kernel for that GPU), which counts as a failure.
        tolerance (float or callable): the largest disagreement accepted, or ``tolerance(device) -> float``.

    ``check(device)`` returns True where the compiled op may be used. A device's verdict is decided under a
    lock the first time (so concurrent first calls compare once) and read without it after.
    """

    def __init__(self, name, compare, tolerance):
        self.name = name
        self.compare = compare
        self.tolerance = tolerance
        self.verdicts = {}  # str(device) -> bool
        self._lock = threading.Lock()

    def check(self, device):
        """True if the compiled op is built and agrees with the plain-PyTorch one on ``device``."""
        key = str(device)
        if key in self.verdicts:
            return self.verdicts[key]
        with self._lock:
            if key not in self.verdicts:
                reason = self._reason_not_to_use(torch.device(device))
                if reason is not None:
                    warnings.warn("{}: {}; using the torch implementation on {}".format(self.name, reason, device))
                self.verdicts[key] = reason is None
            return self.verdicts[key]

    def _reason_not_to_use(self, device):
        try:
            from maskrcnn_benchmark import _C  # noqa: F401
        except ImportError as error:
            return ("maskrcnn_benchmark._C is not built ({}); build it with `python setup.py build_ext --inplace`"
                    .format(error))
        tolerance = self.tolerance(device) if callable(self.tolerance) else self.tolerance
        try:
            error = self.compare(device)
        except Exception as failure:  # any failure of the compiled op (e.g. no kernel for this GPU): don't use it
            return "the compiled op failed its self-check on {} ({}: {})".format(
                device, type(failure).__name__, failure)
        if not error <= tolerance:  # NaN counts as a disagreement
            return ("the compiled op disagrees with the torch implementation on {} (max relative error {:.3g}, "
                    "tolerance {:.3g}, forward and backward). Report it, with the output of tools/selfcheck.py"
                    .format(device, error, tolerance))
        return None
