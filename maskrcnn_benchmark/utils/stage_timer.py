"""Wall time of the stages of a training or inference iteration, for the benchmarks' ``--profile`` tables.

A stage is a set of modules (timed from their forward pre-hook to their forward hook), the optimizers' steps
(their step pre- and post-hooks) or the backward pass (``torch.Tensor.backward`` while timing). What no stage
covers (losses, sampling, post-processing, data movement) is reported as "other", the iteration's time minus
the stages'. The stages' modules must not nest in one another.
"""
import contextlib
import statistics
import time
from collections import OrderedDict

import torch


class StageTimer(object):
    """Collects per-stage seconds over iterations.

        timer = StageTimer(synchronize)
        timer.add_modules("backbone", [model.backbone])
        timer.add_optimizer(optimizer)
        for _ in range(n):
            with timer.iteration():
                ...one training step...
        timer.remove()
        timer.medians()  # {"backbone": s, ..., "backward": s, "optimizer": s, "other": s, "total": s}
    """

    def __init__(self, synchronize=None):
        """
        Arguments:
            synchronize (callable or None): waits for the device (torch.cuda.synchronize on a GPU) before every
                clock reading, so the times are the device's; None on the CPU.
        """
        self.synchronize = synchronize or (lambda: None)
        self.stages = OrderedDict()
        self.samples = OrderedDict()
        self._current = None
        self._handles = []
        self._open = {}

    def _start(self, stage):
        if self._current is None:
            return
        depth, started = self._open.get(stage, (0, None))
        if depth == 0:
            self.synchronize()
            started = time.perf_counter()
        self._open[stage] = (depth + 1, started)

    def _stop(self, stage):
        if self._current is None or stage not in self._open:
            return
        depth, started = self._open[stage]
        if depth == 1:
            self.synchronize()
            self._current[stage] = self._current.get(stage, 0.0) + time.perf_counter() - started
            del self._open[stage]
        else:
            self._open[stage] = (depth - 1, started)

    def add_modules(self, stage, modules):
        """Time every forward of ``modules`` (a list; None entries are ignored) as ``stage``."""
        self.stages.setdefault(stage, None)
        for module in modules:
            if module is None:
                continue
            self._handles.append(module.register_forward_pre_hook(lambda *_, s=stage: self._start(s)))
            self._handles.append(module.register_forward_hook(lambda *_, s=stage: self._stop(s)))

    def add_optimizer(self, optimizer, stage="optimizer"):
        """Time ``optimizer.step()`` as ``stage`` (several optimizers may share one stage)."""
        self.stages.setdefault(stage, None)
        self._handles.append(optimizer.register_step_pre_hook(lambda *_, s=stage: self._start(s)))
        self._handles.append(optimizer.register_step_post_hook(lambda *_, s=stage: self._stop(s)))

    @contextlib.contextmanager
    def iteration(self, backward_stage="backward"):
        """Times one iteration; inside it ``Tensor.backward`` counts as ``backward_stage``."""
        self.stages.setdefault(backward_stage, None)
        original = torch.Tensor.backward
        timer = self

        def timed_backward(tensor, *args, **kwargs):
            timer._start(backward_stage)
            try:
                return original(tensor, *args, **kwargs)
            finally:
                timer._stop(backward_stage)

        self._current, self._open = {}, {}
        torch.Tensor.backward = timed_backward
        self.synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            total = time.perf_counter() - started
            torch.Tensor.backward = original
            times, self._current = self._current, None
            times["other"] = total - sum(times.values())
            times["total"] = total
            for stage in list(self.stages) + ["other", "total"]:
                self.samples.setdefault(stage, []).append(times.get(stage, 0.0))

    def remove(self):
        """Remove every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def medians(self):
        """{stage: median seconds per iteration} in the order the stages were added, then "other" and "total"."""
        return OrderedDict((stage, statistics.median(values)) for stage, values in self.samples.items())


def format_stage_table(columns, title=""):
    """Text table of median ms and share of the total per stage.

    Arguments:
        columns (OrderedDict name -> StageTimer.medians() output): one column per profiled model / mode.
    """
    stages = []
    for medians in columns.values():
        stages += [s for s in medians if s not in stages and s != "total"]
    stages.append("total")
    lines = [title] if title else []
    lines.append("{:<14}".format("stage") + "".join("{:>22}".format(name) for name in columns))
    for stage in stages:
        cells = []
        for medians in columns.values():
            if stage not in medians:
                cells.append("{:>22}".format("-"))
                continue
            share = 100.0 * medians[stage] / medians["total"] if medians["total"] else 0.0
            cells.append("{:>13.1f} ms {:>4.0f}%".format(1000.0 * medians[stage], share))
        lines.append("{:<14}".format(stage) + "".join(cells))
    return "\n".join(lines)
