"""Multi-level RoI feature pooling (RoIAlign or Precise RoI Pooling) with FPN level assignment, or with the
element-wise maximum over all levels (MODEL.GAN.DETECTOR_POOLER_FUSION "max", the authors' code)."""
import functools
import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from maskrcnn_benchmark.modeling.box_coder import box_convention_to_remove
from maskrcnn_benchmark.modeling.utils import cat
from maskrcnn_benchmark.structures.boxlist_ops import boxes_to_rois


class LevelMapper(object):
    """Assign each box to an FPN level by its size (Eq. (1) of the FPN paper).

    level = floor(canonical_level + log2(sqrt(area) / canonical_scale + eps)), clamped to
    [k_min, k_max]; area uses the +1 pixel convention (BoxList.area()). With ``to_remove=0`` (torchvision's
    MultiScaleRoIAlign): area (x1 - x0) (y1 - y0) and level = floor(canonical_level + log2(sqrt(area) /
    canonical_scale) + eps).
    """

    def __init__(self, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6, to_remove=1):
        self.to_remove = to_remove
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists):
        """list[BoxList] -> int64 Tensor[K] of level indices relative to k_min (0 = finest map)."""
        return self.levels_of_boxes(cat([boxlist.convert("xyxy").bbox for boxlist in boxlists]))

    def levels_of_boxes(self, boxes):
        """Tensor[K, 4] (x0, y0, x1, y1) -> int64 Tensor[K] of level indices relative to k_min."""
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        if self.to_remove:
            s = torch.sqrt((widths + self.to_remove) * (heights + self.to_remove))
        else:
            s = torch.sqrt(widths * heights)
        if not torch.jit.is_tracing() and not bool(torch.isfinite(s).all()):
            # A NaN size maps to no level: the box would be dropped silently or break the reordering later.
            raise FloatingPointError(
                "{} of {} boxes given to the RoI pooler have non-finite coordinates: the model has probably "
                "diverged (non-finite features or box regression). Lower SOLVER.BASE_LR or raise "
                "SOLVER.WARMUP_ITERS".format(int((~torch.isfinite(s)).sum()), s.numel()))
        if self.to_remove:
            target_lvls = torch.floor(self.lvl0 + torch.log2(s / self.s0 + self.eps))
        else:
            target_lvls = torch.floor(self.lvl0 + torch.log2(s / self.s0) + self.eps)
        target_lvls = torch.clamp(target_lvls, min=self.k_min, max=self.k_max)
        return target_lvls.to(torch.int64) - self.k_min


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
    of torch.maximum without autograd (and while tracing), :class:`_MaxOverLevels` when a gradient must flow."""
    if len(levels) > 1 and _needs_grad(levels) and not torch.jit.is_tracing():
        return _MaxOverLevels.apply(*levels)
    return functools.reduce(torch.maximum, levels)


# How a multi-level Pooler reads the FPN maps (MODEL.GAN.DETECTOR_POOLER_FUSION)
POOLER_FUSIONS = ("level", "max")


def _make_level_pooler(pooler_type, output_size, scale, sampling_ratio, prroi_impl="auto"):
    if pooler_type == "ROIAlign":
        from maskrcnn_benchmark.layers import ROIAlign

        return ROIAlign(output_size, spatial_scale=scale, sampling_ratio=sampling_ratio)
    if pooler_type == "PrRoIPool":
        from maskrcnn_benchmark.layers import PrRoIPool2D

        # Precise RoI pooling integrates the bilinear surface exactly: no sampling ratio.
        return PrRoIPool2D(output_size[0], output_size[1], scale, impl=prroi_impl)
    raise ValueError("pooler_type '{}' is unknown; use 'ROIAlign' or 'PrRoIPool' (…POOLER_TYPE)".format(pooler_type))


def _check_prroi_impl(prroi_impl):
    from maskrcnn_benchmark.layers.prroi_pool import IMPLEMENTATIONS

    if prroi_impl not in IMPLEMENTATIONS:
        raise ValueError("MODEL.PRROI_POOL_IMPL {!r} is unknown; use one of {}".format(prroi_impl, IMPLEMENTATIONS))


class Pooler(nn.Module):
    """Pool a fixed-size feature for every box from the feature map matching its size.

    Args:
        output_size: (oh, ow) of each pooled feature.
        scales: 1/stride of each feature map passed to forward, finest first (e.g. (1/4, ..., 1/32));
            the FPN levels used by the LevelMapper are derived from them (level = -log2(scale)).
        sampling_ratio: RoIAlign samples per bin side (0 = adaptive); unused by PrRoIPool.
        pooler_type: "ROIAlign" (torchvision roi_align, aligned=False, as maskrcnn-benchmark) or
            "PrRoIPool" (Precise RoI Pooling, differentiable w.r.t. the box coordinates).
        prroi_impl: PrRoIPool's implementation, "compiled", "torch" or "auto" (MODEL.PRROI_POOL_IMPL).
        to_remove: box width offset of the level assignment (MODEL.BOX_CONVENTION; see LevelMapper).
        fusion: "level" (each RoI pooled from the one map its size maps to, Mask R-CNN) or "max" (each RoI pooled
            from every map, element-wise maximum: the authors' AdaptivePooler, MODEL.GAN.DETECTOR_POOLER_FUSION).
    forward(x, boxes): x list[Tensor[N, C, H_l, W_l]] (at least len(scales) maps; extra maps are
    ignored), boxes list[BoxList] of length N in image coordinates -> Tensor[K, C, oh, ow], K the
    total number of boxes, in the order of the concatenated boxes.
    """

    def __init__(self, output_size, scales, sampling_ratio, pooler_type="ROIAlign", prroi_impl="auto", to_remove=1,
                 fusion="level"):
        super().__init__()
        if fusion not in POOLER_FUSIONS:
            raise ValueError("unknown RoI pooler fusion {!r} (MODEL.GAN.DETECTOR_POOLER_FUSION); use one of {}".format(
                fusion, POOLER_FUSIONS))
        self.fusion = fusion
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)
        self.scales = tuple(scales)
        self.pooler_type = pooler_type
        _check_prroi_impl(prroi_impl)
        self.poolers = nn.ModuleList(
            _make_level_pooler(pooler_type, self.output_size, scale, sampling_ratio, prroi_impl) for scale in scales
        )
        lvl_min = -math.log2(scales[0])
        lvl_max = -math.log2(scales[-1])
        if abs(lvl_min - round(lvl_min)) > 1e-3 or abs(lvl_max - round(lvl_max)) > 1e-3:
            raise ValueError("pooler scales {} must be powers of 1/2 (1/stride)".format(tuple(scales)))
        self.map_levels = LevelMapper(int(round(lvl_min)), int(round(lvl_max)), to_remove=to_remove)

    @staticmethod
    def convert_to_roi_format(boxes):
        """list[BoxList] -> Tensor[K, 5] rows (batch_index, x0, y0, x1, y1) (maskrcnn-benchmark's name)."""
        return boxes_to_rois(boxes)

    def forward(self, x, boxes):
        # A Tensor[K, 5] of RoIs is taken as it is: the traced export path (engine/export.py) has no BoxLists.
        rois = boxes if isinstance(boxes, torch.Tensor) else self.convert_to_roi_format(boxes)
        return self.pool_rois(x, rois)

    def pool_rois(self, x, rois):
        """x list[Tensor[N, C, H_l, W_l]], rois Tensor[K, 5] (batch_index, x0, y0, x1, y1) in image pixels ->
        Tensor[K, C, oh, ow] in the order of ``rois``, each RoI pooled from the level its size maps to."""
        if len(self.poolers) == 1:
            return self.poolers[0](x[0], rois.to(x[0].dtype))
        if self.fusion == "max":
            rois = rois.to(x[0].dtype)
            return max_over_levels([pooler(feature, rois) for feature, pooler in zip(x, self.poolers)])
        levels = self.map_levels.levels_of_boxes(rois[:, 1:])  # from the boxes' own precision
        rois = rois.to(x[0].dtype)
        if torch.jit.is_tracing():
            return self._pool_rois_traceable(x, rois, levels)
        # Pool each level's RoIs in one call (no loop over RoIs) and write the result straight into their rows of
        # one output: concatenating and then permuting held two copies of every pooled feature at the peak.
        # The in-place copy keeps autograd paths to both features and rois (its backward needs only the indices).
        # Every RoI maps to one of the levels (the mapper clamps), so every row is written: no zero fill needed.
        result = x[0].new_empty((rois.shape[0], x[0].shape[1]) + self.output_size)
        for level, (feature, pooler) in enumerate(zip(x, self.poolers)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel() == 0:
                continue
            result.index_copy_(0, idx, pooler(feature, rois[idx]))
        return result

    def _pool_rois_traceable(self, x, rois, levels):
        """``pool_rois`` for tracing (ONNX / TorchScript export): the same values, but every level is pooled even
        when it has no RoI (a skipped level would be baked into the trace) and the rows are put back in RoI order
        with a gather instead of the in-place index_copy_. Costs one extra copy of the pooled features."""
        pooled, order = [], []
        for level, (feature, pooler) in enumerate(zip(x, self.poolers)):
            idx = torch.nonzero(levels == level).squeeze(1)
            pooled.append(pooler(feature, rois[idx]))
            order.append(idx)
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]


def _cfg_node(cfg, head_name):
    node = cfg.MODEL
    for part in head_name.split("."):
        if part not in node:
            raise KeyError("make_pooler: cfg.MODEL has no node '{}' (from head_name '{}')".format(part, head_name))
        node = node[part]
    return node


def make_pooler(cfg, head_name):
    """Pooler for ``cfg.MODEL.<head_name>`` (e.g. "ROI_BOX_HEAD", "ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD"; a dotted
    name reaches a nested node). The discriminators do not use it: they pool through
    ``modeling.discriminators.feature_pooling.RoIFeaturePooler``.

    Reads POOLER_RESOLUTION, POOLER_SCALES, POOLER_SAMPLING_RATIO and POOLER_TYPE of that node; a
    node without POOLER_SCALES / POOLER_SAMPLING_RATIO uses the box head's, so it pools from the same maps.
    MODEL.GAN.DETECTOR_POOLER_FUSION says how the levels are read (one per RoI, or the maximum of all).
    MODEL.ROI_HEADS.USE_FPN True requires several scales.
    """
    node = _cfg_node(cfg, head_name)
    box_head = cfg.MODEL.ROI_BOX_HEAD
    resolution = node.POOLER_RESOLUTION
    scales = node.POOLER_SCALES if "POOLER_SCALES" in node else box_head.POOLER_SCALES
    sampling_ratio = node.POOLER_SAMPLING_RATIO if "POOLER_SAMPLING_RATIO" in node else box_head.POOLER_SAMPLING_RATIO
    pooler_type = node.POOLER_TYPE if "POOLER_TYPE" in node else "ROIAlign"
    if cfg.MODEL.ROI_HEADS.USE_FPN and len(scales) < 2:
        # The pooler is multi-level exactly when it has several scales; the key must agree, not be ignored.
        raise ValueError(
            "MODEL.ROI_HEADS.USE_FPN is True but MODEL.{}.POOLER_SCALES has one scale {}: give one scale per FPN "
            "level (e.g. (0.25, 0.125, 0.0625, 0.03125)), or set MODEL.ROI_HEADS.USE_FPN False for a single-map "
            "(C4) backbone".format(head_name if "POOLER_SCALES" in node else "ROI_BOX_HEAD", tuple(scales)))
    return Pooler(
        output_size=(resolution, resolution), scales=scales, sampling_ratio=sampling_ratio, pooler_type=pooler_type,
        prroi_impl=cfg.MODEL.PRROI_POOL_IMPL,
        to_remove=box_convention_to_remove(cfg), fusion=cfg.MODEL.GAN.DETECTOR_POOLER_FUSION,
    )
