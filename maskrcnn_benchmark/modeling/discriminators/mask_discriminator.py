"""Mask discriminator D_m: a multi-scale feature extractor for (mask x RoI features) inputs."""
import torch
from torch import nn

from .box_discriminator import LEAKY_SLOPE, conv_plan, init_discriminator_weights


class MaskDiscriminator(nn.Module):
    """D_m of the paper: a conv encoder whose layer outputs, flattened and concatenated, are the embedding
    compared with an L1 distance between real and fake inputs (Eq. (6)).

    Every one of the ``num_convs`` convs is followed by BatchNorm and LeakyReLU; the resolution falls with
    depth (28 -> 14 -> 7 -> 4 -> 2 -> 1 for five convs) while the width doubles from ``channels``. Using all
    layers makes the L1 distance compare the masks at every scale, from pixel-level detail to the whole shape.
    """

    def __init__(self, in_channels, channels=64, num_convs=5, resolution=28):
        """
        Arguments:
            in_channels (int): channels of the masked RoI features (the FPN's 256).
            channels (int): width of the first conv; doubles with each further conv.
            num_convs (int): number of conv layers (the paper studies 3, 4, 5).
            resolution (int): side of the square inputs (28, the mask head's resolution).
        """
        super(MaskDiscriminator, self).__init__()
        plan, sizes = conv_plan(resolution, num_convs)
        blocks, width_in = [], in_channels
        for index, (kernel, stride, padding) in enumerate(plan):
            width_out = channels * 2 ** index
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width_in, width_out, kernel, stride, padding, bias=False),
                    nn.BatchNorm2d(width_out),
                    nn.LeakyReLU(LEAKY_SLOPE),
                )
            )
            width_in = width_out
        self.blocks = nn.ModuleList(blocks)
        self.resolution = resolution
        self.embedding_size = sum(channels * 2 ** i * size * size for i, size in enumerate(sizes))
        init_discriminator_weights(self)

    def forward(self, x):
        """
        Arguments:
            x (Tensor[K, in_channels, R, R]): a mask (K x 1 x R x R, real or predicted probabilities) multiplied
                element-wise with the RoI's features (K may be 0).
        Returns:
            Tensor[K, embedding_size]: the outputs of all layers, flattened and concatenated.
        """
        if x.dim() != 4 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                "MaskDiscriminator expects masked RoI features K x C x {0} x {0}, got {1}".format(
                    self.resolution, tuple(x.shape)
                )
            )
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x.flatten(start_dim=1))
        return torch.cat(outputs, dim=1)
