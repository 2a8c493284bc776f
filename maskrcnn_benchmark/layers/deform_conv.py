"""Deformable convolution (Dai et al. 2017) and its modulated form (DCNv2, Zhu et al. 2019) on
``torchvision.ops.deform_conv2d``.

Parameter names follow maskrcnn-benchmark's ``DFConv2d``: ``offset.weight`` / ``offset.bias`` for the conv that
predicts the sampling offsets (and, modulated, the masks), ``conv.weight`` for the deformable kernel, so its
checkpoints (``layer2.0.conv2.offset.weight`` ...) load unchanged.
"""
import torch
from torch import nn
from torchvision.ops import deform_conv2d


class DeformConvKernel(nn.Module):
    """The weight (and optional bias) of a deformable conv; ``forward`` samples at the offsets it is given.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as ``nn.Conv2d``.
        bias: learn a bias (maskrcnn-benchmark's ResNet blocks use none).
    forward(x Tensor[N, C_in, H, W], offset Tensor[N, 2*G*k*k, H', W'], mask Tensor[N, G*k*k, H', W'] | None)
        -> Tensor[N, C_out, H', W']; G (offset groups) is read off the offset's channels.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("deformable conv: in_channels {} and out_channels {} must be divisible by groups {}"
                             .format(in_channels, out_channels, groups))
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # the ResNet convs' init (kaiming-uniform, a=1): a deformable block starts distributed as a plain one
        nn.init.kaiming_uniform_(self.weight, a=1)

    def forward(self, x, offset, mask=None):
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)


class DFConv2d(nn.Module):
    """k x k deformable convolution whose offsets (and masks) a plain conv predicts from the same input.

    The offset conv has the kernel, stride and dilation of the deformable one and ``deformable_groups * 2*k*k``
    outputs (18 per group for k=3), or ``deformable_groups * 3*k*k`` (27) when modulated: the first 2*G*k*k
    channels are the (dy, dx) offsets in torchvision's layout, the last G*k*k pass through a sigmoid to become
    the masks. It starts at zero (weight and bias), as in the DCN papers: at initialisation the layer is the
    plain convolution with the same weight (modulated: that convolution times sigmoid(0) = 0.5).
    maskrcnn-benchmark instead initialised the offset weights kaiming-uniform; its checkpoints overwrite
    either start.

    Args:
        in_channels, out_channels: channels C_in, C_out.
        with_modulated_dcn: DCNv2 masks.
        kernel_size, stride, dilation, groups: of the deformable conv (padding keeps the size: dilation*(k-1)/2).
        deformable_groups: G, channel groups sharing one set of offsets (C_in must be divisible by G).
        bias: bias of the deformable conv.
    forward: Tensor[N, C_in, H, W] -> Tensor[N, C_out, H', W'].
    """

    def __init__(self, in_channels, out_channels, with_modulated_dcn=True, kernel_size=3, stride=1, groups=1,
                 dilation=1, deformable_groups=1, bias=False):
        super().__init__()
        if deformable_groups < 1 or in_channels % deformable_groups:
            raise ValueError("MODEL.RESNETS.DEFORMABLE_GROUPS={} must be >= 1 and divide the {} input channels of "
                             "the deformable conv".format(deformable_groups, in_channels))
        padding = dilation * (kernel_size - 1) // 2
        taps = kernel_size * kernel_size
        self.with_modulated_dcn = with_modulated_dcn
        self.num_offset_channels = deformable_groups * 2 * taps
        offset_channels = deformable_groups * (3 if with_modulated_dcn else 2) * taps
        self.offset = nn.Conv2d(in_channels, offset_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConvKernel(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups, bias=bias)

    def forward(self, x):
        offset = self.offset(x)
        mask = None
        if self.with_modulated_dcn:
            offset, mask = offset[:, :self.num_offset_channels], offset[:, self.num_offset_channels:].sigmoid()
        return self.conv(x, offset, mask)
