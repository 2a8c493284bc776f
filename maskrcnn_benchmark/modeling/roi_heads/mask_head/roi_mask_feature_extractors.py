"""RoI feature extractors of the mask head: (features, proposals) -> Tensor[K, out_channels, R, R]."""
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.make_layers import make_conv3x3
from maskrcnn_benchmark.modeling.poolers import make_pooler

from ..box_head.roi_box_feature_extractors import ResNet50Conv5ROIFeatureExtractor, build_from_registry


@registry.ROI_MASK_FEATURE_EXTRACTORS.register("ResNet50Conv5ROIFeatureExtractor")
class MaskResNet50Conv5ROIFeatureExtractor(ResNet50Conv5ROIFeatureExtractor):
    """C4 mask features: the box head's res5 extractor with the MODEL.ROI_MASK_HEAD pooler settings.

    Used only when MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR is False (otherwise the box head's is reused).
    Same arguments as ResNet50Conv5ROIFeatureExtractor.
    """

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Pooler from MODEL.ROI_MASK_HEAD.POOLER_*, res5 from MODEL.RESNETS."""
        return super().from_config(cfg, in_channels, head_name="ROI_MASK_HEAD")


@registry.ROI_MASK_FEATURE_EXTRACTORS.register("MaskRCNNFPNFeatureExtractor")
class MaskRCNNFPNFeatureExtractor(nn.Module):
    """FPN mask head: multi-level RoI pooling then a stack of 3x3 convs with ReLU ("mask_fcn1", ...).

    Args:
        pooler (nn.Module): (features, proposals) -> Tensor[K, in_channels, R, R].
        in_channels (int): channels of the pooled features.
        conv_layers (tuple[int]): output channels of each conv (MODEL.ROI_MASK_HEAD.CONV_LAYERS).
        dilation (int): dilation of the convs.
        use_gn (bool): GroupNorm after each conv.
    """

    @configurable
    def __init__(self, pooler, in_channels, conv_layers=(256, 256, 256, 256), dilation=1, use_gn=False):
        super().__init__()
        self.pooler = pooler
        self.blocks = []
        for layer_idx, layer_features in enumerate(conv_layers, 1):
            # Names match maskrcnn-benchmark so its checkpoints load.
            name = "mask_fcn{}".format(layer_idx)
            self.add_module(name, make_conv3x3(in_channels, layer_features, dilation=dilation, stride=1,
                                               use_gn=use_gn))
            in_channels = layer_features
            self.blocks.append(name)
        self.out_channels = in_channels

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_MASK_HEAD.{POOLER_*, CONV_LAYERS, DILATION, USE_GN}."""
        head = cfg.MODEL.ROI_MASK_HEAD
        return {"pooler": make_pooler(cfg, "ROI_MASK_HEAD"), "in_channels": in_channels,
                "conv_layers": tuple(head.CONV_LAYERS), "dilation": head.DILATION, "use_gn": head.USE_GN}

    def forward(self, x, proposals):
        """x: list[Tensor[N,C,H,W]]; proposals: list[BoxList] -> Tensor[K, conv_layers[-1], R, R]."""
        x = self.pooler(x, proposals)
        # In-place ReLU is safe (fc/conv backward needs their input, not output) and saves a copy.
        for name in self.blocks:
            x = F.relu(getattr(self, name)(x), inplace=True)
        return x


def make_roi_mask_feature_extractor(cfg, in_channels):
    """Builds the extractor named by MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR."""
    return build_from_registry(registry.ROI_MASK_FEATURE_EXTRACTORS, cfg.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR,
                               "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", cfg, in_channels)
