"""Thin layer wrappers under maskrcnn-benchmark's names.

maskrcnn-benchmark wrapped these to accept empty batches (N = 0, e.g. no positive RoI in the mask head), which
old PyTorch rejected. Current PyTorch handles empty batches natively for convolutions, transposed convolutions
and interpolate, with gradients flowing to the parameters (zero-valued), so the wrappers only keep the names.
BatchNorm2d additionally skips the running-statistics update on an empty batch, so it cannot be polluted.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d``; accepts Tensor[0, C, H, W] and returns Tensor[0, C_out, H_out, W_out]."""


class ConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d``; accepts Tensor[0, C, H, W]."""


class BatchNorm2d(nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d``; an empty batch returns an empty output and leaves the running statistics alone."""

    def forward(self, x):
        """Tensor[N, C, H, W] -> Tensor[N, C, H, W] (N may be 0)."""
        if x.numel() == 0:
            # statistics of zero samples are undefined: normalise (nothing) with the running ones instead
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """``torch.nn.functional.interpolate``; accepts empty batches. Tensor[N, C, H, W] -> Tensor[N, C, H', W']."""
    return F.interpolate(input, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners)


class Scale(nn.Module):
    """Multiplies its input by one learnable scalar (initialised to ``init_value``)."""

    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x):
        """Any tensor -> the same shape, times the scalar."""
        return x * self.scale
