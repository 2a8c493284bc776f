"""Precise RoI Pooling (Jiang et al., "Acquisition of Localization Confidence for Accurate Object Detection",
ECCV 2018), differentiable with respect to the features and the box coordinates.

The feature map is made continuous by bilinear interpolation, with pixel (i, j) at integer coordinates
(x = j, y = i, no half-pixel offset) and zero outside the map. Each RoI ``(batch_index, x0, y0, x1, y1)`` in
image coordinates is scaled by ``spatial_scale`` and split into ``pooled_height x pooled_width`` equal bins; each
output is the exact integral of the interpolated map over its bin divided by the bin's area (0 when the area is 0,
which includes inverted boxes).

Two implementations compute it (``impl``, config key MODEL.PRROI_POOL_IMPL):
  ``"compiled"``: the CPU and CUDA kernels of ``maskrcnn_benchmark._C`` (closed form, csrc/prroi_pool_math.h);
  ``"torch"``:    :func:`prroi_pool2d_torch`, plain PyTorch in separable form (banded weight matrices times the
                  map), on any device, gradients from autograd;
  ``"auto"``:     the compiled op after it has checked itself once per device and process against the torch one
                  (forward and backward on a small random input); the torch one, with a warning giving the
                  maximum error, if they disagree or the extension is missing.
:func:`prroi_pool2d_reference` computes the same maths one RoI at a time, for tests.
"""
import math

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .compiled_op_check import CompiledOpCheck

__all__ = ["IMPLEMENTATIONS", "PrRoIPool2D", "prroi_pool2d", "prroi_pool2d_torch", "prroi_pool2d_reference",
           "compare_implementations"]

IMPLEMENTATIONS = ("compiled", "torch", "auto")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _check_inputs(features, rois):
    """Shapes, dtypes and devices (no device synchronisation)."""
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
    if rois.dtype != features.dtype and not (features.dtype in _LOW_PRECISION and rois.dtype == torch.float32):
        raise TypeError(
            f"prroi_pool2d: rois dtype {rois.dtype} differs from features dtype {features.dtype}; "
            "convert rois with rois.to(features.dtype) (float16/bfloat16 features also take float32 rois)"
        )
    if rois.device != features.device:
        raise ValueError(
            f"prroi_pool2d: rois are on {rois.device} but features are on {features.device}; "
            "move rois with rois.to(features.device)"
        )


def _check_roi_values(features, rois):
    """Batch indices integral and in range, coordinates finite: the rules and messages of the compiled op's
    prroi_pool_check_roi_values (csrc/prroi_pool.h), raised as the same RuntimeError (one synchronisation on GPU)."""
    if rois.shape[0] == 0:
        return
    values = rois.detach().double()
    index = values[:, 0]
    good_index = torch.isfinite(index) & (index == index.floor()) & (index >= 0) & (index < features.shape[0])
    bad = torch.cat([~good_index[:, None], ~torch.isfinite(values[:, 1:])], dim=1)
    if not bool(bad.any()):
        return
    first = int(bad.flatten().to(torch.uint8).argmax())
    k, col = divmod(first, 5)
    value = float(values[k, col])
    if col == 0:
        raise RuntimeError(
            f"prroi_pool: rois[{k}, 0] = {value:g} is not a batch index into features (batch size "
            f"{features.shape[0]}); column 0 of rois must hold the image index"
        )
    raise RuntimeError(f"prroi_pool: rois[{k}, {col}] = {value:g} is not finite; box coordinates must be finite "
                       "numbers")


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


def _prroi_pool2d_compiled(features, rois, pooled_height, pooled_width, spatial_scale):
    """The compiled op; the CPU kernel computes in float32/float64, so half/bfloat16 CPU maps go through float32."""
    if features.device.type == "cpu" and features.dtype in _LOW_PRECISION:
        out = _PrRoIPool2DFunction.apply(features.float(), rois.float(), pooled_height, pooled_width, spatial_scale)
        return out.to(features.dtype)
    return _PrRoIPool2DFunction.apply(features, rois, pooled_height, pooled_width, spatial_scale)


def _integrated_hat_clamped(t):
    """Integral of max(0, 1 - |s|) over s in (-inf, t]: 0 below -1, 1 above 1, a C1 piecewise quadratic between."""
    t = t.clamp(-1.0, 1.0)
    return torch.where(t <= 0, 0.5 * (t + 1) ** 2, 1 - 0.5 * (1 - t) ** 2)


def _axis_weights(start, bin_size, bins, nodes, size):
    """Banded weights Tensor[k, bins, n]: the integral of each node's hat over each bin [start + i b, start +
    (i + 1) b], for start, bin_size Tensor[k] and nodes Tensor[k, n] (int); nodes off the map (>= size) weigh 0."""
    steps = torch.arange(bins + 1, dtype=start.dtype, device=start.device)
    edges = start[:, None] + bin_size[:, None] * steps  # [k, bins + 1]
    cumulative = _integrated_hat_clamped(edges[:, :, None] - nodes[:, None, :].to(start.dtype))
    return (cumulative[:, 1:] - cumulative[:, :-1]) * (nodes < size)[:, None, :].to(start.dtype)


def _node_window(lo, hi, size):
    """First on-map node and node count of each RoI's window along one axis: the nodes whose hat overlaps
    [lo, hi] (as node_span in prroi_pool_math.h), with one node of margin against rounding."""
    first = torch.floor(lo.clamp(-2.0, size + 1.0)).long() - 1
    last = torch.ceil(hi.clamp(-2.0, size + 1.0)).long() + 1
    first, last = first.clamp(min=0), last.clamp(max=size - 1)
    return first, (last - first + 1).clamp(min=1)


# Elements of the gathered windows [k, h, w, C] per chunk of RoIs: bounds the torch implementation's memory.
_CHUNK_ELEMENTS = 1 << 25


def prroi_pool2d_torch(features, rois, pooled_height, pooled_width, spatial_scale):
    """Precise RoI Pooling in plain PyTorch, on any device, differentiable (autograd) w.r.t. features and rois.

    Separable form: the integral of the bilinear interpolant over bin (a, b) is ``(Wy @ F @ Wx^T)[a, b]`` with
    banded weights (node q's weight for bin row a is the integral of its hat over the row's y extent), so each RoI
    reads only the window of nodes it touches. RoIs are sorted by window size and pooled in chunks of windows
    padded to the chunk's largest, as two batched matrix products. Computes in float32 (float64 for float64
    features) and returns the features' dtype. One synchronisation per call on GPU (window sizes).

    Args / Returns: as :func:`prroi_pool2d`.
    """
    _check_inputs(features, rois)
    _check_roi_values(features, rois)
    pooled_height, pooled_width = int(pooled_height), int(pooled_width)
    num_rois = rois.shape[0]
    batch_size, channels, height, width = features.shape
    compute = torch.promote_types(features.dtype, torch.float32)
    if num_rois == 0 or channels == 0 or height == 0 or width == 0:
        # zero through the graph, so backward gives zero gradients rather than none
        anchor = (features.sum() + rois.sum()).to(compute) * 0
        return (features.new_zeros((num_rois, channels, pooled_height, pooled_width), dtype=compute)
                + anchor).to(features.dtype)
    # Box geometry and weights in float64: they are differences of nearly equal integrals on small bins, and
    # the RoI gradient's edge terms cancel, so float32 here would cost three digits of the RoI gradient
    # (float32 on Apple's MPS, which has no float64).
    geometry = torch.float32 if features.device.type == "mps" else torch.float64
    x0, y0, x1, y1 = (rois[:, 1:].to(geometry) * spatial_scale).unbind(1)
    bin_w = (x1 - x0).clamp(min=0) / pooled_width
    bin_h = (y1 - y0).clamp(min=0) / pooled_height
    area = bin_w * bin_h
    with torch.no_grad():
        x_first, x_count = _node_window(x0, x0 + bin_w * pooled_width, width)
        y_first, y_count = _node_window(y0, y0 + bin_h * pooled_height, height)
        batch_index = rois[:, 0].detach().long()
        order = torch.argsort(x_count * y_count)
        sizes = torch.stack([y_count[order], x_count[order]], dim=1).cpu().tolist()
    pixels = features.permute(0, 2, 3, 1).reshape(batch_size * height * width, channels)  # [N H W, C]
    chunks, begin = [], 0
    while begin < num_rois:
        end, rows, cols = begin, 0, 0
        while end < num_rois:
            grown_rows, grown_cols = max(rows, sizes[end][0]), max(cols, sizes[end][1])
            if end > begin and (end - begin + 1) * grown_rows * grown_cols * channels > _CHUNK_ELEMENTS:
                break
            rows, cols, end = grown_rows, grown_cols, end + 1
        chunk = order[begin:end]
        node_y = y_first[chunk, None] + torch.arange(rows, device=features.device)  # [k, rows]
        node_x = x_first[chunk, None] + torch.arange(cols, device=features.device)  # [k, cols]
        wy = _axis_weights(y0[chunk], bin_h[chunk], pooled_height, node_y, height)  # [k, PH, rows]
        wx = _axis_weights(x0[chunk], bin_w[chunk], pooled_width, node_x, width)  # [k, PW, cols]
        # index_select on the flattened map: its backward is an index_add over rows of C channels, far cheaper
        # than the accumulating index_put of advanced indexing.
        flat = ((batch_index[chunk, None, None] * height + node_y.clamp(max=height - 1)[:, :, None]) * width
                + node_x.clamp(max=width - 1)[:, None, :])
        window = pixels.index_select(0, flat.flatten()).view(len(chunk), rows, cols, channels).to(compute)
        # rows first, on the window's own layout; then columns on the (PH / rows times smaller) transposed result
        along_y = torch.bmm(wy.to(compute), window.view(len(chunk), rows, cols * channels))  # [k, PH, cols * C]
        along_y = along_y.view(len(chunk), pooled_height, cols, channels).transpose(1, 2)  # [k, cols, PH, C]
        pooled = torch.bmm(wx.to(compute), along_y.reshape(len(chunk), cols, pooled_height * channels))
        chunks.append(pooled.view(len(chunk), pooled_width, pooled_height, channels))  # [k, PW, PH, C]
        begin = end
    integral = torch.cat(chunks)[torch.argsort(order)].permute(0, 3, 2, 1)  # [K, C, PH, PW]
    safe_area = torch.where(area > 0, area, torch.ones_like(area))[:, None, None, None]
    out = torch.where(area[:, None, None, None] > 0, integral / safe_area.to(compute), torch.zeros_like(integral))
    return out.to(features.dtype)


def compare_implementations(device, dtype=None, seed=0):
    """Largest disagreement of the compiled op with :func:`prroi_pool2d_torch` on a small random input.

    Forward, features gradient and RoI gradient for a random upstream gradient, each error relative to the
    torch result's largest magnitude (at least 1). Boxes cross the border, are smaller than a bin, or are empty.

    Args:
        device (str or torch.device), dtype (torch.dtype): float64 unless the device has none (then float32).
    Returns:
        float: the maximum relative error.
    """
    device = torch.device(device)
    dtype = dtype or (torch.float32 if device.type == "mps" else torch.float64)
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 5, 9, 11, generator=generator, dtype=torch.float64)
    rois = torch.tensor([[0, 2.3, 3.1, 15.7, 12.2], [1, -4.0, -3.0, 9.5, 30.0], [1, 6.1, 6.3, 6.4, 6.5],
                         [0, 0.0, 0.0, 20.0, 16.0], [1, 30.0, 30.0, 40.0, 41.0], [0, 5.0, 5.0, 5.0, 9.0]],
                        dtype=torch.float64)
    upstream = torch.randn(len(rois), 5, 3, 4, generator=generator, dtype=torch.float64).to(device, dtype)
    results = []
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for op in (_prroi_pool2d_compiled, prroi_pool2d_torch):
            f = features.to(device, dtype).requires_grad_()
            r = rois.to(device, dtype).requires_grad_()
            out = op(f, r, 3, 4, 0.5)
            grads = torch.autograd.grad(out, (f, r), upstream)
            results.append([t.detach().double().cpu() for t in (out,) + grads])
    return max(((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1.0)).item()
               for ours, theirs in zip(*results))


def _self_check_dtype(device):
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


_AUTO_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}
# MODEL.PRROI_POOL_IMPL "auto": the compiled op where it has matched prroi_pool2d_torch, per device and process
AUTO_CHECK = CompiledOpCheck(
    "PrRoIPool (MODEL.PRROI_POOL_IMPL 'auto')",
    compare=lambda device: compare_implementations(device, _self_check_dtype(device)),
    tolerance=lambda device: _AUTO_TOLERANCE[_self_check_dtype(device)],
)


def _auto_implementation(device):
    """"compiled" or "torch": what MODEL.PRROI_POOL_IMPL "auto" uses on ``device`` (see AUTO_CHECK)."""
    return "compiled" if AUTO_CHECK.check(device) else "torch"


def prroi_pool2d(features, rois, pooled_height, pooled_width, spatial_scale, impl="auto"):
    """Precise RoI Pooling, differentiable w.r.t. ``features`` and ``rois``.

    Args:
        features (Tensor[N, C, H, W]): float32/float64/float16/bfloat16, any device (compiled: CPU and CUDA).
        rois (Tensor[K, 5]): rows ``(batch_index, x0, y0, x1, y1)`` in image coordinates on the features' device,
            of the features' dtype or float32 for float16/bfloat16 features (their gradient is then float32).
            Batch indices must be integral and in range and coordinates finite (RuntimeError naming the row
            otherwise, on every device). The batch index column gets a zero gradient.
        pooled_height (int), pooled_width (int): number of bins per RoI along y and x.
        spatial_scale (float): feature-map units per image unit (e.g. 1/4 for a stride-4 map).
        impl (str): "compiled", "torch" or "auto" (see the module docstring).

    Returns:
        Tensor[K, C, pooled_height, pooled_width] of the features' dtype: the mean of the bilinearly
        interpolated map over each bin.
    """
    _check_inputs(features, rois)
    if impl == "auto":
        impl = _auto_implementation(features.device)
    if impl == "compiled":
        return _prroi_pool2d_compiled(features, rois, pooled_height, pooled_width, spatial_scale)
    if impl == "torch":
        return prroi_pool2d_torch(features, rois, pooled_height, pooled_width, spatial_scale)
    raise ValueError(f"prroi_pool2d: impl {impl!r} is unknown (MODEL.PRROI_POOL_IMPL); use one of {IMPLEMENTATIONS}")


class PrRoIPool2D(nn.Module):
    """Precise RoI Pooling layer: ``forward(features Tensor[N, C, H, W], rois Tensor[K, 5]) -> Tensor[K, C, PH, PW]``.

    Args:
        pooled_height (int), pooled_width (int): output bins per RoI along y and x.
        spatial_scale (float): feature-map units per image unit.
        impl (str): "compiled", "torch" or "auto" (MODEL.PRROI_POOL_IMPL; see the module docstring).
    """

    def __init__(self, pooled_height, pooled_width, spatial_scale, impl="auto"):
        super().__init__()
        if int(pooled_height) <= 0 or int(pooled_width) <= 0:
            raise ValueError(
                f"PrRoIPool2D: pooled_height and pooled_width must be positive, got {pooled_height} x {pooled_width}"
            )
        if not float(spatial_scale) > 0:
            raise ValueError(f"PrRoIPool2D: spatial_scale must be positive, got {spatial_scale}")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"PrRoIPool2D: impl {impl!r} is unknown (MODEL.PRROI_POOL_IMPL); use one of "
                             f"{IMPLEMENTATIONS}")
        self.pooled_height = int(pooled_height)
        self.pooled_width = int(pooled_width)
        self.spatial_scale = float(spatial_scale)
        self.impl = impl

    def forward(self, features, rois):
        """features Tensor[N, C, H, W], rois Tensor[K, 5] (batch_index, x0, y0, x1, y1) -> Tensor[K, C, PH, PW]."""
        return prroi_pool2d(features, rois, self.pooled_height, self.pooled_width, self.spatial_scale, self.impl)

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(pooled_height={self.pooled_height}, pooled_width={self.pooled_width}, "
            f"spatial_scale={self.spatial_scale}, impl={self.impl!r})"
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
    _check_roi_values(features, rois)
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
