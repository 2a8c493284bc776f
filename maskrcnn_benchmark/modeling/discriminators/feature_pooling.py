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
    it all to the first."""

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


def _needs_grad(levels):
    return torch.is_grad_enabled() and any(level.requires_grad for level in levels)


def max_over_levels(levels):
    """Element-wise maximum of ``levels`` (list of Tensor[K, C, R, R], the RoIs pooled at each FPN level), with a
    gradient (when one must flow, to the predicted boxes) that reaches each element's maximal level only: a chain
    of torch.maximum without autograd, :class:`_MaxOverLevels` when a gradient must flow."""
    if len(levels) > 1 and _needs_grad(levels):
        return _MaxOverLevels.apply(*levels)
    return functools.reduce(torch.maximum, levels)


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
