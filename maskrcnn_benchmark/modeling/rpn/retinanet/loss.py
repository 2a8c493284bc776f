"""RetinaNet training targets and losses: focal loss over all anchors, smooth-L1 box loss over the positives."""
import torch

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.layers import sigmoid_focal_loss, smooth_l1_loss
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.matcher import Matcher
from maskrcnn_benchmark.structures.boxlist_ops import boxlist_iou, cat_boxlist

from ..utils import concat_box_prediction_layers


def retinanet_losses(box_cls, box_regression, labels, regression_targets, num_images, gamma=2.0, alpha=0.25,
                     beta=0.11, regress_norm=4.0):
    """RetinaNet losses as maskrcnn-benchmark normalises them.

    Args:
        box_cls: Tensor[M, C] class logits of all anchors of the batch (C foreground classes).
        box_regression: Tensor[M, 4] predicted deltas.
        labels: int64 Tensor[M]: class in [1, C] for positives, 0 background, -1 ignored.
        regression_targets: Tensor[M, 4] encoded matched GT boxes (used at the positives only).
        num_images: N, images in the batch.
        gamma, alpha: focal loss parameters; beta: smooth-L1 switch point;
        regress_norm: MODEL.RETINANET.BBOX_REG_WEIGHT.
    Returns:
        loss_retina_cls = sum over non-ignored anchors and classes of FL (``layers.sigmoid_focal_loss``) / (P + N),
        loss_retina_reg = sum over the P positives of smoothL1_beta(t_i - t*_i) / max(1, P * regress_norm).
    """
    pos_inds = torch.nonzero(labels > 0).squeeze(1)
    num_pos = pos_inds.numel()
    loss_reg = smooth_l1_loss(box_regression[pos_inds], regression_targets[pos_inds], beta=beta,
                              size_average=False) / max(1.0, num_pos * regress_norm)
    loss_cls = sigmoid_focal_loss(box_cls, labels, gamma=gamma, alpha=alpha) / (num_pos + num_images)
    return loss_cls, loss_reg


class RetinaNetLossComputation(object):
    """Match every anchor to a GT box and compute ``retinanet_losses`` (no sampling: all anchors count).

    Args:
        matcher: Matcher(FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, allow_low_quality_matches=True).
        box_coder: BoxCoder with weights (10, 10, 5, 5).
        gamma, alpha: MODEL.RETINANET.LOSS_GAMMA / LOSS_ALPHA.
        bbox_reg_beta: MODEL.RETINANET.BBOX_REG_BETA.
        regress_norm: MODEL.RETINANET.BBOX_REG_WEIGHT (divides the box loss per positive).
    """

    @configurable
    def __init__(self, matcher, box_coder, gamma=2.0, alpha=0.25, bbox_reg_beta=0.11, regress_norm=4.0):
        self.matcher = matcher
        self.box_coder = box_coder
        self.gamma = gamma
        self.alpha = alpha
        self.bbox_reg_beta = bbox_reg_beta
        self.regress_norm = regress_norm

    @classmethod
    def from_config(cls, cfg, box_coder):
        """The constructor arguments from MODEL.RETINANET.{FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, LOSS_GAMMA,
        LOSS_ALPHA, BBOX_REG_BETA, BBOX_REG_WEIGHT}."""
        retina = cfg.MODEL.RETINANET
        matcher = Matcher(retina.FG_IOU_THRESHOLD, retina.BG_IOU_THRESHOLD, allow_low_quality_matches=True)
        return dict(matcher=matcher, box_coder=box_coder, gamma=retina.LOSS_GAMMA, alpha=retina.LOSS_ALPHA,
                    bbox_reg_beta=retina.BBOX_REG_BETA, regress_norm=retina.BBOX_REG_WEIGHT)

    def prepare_targets(self, anchors, targets):
        """Per image: labels int64 Tensor[M_i] (class, 0 background, -1 ignored) and regression targets [M_i, 4].

        Anchors whose best IoU lies between the thresholds are ignored, as are anchors outside the image by more
        than STRADDLE_THRESH (visibility False; -1 keeps them all). An image without GT boxes has only background.
        """
        labels, regression_targets = [], []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            anchor_boxes = anchors_per_image.bbox
            visibility = anchors_per_image.get_field("visibility")
            if len(targets_per_image) == 0:
                labels_per_image = torch.zeros(anchor_boxes.shape[0], dtype=torch.int64, device=anchor_boxes.device)
                regression_targets_per_image = torch.zeros_like(anchor_boxes)
            else:
                targets_per_image = targets_per_image.convert("xyxy")
                matched_idxs = self.matcher(boxlist_iou(targets_per_image, anchors_per_image))
                gt_labels = targets_per_image.get_field("labels").to(torch.int64)
                labels_per_image = gt_labels[matched_idxs.clamp(min=0)]
                labels_per_image[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels_per_image[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
                matched_gt = targets_per_image.bbox[matched_idxs.clamp(min=0)]
                regression_targets_per_image = self.box_coder.encode(matched_gt, anchor_boxes)
            labels_per_image[~visibility] = -1
            labels.append(labels_per_image)
            regression_targets.append(regression_targets_per_image)
        return labels, regression_targets

    def __call__(self, anchors, box_cls, box_regression, targets):
        """
        Args:
            anchors: list (images) of list (levels) of BoxList with field "visibility".
            box_cls: list (levels) of Tensor[N, A*C, H, W]; box_regression: list of Tensor[N, A*4, H, W].
            targets: list[BoxList] per image with field "labels".
        Returns:
            (loss_retina_cls, loss_retina_reg) scalar Tensors.
        """
        anchors = [cat_boxlist(anchors_per_image) for anchors_per_image in anchors]
        labels, regression_targets = self.prepare_targets(anchors, targets)
        box_cls, box_regression = concat_box_prediction_layers(box_cls, box_regression)
        return retinanet_losses(box_cls, box_regression, torch.cat(labels), torch.cat(regression_targets),
                                num_images=len(labels), gamma=self.gamma, alpha=self.alpha,
                                beta=self.bbox_reg_beta, regress_norm=self.regress_norm)


def make_retinanet_loss_evaluator(cfg, box_coder=None):
    """RetinaNetLossComputation from MODEL.RETINANET.* (box coder weights (10, 10, 5, 5) by default)."""
    return RetinaNetLossComputation(cfg, box_coder or BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)))
