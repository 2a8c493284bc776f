"""Smoothed scalar meters for the training log."""
from collections import defaultdict, deque

import torch


class SmoothedValue:
    """Track a series of values: the median over a sliding window and the average over all updates."""

    def __init__(self, window_size=20):
        self.deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0

    def update(self, value):
        """Add one observation (a Python number)."""
        self.deque.append(value)
        self.count += 1
        self.total += value

    @property
    def median(self):
        """Median of the last ``window_size`` values."""
        return torch.tensor(list(self.deque), dtype=torch.float64).median().item()

    @property
    def avg(self):
        """Mean of the last ``window_size`` values."""
        return torch.tensor(list(self.deque), dtype=torch.float64).mean().item()

    @property
    def global_avg(self):
        """Mean of every value seen since construction."""
        return self.total / max(self.count, 1)

    @property
    def value(self):
        """The latest value."""
        return self.deque[-1]


class MetricLogger:
    """A named collection of SmoothedValue meters, printed as ``name: median (global_avg)``."""

    def __init__(self, delimiter="\t", window_size=20):
        self.meters = defaultdict(lambda: SmoothedValue(window_size))
        self.delimiter = delimiter

    def update(self, **kwargs):
        """Update meters from keyword arguments whose values are numbers or 0-dim tensors."""
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            if not isinstance(value, (float, int)):
                raise TypeError(
                    "MetricLogger.update: value for '{}' must be a number or a 0-dim tensor, got {}".format(
                        name, type(value).__name__))
            self.meters[name].update(value)

    def __getattr__(self, attr):
        # Called only when normal lookup fails, so meters read like attributes (meters.time.global_avg).
        meters = self.__dict__.get("meters")
        if meters is not None and attr in meters:
            return meters[attr]
        raise AttributeError("'{}' object has no attribute '{}'".format(type(self).__name__, attr))

    def __str__(self):
        return self.delimiter.join(
            "{}: {:.4f} ({:.4f})".format(name, meter.median, meter.global_avg) for name, meter in self.meters.items())
