"""ResNet bodies (basic-block ResNet-18/34, bottleneck ResNet-50/101/152) and the ResNet head.

Module and parameter names follow maskrcnn-benchmark (``stem.conv1``, ``stem.bn1``,
``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.downsample.0`` ...) so its checkpoints load
unchanged. The normalisation layer keeps the name ``bn*`` whether it is a FrozenBatchNorm2d,
a GroupNorm or a trainable BatchNorm2d.
"""
import functools
from collections import namedtuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from maskrcnn_benchmark.layers import FrozenBatchNorm2d
from maskrcnn_benchmark.layers.deform_conv import DFConv2d
from maskrcnn_benchmark.modeling.make_layers import group_norm, group_norm_config

# index: stage number (1 = res2 ... 4 = res5); block_count: residual blocks in the stage;
# return_features: whether the body returns this stage's output.
StageSpec = namedtuple("StageSpec", ["index", "block_count", "return_features"])


def _stage_specs(block_counts, returned):
    return tuple(StageSpec(i + 1, n, (i + 1) in returned) for i, n in enumerate(block_counts))


# Stage layouts per CONV_BODY name (the last number is the depth; C4 stops after res4).
_DEPTH_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STAGE_SPECS = {
    "R-50-C4": _stage_specs(_DEPTH_BLOCKS[50][:3], {3}),
    "R-50-C5": _stage_specs(_DEPTH_BLOCKS[50], {4}),
    "R-101-C4": _stage_specs(_DEPTH_BLOCKS[101][:3], {3}),
    "R-101-C5": _stage_specs(_DEPTH_BLOCKS[101], {4}),
    "R-18-FPN": _stage_specs(_DEPTH_BLOCKS[18], {1, 2, 3, 4}),
    "R-34-FPN": _stage_specs(_DEPTH_BLOCKS[34], {1, 2, 3, 4}),
    "R-50-FPN": _stage_specs(_DEPTH_BLOCKS[50], {1, 2, 3, 4}),
    "R-101-FPN": _stage_specs(_DEPTH_BLOCKS[101], {1, 2, 3, 4}),
    "R-152-FPN": _stage_specs(_DEPTH_BLOCKS[152], {1, 2, 3, 4}),
    "R-18-FPN-RETINANET": _stage_specs(_DEPTH_BLOCKS[18], {1, 2, 3, 4}),
    "R-34-FPN-RETINANET": _stage_specs(_DEPTH_BLOCKS[34], {1, 2, 3, 4}),
    "R-50-FPN-RETINANET": _stage_specs(_DEPTH_BLOCKS[50], {1, 2, 3, 4}),
    "R-101-FPN-RETINANET": _stage_specs(_DEPTH_BLOCKS[101], {1, 2, 3, 4}),
}
# Bodies built from basic blocks (two 3x3 convs, expansion 1) rather than bottlenecks.
BASIC_BLOCK_BODIES = {"R-18-FPN", "R-34-FPN", "R-18-FPN-RETINANET", "R-34-FPN-RETINANET"}


def _kaiming(conv):
    nn.init.kaiming_uniform_(conv.weight, a=1)
    return conv


def _norm_factory(norm, group_norm_kwargs=None):
    """``norm`` in {"FixedBatchNorm", "GN", "BatchNorm"} -> callable(num_channels) -> module.

    ``group_norm_kwargs`` (dim_per_gp, num_groups, eps) configure GN (MODEL.GROUP_NORM)."""
    if norm == "FixedBatchNorm":
        return FrozenBatchNorm2d
    if norm == "GN":
        return functools.partial(group_norm, **(group_norm_kwargs or {}))
    if norm == "BatchNorm":
        return nn.BatchNorm2d
    raise KeyError("unknown ResNet normalisation '{}' (FixedBatchNorm, GN, BatchNorm)".format(norm))


class BaseStem(nn.Module):
    """conv1 7x7/2 -> norm -> ReLU -> max-pool 3x3/2. Tensor[N,3,H,W] -> Tensor[N,C,H/4,W/4]."""

    def __init__(self, out_channels=64, norm_func=FrozenBatchNorm2d):
        super().__init__()
        self.conv1 = _kaiming(nn.Conv2d(3, out_channels, kernel_size=7, stride=2, padding=3, bias=False))
        self.bn1 = norm_func(out_channels)

    def forward(self, x):
        x = F.relu_(self.bn1(self.conv1(x)))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (grouped, dilated) -> 1x1 residual block, expansion out/bottleneck.

    ``stride_in_1x1`` puts the stride on the first 1x1 conv (MSRA/Caffe2 weights) instead of the
    3x3 (torchvision weights). With ``dilation > 1`` the block keeps resolution (stride 1).
    ``dcn_config`` (maskrcnn-benchmark's dict: "stage_with_dcn", "with_modulated_dcn", "deformable_groups")
    makes the 3x3 conv2 a deformable one (``layers.deform_conv.DFConv2d``).
    """

    def __init__(self, in_channels, bottleneck_channels, out_channels, num_groups=1, stride_in_1x1=True,
                 stride=1, dilation=1, norm_func=FrozenBatchNorm2d, dcn_config=None):
        super().__init__()
        dcn_config = dcn_config or {}
        if dilation > 1:
            stride = 1
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                _kaiming(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)),
                norm_func(out_channels),
            )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _kaiming(nn.Conv2d(in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False))
        self.bn1 = norm_func(bottleneck_channels)
        if dcn_config.get("stage_with_dcn", False):
            self.conv2 = DFConv2d(
                bottleneck_channels, bottleneck_channels,
                with_modulated_dcn=dcn_config.get("with_modulated_dcn", False), kernel_size=3, stride=stride_3x3,
                groups=num_groups, dilation=dilation,
                deformable_groups=dcn_config.get("deformable_groups", 1), bias=False,
            )
        else:
            self.conv2 = _kaiming(nn.Conv2d(
                bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3, padding=dilation, bias=False,
                groups=num_groups, dilation=dilation,
            ))
        self.bn2 = norm_func(bottleneck_channels)
        self.conv3 = _kaiming(nn.Conv2d(bottleneck_channels, out_channels, 1, bias=False))
        self.bn3 = norm_func(out_channels)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu_(self.bn1(self.conv1(x)))
        out = F.relu_(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # In place (as torchvision's blocks): no norm's backward needs its output, and the block saves one
        # activation-sized allocation, the largest maps of the body at res2.
        out += identity
        return F.relu_(out)


class BasicBlock(nn.Module):
    """3x3 -> 3x3 residual block (ResNet-18/34). ``bottleneck_channels``, ``num_groups`` and
    ``stride_in_1x1`` exist for a common block signature; basic blocks have no bottleneck and
    are not grouped (num_groups must be 1)."""

    def __init__(self, in_channels, bottleneck_channels, out_channels, num_groups=1, stride_in_1x1=True,
                 stride=1, dilation=1, norm_func=FrozenBatchNorm2d, dcn_config=None):
        super().__init__()
        if dcn_config and dcn_config.get("stage_with_dcn", False):
            raise ValueError("MODEL.RESNETS.STAGE_WITH_DCN selects a stage of a basic-block body (ResNet-18/34); "
                             "deformable convolutions replace the 3x3 conv of bottleneck blocks only (R-50 and "
                             "deeper)")
        if num_groups != 1:
            raise ValueError("BasicBlock (ResNet-18/34) does not support MODEL.RESNETS.NUM_GROUPS={}; use 1"
                             .format(num_groups))
        if dilation > 1:
            stride = 1
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Sequential(
                _kaiming(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)),
                norm_func(out_channels),
            )
        self.conv1 = _kaiming(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                                        dilation=dilation, bias=False))
        self.bn1 = norm_func(out_channels)
        self.conv2 = _kaiming(nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation,
                                        bias=False))
        self.bn2 = norm_func(out_channels)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as in Bottleneck
        return F.relu_(out)


def _block_and_norm(trans_func):
    """Split a TRANS_FUNC name such as "BottleneckWithGN" into (block kind, norm)."""
    if trans_func not in _TRANSFORMATION_FUNCS:
        raise KeyError("MODEL.RESNETS.TRANS_FUNC='{}' is unknown; use one of {}".format(
            trans_func, ", ".join(sorted(_TRANSFORMATION_FUNCS))))
    kind, norm = trans_func.split("With", 1)
    return kind, norm


def _stem_norm(stem_func):
    prefix = "StemWith"
    if stem_func not in _STEM_FUNCS:
        raise KeyError("MODEL.RESNETS.STEM_FUNC='{}' is unknown; use one of {}".format(
            stem_func, ", ".join(sorted(_STEM_FUNCS))))
    return stem_func[len(prefix):]


_TRANSFORMATION_FUNCS = {
    kind + "With" + norm for kind in ("Bottleneck", "BasicBlock") for norm in ("FixedBatchNorm", "GN", "BatchNorm")
}
_STEM_FUNCS = {"StemWith" + norm for norm in ("FixedBatchNorm", "GN", "BatchNorm")}
_BLOCKS = {"Bottleneck": Bottleneck, "BasicBlock": BasicBlock}


def _dcn_config(stage_with_dcn, stage_index, with_modulated_dcn, deformable_groups):
    """maskrcnn-benchmark's per-stage dcn_config dict for stage ``stage_index`` (1 = res2 ... 4 = res5)."""
    return {"stage_with_dcn": bool(stage_with_dcn[stage_index - 1]), "with_modulated_dcn": with_modulated_dcn,
            "deformable_groups": deformable_groups}


def dcn_settings(cfg):
    """MODEL.RESNETS.{STAGE_WITH_DCN, WITH_MODULATED_DCN, DEFORMABLE_GROUPS} as keyword arguments of ``ResNet`` /
    ``ResNetHead``, checked: 4 stage flags, groups >= 1, and the two modifiers only with a deformable stage
    (otherwise they would be silently ignored)."""
    resnets = cfg.MODEL.RESNETS
    stages = tuple(bool(s) for s in resnets.STAGE_WITH_DCN)
    if len(stages) != 4:
        raise ValueError("MODEL.RESNETS.STAGE_WITH_DCN needs 4 flags (res2, res3, res4, res5); got {}".format(
            tuple(resnets.STAGE_WITH_DCN)))
    if resnets.DEFORMABLE_GROUPS < 1:
        raise ValueError("MODEL.RESNETS.DEFORMABLE_GROUPS={} must be >= 1".format(resnets.DEFORMABLE_GROUPS))
    if not any(stages) and (resnets.WITH_MODULATED_DCN or resnets.DEFORMABLE_GROUPS != 1):
        raise ValueError(
            "MODEL.RESNETS.WITH_MODULATED_DCN={} / DEFORMABLE_GROUPS={} configure deformable convolutions, but "
            "MODEL.RESNETS.STAGE_WITH_DCN selects no stage; set e.g. STAGE_WITH_DCN: (False, True, True, True) "
            "or drop those keys".format(resnets.WITH_MODULATED_DCN, resnets.DEFORMABLE_GROUPS))
    return {"stage_with_dcn": stages, "with_modulated_dcn": bool(resnets.WITH_MODULATED_DCN),
            "deformable_groups": int(resnets.DEFORMABLE_GROUPS)}


def _make_stage(block_module, in_channels, bottleneck_channels, out_channels, block_count, num_groups,
                stride_in_1x1, first_stride, dilation, norm_func, dcn_config=None):
    blocks = []
    stride = first_stride
    for _ in range(block_count):
        blocks.append(block_module(in_channels, bottleneck_channels, out_channels, num_groups, stride_in_1x1,
                                   stride, dilation=dilation, norm_func=norm_func, dcn_config=dcn_config))
        stride = 1
        in_channels = out_channels
    return nn.Sequential(*blocks)


class _RecomputableBlock(object):
    """Calls ``block`` for torch.utils.checkpoint: the first call is the forward; later calls, the recomputation in
    the backward, normalise with the same batch statistics but then put BatchNorm's running statistics back, so they
    move once per step, as without checkpointing."""

    def __init__(self, block):
        self.block = block
        self.called = False

    def __call__(self, x):
        if not self.called:
            self.called = True
            return self.block(x)
        buffers = [b for m in self.block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for b in m.buffers()]
        kept = [b.clone() for b in buffers]
        try:
            return self.block(x)
        finally:  # also when checkpoint stops the recomputation early, by raising, once it has what it needs
            with torch.no_grad():
                for b, value in zip(buffers, kept):
                    b.copy_(value)


class ResNet(nn.Module):
    """ResNet body returning the outputs of the stages marked ``return_features``.

    Args:
        stage_specs: tuple of StageSpec, consecutive from index 1.
        block: "Bottleneck" or "BasicBlock".
        norm / stem_norm: "FixedBatchNorm", "GN" or "BatchNorm" for the blocks / the stem.
        num_groups, width_per_group: bottleneck width of res2 is num_groups * width_per_group,
            doubled at each later stage.
        res2_out_channels: output channels of res2 for bottleneck blocks (doubled per stage);
            basic blocks output their width (64, 128, 256, 512 for ResNet-18/34).
        res5_dilation: dilation of res5 (> 1 keeps stride 16 for res5).
        freeze_at: freeze the stem (>= 1) and res2..res(freeze_at) (parameters get requires_grad=False).
        group_norm_kwargs: GroupNorm settings (dim_per_gp, num_groups, eps) when a norm is "GN".
        stage_with_dcn: 4 bools, res2..res5: deformable 3x3 convs in every block of that stage.
        with_modulated_dcn, deformable_groups: DCNv2 masks; offset groups (see ``layers.deform_conv.DFConv2d``).
        activation_checkpointing: in training, keep only each block's input of the trainable stages for the backward
            and recompute the block's inside there (torch.utils.checkpoint): less memory, one more forward of those
            blocks, the same gradients (MODEL.RESNETS.ACTIVATION_CHECKPOINTING).
    forward: Tensor[N,3,H,W] -> list of Tensor[N, C_i, H/s_i, W/s_i] for returned stages, in order;
    ``self.out_channels_per_stage`` / ``self.strides`` describe them.
    """

    def __init__(self, stage_specs, block="Bottleneck", norm="FixedBatchNorm", stem_norm="FixedBatchNorm",
                 num_groups=1, width_per_group=64, stride_in_1x1=True, res5_dilation=1, res2_out_channels=256,
                 stem_out_channels=64, freeze_at=2, group_norm_kwargs=None, stage_with_dcn=(False,) * 4,
                 with_modulated_dcn=False, deformable_groups=1, activation_checkpointing=False):
        super().__init__()
        self.activation_checkpointing = activation_checkpointing
        block_module = _BLOCKS[block]
        norm_func = _norm_factory(norm, group_norm_kwargs)
        self.stem = BaseStem(stem_out_channels, _norm_factory(stem_norm, group_norm_kwargs))
        in_channels = stem_out_channels
        stage2_bottleneck = num_groups * width_per_group
        stage2_out = res2_out_channels if block == "Bottleneck" else stage2_bottleneck
        self.stages = []
        self.return_features = {}
        self.out_channels_per_stage = []
        self.strides = []
        current_stride = 4
        for spec in stage_specs:
            name = "layer" + str(spec.index)
            factor = 2 ** (spec.index - 1)
            dilation = res5_dilation if spec.index == 4 else 1
            first_stride = int(spec.index > 1) + 1
            if dilation == 1:
                current_stride *= first_stride
            module = _make_stage(block_module, in_channels, stage2_bottleneck * factor, stage2_out * factor,
                                 spec.block_count, num_groups, stride_in_1x1, first_stride, dilation, norm_func,
                                 _dcn_config(stage_with_dcn, spec.index, with_modulated_dcn, deformable_groups))
            in_channels = stage2_out * factor
            self.add_module(name, module)
            self.stages.append(name)
            self.return_features[name] = spec.return_features
            if spec.return_features:
                self.out_channels_per_stage.append(in_channels)
                self.strides.append(current_stride)
        self._freeze_backbone(freeze_at)

    def _freeze_backbone(self, freeze_at):
        # Stage 0 is the stem; frozen early layers keep ImageNet low-level filters and save memory.
        for stage_index in range(freeze_at):
            module = self.stem if stage_index == 0 else getattr(self, "layer" + str(stage_index), None)
            if module is None:
                continue
            for p in module.parameters():
                p.requires_grad = False

    def forward(self, x):
        outputs = []
        x = self.stem(x)
        for name in self.stages:
            stage = getattr(self, name)
            if self.activation_checkpointing and self.training and torch.is_grad_enabled() and (
                    x.requires_grad or any(p.requires_grad for p in stage.parameters())):
                for block in stage:
                    x = checkpoint(_RecomputableBlock(block), x, use_reentrant=False)
            else:
                x = stage(x)
            if self.return_features[name]:
                outputs.append(x)
        return outputs


class ResNetHead(nn.Module):
    """Extra ResNet stages applied to pooled RoI features (res5 of the C4 box/mask heads).

    Same block arguments as ``ResNet``; ``stride_init`` overrides the first stage's stride
    (default 2 for stages after res2); ``stage_with_dcn`` is indexed by stage as for the body (C4 models: its
    4th entry makes this res5 deformable). Tensor[K, C_in, h, w] -> Tensor[K, out_channels, h/s, w/s].
    """

    def __init__(self, block_module="Bottleneck", stages=(StageSpec(4, 3, False),), num_groups=1,
                 width_per_group=64, stride_in_1x1=True, stride_init=None, res2_out_channels=256, dilation=1,
                 norm="FixedBatchNorm", group_norm_kwargs=None, stage_with_dcn=(False,) * 4,
                 with_modulated_dcn=False, deformable_groups=1):
        super().__init__()
        if isinstance(block_module, str):
            if block_module in _TRANSFORMATION_FUNCS:
                block_module, norm = _block_and_norm(block_module)
            block_cls = _BLOCKS[block_module]
        else:
            block_cls = block_module
        norm_func = _norm_factory(norm, group_norm_kwargs)
        stage2_relative_factor = 2 ** (stages[0].index - 1)
        stage2_bottleneck = num_groups * width_per_group
        stage2_out = res2_out_channels if block_cls is Bottleneck else stage2_bottleneck
        out_channels = stage2_out * stage2_relative_factor
        in_channels = out_channels // 2
        bottleneck_channels = stage2_bottleneck * stage2_relative_factor
        self.stages = []
        stride = stride_init
        for spec in stages:
            name = "layer" + str(spec.index)
            if stride is None:
                stride = int(spec.index > 1) + 1
            module = _make_stage(block_cls, in_channels, bottleneck_channels, out_channels, spec.block_count,
                                 num_groups, stride_in_1x1, stride, dilation, norm_func,
                                 _dcn_config(stage_with_dcn, spec.index, with_modulated_dcn, deformable_groups))
            stride = None
            self.add_module(name, module)
            self.stages.append(name)
            in_channels = out_channels
            out_channels *= 2
            bottleneck_channels *= 2
        self.out_channels = in_channels

    def forward(self, x):
        for name in self.stages:
            x = getattr(self, name)(x)
        return x


def build_resnet_body(cfg):
    """ResNet body for ``cfg.MODEL.BACKBONE.CONV_BODY``.

    The body name fixes the depth and the block kind (basic blocks for R-18/34, bottlenecks
    otherwise); MODEL.RESNETS.TRANS_FUNC / STEM_FUNC choose the normalisation (their
    "FixedBatchNorm" / "GN" / "BatchNorm" suffix), so the default TRANS_FUNC
    "BottleneckWithFixedBatchNorm" also works for R-18-FPN. MODEL.RESNETS.STAGE_WITH_DCN makes the 3x3 convs
    of the selected stages deformable (a C4 body has no res5: its 4th flag acts on the C4 RoI head's res5).
    """
    conv_body = cfg.MODEL.BACKBONE.CONV_BODY
    if conv_body not in STAGE_SPECS:
        raise KeyError("MODEL.BACKBONE.CONV_BODY='{}' has no ResNet stage layout; known: {}".format(
            conv_body, ", ".join(sorted(STAGE_SPECS))))
    _, norm = _block_and_norm(cfg.MODEL.RESNETS.TRANS_FUNC)
    return ResNet(
        STAGE_SPECS[conv_body],
        block="BasicBlock" if conv_body in BASIC_BLOCK_BODIES else "Bottleneck",
        norm=norm,
        stem_norm=_stem_norm(cfg.MODEL.RESNETS.STEM_FUNC),
        num_groups=cfg.MODEL.RESNETS.NUM_GROUPS,
        width_per_group=cfg.MODEL.RESNETS.WIDTH_PER_GROUP,
        stride_in_1x1=cfg.MODEL.RESNETS.STRIDE_IN_1X1,
        res5_dilation=cfg.MODEL.RESNETS.RES5_DILATION,
        res2_out_channels=cfg.MODEL.RESNETS.RES2_OUT_CHANNELS,
        stem_out_channels=cfg.MODEL.RESNETS.STEM_OUT_CHANNELS,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_CONV_BODY_AT,
        group_norm_kwargs=group_norm_config(cfg),
        activation_checkpointing=cfg.MODEL.RESNETS.ACTIVATION_CHECKPOINTING,
        **dcn_settings(cfg),
    )
