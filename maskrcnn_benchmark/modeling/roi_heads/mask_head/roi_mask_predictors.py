"""Mask predictors: RoI features -> per-class mask logits Tensor[K, num_classes, M, M]."""
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry

from ..box_head.roi_box_feature_extractors import build_from_registry


def _kaiming_init(module):
    for name, param in module.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0)
        elif "weight" in name:
            # fan_out keeps the activations' scale through the upsampling (maskrcnn-benchmark's choice).
            nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


@registry.ROI_MASK_PREDICTOR.register("MaskRCNNC4Predictor")
class MaskRCNNC4Predictor(nn.Module):
    """2x2 stride-2 deconv + ReLU, then a 1x1 conv to one mask per class (R x R features -> 2R x 2R logits).

    Args:
        in_channels (int): channels of the RoI features.
        dim_reduced (int): channels after the deconv (MODEL.ROI_MASK_HEAD.CONV_LAYERS[-1]).
        num_classes (int): number of classes including background.
    """

    @configurable
    def __init__(self, in_channels, dim_reduced, num_classes):
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)
        self.mask_fcn_logits = nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)
        _kaiming_init(self)

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_MASK_HEAD.CONV_LAYERS[-1] and MODEL.ROI_BOX_HEAD.NUM_CLASSES."""
        return {"in_channels": in_channels, "dim_reduced": cfg.MODEL.ROI_MASK_HEAD.CONV_LAYERS[-1],
                "num_classes": cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES}

    def forward(self, x):
        """x Tensor[K, in_channels, R, R] -> Tensor[K, num_classes, 2R, 2R]."""
        return self.mask_fcn_logits(F.relu(self.conv5_mask(x), inplace=True))


@registry.ROI_MASK_PREDICTOR.register("MaskRCNNConv1x1Predictor")
class MaskRCNNConv1x1Predictor(nn.Module):
    """A single 1x1 conv to one mask per class (no upsampling).

    Args:
        in_channels (int): channels of the RoI features.
        num_classes (int): number of classes including background.
    """

    @configurable
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.mask_fcn_logits = nn.Conv2d(in_channels, num_classes, 1, 1, 0)
        _kaiming_init(self)

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_BOX_HEAD.NUM_CLASSES."""
        return {"in_channels": in_channels, "num_classes": cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES}

    def forward(self, x):
        """x Tensor[K, in_channels, R, R] -> Tensor[K, num_classes, R, R]."""
        return self.mask_fcn_logits(x)


def make_roi_mask_predictor(cfg, in_channels):
    """Builds the predictor named by MODEL.ROI_MASK_HEAD.PREDICTOR."""
    return build_from_registry(registry.ROI_MASK_PREDICTOR, cfg.MODEL.ROI_MASK_HEAD.PREDICTOR,
                               "MODEL.ROI_MASK_HEAD.PREDICTOR", cfg, in_channels)
