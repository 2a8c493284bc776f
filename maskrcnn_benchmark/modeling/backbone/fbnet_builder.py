"""Building blocks of FBNet (Wu et al. 2019, "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable
Neural Architecture Search") and the builder that turns an architecture definition into modules.

An architecture definition (``fbnet_modeldef.MODEL_ARCH`` or the JSON of MODEL.FBNET.ARCH_DEF) has maskrcnn-benchmark's
layout::

    {"block_op_type": [[op, ...] per stage],              # block type of every block, e.g. "ir_k3"
     "block_cfg": {"first": [channels, stride(, kernel)],  # stem conv
                   "stages": [[[t, c, n, s], ...] per stage],  # expansion, channels, repeats, stride (< 0: upsample)
                   "last": [channels, scale],              # optional 1x1 conv closing each RoI head
                   "backbone": [stage ids], "rpn": [...], "bbox": [...], "mask": [...], "kpts": [...]}}

Module names (``first``, ``xif<stage>_<block>``, ``pw``/``dw``/``pwl`` with ``conv``/``bn``) are maskrcnn-benchmark's,
so its FBNet checkpoints load.
"""
import copy
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.layers import BatchNorm2d, FrozenBatchNorm2d

NORM_TYPES = ("bn", "af", "gn")


def _round_half_away(x):
    return math.floor(x + 0.5) if x >= 0.0 else math.ceil(x - 0.5)


def divisible_width(num, divisor, min_val):
    """Channel count ``num`` rounded to the nearest multiple of ``divisor`` (MODEL.FBNET.WIDTH_DIVISOR); a count that
    rounds to 0 becomes ``min_val * divisor`` (maskrcnn-benchmark's rule, kept so checkpoints have the same shapes)."""
    num = int(num)
    if divisor > 0 and num % divisor != 0:
        return int((_round_half_away(num / divisor) or min_val) * divisor)
    return num


def make_norm(norm, channels):
    """``norm``: "bn" (BatchNorm2d), "af" (FrozenBatchNorm2d, affine only), ("gn", groups) (GroupNorm) or None."""
    if norm is None:
        return None
    if isinstance(norm, (tuple, list)) and len(norm) == 2 and norm[0] == "gn":
        return nn.GroupNorm(num_groups=norm[1], num_channels=channels)
    if norm == "bn":
        return BatchNorm2d(channels)
    if norm == "af":
        return FrozenBatchNorm2d(channels)
    raise ValueError("MODEL.FBNET.BN_TYPE / RPN_BN_TYPE = {!r} is not one of {}".format(norm, NORM_TYPES))


class ConvBNRelu(nn.Sequential):
    """Conv (no bias unless ``bias``) -> optional norm -> optional ReLU; submodules ``conv``, ``bn``, ``relu``.

    Tensor[N, in_channels, H, W] -> Tensor[N, out_channels, H / stride, W / stride]. The conv starts with Kaiming
    normal (fan-out) weights.
    """

    def __init__(self, in_channels, out_channels, kernel, stride=1, groups=1, norm="bn", relu=True, bias=False):
        super().__init__()
        if stride not in (1, 2, 4):
            raise ValueError("FBNet conv stride must be 1, 2 or 4 (negative strides upsample), got {}".format(stride))
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups,
                         bias=bias)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.constant_(conv.bias, 0.0)
        self.add_module("conv", conv)
        norm_layer = make_norm(norm, out_channels)
        if norm_layer is not None:
            self.add_module("bn", norm_layer)
        if relu:
            self.add_module("relu", nn.ReLU(inplace=True))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: [N, g*C', H, W] -> view [N, g, C', H, W] -> transpose -> [N, C'*g, H, W]."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        if c % self.groups:
            raise ValueError("ChannelShuffle: {} channels are not divisible by {} groups".format(c, self.groups))
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(conv(relu(conv(avgpool(x))))), bottleneck max(C / 4, 8) channels."""

    reduction = 4

    def __init__(self, channels):
        super().__init__()
        mid = max(channels // self.reduction, 8)
        self.op = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(mid, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.op(x)


def _upsample_and_stride(stride):
    """A negative stride -s means: upsample x s (nearest) before a stride-1 depthwise conv."""
    if not isinstance(stride, int) or stride == 0 or abs(stride) not in (1, 2, 4):
        raise ValueError("FBNet block stride must be one of 1, 2, 4 or -1, -2, -4 (upsampling), got {!r}".format(
            stride))
    if stride < 0:
        return -stride, 1
    return None, stride


class IRFBlock(nn.Module):
    """Inverted residual block (MobileNetV2 style) with FBNet's options.

    1x1 ``pw`` (groups ``pw_group``) -> channel shuffle (if pw_group > 1) -> nearest upsampling (stride < 0) ->
    k x k depthwise ``dw`` (two of them when ``cascade_dw``; none for k = 1) -> 1x1 linear ``pwl`` -> + input when the
    stride is 1 and the width is unchanged -> squeeze-and-excitation ``se4`` when ``se``.

    Args:
        in_channels, out_channels: widths; the middle width is in_channels * expansion rounded by ``width_divisor``.
        expansion: expansion ratio t.  stride: 1, 2, 4 or -1, -2, -4 (upsampling).  kernel: 1, 3, 5 or 7.
        norm: normalisation type (see ``make_norm``).
        dw_skip_bn, dw_skip_relu: no norm / no ReLU after the (last) depthwise conv (MODEL.FBNET.DW_CONV_SKIP_*).
    """

    def __init__(self, in_channels, out_channels, expansion, stride, norm="bn", kernel=3, width_divisor=1,
                 pw_group=1, se=False, cascade_dw=False, dw_skip_bn=False, dw_skip_relu=False):
        super().__init__()
        if kernel not in (1, 3, 5, 7):
            raise ValueError("IRFBlock: kernel must be 1, 3, 5 or 7, got {}".format(kernel))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.output_depth = out_channels
        mid = divisible_width(int(in_channels * expansion), width_divisor, width_divisor)
        self.pw = ConvBNRelu(in_channels, mid, 1, groups=pw_group, norm=norm, relu=True)
        self.shuffle = ChannelShuffle(pw_group) if pw_group > 1 else None
        self.upscale, stride = _upsample_and_stride(stride)
        last_dw_norm = None if dw_skip_bn else norm
        if kernel == 1:
            if stride != 1:  # maskrcnn-benchmark silently dropped the stride here
                raise ValueError("ir_k1 blocks have no depthwise conv to carry stride {}; use stride 1 or a k3-k7 "
                                 "block in the architecture definition".format(stride))
            self.dw = nn.Sequential()
        elif cascade_dw:
            self.dw = nn.Sequential(OrderedDict([
                ("dw1", ConvBNRelu(mid, mid, kernel, stride, groups=mid, norm=norm, relu=True)),
                ("dw2", ConvBNRelu(mid, mid, kernel, 1, groups=mid, norm=last_dw_norm, relu=not dw_skip_relu)),
            ]))
        else:
            self.dw = ConvBNRelu(mid, mid, kernel, stride, groups=mid, norm=last_dw_norm, relu=not dw_skip_relu)
        self.pwl = ConvBNRelu(mid, out_channels, 1, groups=pw_group, norm=norm, relu=False)
        self.se4 = SEModule(out_channels) if se else nn.Sequential()

    def forward(self, x):
        y = self.pw(x)
        if self.shuffle is not None:
            y = self.shuffle(y)
        if self.upscale is not None:
            y = F.interpolate(y, scale_factor=self.upscale, mode="nearest")
        y = self.pwl(self.dw(y))
        if self.use_res_connect:
            y = y + x
        return self.se4(y)


class Identity(nn.Module):
    """"skip": the input itself, or a 1x1 conv + norm + ReLU when the width or the stride changes."""

    def __init__(self, in_channels, out_channels, stride, norm="bn"):
        super().__init__()
        self.output_depth = out_channels
        self.conv = (ConvBNRelu(in_channels, out_channels, 1, stride, norm=norm, relu=True)
                     if in_channels != out_channels or stride != 1 else None)

    def forward(self, x):
        return x if self.conv is None else self.conv(x)


class CascadeConv3x3(nn.Sequential):
    """"basic_block": 3x3 conv (stride) -> norm -> ReLU -> 3x3 conv -> norm, + input when shapes allow."""

    def __init__(self, in_channels, out_channels, stride, norm="bn"):
        super().__init__(
            ConvBNRelu(in_channels, in_channels, 3, stride, norm=norm, relu=True),
            ConvBNRelu(in_channels, out_channels, 3, 1, norm=norm, relu=False))
        self.output_depth = out_channels
        self.res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = super().forward(x)
        return y + x if self.res_connect else y


class Shift(nn.Module):
    """Fixed depthwise 'shift' (Wu et al. 2018): each channel group copies one position of a k x k window, the
    centre taking the remainder channels. Tensor[N, C, H, W] -> Tensor[N, C, H / stride, W / stride]."""

    def __init__(self, channels, kernel_size, stride, padding):
        super().__init__()
        kernel = torch.zeros(channels, 1, kernel_size, kernel_size)
        per_position, remainder = divmod(channels, kernel_size ** 2)
        channel = 0
        for i in range(kernel_size):
            for j in range(kernel_size):
                count = per_position + (remainder if i == j == kernel_size // 2 else 0)
                kernel[channel:channel + count, 0, i, j] = 1
                channel += count
        self.register_buffer("kernel", kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.kernel, None, self.stride, self.padding, 1, x.shape[1])


class ShiftBlock5x5(nn.Module):
    """"shift_5x5": 1x1 conv -> norm -> ReLU -> 5x5 shift (stride) -> 1x1 conv -> norm, + input when shapes allow."""

    def __init__(self, in_channels, out_channels, expansion, stride, norm="bn"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("shift_5x5: stride must be 1 or 2, got {}".format(stride))
        mid = divisible_width(in_channels * expansion, 8, 8)
        self.pw = ConvBNRelu(in_channels, mid, 1, norm=norm, relu=True)
        self.shift = Shift(mid, 5, stride, 2)
        self.pwl = ConvBNRelu(mid, out_channels, 1, norm=norm, relu=False)
        self.output_depth = out_channels
        self.res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = self.pwl(self.shift(self.pw(x)))
        return y + x if self.res_connect else y


def _ir_types():
    """Block type name -> IRFBlock options; "expansion" None means: t of the block's [t, c, n, s]."""
    types = {"ir_k{}".format(k): dict(kernel=k) for k in (1, 3, 5, 7)}
    types["shuffle"] = dict(kernel=3, pw_group=4)
    for k in (3, 5):
        for t in (1, 3, 6):
            types["ir_k{}_e{}".format(k, t)] = dict(kernel=k, expansion=t)
        types["ir_k{}_s4".format(k)] = dict(kernel=k, expansion=4, pw_group=4)
        types["ir_k{}_s2".format(k)] = dict(kernel=k, expansion=1, pw_group=2)
        for name in ["ir_k{}_e{}".format(k, t) for t in (1, 3, 6)] + ["ir_k{}_s4".format(k), "ir_k{}_s2".format(k)]:
            types[name + "_se"] = dict(types[name], se=True)
    types["ir_k3_sep"] = dict(kernel=3, cascade_dw=True)
    for t in (1, 3, 6):
        types["ir_k33_e{}".format(t)] = dict(kernel=3, expansion=t, cascade_dw=True)
        types["ir_k7_e{}".format(t)] = dict(kernel=7, expansion=t)
        types["ir_k7_sep_e{}".format(t)] = dict(kernel=7, expansion=t, cascade_dw=True)
    types["ir_k7_sep"] = dict(kernel=7, cascade_dw=True)
    return types


IR_BLOCK_TYPES = _ir_types()
BLOCK_TYPES = sorted(list(IR_BLOCK_TYPES) + ["skip", "basic_block", "shift_5x5"])


def make_block(op_type, in_channels, out_channels, expansion, stride, norm="bn", width_divisor=1, dw_skip_bn=False,
               dw_skip_relu=False):
    """The block named ``op_type`` (one of BLOCK_TYPES); the module has ``output_depth``."""
    if op_type == "skip":
        return Identity(in_channels, out_channels, stride, norm)
    if op_type == "basic_block":
        return CascadeConv3x3(in_channels, out_channels, stride, norm)
    if op_type == "shift_5x5":
        return ShiftBlock5x5(in_channels, out_channels, expansion, stride, norm)
    if op_type not in IR_BLOCK_TYPES:
        raise ValueError("FBNet: unknown block type {!r} in the architecture definition; known: {}".format(
            op_type, ", ".join(BLOCK_TYPES)))
    options = dict(IR_BLOCK_TYPES[op_type])
    expansion = options.pop("expansion", expansion)
    return IRFBlock(in_channels, out_channels, expansion, stride, norm=norm, width_divisor=width_divisor,
                    dw_skip_bn=dw_skip_bn, dw_skip_relu=dw_skip_relu, **options)


def _primitive(op_type):
    def build(in_channels, out_channels, expansion, stride, **kwargs):
        return make_block(op_type, in_channels, out_channels, expansion, stride, **kwargs)

    build.__name__ = build.__qualname__ = "build_" + op_type
    build.__doc__ = "make_block({!r}, in_channels, out_channels, expansion, stride, **kwargs)".format(op_type)
    return build


# maskrcnn-benchmark's table of block builders under its name: block type -> f(C_in, C_out, expansion, stride,
# **options) returning the module (options: norm, width_divisor, dw_skip_bn, dw_skip_relu). Code written against
# maskrcnn-benchmark's fbnet_builder.PRIMITIVES finds every block type here; make_block is the same by name.
PRIMITIVES = {op_type: _primitive(op_type) for op_type in BLOCK_TYPES}


def unify_arch_def(arch_def):
    """Flatten an architecture definition: the keys of ``block_cfg`` move to the top level and ``stages`` becomes
    one dict per block {"stage_idx", "block_idx", "block": [t, c, 1, s], "block_op_type"}, repeats expanded (only
    the first block of a [t, c, n, s] entry keeps the stride s)."""
    if "block_cfg" not in arch_def or "stages" not in arch_def["block_cfg"] or "block_op_type" not in arch_def:
        raise ValueError("FBNet architecture definition needs 'block_op_type' and 'block_cfg' with 'stages'; got "
                         "keys {}".format(sorted(arch_def)))
    unified = {k: copy.deepcopy(v) for k, v in arch_def["block_cfg"].items() if k != "stages"}
    unified.update({k: copy.deepcopy(v) for k, v in arch_def.items() if k not in ("block_cfg", "block_op_type")})
    blocks = []
    for stage_idx, (stage, op_types) in enumerate(zip(arch_def["block_cfg"]["stages"], arch_def["block_op_type"])):
        expanded = []
        for t, c, n, s in stage:
            expanded += [[t, c, 1, s if i == 0 else 1] for i in range(n)]
        if len(expanded) != len(op_types):
            raise ValueError("FBNet architecture definition: stage {} has {} blocks but {} block_op_type entries"
                             .format(stage_idx, len(expanded), len(op_types)))
        for block_idx, (block, op_type) in enumerate(zip(expanded, op_types)):
            blocks.append({"stage_idx": stage_idx, "block_idx": block_idx, "block": block,
                           "block_op_type": op_type})
    if len(arch_def["block_op_type"]) != len(arch_def["block_cfg"]["stages"]):
        raise ValueError("FBNet architecture definition: {} stages but {} block_op_type stages".format(
            len(arch_def["block_cfg"]["stages"]), len(arch_def["block_op_type"])))
    unified["stages"] = blocks
    return unified


def select_blocks(unified_arch, stage_indices=None, block_indices=None):
    """The blocks of ``unified_arch`` in the given stages and with the given in-stage indices (None or [] = all)."""
    return [copy.deepcopy(b) for b in unified_arch["stages"]
            if (not stage_indices or b["stage_idx"] in stage_indices)
            and (not block_indices or b["block_idx"] in block_indices)]


class FBNetBuilder(object):
    """Creates the stem, block sequences and closing convs of an FBNet, tracking the current width and stride.

    Args:
        width_ratio: channel multiplier (MODEL.FBNET.SCALE_FACTOR).
        norm: normalisation (MODEL.FBNET.BN_TYPE; ("gn", groups) for GroupNorm).
        width_divisor: channels rounded to multiples of this (MODEL.FBNET.WIDTH_DIVISOR).
        dw_skip_bn, dw_skip_relu: MODEL.FBNET.DW_CONV_SKIP_BN / DW_CONV_SKIP_RELU.
    Attributes: ``last_depth`` (channels of the last module added), ``stride`` (its output stride, float).
    """

    def __init__(self, width_ratio=1.0, norm="bn", width_divisor=1, dw_skip_bn=False, dw_skip_relu=False,
                 last_depth=-1):
        self.width_ratio = width_ratio
        self.norm = norm
        self.width_divisor = width_divisor
        self.dw_skip_bn = dw_skip_bn
        self.dw_skip_relu = dw_skip_relu
        self.last_depth = last_depth
        self.stride = 1.0

    def _width(self, channels):
        return divisible_width(int(channels * self.width_ratio), self.width_divisor, self.width_divisor)

    def add_first(self, first, in_channels=3):
        """``first`` = [channels, stride(, kernel=3)] -> ConvBNRelu stem."""
        channels, stride = first[0], first[1]
        kernel = first[2] if len(first) > 2 else 3
        out_channels = self._width(channels)
        stem = ConvBNRelu(in_channels, out_channels, kernel, stride, norm=self.norm, relu=True)
        self.last_depth = out_channels
        self.stride *= stride
        return stem

    def add_blocks(self, blocks):
        """Blocks from ``select_blocks`` -> nn.Sequential of modules named ``xif<stage>_<block>``."""
        modules = OrderedDict()
        for block in blocks:
            t, c, n, s = block["block"]
            if n != 1:
                raise ValueError("FBNet: expanded block expected (n = 1), got {}".format(block["block"]))
            module = make_block(block["block_op_type"], self.last_depth, self._width(c), t, s, norm=self.norm,
                                width_divisor=self.width_divisor, dw_skip_bn=self.dw_skip_bn,
                                dw_skip_relu=self.dw_skip_relu)
            modules["xif{}_{}".format(block["stage_idx"], block["block_idx"])] = module
            self.last_depth = module.output_depth
            self.stride = self.stride * s if s > 0 else self.stride / -s
        return nn.Sequential(modules)

    def add_last(self, last):
        """``last`` = [channels, scale]: scale 0 -> nothing; > 0 -> 1x1 conv to channels * scale (channels times
        the width ratio when that is > 1); < 0 -> 1x1 conv to the current width * -scale."""
        channels, scale = last
        if scale == 0.0:
            return nn.Sequential()
        if scale > 0:
            out_channels = int(channels * self.width_ratio) if self.width_ratio > 1.0 else channels
            out_channels = int(out_channels * scale)
        else:
            out_channels = int(self.last_depth * -scale)
        out_channels = self._width(out_channels)
        if out_channels == 0:
            return nn.Sequential()
        module = ConvBNRelu(self.last_depth, out_channels, 1, 1, norm=self.norm, relu=True)
        self.last_depth = out_channels
        return module
