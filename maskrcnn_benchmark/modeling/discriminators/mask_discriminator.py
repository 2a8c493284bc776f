"""Mask discriminator D_m: a multi-scale feature extractor for (mask x RoI features) inputs."""
import torch
from torch import nn

from .box_discriminator import LEAKY_SLOPE, conv_plan, hidden_norm, init_discriminator_weights


class MaskDiscriminator(nn.Module):
    """D_m of the paper: a conv encoder whose layer outputs, flattened and concatenated, are the embedding
    compared with an L1 distance between real and fake inputs (Eq. (6)).

    Every one of the ``num_convs`` convs is followed by BatchNorm and LeakyReLU; the resolution falls with
    depth (28 -> 14 -> 7 -> 4 -> 2 -> 1 for five convs) while the width doubles from ``channels``. Using all
    layers makes the L1 distance compare the masks at every scale, from pixel-level detail to the whole shape.

    The authors' code (SegAN's critic) differs: its embedding starts with the raw input, and the layer outputs
    are weighted 1, 2, 2, 2, 4 (``embed_input``, ``layer_weights``; MODEL.GAN.MASK_DISC.EMBED_INPUT,
    LAYER_WEIGHTS); its first conv has no BatchNorm (convblock1, gan_mrcnn.py lines 511-516;
    ``first_conv_norm=False``, MODEL.GAN.FIRST_CONV_NORM: an nn.Identity takes its place, so ``blocks[i][j]`` keep
    their indices); its weights are He-normal over the fan-out (``init="he_fan_out"``, MODEL.GAN.D_INIT).
    """

    def __init__(self, in_channels, channels=64, num_convs=5, resolution=28, embed_input=False, layer_weights=None,
                 batch_norm=True, first_conv_norm=True, init="dcgan"):
        """
        Arguments:
            in_channels (int): channels of the masked inputs (the FPN's 256 for mask x features; 1 for masks
                alone, 3 for mask x image pixels).
            channels (int): width of the first conv; doubles with each further conv.
            num_convs (int): number of conv layers (the paper studies 3, 4, 5).
            resolution (int): side of the square inputs (28, the mask head's resolution).
            embed_input (bool): put the raw input (weight 1) in front of the layer outputs in the embedding.
            layer_weights (sequence of float or None): one factor per conv layer that its output is multiplied by in
                the embedding (None: all 1).
            batch_norm (bool): BatchNorm after each conv (False with spectral normalisation, whose bound a
                BatchNorm's scale would undo).
            first_conv_norm (bool): with ``batch_norm``, False leaves the first conv without BatchNorm (and without
                bias, as every conv followed by BatchNorm): conv -> LeakyReLU. Without ``batch_norm`` it changes
                nothing, every conv keeps its bias.
            init (str): how the weights are drawn, one of D_INITS (MODEL.GAN.D_INIT, see init_discriminator_weights).
        """
        super(MaskDiscriminator, self).__init__()
        plan, sizes = conv_plan(resolution, num_convs)
        if layer_weights is not None and len(layer_weights) != num_convs:
            raise ValueError(
                "MODEL.GAN.MASK_DISC.LAYER_WEIGHTS has {} weights {} but the mask discriminator has {} conv layers "
                "(MODEL.GAN.MASK_DISC.NUM_CONVS); give one weight per layer or () for all 1".format(
                    len(layer_weights), tuple(layer_weights), num_convs))
        blocks, width_in = [], in_channels
        for index, (kernel, stride, padding) in enumerate(plan):
            width_out = channels * 2 ** index
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width_in, width_out, kernel, stride, padding, bias=not batch_norm),
                    hidden_norm(nn.BatchNorm2d, width_out, index, batch_norm, first_conv_norm),
                    nn.LeakyReLU(LEAKY_SLOPE),
                )
            )
            width_in = width_out
        self.blocks = nn.ModuleList(blocks)
        self.resolution = resolution
        self.embed_input = embed_input
        self.layer_weights = tuple(float(w) for w in layer_weights) if layer_weights is not None else None
        self.embedding_size = sum(channels * 2 ** i * size * size for i, size in enumerate(sizes))
        if embed_input:
            self.embedding_size += in_channels * resolution * resolution
        # drawn once every layer exists, so that the rule reaches all of them
        init_discriminator_weights(self, init)

    def forward(self, x):
        """
        Arguments:
            x (Tensor[K, in_channels, R, R]): a mask (K x 1 x R x R, real or predicted probabilities) multiplied
                element-wise with the RoI's features (K may be 0), or the mask alone / times the RoI's pixels.
        Returns:
            Tensor[K, embedding_size]: the outputs of all layers (times their ``layer_weights``), flattened and
            concatenated, after the flattened input itself when ``embed_input``.
        """
        if x.dim() != 4 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                "MaskDiscriminator expects masked RoI features K x C x {0} x {0}, got {1}".format(
                    self.resolution, tuple(x.shape)
                )
            )
        outputs = [x.flatten(start_dim=1)] if self.embed_input else []
        for index, block in enumerate(self.blocks):
            x = block(x)
            weight = 1.0 if self.layer_weights is None else self.layer_weights[index]
            outputs.append((x if weight == 1.0 else weight * x).flatten(start_dim=1))
        return torch.cat(outputs, dim=1)
