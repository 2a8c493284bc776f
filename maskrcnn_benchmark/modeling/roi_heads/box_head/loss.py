"""Fast R-CNN training targets and losses of the box head.

Sampling (``subsample``) and the loss are separate calls so the head can run the feature extractor only on the
sampled RoIs; the sampled proposals carry their targets as BoxList fields ("labels", "regression_targets",
"matched_idxs") from one call to the next instead of being stored on the module.
"""
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn_benchmark.modeling.box_coder import BoxCoder, box_convention_to_remove
from maskrcnn_benchmark.modeling.matcher import Matcher
from maskrcnn_benchmark.modeling.utils import check_finite
from maskrcnn_benchmark.structures.boxlist_ops import boxes_to_rois, boxlist_iou


def fast_rcnn_losses(class_logits, box_regression, labels, regression_targets, cls_agnostic_bbox_reg=False):
    """Classification and box regression losses of Fast R-CNN.

    loss_classifier = mean_i CE(class_logits_i, labels_i)
    loss_box_reg = (1 / K) * sum_{i: labels_i > 0} smoothL1_{beta=1}(box_regression_i[4 c_i : 4 c_i + 4] - t_i)
    with c_i the GT class (1 when class-agnostic) and K the number of sampled RoIs (foreground and background).

    Args:
        class_logits (Tensor[K, C]), box_regression (Tensor[K, 4 * C'] with C' = 2 if class-agnostic else C),
        labels (int64 Tensor[K], 0 = background), regression_targets (Tensor[K, 4], BoxCoder-encoded).
    Returns:
        (loss_classifier, loss_box_reg): scalar Tensors; both zero (graph kept) when K == 0.
    """
    if labels.numel() == 0:
        zero = class_logits.sum() * 0 + box_regression.sum() * 0
        return zero, zero.clone()
    loss_classifier = F.cross_entropy(class_logits, labels)
    positive = torch.nonzero(labels > 0).squeeze(1)
    columns = _gt_class_columns(labels[positive], cls_agnostic_bbox_reg)
    loss_box_reg = F.smooth_l1_loss(box_regression[positive[:, None], columns], regression_targets[positive],
                                    reduction="sum", beta=1.0)
    return loss_classifier, loss_box_reg / labels.numel()


def _gt_class_columns(labels, cls_agnostic_bbox_reg):
    """Column indices Tensor[P, 4] of the regression output that belong to each RoI's GT class."""
    offsets = torch.arange(4, device=labels.device)
    if cls_agnostic_bbox_reg:
        # The agnostic predictor has 2 boxes (background, foreground); the foreground one is trained.
        return (4 + offsets)[None, :].expand(labels.numel(), 4)
    return 4 * labels[:, None] + offsets[None, :]


class FastRCNNLossComputation:
    """Matches proposals to ground truth, samples a balanced RoI minibatch and computes the Fast R-CNN losses.

    Args:
        proposal_matcher (Matcher): IoU matcher (FG/BG thresholds).
        fg_bg_sampler (BalancedPositiveNegativeSampler): RoIs per image and foreground fraction.
        box_coder (BoxCoder): encodes the regression targets (weights (10, 10, 5, 5)).
        cls_agnostic_bbox_reg (bool): the predictor regresses one box for all classes.
        clip_gt_boxes (bool): clip the box discriminator's ground-truth boxes to the image, as its predicted boxes
            are (MODEL.GAN.CLIP_GT_BOXES, the authors' code).
    """

    def __init__(self, proposal_matcher, fg_bg_sampler, box_coder, cls_agnostic_bbox_reg=False, clip_gt_boxes=False):
        self.proposal_matcher = proposal_matcher
        self.fg_bg_sampler = fg_bg_sampler
        self.box_coder = box_coder
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self.clip_gt_boxes = clip_gt_boxes

    def match_targets_to_proposals(self, proposal, target):
        """Returns (matched_idxs int64 Tensor[P] with Matcher's negative codes, matched GT boxes Tensor[P, 4],
        matched GT labels int64 Tensor[P])."""
        num_proposals = len(proposal)
        device = proposal.bbox.device
        if len(target) == 0:
            # An image without objects: every proposal is background (maskrcnn-benchmark raises here).
            matched_idxs = torch.full((num_proposals,), Matcher.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=device)
            return (matched_idxs, torch.zeros((num_proposals, 4), dtype=proposal.bbox.dtype, device=device),
                    torch.zeros((num_proposals,), dtype=torch.int64, device=device))
        matched_idxs = self.proposal_matcher(boxlist_iou(target, proposal))
        clamped = matched_idxs.clamp(min=0)
        return matched_idxs, target.bbox[clamped], target.get_field("labels")[clamped].to(torch.int64)

    def prepare_targets(self, proposals, targets):
        """Per image: labels (0 background, -1 ignored), encoded regression targets and matched GT indices."""
        labels, regression_targets, matched = [], [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            matched_idxs, matched_boxes, labels_per_image = self.match_targets_to_proposals(
                proposals_per_image, targets_per_image)
            labels_per_image = labels_per_image.clone()
            labels_per_image[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0
            labels_per_image[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1
            labels.append(labels_per_image)
            regression_targets.append(self.box_coder.encode(matched_boxes, proposals_per_image.bbox))
            matched.append(matched_idxs)
        return labels, regression_targets, matched

    def subsample(self, proposals, targets):
        """Samples BATCH_SIZE_PER_IMAGE RoIs per image (POSITIVE_FRACTION foreground at most).

        Args:
            proposals (list[BoxList]), targets (list[BoxList] with field "labels").
        Returns:
            list[BoxList]: the sampled proposals with fields "labels" (int64), "regression_targets" (Tensor[K,4])
            and "matched_idxs" (int64, index of the matched GT box; negative for background).
        """
        if len(proposals) != len(targets):
            raise ValueError("box head got {} proposal lists but {} target lists; pass one target BoxList per "
                             "image".format(len(proposals), len(targets)))
        labels, regression_targets, matched_idxs = self.prepare_targets(proposals, targets)
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled = []
        for image_idx, proposals_per_image in enumerate(proposals):
            keep = torch.nonzero(sampled_pos[image_idx].bool() | sampled_neg[image_idx].bool()).squeeze(1)
            proposals_per_image = proposals_per_image[keep]
            proposals_per_image.add_field("labels", labels[image_idx][keep])
            proposals_per_image.add_field("regression_targets", regression_targets[image_idx][keep])
            proposals_per_image.add_field("matched_idxs", matched_idxs[image_idx][keep])
            sampled.append(proposals_per_image)
        return sampled

    def __call__(self, class_logits, box_regression, proposals):
        """class_logits Tensor[K, C], box_regression Tensor[K, 4C'] for the K sampled ``proposals`` (list[BoxList]
        from ``subsample``, same order) -> (loss_classifier, loss_box_reg)."""
        labels = torch.cat([p.get_field("labels") for p in proposals], dim=0)
        regression_targets = torch.cat([p.get_field("regression_targets") for p in proposals], dim=0)
        return fast_rcnn_losses(class_logits, box_regression, labels, regression_targets,
                                self.cls_agnostic_bbox_reg)

    def adversarial_boxes(self, box_regression, proposals, targets):
        """Predicted and ground-truth boxes of the foreground sampled RoIs, for the box discriminator.

        Args:
            box_regression (Tensor[K, 4C']): the box predictor's output for the sampled ``proposals``.
            proposals (list[BoxList]): from ``subsample``; targets (list[BoxList]).
        Returns:
            box_rois_pred (Tensor[P, 5]): (batch_idx, x0, y0, x1, y1) decoded from the GT class's regression,
                clipped to the image; differentiable w.r.t. ``box_regression``.
            box_rois_gt (Tensor[P, 5]): the matched GT boxes, same order; clipped to the image too with
                ``clip_gt_boxes``.
        """
        labels = torch.cat([p.get_field("labels") for p in proposals], dim=0)
        positive = torch.nonzero(labels > 0).squeeze(1)
        proposal_boxes = torch.cat([p.bbox for p in proposals], dim=0)[positive]
        deltas = box_regression[positive[:, None], _gt_class_columns(labels[positive], self.cls_agnostic_bbox_reg)]
        pred_boxes = check_finite(self.box_coder.decode(deltas, proposal_boxes),
                                  "the box head's predicted boxes decoded from box_regression (box_rois_pred)")

        # Upper clip bound per RoI: (w - 1, h - 1, w - 1, h - 1) of its image (TO_REMOVE = 1 convention).
        counts = [int((p.get_field("labels") > 0).sum()) for p in proposals]
        upper = torch.cat([pred_boxes.new_tensor(p.size).sub(1).repeat(2).expand(n, 4)
                           for p, n in zip(proposals, counts)]) if proposals else pred_boxes
        pred_boxes = pred_boxes.clamp(min=0).clamp(max=upper)

        gt_boxes = torch.cat([t.bbox[p.get_field("matched_idxs").clamp(min=0)] if len(t) else
                              torch.zeros_like(p.bbox) for p, t in zip(proposals, targets)], dim=0)[positive]
        gt_boxes = gt_boxes.to(pred_boxes.dtype)
        if self.clip_gt_boxes:
            gt_boxes = gt_boxes.clamp(min=0).clamp(max=upper)
        return boxes_to_rois(list(pred_boxes.split(counts))), boxes_to_rois(list(gt_boxes.split(counts)))


def make_roi_box_loss_evaluator(cfg):
    """Reads MODEL.ROI_HEADS.{FG_IOU_THRESHOLD, BG_IOU_THRESHOLD, BBOX_REG_WEIGHTS, BATCH_SIZE_PER_IMAGE,
    POSITIVE_FRACTION}, MODEL.CLS_AGNOSTIC_BBOX_REG and MODEL.GAN.CLIP_GT_BOXES."""
    heads = cfg.MODEL.ROI_HEADS
    matcher = Matcher(heads.FG_IOU_THRESHOLD, heads.BG_IOU_THRESHOLD, allow_low_quality_matches=False)
    box_coder = BoxCoder(weights=heads.BBOX_REG_WEIGHTS, to_remove=box_convention_to_remove(cfg))
    sampler = BalancedPositiveNegativeSampler(heads.BATCH_SIZE_PER_IMAGE, heads.POSITIVE_FRACTION)
    return FastRCNNLossComputation(matcher, sampler, box_coder, cfg.MODEL.CLS_AGNOSTIC_BBOX_REG,
                                   clip_gt_boxes=cfg.MODEL.GAN.CLIP_GT_BOXES)
