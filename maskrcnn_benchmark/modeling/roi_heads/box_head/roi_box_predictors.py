"""Box predictors: per-RoI class logits and class-specific (or class-agnostic) box regression deltas."""
from torch import nn

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry

from .roi_box_feature_extractors import build_from_registry


def _init_predictor_layers(cls_score, bbox_pred):
    # Small stds keep the initial softmax near uniform and the initial boxes near the proposals.
    nn.init.normal_(cls_score.weight, mean=0, std=0.01)
    nn.init.normal_(bbox_pred.weight, mean=0, std=0.001)
    for layer in (cls_score, bbox_pred):
        nn.init.constant_(layer.bias, 0)


@registry.ROI_BOX_PREDICTOR.register("FPNPredictor")
class FPNPredictor(nn.Module):
    """FPN predictor: two linear layers on the RoI feature vector.

    Args:
        in_channels (int): length of the RoI feature vector.
        num_classes (int): number of classes including background.
        cls_agnostic_bbox_reg (bool): predict one box (plus the unused background box) instead of one per class.

    forward(x Tensor[K, in_channels] or Tensor[K, in_channels, 1, 1]) -> (class_logits Tensor[K, num_classes],
    box_regression Tensor[K, 4 * (2 if cls_agnostic_bbox_reg else num_classes)]).
    """

    @configurable
    def __init__(self, in_channels, num_classes, cls_agnostic_bbox_reg=False):
        super().__init__()
        num_bbox_reg_classes = 2 if cls_agnostic_bbox_reg else num_classes
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_bbox_reg_classes * 4)
        _init_predictor_layers(self.cls_score, self.bbox_pred)

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_BOX_HEAD.NUM_CLASSES and MODEL.CLS_AGNOSTIC_BBOX_REG."""
        return {"in_channels": in_channels, "num_classes": cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES,
                "cls_agnostic_bbox_reg": cfg.MODEL.CLS_AGNOSTIC_BBOX_REG}

    def forward(self, x):
        if x.ndimension() == 4:
            if x.shape[2:] != (1, 1):
                raise ValueError("FPNPredictor expects RoI feature vectors or 1x1 maps, got a map of size {}; use "
                                 "FastRCNNPredictor (MODEL.ROI_BOX_HEAD.PREDICTOR) for spatial RoI features"
                                 .format(tuple(x.shape[2:])))
            x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


@registry.ROI_BOX_PREDICTOR.register("FastRCNNPredictor")
class FastRCNNPredictor(FPNPredictor):
    """C4 predictor: global average pooling then two linear layers.

    Args:
        in_channels (int): channels of the RoI feature map.
        num_classes (int): number of classes including background.
        cls_agnostic_bbox_reg (bool): predict one box (plus the unused background box) instead of one per class.

    forward(x Tensor[K, in_channels, h, w]) -> (class_logits Tensor[K, num_classes],
    box_regression Tensor[K, 4 * (2 if cls_agnostic_bbox_reg else num_classes)]).
    """

    @configurable
    def __init__(self, in_channels, num_classes, cls_agnostic_bbox_reg=False):
        super().__init__(in_channels, num_classes, cls_agnostic_bbox_reg)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return super().forward(self.avgpool(x))


def make_roi_box_predictor(cfg, in_channels):
    """Builds the predictor named by MODEL.ROI_BOX_HEAD.PREDICTOR."""
    return build_from_registry(registry.ROI_BOX_PREDICTOR, cfg.MODEL.ROI_BOX_HEAD.PREDICTOR,
                               "MODEL.ROI_BOX_HEAD.PREDICTOR", cfg, in_channels)
