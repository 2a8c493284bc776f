"""Optimizer and learning-rate schedule builders."""
from .build import make_lr_scheduler, make_optimizer
from .lr_scheduler import WarmupMultiStepLR

__all__ = ["make_optimizer", "make_lr_scheduler", "WarmupMultiStepLR"]
