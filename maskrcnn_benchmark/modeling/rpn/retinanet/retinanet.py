"""RetinaNet head and module; in the detector it takes the place of the RPN (``model.rpn``), with no RoI heads."""
import math

import torch
from torch import nn

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling.box_coder import BoxCoder

from ..anchor_generator import make_anchor_generator_retinanet
from .inference import RetinaNetPostProcessor
from .loss import RetinaNetLossComputation


class RetinaNetHead(nn.Module):
    """Classification and box subnets, each a tower of ``num_convs`` 3x3 conv + ReLU layers followed by a 3x3
    predictor; the same weights run on every pyramid level.

    Args:
        in_channels: channels of the feature maps (and of the tower convs).
        num_classes: foreground classes C (MODEL.RETINANET.NUM_CLASSES - 1).
        num_anchors: anchors per location A (len(ASPECT_RATIOS) * SCALES_PER_OCTAVE).
        num_convs: convs per tower (MODEL.RETINANET.NUM_CONVS).
        prior_prob: initial foreground probability of every class logit (MODEL.RETINANET.PRIOR_PROB): the
            classifier bias starts at -log((1 - prior_prob) / prior_prob), the other weights at N(0, 0.01), biases 0.
    forward: list[Tensor[N, in_channels, H_l, W_l]] -> (list[Tensor[N, A*C, H_l, W_l]] class logits,
    list[Tensor[N, A*4, H_l, W_l]] box deltas).
    """

    @configurable
    def __init__(self, in_channels, num_classes, num_anchors, num_convs=4, prior_prob=0.01):
        super().__init__()
        if num_classes < 1:
            raise ValueError("RetinaNetHead: needs at least one foreground class (MODEL.RETINANET.NUM_CLASSES counts "
                             "the background too, so >= 2), got {}".format(num_classes))
        if not 0.0 < prior_prob < 1.0:
            raise ValueError("MODEL.RETINANET.PRIOR_PROB must be in (0, 1), got {}".format(prior_prob))
        cls_tower, bbox_tower = [], []
        for _ in range(num_convs):
            cls_tower += [nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1), nn.ReLU()]
            bbox_tower += [nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1), nn.ReLU()]
        self.cls_tower = nn.Sequential(*cls_tower)
        self.bbox_tower = nn.Sequential(*bbox_tower)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, stride=1, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, stride=1, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, in_channels):
        """The constructor arguments from MODEL.RETINANET.{NUM_CLASSES, ASPECT_RATIOS, SCALES_PER_OCTAVE,
        NUM_CONVS, PRIOR_PROB}; ``RetinaNetHead(cfg, in_channels)`` builds it (maskrcnn-benchmark's signature)."""
        retina = cfg.MODEL.RETINANET
        return dict(in_channels=in_channels, num_classes=retina.NUM_CLASSES - 1,
                    num_anchors=len(retina.ASPECT_RATIOS) * retina.SCALES_PER_OCTAVE, num_convs=retina.NUM_CONVS,
                    prior_prob=retina.PRIOR_PROB)

    def forward(self, x):
        logits = [self.cls_logits(self.cls_tower(feature)) for feature in x]
        bbox_reg = [self.bbox_pred(self.bbox_tower(feature)) for feature in x]
        return logits, bbox_reg


class RetinaNetModule(nn.Module):
    """Runs the RetinaNet head over the pyramid; detections at test, focal and box losses in training.

    Args:
        anchor_generator: AnchorGenerator (``make_anchor_generator_retinanet``).
        head: RetinaNetHead.
        box_selector_test: RetinaNetPostProcessor.
        loss_evaluator: RetinaNetLossComputation.
    forward(images ImageList, features list[Tensor], targets list[BoxList] | None) ->
        training: (anchors list (images) of list (levels) of BoxList, {"loss_retina_cls", "loss_retina_reg"});
        eval: (detections list[BoxList] with "scores" and "labels", {}).
    """

    @configurable
    def __init__(self, anchor_generator, head, box_selector_test, loss_evaluator):
        super().__init__()
        num_anchors = anchor_generator.num_anchors_per_location()[0]
        expected = head.bbox_pred.out_channels // 4
        if num_anchors != expected:
            raise ValueError("RetinaNet: the anchor generator gives {} anchors per location but the head predicts {}"
                             .format(num_anchors, expected))
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_selector_test = box_selector_test
        self.loss_evaluator = loss_evaluator

    @classmethod
    def from_config(cls, cfg, in_channels):
        """The constructor arguments, every part built from MODEL.RETINANET.* (and TEST.DETECTIONS_PER_IMG);
        box deltas use weights (10, 10, 5, 5) as in maskrcnn-benchmark. ``RetinaNetModule(cfg, in_channels)``
        builds it (maskrcnn-benchmark's signature)."""
        box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        return dict(
            anchor_generator=make_anchor_generator_retinanet(cfg),
            head=RetinaNetHead(cfg, in_channels),
            box_selector_test=RetinaNetPostProcessor(cfg, box_coder),
            loss_evaluator=RetinaNetLossComputation(cfg, box_coder),
        )

    def forward(self, images, features, targets=None):
        features = list(features)
        box_cls, box_regression = self.head(features)
        anchors = self.anchor_generator(images, features)
        if not self.training:
            with torch.no_grad():
                return self.box_selector_test(anchors, box_cls, box_regression), {}
        if targets is None:
            raise ValueError("RetinaNet: targets (list[BoxList]) are required in training mode")
        loss_cls, loss_reg = self.loss_evaluator(anchors, box_cls, box_regression, targets)
        return anchors, {"loss_retina_cls": loss_cls, "loss_retina_reg": loss_reg}


def check_retinanet_config(cfg):
    """Refuses, by key, what RetinaNet here does not implement: RoI heads on top of it (MODEL.MASK_ON,
    MODEL.KEYPOINT_ON; maskrcnn-benchmark builds no head for them either) and the discriminators (MODEL.GAN.ENABLED,
    which need RoI heads)."""
    unsupported = [key for key, value in (("MODEL.MASK_ON", cfg.MODEL.MASK_ON),
                                          ("MODEL.KEYPOINT_ON", cfg.MODEL.KEYPOINT_ON),
                                          ("MODEL.GAN.ENABLED", cfg.MODEL.GAN.ENABLED)) if value]
    if unsupported:
        raise ValueError("MODEL.RETINANET_ON: RetinaNet is a box-only detector here, without RoI heads or "
                         "discriminators; set {} to False (or MODEL.RETINANET_ON to False for Mask R-CNN)".format(
                             ", ".join(unsupported)))


def build_retinanet(cfg, in_channels):
    """RetinaNetModule for backbone maps of ``in_channels`` channels (MODEL.RETINANET_ON)."""
    check_retinanet_config(cfg)
    return RetinaNetModule(cfg, in_channels)
