"""FBNet backbone and heads, built from MODEL.FBNET (architecture MODEL.FBNET.ARCH or the JSON MODEL.FBNET.ARCH_DEF).

Registered names, as maskrcnn-benchmark's FBNet configs use them:
  BACKBONES "FBNet" (the trunk: stem + the "backbone" stages, one stride-16 map for the default archs),
  RPN_HEADS "FBNet.rpn_head" (the "rpn" stage blocks + 1x1 objectness / box convs),
  ROI_BOX_FEATURE_EXTRACTORS "FBNet.roi_head", ROI_MASK_FEATURE_EXTRACTORS "FBNet.roi_head_mask" (RoI pooling +
  the "bbox" / "mask" stage blocks + the optional closing 1x1 conv "last").
maskrcnn-benchmark's "FBNet.roi_head_keypoints" is not registered: none of its architectures has keypoint stages
(it then built every block of the network as the head), so the name is refused as unknown.
"""
import json
import logging
from collections import OrderedDict

from torch import nn

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.poolers import make_pooler
from maskrcnn_benchmark.modeling.rpn.rpn import RPNHeadConvRegressor

from . import fbnet_builder
from .fbnet_modeldef import MODEL_ARCH

logger = logging.getLogger(__name__)


def fbnet_arch_def(cfg):
    """The unified architecture definition named by MODEL.FBNET.ARCH, or parsed from MODEL.FBNET.ARCH_DEF (JSON).

    Giving both with different contents, neither, or a definition whose "rpn_stride" differs from
    MODEL.RPN.ANCHOR_STRIDE[0] is refused, naming the keys.
    """
    name, text = cfg.MODEL.FBNET.ARCH, cfg.MODEL.FBNET.ARCH_DEF
    given = None
    if text:
        try:
            given = json.loads(text)
        except ValueError as error:
            raise ValueError("MODEL.FBNET.ARCH_DEF is not valid JSON ({}); give an architecture definition in "
                             "maskrcnn-benchmark's format or leave it empty and pick MODEL.FBNET.ARCH".format(error))
    if name in MODEL_ARCH:
        if given is not None and given != MODEL_ARCH[name]:
            raise ValueError("MODEL.FBNET.ARCH '{}' is a built-in architecture but MODEL.FBNET.ARCH_DEF gives a "
                             "different one; rename MODEL.FBNET.ARCH or clear MODEL.FBNET.ARCH_DEF".format(name))
        arch = MODEL_ARCH[name]
    elif given is not None:
        arch = given
    else:
        raise ValueError("MODEL.FBNET.ARCH '{}' is not a built-in architecture ({}) and MODEL.FBNET.ARCH_DEF is "
                         "empty; pick one of those or give the definition as JSON in MODEL.FBNET.ARCH_DEF".format(
                             name, ", ".join(sorted(MODEL_ARCH))))
    unified = fbnet_builder.unify_arch_def(arch)
    rpn_stride = unified.get("rpn_stride")
    if rpn_stride is not None and cfg.MODEL.RPN.ANCHOR_STRIDE[0] != rpn_stride:
        raise ValueError("FBNet architecture '{}' needs MODEL.RPN.ANCHOR_STRIDE ({},), got {}".format(
            name, rpn_stride, tuple(cfg.MODEL.RPN.ANCHOR_STRIDE)))
    return unified


def _norm(cfg, bn_type):
    if bn_type == "gn":
        return ("gn", cfg.MODEL.GROUP_NORM.NUM_GROUPS)
    if bn_type not in fbnet_builder.NORM_TYPES:
        raise ValueError("MODEL.FBNET.BN_TYPE / RPN_BN_TYPE = {!r} is not one of {}".format(
            bn_type, fbnet_builder.NORM_TYPES))
    return bn_type


def builder_from_config(cfg, in_channels=-1, bn_type=None):
    """FBNetBuilder from MODEL.FBNET.{SCALE_FACTOR, BN_TYPE, WIDTH_DIVISOR, DW_CONV_SKIP_BN, DW_CONV_SKIP_RELU};
    ``bn_type`` overrides BN_TYPE; "gn" uses MODEL.GROUP_NORM.NUM_GROUPS groups."""
    fbnet = cfg.MODEL.FBNET
    return fbnet_builder.FBNetBuilder(
        width_ratio=fbnet.SCALE_FACTOR, norm=_norm(cfg, bn_type or fbnet.BN_TYPE), width_divisor=fbnet.WIDTH_DIVISOR,
        dw_skip_bn=fbnet.DW_CONV_SKIP_BN, dw_skip_relu=fbnet.DW_CONV_SKIP_RELU, last_depth=in_channels)


def _stage_ids(arch, key, default=None):
    if key in arch:
        return list(arch[key])
    if default is not None:
        return default
    raise ValueError("the FBNet architecture has no '{}' stages (it defines {}); pick an architecture with them "
                     "(MODEL.FBNET.ARCH) or another head".format(key, sorted(k for k in arch if k != "stages")))


class FBNetTrunk(nn.Module):
    """Stem conv ``first`` and the trunk blocks ``stages``. Tensor[N, 3, H, W] -> [Tensor[N, C, H/s, W/s]]."""

    def __init__(self, first, stages):
        super().__init__()
        self.first = first
        self.stages = stages

    def forward(self, x):
        return [self.stages(self.first(x))]


@registry.BACKBONES.register("FBNet")
def build_fbnet_backbone(cfg):
    """FBNet trunk (the architecture's "backbone" stages, default all but the last) as ``nn.Sequential(body)``
    with ``out_channels`` and ``feature_strides`` derived from the architecture."""
    arch = fbnet_arch_def(cfg)
    builder = builder_from_config(cfg)
    first = builder.add_first(arch["first"], in_channels=3)
    num_stages = max(b["stage_idx"] for b in arch["stages"]) + 1
    trunk_stages = _stage_ids(arch, "backbone", list(range(num_stages - 1)))
    stages = builder.add_blocks(fbnet_builder.select_blocks(arch, stage_indices=trunk_stages))
    model = nn.Sequential(OrderedDict([("body", FBNetTrunk(first, stages))]))
    model.out_channels = builder.last_depth
    model.feature_strides = [int(builder.stride)]
    logger.info("FBNet '%s': trunk of %d blocks, %d channels at stride %d", cfg.MODEL.FBNET.ARCH, len(stages),
                model.out_channels, builder.stride)
    return model


class FBNetRPNFeature(nn.Module):
    """The RPN stage blocks ``head``, run on every feature map: list[Tensor] -> list[Tensor]."""

    def __init__(self, head, out_channels):
        super().__init__()
        self.head = head
        self.out_channels = out_channels

    def forward(self, x):
        return [self.head(y) for y in x]


@registry.RPN_HEADS.register("FBNet.rpn_head")
class FBNetRPNHead(nn.Sequential):
    """FBNet RPN head: ``0`` = FBNetRPNFeature (the "rpn" stage blocks), ``1`` = RPNHeadConvRegressor.

    Args:
        blocks: nn.Sequential of FBNet blocks (from the builder).
        out_channels: channels after the blocks.  num_anchors: anchors per location A.
    forward: list[Tensor[N, C, H, W]] -> (list[Tensor[N, A, H, W]], list[Tensor[N, 4A, H, W]]).
    """

    @configurable
    def __init__(self, blocks, out_channels, num_anchors):
        super().__init__(FBNetRPNFeature(blocks, out_channels), RPNHeadConvRegressor(out_channels, num_anchors))

    @classmethod
    def from_config(cls, cfg, in_channels, num_anchors):
        """Reads the architecture's "rpn" stages, MODEL.FBNET.RPN_HEAD_BLOCKS (> 0: only the last that many
        blocks) and MODEL.FBNET.RPN_BN_TYPE (non-empty: its normalisation instead of BN_TYPE)."""
        arch = fbnet_arch_def(cfg)
        builder = builder_from_config(cfg, in_channels, bn_type=cfg.MODEL.FBNET.RPN_BN_TYPE or None)
        blocks = fbnet_builder.select_blocks(arch, stage_indices=_stage_ids(arch, "rpn"))
        num_blocks = cfg.MODEL.FBNET.RPN_HEAD_BLOCKS
        if num_blocks > 0:
            if num_blocks > len(blocks):
                raise ValueError("MODEL.FBNET.RPN_HEAD_BLOCKS = {} but the RPN stage of '{}' has {} blocks".format(
                    num_blocks, cfg.MODEL.FBNET.ARCH, len(blocks)))
            keep = set(range(len(blocks) - num_blocks, len(blocks)))
            blocks = [b for b in blocks if b["block_idx"] in keep]
        head = builder.add_blocks(blocks)
        return {"blocks": head, "out_channels": builder.last_depth, "num_anchors": num_anchors}


class FBNetROIHead(nn.Module):
    """RoI pooling then FBNet blocks and the optional closing 1x1 conv: ``pooler``, ``head.blocks``, ``head.last``.

    Args:
        pooler: (features, proposals) -> Tensor[K, in_channels, R, R].
        blocks: nn.Sequential of FBNet blocks.  last: closing conv (or empty Sequential).
        out_channels: channels of the output.
    forward(x list[Tensor], proposals list[BoxList]) -> Tensor[K, out_channels, R', R'] (R' = R / stride of the
    blocks, e.g. 3 for the box head and 12 for the default mask head at R = 6).
    """

    head_name = None  # "bbox" or "mask": the architecture's stage key
    cfg_name = None  # the MODEL.<node> with the pooler settings
    fbnet_prefix = None  # MODEL.FBNET.<prefix>_HEAD_{BLOCKS, STRIDE, LAST_SCALE}: DET or MASK

    @configurable
    def __init__(self, pooler, blocks, last, out_channels):
        super().__init__()
        self.pooler = pooler
        self.head = nn.Sequential(OrderedDict([("blocks", blocks), ("last", last)]))
        self.out_channels = out_channels

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads the architecture's stages for this head (falling back to "head"), MODEL.FBNET.<X>_HEAD_BLOCKS
        (in-stage block indices to keep, [] = all), <X>_HEAD_STRIDE (0 = the architecture's, 1 or 2 overrides the
        first block's stride), <X>_HEAD_LAST_SCALE (see FBNetBuilder.add_last) and the pooler of MODEL.<head>."""
        fbnet = cfg.MODEL.FBNET
        arch = fbnet_arch_def(cfg)
        use_blocks = list(fbnet[cls.fbnet_prefix + "_HEAD_BLOCKS"])
        stride = fbnet[cls.fbnet_prefix + "_HEAD_STRIDE"]
        last_scale = fbnet[cls.fbnet_prefix + "_HEAD_LAST_SCALE"]
        key = cls.head_name if cls.head_name in arch else "head"
        blocks = fbnet_builder.select_blocks(arch, stage_indices=_stage_ids(arch, key), block_indices=use_blocks)
        if not blocks:
            raise ValueError("MODEL.FBNET.{}_HEAD_BLOCKS = {} selects no block of the '{}' stages of '{}'".format(
                cls.fbnet_prefix, use_blocks, key, fbnet.ARCH))
        if stride not in (0, 1, 2):
            raise ValueError("MODEL.FBNET.{}_HEAD_STRIDE must be 0 (architecture's), 1 or 2, got {}".format(
                cls.fbnet_prefix, stride))
        if stride != 0:
            blocks[0]["block"][3] = stride
        builder = builder_from_config(cfg, in_channels)
        blocks = builder.add_blocks(blocks)
        last = builder.add_last([arch["last"][0], last_scale])
        return {"pooler": make_pooler(cfg, cls.cfg_name), "blocks": blocks, "last": last,
                "out_channels": builder.last_depth}

    def forward(self, x, proposals):
        return self.head(self.pooler(x, proposals))


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FBNet.roi_head")
class FBNetBoxHead(FBNetROIHead):
    """FBNet box head (architecture stages "bbox"; MODEL.FBNET.DET_HEAD_*; pooler of MODEL.ROI_BOX_HEAD)."""

    head_name, cfg_name, fbnet_prefix = "bbox", "ROI_BOX_HEAD", "DET"


@registry.ROI_MASK_FEATURE_EXTRACTORS.register("FBNet.roi_head_mask")
class FBNetMaskHead(FBNetROIHead):
    """FBNet mask head (architecture stages "mask"; MODEL.FBNET.MASK_HEAD_*; pooler of MODEL.ROI_MASK_HEAD)."""

    head_name, cfg_name, fbnet_prefix = "mask", "ROI_MASK_HEAD", "MASK"

