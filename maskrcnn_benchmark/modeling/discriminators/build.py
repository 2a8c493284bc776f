"""The builder of the discriminators from MODEL.GAN."""
from torch import nn

from .adversarial_discriminators import AdversarialDiscriminators
from .box_discriminator import BoxCoordinateDiscriminator, BoxDiscriminator
from .feature_pooling import RoIFeaturePooler
from .mask_discriminator import MaskDiscriminator

# input channels of D_m per MASK_INPUT other than "features" (which has the FPN's width)
_MASK_INPUT_CHANNELS = {"mask": 1, "pixels": 3}


def apply_spectral_norm(module):
    """Spectral normalisation (torch.nn.utils.parametrizations.spectral_norm) on every conv and linear layer of
    `module`, in place; returns `module`. Each such layer's weight is divided by its largest singular value (one
    power iteration per training forward), so with LeakyReLU between them D's output cannot grow by scaling its
    weights (MODEL.GAN.SPECTRAL_NORM)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, child in list(module.named_modules()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            spectral_norm(child)
    return module


def build_discriminators(cfg, in_channels):
    """Builds the discriminators from MODEL.GAN.

    Arguments:
        cfg (CfgNode): the config.
        in_channels (int): channels of the FPN maps (the backbone's ``out_channels``).
    Returns:
        AdversarialDiscriminators
    """
    gan = cfg.MODEL.GAN
    # ROIAlign in the discriminators samples like the mask head's pooler (PrRoIPool ignores it)
    sampling_ratio = cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO
    batch_norm = not gan.SPECTRAL_NORM
    box_disc = box_pooler = mask_disc = mask_pooler = None
    if gan.BOX_DISC.ENABLED and gan.BOX_DISC.INPUT == "coordinates":
        box_disc = BoxCoordinateDiscriminator(gan.BOX_DISC.CHANNELS, gan.BOX_DISC.NUM_CONVS, batch_norm,
                                              first_conv_norm=gan.FIRST_CONV_NORM, init=gan.D_INIT)
    elif gan.BOX_DISC.ENABLED:
        box_disc = BoxDiscriminator(
            in_channels, gan.BOX_DISC.CHANNELS, gan.BOX_DISC.NUM_CONVS, gan.BOX_DISC.POOLER_RESOLUTION, batch_norm,
            first_conv_norm=gan.FIRST_CONV_NORM, init=gan.D_INIT,
        )
        box_pooler = RoIFeaturePooler(
            gan.BOX_DISC.POOLER_RESOLUTION, gan.BOX_DISC.POOLER_TYPE, gan.FEATURE_FUSION, sampling_ratio,
            cfg.MODEL.PRROI_POOL_IMPL,
        )
    if gan.MASK_DISC.ENABLED:
        mask_resolution = cfg.MODEL.ROI_MASK_HEAD.RESOLUTION
        if gan.MASK_DISC.POOLER_RESOLUTION != mask_resolution:
            raise ValueError(
                "MODEL.GAN.MASK_DISC.POOLER_RESOLUTION ({}) must equal MODEL.ROI_MASK_HEAD.RESOLUTION ({}): the "
                "pooled features are multiplied element-wise with the masks".format(
                    gan.MASK_DISC.POOLER_RESOLUTION, mask_resolution
                )
            )
        mask_channels = _MASK_INPUT_CHANNELS.get(gan.MASK_DISC.INPUT, in_channels)
        mask_disc = MaskDiscriminator(
            mask_channels, gan.MASK_DISC.CHANNELS, gan.MASK_DISC.NUM_CONVS, mask_resolution,
            embed_input=gan.MASK_DISC.EMBED_INPUT, layer_weights=tuple(gan.MASK_DISC.LAYER_WEIGHTS) or None,
            batch_norm=batch_norm, first_conv_norm=gan.FIRST_CONV_NORM, init=gan.D_INIT,
        )
        if gan.MASK_DISC.INPUT != "mask":
            # image pixels have no FPN levels: one map at stride 1, read with ROIAlign (nothing to differentiate)
            pixels = gan.MASK_DISC.INPUT == "pixels"
            mask_pooler = RoIFeaturePooler(
                mask_resolution, "ROIAlign" if pixels else gan.MASK_DISC.POOLER_TYPE,
                "max" if pixels else gan.FEATURE_FUSION, sampling_ratio, cfg.MODEL.PRROI_POOL_IMPL
            )
    discriminators = AdversarialDiscriminators(box_disc, mask_disc, box_pooler, mask_pooler, gan.DETACH_FEATURES,
                                               box_input=gan.BOX_DISC.INPUT, mask_input=gan.MASK_DISC.INPUT,
                                               channels_last=cfg.MODEL.CHANNELS_LAST, d_batch=gan.D_BATCH)
    if gan.SPECTRAL_NORM:
        apply_spectral_norm(discriminators)
    return discriminators
