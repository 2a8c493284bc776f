"""Precise RoI Pooling (Jiang et al., "Acquisition of Localization Confidence for Accurate Object Detection",
ECCV 2018), differentiable with respect to the features and the box coordinates.

The feature map is made continuous by bilinear interpolation, with pixel (i, j) at integer coordinates
(x = j, y = i, no half-pixel offset) and zero outside the map. Each RoI ``(batch_index, x0, y0, x1, y1)`` in
image coordinates is scaled by ``spatial_scale`` and split into ``pooled_height x pooled_width`` equal bins; each
output is the exact integral of the interpolated map over its bin divided by the bin's area (0 when the area is 0,
which includes inverted boxes). The compiled op (``maskrcnn_benchmark._C``) evaluates these integrals in closed
form; :func:`prroi_pool2d_reference` computes the same maths in plain PyTorch for tests.
"""
import math

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

__all__ = ["PrRoIPool2D", "prroi_pool2d", "prroi_pool2d_reference"]


def _check_inputs(features, rois):
    """Checks that need no device synchronisation; the kernels check batch indices and finiteness."""
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError(
            "prroi_pool2d: features must be a Tensor[N, C, H, W], got "
            + (f"shape {tuple(features.shape)}" if isinstance(features, torch.Tensor) else type(features).__name__)
        )
    if not isinstance(rois, torch.Tensor) or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            "prroi_pool2d: rois must be a Tensor[K, 5] of rows (batch_index, x0, y0, x1, y1), got "
            + (f"shape {tuple(rois.shape)}" if isinstance(rois, torch.Tensor) else type(rois).__name__)
        )
    if rois.dtype != features.dtype:
        raise TypeError(
            f"prroi_pool2d: rois dtype {rois.dtype} differs from features dtype {features.dtype}; "
            "convert rois with rois.to(features.dtype)"
        )
    if rois.device != features.device:
        raise ValueError(
            f"prroi_pool2d: rois are on {rois.device} but features are on {features.device}; "
            "move rois with rois.to(features.device)"
        )


class _PrRoIPool2DFunction(Function):
    @staticmethod
    def forward(ctx, features, rois, pooled_height, pooled_width, spatial_scale):
        from maskrcnn_benchmark import _C

        ctx.pooled_size = (int(pooled_height), int(pooled_width))
        ctx.spatial_scale = float(spatial_scale)
        ctx.save_for_backward(features, rois)
        return _C.prroi_pool_forward(features, rois, ctx.pooled_size[0], ctx.pooled_size[1], ctx.spatial_scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        from maskrcnn_benchmark import _C

        features, rois = ctx.saved_tensors
        need_features, need_rois = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_features, grad_rois = _C.prroi_pool_backward(
            grad_output, features, rois, ctx.pooled_size[0], ctx.pooled_size[1], ctx.spatial_scale,
            need_features, need_rois,
        )
        return (
            grad_features if need_features else None,
            grad_rois if need_rois else None,
            None,
            None,
            None,
        )


def prroi_pool2d(features, rois, pooled_height, pooled_width, spatial_scale):
    """Precise RoI Pooling, differentiable w.r.t. ``features`` and ``rois``.

    Args:
        features (Tensor[N, C, H, W]): float32/float64 on CPU; float32/float16/bfloat16 on CUDA.
        rois (Tensor[K, 5]): rows ``(batch_index, x0, y0, x1, y1)`` in image coordinates, same dtype and device
            as ``features``. The batch index column gets a zero gradient.
        pooled_height (int), pooled_width (int): number of bins per RoI along y and x.
        spatial_scale (float): feature-map units per image unit (e.g. 1/4 for a stride-4 map).

    Returns:
        Tensor[K, C, pooled_height, pooled_width]: the mean of the bilinearly interpolated map over each bin.
    """
    _check_inputs(features, rois)
    return _PrRoIPool2DFunction.apply(features, rois, pooled_height, pooled_width, spatial_scale)


class PrRoIPool2D(nn.Module):
    """Precise RoI Pooling layer: ``forward(features Tensor[N, C, H, W], rois Tensor[K, 5]) -> Tensor[K, C, PH, PW]``.

    Args:
        pooled_height (int), pooled_width (int): output bins per RoI along y and x.
        spatial_scale (float): feature-map units per image unit.
    """

    def __init__(self, pooled_height, pooled_width, spatial_scale):
        super().__init__()
        if int(pooled_height) <= 0 or int(pooled_width) <= 0:
            raise ValueError(
                f"PrRoIPool2D: pooled_height and pooled_width must be positive, got {pooled_height} x {pooled_width}"
            )
        if not float(spatial_scale) > 0:
            raise ValueError(f"PrRoIPool2D: spatial_scale must be positive, got {spatial_scale}")
        self.pooled_height = int(pooled_height)
        self.pooled_width = int(pooled_width)
        self.spatial_scale = float(spatial_scale)

    def forward(self, features, rois):
        """features Tensor[N, C, H, W], rois Tensor[K, 5] (batch_index, x0, y0, x1, y1) -> Tensor[K, C, PH, PW]."""
        return prroi_pool2d(features, rois, self.pooled_height, self.pooled_width, self.spatial_scale)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(pooled_height={self.pooled_height}, pooled_width={self.pooled_width}, "
            f"spatial_scale={self.spatial_scale})"
        )


def _integrated_hat(t):
    """Integral of the bilinear kernel max(0, 1 - |s|) over s from -inf to t (a C1 piecewise quadratic)."""
    t = t.clamp(-1.0, 1.0)
    return torch.where(t <= 0, 0.5 * (t + 1) ** 2, 1 - 0.5 * (1 - t) ** 2)


def _bin_weights(start, bin_size, bins, size):
    """Weights Tensor[bins, hi - lo] and the node range (lo, hi) they cover: the integral of each node's
    interpolation kernel over each bin [start + k b, start + (k + 1) b]. Nodes outside (lo, hi) get exactly zero
    weight (the kernel has support 1), so they are left out to keep the reference usable on large maps."""
    edges = start + bin_size * torch.arange(bins + 1, dtype=start.dtype, device=start.device)
    first, last = float(edges[0].detach()), float(edges[-1].detach())
    lo = min(max(math.floor(first) - 1, 0), size)
    hi = min(max(math.ceil(last) + 2, lo), size)
    nodes = torch.arange(lo, hi, dtype=start.dtype, device=start.device)
    cumulative = _integrated_hat(edges[:, None] - nodes[None, :])
    return cumulative[1:] - cumulative[:-1], lo, hi


def prroi_pool2d_reference(features, rois, pooled_height, pooled_width, spatial_scale):
    """Plain-PyTorch Precise RoI Pooling (same maths as :func:`prroi_pool2d`, one RoI at a time), for tests.

    The interpolant is separable, so the integral over a bin is ``wy @ F @ wx.T`` with per-node weights ``wx``
    (``wy``) equal to the integral of that node's hat function across the bin's x (y) extent. Gradients to
    features and rois come from autograd.

    Args / Returns: as :func:`prroi_pool2d` (any floating dtype, any device).
    """
    _check_inputs(features, rois)
    num_rois, channels = rois.shape[0], features.shape[1]
    height, width = features.shape[2], features.shape[3]
    outputs = []
    for k in range(num_rois):
        batch_index = int(rois[k, 0].detach())
        if not 0 <= batch_index < features.shape[0]:
            raise IndexError(f"prroi_pool2d_reference: rois[{k}, 0] = {batch_index} is not a batch index")
        x0, y0, x1, y1 = (rois[k, 1:] * spatial_scale).unbind()
        bin_w = (x1 - x0).clamp(min=0) / pooled_width
        bin_h = (y1 - y0).clamp(min=0) / pooled_height
        area = bin_w * bin_h
        wx, x_lo, x_hi = _bin_weights(x0, bin_w, pooled_width, width)
        wy, y_lo, y_hi = _bin_weights(y0, bin_h, pooled_height, height)
        window = features[batch_index, :, y_lo:y_hi, x_lo:x_hi]
        integral = torch.einsum("hq,cqp,wp->chw", wy, window, wx)
        safe_area = torch.where(area > 0, area, torch.ones_like(area))
        outputs.append(torch.where(area > 0, integral / safe_area, torch.zeros_like(integral)))
    if not outputs:
        return features.new_zeros((0, channels, pooled_height, pooled_width))
    return torch.stack(outputs)
