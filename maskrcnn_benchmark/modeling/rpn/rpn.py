"""Region Proposal Network: head, anchors, training losses and proposal selection."""
import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.box_coder import BoxCoder, box_convention_to_remove

from .anchor_generator import make_anchor_generator
from .inference import make_rpn_postprocessor
from .loss import make_rpn_loss_evaluator


@registry.RPN_HEADS.register("SingleConvRPNHead")
class RPNHead(nn.Module):
    """3x3 conv + ReLU shared by objectness (1 logit per anchor) and box deltas (4 per anchor).

    Args:
        in_channels: channels of the feature maps.
        num_anchors: anchors per location A.
    forward: list[Tensor[N, C, H_l, W_l]] -> (list[Tensor[N, A, H_l, W_l]], list[Tensor[N, 4A, H_l, W_l]]);
    the same weights run on every level. Also built as ``RPNHead(cfg, in_channels, num_anchors)``
    (maskrcnn-benchmark's call).
    """

    @configurable
    def __init__(self, in_channels, num_anchors):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, in_channels, num_anchors):
        """Reads no key: the head's sizes are the backbone's channels and the anchor generator's count."""
        return {"in_channels": in_channels, "num_anchors": num_anchors}

    def forward(self, x):
        logits = []
        bbox_reg = []
        for feature in x:
            t = F.relu(self.conv(feature))
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


class RPNHeadConvRegressor(nn.Module):
    """1x1 convs to objectness (A logits) and box deltas (4A) on already computed head features (FBNet's RPN head
    puts its blocks before it).

    Args:
        in_channels: channels of the head features.  num_anchors: anchors per location A.
    forward: list[Tensor[N, C, H_l, W_l]] -> (list[Tensor[N, A, H_l, W_l]], list[Tensor[N, 4A, H_l, W_l]]).
    """

    def __init__(self, in_channels, num_anchors):
        super().__init__()
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in (self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, x):
        return [self.cls_logits(y) for y in x], [self.bbox_pred(y) for y in x]


class RPNModule(nn.Module):
    """Run the head on the backbone maps, return proposals and (in training) the RPN losses.

    Args:
        anchor_generator: AnchorGenerator.
        head: RPN head module (see registry.RPN_HEADS).
        box_selector_train / box_selector_test: RPNPostProcessor for each mode.
        loss_evaluator: RPNLossComputation.
        rpn_only: the detector has no RoI heads; training then skips proposal selection, and test
            returns the proposals as detections.
    forward(images ImageList, features list[Tensor], targets list[BoxList] | None) ->
        (proposals list[BoxList] with field "objectness", losses dict {loss_objectness, loss_rpn_box_reg}
         in training, else {}).
    """

    def __init__(self, anchor_generator, head, box_selector_train, box_selector_test, loss_evaluator,
                 rpn_only=False):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_selector_train = box_selector_train
        self.box_selector_test = box_selector_test
        self.loss_evaluator = loss_evaluator
        self.rpn_only = rpn_only

    def forward(self, images, features, targets=None):
        features = list(features)
        objectness, rpn_box_regression = self.head(features)
        anchors = self.anchor_generator(images, features)
        if not self.training:
            return self.box_selector_test(anchors, objectness, rpn_box_regression), {}
        if targets is None:
            raise ValueError("RPN: targets (list[BoxList]) are required in training mode")
        if self.rpn_only:
            # Nothing downstream consumes proposals: save the NMS work.
            boxes = []
        else:
            with torch.no_grad():
                boxes = self.box_selector_train(anchors, objectness, rpn_box_regression, targets)
        loss_objectness, loss_rpn_box_reg = self.loss_evaluator(anchors, objectness, rpn_box_regression, targets)
        return boxes, {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}


def build_rpn(cfg, in_channels):
    """RPNModule from cfg.MODEL.RPN.* (anchors, head, matcher/sampler, post-processing) and MODEL.RPN_ONLY;
    with MODEL.RETINANET_ON the RetinaNet module (MODEL.RETINANET.*) instead, as maskrcnn-benchmark."""
    if cfg.MODEL.RETINANET_ON:
        from .retinanet.retinanet import build_retinanet

        return build_retinanet(cfg, in_channels)
    anchor_generator = make_anchor_generator(cfg)
    num_anchors = anchor_generator.num_anchors_per_location()[0]
    # maskrcnn-benchmark's call, so heads registered with its signature (cfg, in_channels, num_anchors) work.
    head = registry.RPN_HEADS[cfg.MODEL.RPN.RPN_HEAD](cfg, in_channels, num_anchors)
    rpn_box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0), to_remove=box_convention_to_remove(cfg))
    return RPNModule(
        anchor_generator=anchor_generator,
        head=head,
        box_selector_train=make_rpn_postprocessor(cfg, rpn_box_coder, is_train=True),
        box_selector_test=make_rpn_postprocessor(cfg, rpn_box_coder, is_train=False),
        loss_evaluator=make_rpn_loss_evaluator(cfg, rpn_box_coder),
        rpn_only=cfg.MODEL.RPN_ONLY,
    )
