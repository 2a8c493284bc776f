"""Keypoint predictor: RoI features -> one heat-map logit map per keypoint."""
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry

from ..box_head.roi_box_feature_extractors import build_from_registry


@registry.ROI_KEYPOINT_PREDICTOR.register("KeypointRCNNPredictor")
class KeypointRCNNPredictor(nn.Module):
    """4x4 stride-2 deconv to ``num_keypoints`` maps, then 2x bilinear upsampling (R x R -> 4R x 4R).

    Args:
        in_channels (int): channels of the RoI features.
        num_keypoints (int): keypoints per instance (MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES).
    """

    @configurable
    def __init__(self, in_channels, num_keypoints):
        super().__init__()
        self.kps_score = nn.ConvTranspose2d(in_channels, num_keypoints, 4, stride=2, padding=1)
        nn.init.kaiming_normal_(self.kps_score.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score.bias, 0)
        self.up_scale = 2

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES."""
        return {"in_channels": in_channels, "num_keypoints": cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES}

    def forward(self, x):
        """x Tensor[K, in_channels, R, R] -> Tensor[K, num_keypoints, 4R, 4R]."""
        x = self.kps_score(x)
        return F.interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)


def make_roi_keypoint_predictor(cfg, in_channels):
    """Builds the predictor named by MODEL.ROI_KEYPOINT_HEAD.PREDICTOR."""
    return build_from_registry(registry.ROI_KEYPOINT_PREDICTOR, cfg.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR,
                               "MODEL.ROI_KEYPOINT_HEAD.PREDICTOR", cfg, in_channels)
