"""RPN training targets and losses (objectness BCE + smooth-L1 box regression)."""
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.layers import smooth_l1_loss
from maskrcnn_benchmark.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn_benchmark.modeling.matcher import Matcher
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.boxlist_ops import boxlist_iou

from .utils import concat_box_prediction_layers


def rpn_losses(objectness, box_regression, labels, regression_targets, sampled_pos_inds, sampled_neg_inds,
               beta=1.0 / 9):
    """RPN losses of Faster R-CNN (Ren et al. 2015, Eq. (1)) over the sampled anchors.

    Args:
        objectness: Tensor[M] logits of all anchors of the batch.
        box_regression: Tensor[M, 4] predicted deltas.
        labels: Tensor[M] float, 1 object / 0 background (entries outside the sample are unused).
        regression_targets: Tensor[M, 4] encoded matched GT boxes.
        sampled_pos_inds, sampled_neg_inds: int64 Tensor[P], Tensor[Q] indices into M.
    Returns:
        loss_objectness = mean over the S = P + Q sampled anchors of BCE(sigmoid(o_i), y_i);
        loss_rpn_box_reg = sum over the P positives of smoothL1_beta(t_i - t*_i) / S
        (normalised by all sampled anchors, as maskrcnn-benchmark).
    """
    sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)
    num_sampled = max(sampled_inds.numel(), 1)
    box_loss = smooth_l1_loss(
        box_regression[sampled_pos_inds], regression_targets[sampled_pos_inds], beta=beta, size_average=False
    ) / num_sampled
    if sampled_inds.numel() == 0:
        objectness_loss = objectness.sum() * 0
    else:
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled_inds], labels[sampled_inds])
    return objectness_loss, box_loss


class RPNLossComputation(object):
    """Match anchors to GT boxes, sample a balanced minibatch per image, and compute ``rpn_losses``.

    Args:
        proposal_matcher: Matcher (FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, allow_low_quality_matches=True).
        fg_bg_sampler: BalancedPositiveNegativeSampler (BATCH_SIZE_PER_IMAGE, POSITIVE_FRACTION).
        box_coder: BoxCoder with weights (1, 1, 1, 1).
    """

    def __init__(self, proposal_matcher, fg_bg_sampler, box_coder):
        self.proposal_matcher = proposal_matcher
        self.fg_bg_sampler = fg_bg_sampler
        self.box_coder = box_coder

    def prepare_targets(self, anchors, targets):
        """Per image: labels Tensor[M_i] (1 fg, 0 bg, -1 ignored) and regression targets Tensor[M_i, 4].

        Anchors outside the image (visibility False) and anchors with IoU between the two thresholds
        are ignored; an image without GT boxes gives only background anchors.
        """
        labels = []
        regression_targets = []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            anchor_boxes = torch.cat([a.bbox for a in anchors_per_image], dim=0)
            visibility = torch.cat([a.get_field("visibility") for a in anchors_per_image], dim=0)
            if len(targets_per_image) == 0:
                labels_per_image = torch.zeros(anchor_boxes.shape[0], device=anchor_boxes.device)
                labels_per_image[~visibility] = -1
                labels.append(labels_per_image)
                regression_targets.append(torch.zeros_like(anchor_boxes))
                continue
            anchor_boxlist = BoxList(anchor_boxes, anchors_per_image[0].size, mode="xyxy")
            match_quality_matrix = boxlist_iou(targets_per_image.convert("xyxy"), anchor_boxlist)
            matched_idxs = self.proposal_matcher(match_quality_matrix)
            labels_per_image = (matched_idxs >= 0).to(torch.float32)
            labels_per_image[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
            labels_per_image[~visibility] = -1
            matched_gt = targets_per_image.convert("xyxy").bbox[matched_idxs.clamp(min=0)]
            regression_targets.append(self.box_coder.encode(matched_gt, anchor_boxes))
            labels.append(labels_per_image)
        return labels, regression_targets

    def __call__(self, anchors, objectness, box_regression, targets):
        """
        Args:
            anchors: list (images) of list (levels) of BoxList with field "visibility".
            objectness: list (levels) of Tensor[N, A, H, W]; box_regression: list of Tensor[N, 4A, H, W].
            targets: list[BoxList] ground truth per image.
        Returns:
            (loss_objectness, loss_rpn_box_reg) scalar Tensors.
        """
        labels, regression_targets = self.prepare_targets(anchors, targets)
        sampled_pos_masks, sampled_neg_masks = self.fg_bg_sampler(labels)
        sampled_pos_inds = torch.nonzero(torch.cat(sampled_pos_masks, dim=0)).squeeze(1)
        sampled_neg_inds = torch.nonzero(torch.cat(sampled_neg_masks, dim=0)).squeeze(1)
        objectness, box_regression = concat_box_prediction_layers(objectness, box_regression)
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        return rpn_losses(objectness.squeeze(1), box_regression, labels, regression_targets,
                          sampled_pos_inds, sampled_neg_inds)


def make_rpn_loss_evaluator(cfg, box_coder):
    """RPNLossComputation from MODEL.RPN.{FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, BATCH_SIZE_PER_IMAGE,
    POSITIVE_FRACTION}."""
    matcher = Matcher(cfg.MODEL.RPN.FG_IOU_THRESHOLD, cfg.MODEL.RPN.BG_IOU_THRESHOLD, allow_low_quality_matches=True)
    sampler = BalancedPositiveNegativeSampler(cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE, cfg.MODEL.RPN.POSITIVE_FRACTION)
    return RPNLossComputation(matcher, sampler, box_coder)
