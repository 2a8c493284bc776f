"""The discriminators of the adversarial training and the builder that reads MODEL.GAN."""
import torch
from torch import nn

from .box_discriminator import BoxDiscriminator
from .feature_pooling import RoIFeaturePooler
from .mask_discriminator import MaskDiscriminator


def _score_together(discriminator, real, fake):
    # Real and fake go through D as ONE batch: with BatchNorm in training mode, separate batches would each be
    # normalised to their own statistics, hiding from D exactly the difference it has to see.
    both = discriminator(torch.cat([real, fake], dim=0))
    return both[: real.shape[0]], both[real.shape[0]:]


class AdversarialDiscriminators(nn.Module):
    """D_b and D_m plus the pooling that turns the detector's adversarial inputs into their inputs.

    Either discriminator may be None (the box-only / mask-only ablations).
    """

    def __init__(self, box_discriminator, mask_discriminator, box_pooler, mask_pooler, detach_features=True):
        """
        Arguments:
            box_discriminator (BoxDiscriminator or None): D_b.
            mask_discriminator (MaskDiscriminator or None): D_m.
            box_pooler, mask_pooler (RoIFeaturePooler or None): how each reads the FPN maps.
            detach_features (bool): True pools from detached FPN maps, so the generator's adversarial losses
                move the box regression and the mask head, not the backbone (see MODEL.GAN.DETACH_FEATURES).
        """
        super(AdversarialDiscriminators, self).__init__()
        if box_discriminator is None and mask_discriminator is None:
            raise ValueError(
                "MODEL.GAN.ENABLED needs at least one of MODEL.GAN.BOX_DISC.ENABLED, MODEL.GAN.MASK_DISC.ENABLED"
            )
        self.box_disc = box_discriminator
        self.mask_disc = mask_discriminator
        self.box_pooler = box_pooler
        self.mask_pooler = mask_pooler
        self.detach_features = detach_features

    def pool_inputs(self, adv_inputs):
        """Real and fake inputs of the enabled discriminators, still attached to the detector's graph.

        Arguments:
            adv_inputs (dict): the detector's adversarial inputs (see CONTRACTS.md): "features",
                "feature_strides", "box_rois_pred" [P, 5], "box_rois_gt" [P, 5], "mask_logits" [M, 28, 28],
                "mask_targets" [M, 28, 28], "mask_rois" [M, 5].
        Returns:
            dict[str, Tensor]: "box_real", "box_fake" (Tensor[P, C, R, R]) when D_b is enabled;
                "mask_real", "mask_fake" (Tensor[M, C, R, R]) when D_m is enabled.
        """
        features = adv_inputs["features"]
        if self.detach_features:
            features = [level.detach() for level in features]
        strides = adv_inputs["feature_strides"]
        inputs = {}
        if self.box_disc is not None:
            inputs["box_real"] = self.box_pooler(features, strides, adv_inputs["box_rois_gt"].detach())
            inputs["box_fake"] = self.box_pooler(features, strides, adv_inputs["box_rois_pred"])
        if self.mask_disc is not None:
            roi_features = self.mask_pooler(features, strides, adv_inputs["mask_rois"].detach())
            # the fake mask is the probability map, so real (0/1 targets) and fake live on the same scale
            inputs["mask_real"] = adv_inputs["mask_targets"][:, None].detach() * roi_features
            inputs["mask_fake"] = adv_inputs["mask_logits"][:, None].sigmoid() * roi_features
        return inputs

    def box_logits(self, real, fake):
        """D_b on real and fake RoI features (Tensor[P, C, R, R] each) -> (Tensor[P], Tensor[P]) logits."""
        return _score_together(self.box_disc, real, fake)

    def mask_embeddings(self, real, fake):
        """D_m on real and fake masked features (Tensor[M, C, R, R] each) -> two Tensor[M, L] embeddings."""
        return _score_together(self.mask_disc, real, fake)


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
    box_disc = box_pooler = mask_disc = mask_pooler = None
    if gan.BOX_DISC.ENABLED:
        box_disc = BoxDiscriminator(
            in_channels, gan.BOX_DISC.CHANNELS, gan.BOX_DISC.NUM_CONVS, gan.BOX_DISC.POOLER_RESOLUTION
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
        mask_disc = MaskDiscriminator(in_channels, gan.MASK_DISC.CHANNELS, gan.MASK_DISC.NUM_CONVS, mask_resolution)
        mask_pooler = RoIFeaturePooler(
            mask_resolution, gan.MASK_DISC.POOLER_TYPE, gan.FEATURE_FUSION, sampling_ratio, cfg.MODEL.PRROI_POOL_IMPL
        )
    return AdversarialDiscriminators(box_disc, mask_disc, box_pooler, mask_pooler, gan.DETACH_FEATURES)
