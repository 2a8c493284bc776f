"""The mask head: per-RoI mask logits; trained on the positive sampled RoIs, applied to detections in eval."""
import torch
from torch import nn

from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.structures.boxlist_ops import boxes_to_rois

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


class ROIMaskHead(nn.Module):
    """Mask R-CNN mask branch.

    Args:
        feature_extractor (nn.Module): (features, proposals) -> Tensor[K, C, R, R], with ``out_channels``.
        predictor (nn.Module): Tensor[K, C, R, R] -> logits Tensor[K, num_classes, M, M].
        post_processor (MaskPostProcessor): eval-time "mask" field.
        loss_evaluator (MaskRCNNLossComputation): training targets.
        share_box_feature_extractor (bool): in training, reuse the box head's RoI features (C4 heads) instead of
            running ``feature_extractor``; the combined heads then also share the extractor module.
        test_chunk_size (int): in eval, the predictor runs on this many detections at a time and only each
            detection's class channel is kept. For 100 detections the all-at-once predictor held ~230 MB
            (the 256 x 28 x 28 deconv output twice - the CPU deconv copies it to make it contiguous - and the
            all-class logits): the inference peak of the whole model. Each RoI's output does not depend on the
            others in its chunk, so the masks do not change (bitwise for the R-50-FPN head; tiny heads can
            differ in the last float bit where the CPU convolution picks another kernel for another batch size).
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator,
                 share_box_feature_extractor=False, test_chunk_size=32):
        super().__init__()
        if test_chunk_size < 1:
            raise ValueError("ROIMaskHead: test_chunk_size (MODEL.ROI_MASK_HEAD.TEST_CHUNK_SIZE) must be >= 1, "
                             "got {}".format(test_chunk_size))
        self.feature_extractor = feature_extractor
        self.predictor = predictor
        self.post_processor = post_processor
        self.loss_evaluator = loss_evaluator
        self.share_box_feature_extractor = share_box_feature_extractor
        self.test_chunk_size = test_chunk_size

    def detection_class_logits(self, x, labels):
        """Mask logits of each detection's own class, computed ``test_chunk_size`` detections at a time.

        Args:
            x (Tensor[K, C, R, R]): RoI features of the K detections.
            labels (int64 Tensor[K]): their classes.
        Returns:
            Tensor[K, 1, M, M]: ``predictor(x)[k, labels[k]]`` for every k.
        """
        picked = []
        # max(K, 1): with no detections the predictor still runs once, on the empty batch, for the output shape.
        for start in range(0, max(x.shape[0], 1), self.test_chunk_size):
            logits = self.predictor(x[start:start + self.test_chunk_size])
            rows = torch.arange(logits.shape[0], device=logits.device)
            picked.append(logits[rows, labels[start:start + self.test_chunk_size]][:, None])
        return torch.cat(picked) if len(picked) > 1 else picked[0]

    def forward(self, features, proposals, targets=None):
        """
        Args:
            features (list[Tensor[N, C, H, W]] | Tensor[K, C, h, w]): backbone maps, or in training with
                ``share_box_feature_extractor`` the box head's features of the sampled RoIs.
            proposals (list[BoxList]): training: the box head's sampled RoIs (fields "labels", "matched_idxs");
                eval: detections (field "labels").
            targets (list[BoxList] | None): GT with field "masks", required in training.
        Returns:
            training: (x, proposals, {"loss_mask"}, AdversarialInputs with ``mask_logits`` Tensor[P, M, M]
            (the GT class's logits), ``mask_targets`` Tensor[P, M, M] and ``mask_rois`` Tensor[P, 5] of the P
            positive RoIs).
            eval: (x, detections with field "mask" Tensor[N, 1, M, M], {}, an empty AdversarialInputs).
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
            labels = torch.cat([p.get_field("labels") for p in proposals]).to(torch.int64)
            return x, self.post_processor(self.detection_class_logits(x, labels), proposals), {}, AdversarialInputs()
        mask_logits = self.predictor(x)

        gt_class_logits, mask_targets = self.loss_evaluator.gt_class_logits_and_targets(
            proposals, mask_logits, targets)
        losses = dict(loss_mask=maskrcnn_loss(gt_class_logits, mask_targets))
        adv_inputs = AdversarialInputs(mask_logits=gt_class_logits, mask_targets=mask_targets,
                                       mask_rois=boxes_to_rois(proposals))
        return x, all_proposals, losses, adv_inputs


def build_roi_mask_head(cfg, in_channels):
    """Builds the mask head from MODEL.ROI_MASK_HEAD for backbone maps of ``in_channels`` channels."""
    feature_extractor = make_roi_mask_feature_extractor(cfg, in_channels)
    predictor = make_roi_mask_predictor(cfg, feature_extractor.out_channels)
    return ROIMaskHead(feature_extractor, predictor, make_roi_mask_post_processor(cfg),
                       make_roi_mask_loss_evaluator(cfg), cfg.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR,
                       test_chunk_size=cfg.MODEL.ROI_MASK_HEAD.TEST_CHUNK_SIZE)
