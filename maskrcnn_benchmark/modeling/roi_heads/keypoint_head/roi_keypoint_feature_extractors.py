"""RoI feature extractor of the keypoint head: (features, proposals) -> Tensor[K, C, R, R]."""
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.poolers import make_pooler

from ..box_head.roi_box_feature_extractors import build_from_registry


@registry.ROI_KEYPOINT_FEATURE_EXTRACTORS.register("KeypointRCNNFeatureExtractor")
class KeypointRCNNFeatureExtractor(nn.Module):
    """RoI pooling then a stack of 3x3 convs with ReLU ("conv_fcn1", ...).

    Args:
        pooler (nn.Module): (features, proposals) -> Tensor[K, in_channels, R, R].
        in_channels (int): channels of the pooled features.
        conv_layers (tuple[int]): output channels of each conv (MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS).
    """

    @configurable
    def __init__(self, pooler, in_channels, conv_layers=tuple(512 for _ in range(8))):
        super().__init__()
        self.pooler = pooler
        self.blocks = []
        for layer_idx, layer_features in enumerate(conv_layers, 1):
            conv = nn.Conv2d(in_channels, layer_features, 3, stride=1, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(conv.bias, 0)
            name = "conv_fcn{}".format(layer_idx)  # maskrcnn-benchmark's names, so its checkpoints load
            self.add_module(name, conv)
            self.blocks.append(name)
            in_channels = layer_features
        self.out_channels = in_channels

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_KEYPOINT_HEAD.{POOLER_*, CONV_LAYERS}."""
        return {"pooler": make_pooler(cfg, "ROI_KEYPOINT_HEAD"), "in_channels": in_channels,
                "conv_layers": tuple(cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS)}

    def forward(self, x, proposals):
        """x: list[Tensor[N,C,H,W]]; proposals: list[BoxList] -> Tensor[K, conv_layers[-1], R, R]."""
        x = self.pooler(x, proposals)
        for name in self.blocks:
            x = F.relu(getattr(self, name)(x), inplace=True)
        return x


def make_roi_keypoint_feature_extractor(cfg, in_channels):
    """Builds the extractor named by MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR."""
    return build_from_registry(registry.ROI_KEYPOINT_FEATURE_EXTRACTORS,
                               cfg.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR,
                               "MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR", cfg, in_channels)
