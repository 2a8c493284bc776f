"""The mask head: per-RoI mask logits; trained on the positive sampled RoIs, applied to detections in eval."""
import torch
from torch import nn

from .inference import make_roi_mask_post_processor
from .loss import make_roi_mask_loss_evaluator, maskrcnn_loss
from .roi_mask_feature_extractors import make_roi_mask_feature_extractor
from .roi_mask_predictors import make_roi_mask_predictor


def keep_only_positive_boxes(boxes):
    """Foreground RoIs of each image.

    Args:
        boxes (list[BoxList]): sampled RoIs with field "labels" (0 = background).
    Returns:
        (list[BoxList] the positive RoIs, list[bool Tensor[K_i]] which RoIs of each image were kept).
    """
    positive_boxes, positive_inds = [], []
    for boxes_per_image in boxes:
        inds_mask = boxes_per_image.get_field("labels") > 0
        positive_boxes.append(boxes_per_image[torch.nonzero(inds_mask).squeeze(1)])
        positive_inds.append(inds_mask)
    return positive_boxes, positive_inds


def boxes_with_batch_index(boxes):
    """list[BoxList] -> Tensor[K, 5] (batch_idx, x0, y0, x1, y1), the RoI format of the discriminators."""
    device = boxes[0].bbox.device if boxes else torch.device("cpu")
    rois = [torch.cat([torch.full((len(b), 1), float(i), device=device), b.bbox], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rois, dim=0) if rois else torch.zeros((0, 5), device=device)


class ROIMaskHead(nn.Module):
    """Mask R-CNN mask branch.

    Args:
        feature_extractor (nn.Module): (features, proposals) -> Tensor[K, C, R, R], with ``out_channels``.
        predictor (nn.Module): Tensor[K, C, R, R] -> logits Tensor[K, num_classes, M, M].
        post_processor (MaskPostProcessor): eval-time "mask" field.
        loss_evaluator (MaskRCNNLossComputation): training targets.
        share_box_feature_extractor (bool): in training, reuse the box head's RoI features (C4 heads) instead of
            running ``feature_extractor``; the combined heads then also share the extractor module.
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator,
                 share_box_feature_extractor=False):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.predictor = predictor
        self.post_processor = post_processor
        self.loss_evaluator = loss_evaluator
        self.share_box_feature_extractor = share_box_feature_extractor

    def forward(self, features, proposals, targets=None, return_adv_inputs=False):
        """
        Args:
            features (list[Tensor[N, C, H, W]] | Tensor[K, C, h, w]): backbone maps, or in training with
                ``share_box_feature_extractor`` the box head's features of the sampled RoIs.
            proposals (list[BoxList]): training: the box head's sampled RoIs (fields "labels", "matched_idxs");
                eval: detections (field "labels").
            targets (list[BoxList] | None): GT with field "masks", required in training.
            return_adv_inputs (bool): in training also return the discriminator inputs.
        Returns:
            training: (x, proposals, {"loss_mask"}) and with ``return_adv_inputs`` a fourth item
            {"mask_logits": Tensor[P, M, M], "mask_targets": Tensor[P, M, M], "mask_rois": Tensor[P, 5]}.
            eval: (x, detections with field "mask" Tensor[N, 1, M, M], {}).
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIMaskHead needs targets in training mode; call model.eval() for inference")
            all_proposals = proposals
            proposals, positive_inds = keep_only_positive_boxes(proposals)
            if self.share_box_feature_extractor:
                x = features[torch.cat(positive_inds, dim=0)]
            else:
                x = self.feature_extractor(features, proposals)
        else:
            x = self.feature_extractor(features, proposals)
        mask_logits = self.predictor(x)

        if not self.training:
            return x, self.post_processor(mask_logits, proposals), {}

        gt_class_logits, mask_targets = self.loss_evaluator.gt_class_logits_and_targets(
            proposals, mask_logits, targets)
        losses = dict(loss_mask=maskrcnn_loss(gt_class_logits, mask_targets))
        if not return_adv_inputs:
            return x, all_proposals, losses
        adv_inputs = dict(mask_logits=gt_class_logits, mask_targets=mask_targets,
                          mask_rois=boxes_with_batch_index(proposals))
        return x, all_proposals, losses, adv_inputs


def build_roi_mask_head(cfg, in_channels):
    """Builds the mask head from MODEL.ROI_MASK_HEAD for backbone maps of ``in_channels`` channels."""
    feature_extractor = make_roi_mask_feature_extractor(cfg, in_channels)
    predictor = make_roi_mask_predictor(cfg, feature_extractor.out_channels)
    return ROIMaskHead(feature_extractor, predictor, make_roi_mask_post_processor(cfg),
                       make_roi_mask_loss_evaluator(cfg), cfg.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR)
