"""Step learning-rate schedule with a warm-up, stepped once per iteration (not per epoch)."""
from bisect import bisect_right

from torch.optim.lr_scheduler import LRScheduler

WARMUP_METHODS = ("constant", "linear")


class WarmupMultiStepLR(LRScheduler):
    """lr(it) = base_lr * warmup(it) * gamma ** (number of milestones <= it).

    warmup(it) for it < warmup_iters is ``warmup_factor`` ("constant") or rises linearly from ``warmup_factor``
    at it = 0 to 1 at it = warmup_iters ("linear"); afterwards 1.

    Args:
        optimizer: the wrapped optimizer (each param group's initial lr is its base_lr).
        milestones: increasing iterations at which the lr is multiplied by ``gamma``.
        gamma: multiplicative decay.
        warmup_factor: lr multiplier at iteration 0.
        warmup_iters: warm-up length in iterations (0 disables it).
        warmup_method: "constant" or "linear".
        last_epoch: index of the last iteration done (-1 to start fresh).
    """

    def __init__(self, optimizer, milestones, gamma=0.1, warmup_factor=1.0 / 3, warmup_iters=500,
                 warmup_method="linear", last_epoch=-1):
        milestones = list(milestones)
        if milestones != sorted(milestones):
            raise ValueError("WarmupMultiStepLR: milestones (SOLVER.STEPS) should be a list of increasing integers, "
                             "got {}".format(milestones))
        if warmup_method not in WARMUP_METHODS:
            raise ValueError("WarmupMultiStepLR: warmup_method (SOLVER.WARMUP_METHOD) should be one of {}, got "
                             "{!r}".format(WARMUP_METHODS, warmup_method))
        self.milestones = milestones
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def _warmup(self, iteration):
        if iteration >= self.warmup_iters:
            return 1.0
        if self.warmup_method == "constant":
            return self.warmup_factor
        alpha = float(iteration) / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha

    def get_lr(self):
        """Learning rates of the param groups at iteration ``self.last_epoch`` (closed form)."""
        factor = self._warmup(self.last_epoch) * self.gamma ** bisect_right(self.milestones, self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]

    _get_closed_form_lr = get_lr
