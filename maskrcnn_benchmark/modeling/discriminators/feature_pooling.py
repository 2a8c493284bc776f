"""RoI features for the discriminators: FPN maps pooled at boxes given as a K x 5 tensor.

Two ways to read the FPN levels (MODEL.GAN.FEATURE_FUSION):
  "max":   pool every level at every RoI and keep the element-wise maximum (the authors' code), so each RoI
           sees the strongest response at any scale and the choice of level never switches abruptly when a
           predicted box grows or shrinks;
  "level": the standard FPN assignment (one level per RoI by its size), through ``modeling.poolers.Pooler``.
Two pooling ops (POOLER_TYPE): "PrRoIPool" (Precise RoI Pooling, differentiable w.r.t. the box coordinates,
which the box discriminator needs for L_adv^Gb to reach the box regression) and "ROIAlign" (no gradient
w.r.t. the coordinates).
"""
import functools
import threading
import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from maskrcnn_benchmark.layers.roi_align import roi_align

POOLER_TYPES = ("ROIAlign", "PrRoIPool")
FUSIONS = ("max", "level")


def _pool_one_level(features, rois, resolution, scale, pooler_type, sampling_ratio, prroi_impl):
    if pooler_type == "PrRoIPool":
        # imported here: the op may live in a compiled extension that is built after this module is imported
        from maskrcnn_benchmark.layers.prroi_pool import prroi_pool2d

        return prroi_pool2d(features, rois, resolution, resolution, scale, impl=prroi_impl)
    return roi_align(features, rois, (resolution, resolution), scale, sampling_ratio, aligned=False)


class _MaxOverLevels(torch.autograd.Function):
    """Element-wise maximum of same-shaped tensors whose backward sends each element's gradient to the tensor the
    maximum came from, read from a saved uint8 index: fewer passes over the pooled features than a chain of
    torch.maximum, whose backward re-compares the inputs pair by pair. The values are the chain's, bitwise; so are
    the gradients except at exact ties, where the chain splits the gradient between the tied inputs and this gives
    it all to the first. The reference of the compiled :class:`_CompiledMaxOverLevels`."""

    @staticmethod
    def forward(ctx, *levels):
        fused = levels[0]
        source = torch.zeros(fused.shape, dtype=torch.uint8, device=fused.device)
        for index, level in enumerate(levels[1:], 1):
            larger = torch.maximum(fused, level)
            source.masked_fill_(larger != fused, index)  # NaN != NaN: a NaN element points at the last level
            fused = larger
        ctx.save_for_backward(source)
        ctx.num_levels = len(levels)
        return fused

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        source, = ctx.saved_tensors
        zero = grad.new_zeros(())
        return tuple(torch.where(source == index, grad, zero) if ctx.needs_input_grad[index] else None
                     for index in range(ctx.num_levels))


class _CompiledMaxOverLevels(torch.autograd.Function):
    """:class:`_MaxOverLevels` in one pass over the levels (``_C.level_max_forward``, csrc/level_max.h), and its
    backward in one pass writing every needed level's gradient. Same values (a zero's sign aside: at a tie of +0
    and -0 this keeps the earlier level's, torch.maximum may not), same source index, bitwise the same gradients."""

    @staticmethod
    def forward(ctx, *levels):
        from maskrcnn_benchmark import _C

        fused, source = _C.level_max_forward(list(levels))
        ctx.save_for_backward(source)
        return fused

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        from maskrcnn_benchmark import _C

        source, = ctx.saved_tensors
        needs = list(ctx.needs_input_grad)
        grads = _C.level_max_backward(grad, source, needs)
        return tuple(g if need else None for g, need in zip(grads, needs))


# csrc/level_max.h takes float32 / float64 only
_COMPILED_DTYPES = (torch.float32, torch.float64)


def _needs_grad(levels):
    return torch.is_grad_enabled() and any(level.requires_grad for level in levels)


def _compiled_level_max_applies(levels):
    """Whether the compiled op takes these levels: float32/64 of one shape and dtype, at most as many as it takes,
    on the CPU or, in a build with CUDA kernels, on one GPU, where it has passed its check; not while tracing or
    compiling (which know the torch ops only)."""
    if len(levels) < 2 or torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    first = levels[0]
    if first.dtype not in _COMPILED_DTYPES or any(level.dtype != first.dtype or level.shape != first.shape
                                                  or level.device != first.device for level in levels):
        return False
    try:
        from maskrcnn_benchmark import _C
    except ImportError:
        return False
    if not hasattr(_C, "level_max_forward") or len(levels) > _C.level_max_max_levels:
        return False
    if not (first.device.type == "cpu" or (first.device.type == "cuda" and _C.has_cuda())):
        return False
    return _compiled_level_max_verified(first.device)


def compare_level_max_implementations(device, seed=0):
    """Largest disagreement of the compiled maximum over levels with :func:`max_over_levels_torch` on a small
    float64 input with exact ties, infinities and a NaN: forward values and every level's gradient for a random
    upstream gradient (0.0 when they agree exactly, as they must; inf when NaN elements differ).

    Args:
        device (str or torch.device): where to run both.
    Returns:
        float: the maximum absolute difference.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    levels = [torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64) for _ in range(4)]
    levels[1][0, 0] = levels[0][0, 0]  # ties
    levels[2][1, 1, 2] = float("inf")
    levels[3][1, 2, 3, 4] = float("nan")
    upstream = torch.randn(levels[0].shape, generator=generator, dtype=torch.float64).to(device)
    results = []
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for op in (_CompiledMaxOverLevels.apply, lambda *x: max_over_levels_torch(list(x))):
            inputs = [level.to(device).requires_grad_() for level in levels]
            out = op(*inputs)
            grads = torch.autograd.grad(out, inputs, upstream)
            results.append([t.detach().cpu() for t in (out,) + grads])
    worst = 0.0
    for ours, theirs in zip(*results):
        if not torch.equal(torch.isnan(ours), torch.isnan(theirs)):
            return float("inf")
        finite = ~torch.isnan(theirs)
        difference = (ours[finite] - theirs[finite]).abs()
        difference[ours[finite] == theirs[finite]] = 0.0  # equal infinities
        worst = max(worst, float(difference.max()) if difference.numel() else 0.0)
    return worst


_verified_devices = {}  # str(device) -> bool: the compiled op agreed with the torch one there, checked once
_verified_lock = threading.Lock()


def _compiled_level_max_verified(device):
    """Whether the compiled op matched the torch one on ``device`` (checked at its first use there, as
    MODEL.PRROI_POOL_IMPL "auto" checks PrRoIPool); where it did not, or failed, a warning says so once and the
    torch one is used."""
    key = str(device)
    if key in _verified_devices:  # every call after the first on a device: no lock
        return _verified_devices[key]
    with _verified_lock:
        if key not in _verified_devices:
            try:
                error = compare_level_max_implementations(device)
                reason = None if error == 0.0 else "it disagrees with the torch one by {:.3g}".format(error)
            except Exception as failure:  # e.g. no kernel for this GPU: use the torch one
                reason = "it failed ({}: {})".format(type(failure).__name__, failure)
            if reason is not None:
                warnings.warn("the compiled maximum over FPN levels (MODEL.GAN.FEATURE_FUSION 'max') is not used on "
                              "{}: {}; using plain PyTorch. Report it, with the output of tools/selfcheck.py"
                              .format(device, reason))
            _verified_devices[key] = reason is None
        return _verified_devices[key]


def max_over_levels_torch(levels):
    """Element-wise maximum of ``levels`` in plain PyTorch: a chain of torch.maximum without autograd,
    :class:`_MaxOverLevels` when a gradient must flow. The reference of :func:`max_over_levels`."""
    if len(levels) > 1 and _needs_grad(levels):
        return _MaxOverLevels.apply(*levels)
    return functools.reduce(torch.maximum, levels)


def max_over_levels(levels):
    """Element-wise maximum of ``levels`` (list of Tensor[K, C, R, R], the RoIs pooled at each FPN level), with a
    gradient (when one must flow, to the predicted boxes) that reaches each element's maximal level only.

    The compiled op where it applies (see :func:`_compiled_level_max_applies`), else :func:`max_over_levels_torch`.
    On the demo's box discriminator the compiled op takes a tenth of the time of the torch one with autograd."""
    if _compiled_level_max_applies(levels):
        if _needs_grad(levels):
            return _CompiledMaxOverLevels.apply(*levels)
        from maskrcnn_benchmark import _C

        return _C.level_max_forward(list(levels))[0]
    return max_over_levels_torch(levels)


class RoIFeaturePooler(nn.Module):
    """Pools FPN features at RoIs for a discriminator; has no parameters.

    The pooler scales are derived from the strides the detector reports with its features, so nothing has
    to be configured twice.
    """

    def __init__(self, resolution=28, pooler_type="PrRoIPool", fusion="max", sampling_ratio=2, prroi_impl="auto"):
        """
        Arguments:
            resolution (int): side of the pooled square, cells.
            pooler_type (str): "PrRoIPool" or "ROIAlign".
            fusion (str): "max" (all levels, element-wise max) or "level" (FPN level assignment).
            sampling_ratio (int): ROIAlign samples per cell side (0 = adaptive); unused by PrRoIPool, which
                integrates exactly.
            prroi_impl (str): PrRoIPool's implementation, "compiled", "torch" or "auto" (MODEL.PRROI_POOL_IMPL).
        """
        super(RoIFeaturePooler, self).__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(
                "unknown discriminator pooler type {!r} (MODEL.GAN.BOX_DISC / MASK_DISC.POOLER_TYPE); "
                "use one of {}".format(pooler_type, POOLER_TYPES)
            )
        if fusion not in FUSIONS:
            raise ValueError(
                "unknown MODEL.GAN.FEATURE_FUSION {!r}; use one of {}".format(fusion, FUSIONS)
            )
        self.resolution = resolution
        self.pooler_type = pooler_type
        self.fusion = fusion
        self.sampling_ratio = sampling_ratio
        from maskrcnn_benchmark.modeling.poolers import _check_prroi_impl

        _check_prroi_impl(prroi_impl)
        self.prroi_impl = prroi_impl
        self._level_poolers = {}  # scales -> Pooler (no parameters or buffers: not part of the state)

    def forward(self, features, feature_strides, rois):
        """
        Arguments:
            features (list[Tensor[N, C, H_l, W_l]]): the FPN maps, finest first.
            feature_strides (list[int]): stride of each map in image pixels (scale = 1 / stride).
            rois (Tensor[K, 5]): (batch_index, x0, y0, x1, y1) in image pixels; K may be 0.
        Returns:
            Tensor[K, C, resolution, resolution]
        """
        if len(features) != len(feature_strides):
            raise ValueError(
                "got {} feature maps but {} feature strides".format(len(features), len(feature_strides))
            )
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError("rois must be K x 5 (batch_index, x0, y0, x1, y1), got {}".format(tuple(rois.shape)))
        scales = [1.0 / stride for stride in feature_strides]
        if self.fusion == "level" and len(features) > 1:
            return self._pool_assigned_level(features, scales, rois)
        return max_over_levels([
            _pool_one_level(level_features, rois, self.resolution, scale, self.pooler_type, self.sampling_ratio,
                            self.prroi_impl)
            for level_features, scale in zip(features, scales)
        ])

    def _pool_assigned_level(self, features, scales, rois):
        # one modeling.poolers.Pooler per set of scales, built at the first call and reused
        scales = tuple(scales)
        if scales not in self._level_poolers:
            from maskrcnn_benchmark.modeling.poolers import Pooler

            self._level_poolers[scales] = Pooler(
                output_size=(self.resolution, self.resolution), scales=scales, sampling_ratio=self.sampling_ratio,
                pooler_type=self.pooler_type, prroi_impl=self.prroi_impl,
            )
        return self._level_poolers[scales].pool_rois(features, rois)
