"""Feature Pyramid Network (Lin et al. 2017) on top of a ResNet body.

Names follow maskrcnn-benchmark: lateral 1x1 convs ``fpn_inner{i}`` and output 3x3 convs
``fpn_layer{i}``, i = 1 for res2 ... 4 for res5.
"""
from torch import nn
from torch.nn import functional as F


class FPN(nn.Module):
    """Top-down pathway with lateral connections.

    Args:
        in_channels_list: channels of each body output, coarsest last; a 0 entry skips that level
            (no modules are created for it, its input is ignored).
        out_channels: channels of every pyramid level.
        conv_block: factory ``(in, out, kernel_size, stride=1)`` -> module
            (``make_layers.conv_with_kaiming_uniform``).
        top_blocks: optional module producing extra coarser levels (LastLevelMaxPool, LastLevelP6P7).
    forward: list of Tensor[N, C_i, H_i, W_i] (fine to coarse) -> tuple of Tensor[N, out_channels, H_i, W_i],
    followed by the maps of ``top_blocks``.
    """

    def __init__(self, in_channels_list, out_channels, conv_block, top_blocks=None):
        super().__init__()
        self.inner_blocks = []
        self.layer_blocks = []
        for idx, in_channels in enumerate(in_channels_list, 1):
            if in_channels == 0:
                continue
            inner_name = "fpn_inner{}".format(idx)
            layer_name = "fpn_layer{}".format(idx)
            self.add_module(inner_name, conv_block(in_channels, out_channels, 1))
            self.add_module(layer_name, conv_block(out_channels, out_channels, 3, 1))
            self.inner_blocks.append(inner_name)
            self.layer_blocks.append(layer_name)
        self.num_skipped = sum(1 for c in in_channels_list if c == 0)
        self.top_blocks = top_blocks

    def forward(self, x):
        x = list(x)[self.num_skipped:]
        last_inner = getattr(self, self.inner_blocks[-1])(x[-1])
        results = [getattr(self, self.layer_blocks[-1])(last_inner)]
        for feature, inner_block, layer_block in zip(
            x[-2::-1], self.inner_blocks[-2::-1], self.layer_blocks[-2::-1]
        ):
            lateral = getattr(self, inner_block)(feature)
            # Upsample to the lateral's exact size (equals 2x when the input is divisible by the
            # coarsest stride; also correct when it is not).
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, getattr(self, layer_block)(last_inner))
        if isinstance(self.top_blocks, LastLevelP6P7):
            results.extend(self.top_blocks(x[-1], results[-1]))
        elif self.top_blocks is not None:
            results.extend(self.top_blocks(results[-1]))
        return tuple(results)


class LastLevelMaxPool(nn.Module):
    """P6 = max-pool(P5, kernel 1, stride 2), as in Mask R-CNN FPN (used by the RPN only)."""

    def forward(self, x):
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class LastLevelP6P7(nn.Module):
    """RetinaNet's P6 (3x3/2 conv on C5, or on P5 when ``in_channels == out_channels``) and
    P7 (3x3/2 conv on ReLU(P6))."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_p5 = in_channels == out_channels

    def forward(self, c5, p5):
        x = p5 if self.use_p5 else c5
        p6 = self.p6(x)
        p7 = self.p7(F.relu(p6))
        return [p6, p7]
