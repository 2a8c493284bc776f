"""Mask R-CNN mask targets and loss.

The target of a positive RoI is its matched GT instance cropped to the RoI and resampled to M x M
(maskrcnn-benchmark's crop -> resize -> rasterise). ``SegmentationMask.crop_and_resize`` does that for all RoIs of
an image at once; objects without it are rasterised at image size and cropped with one ``roi_align`` call.
"""
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.layers.roi_align import roi_align


def maskrcnn_loss(mask_logits, mask_targets):
    """Binary cross-entropy of the GT class's mask logits.

    loss_mask = mean_{i, u, v} BCEWithLogits(mask_logits[i, u, v], mask_targets[i, u, v])

    Args:
        mask_logits (Tensor[P, M, M]): logits of each positive RoI's GT class channel.
        mask_targets (Tensor[P, M, M]): binary targets in {0, 1} (float).
    Returns:
        scalar Tensor; ``0 * sum(mask_logits)`` (graph kept, so every parameter gets a zero gradient) when P == 0.
    """
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits, mask_targets)


def _instance_masks_tensor(segmentation_masks):
    """SegmentationMask with G instances -> uint8 Tensor[G, H, W] (get_mask_tensor drops the N dim when G == 1)."""
    if hasattr(segmentation_masks, "convert"):
        masks = segmentation_masks.convert("mask").get_mask_tensor()
    else:
        masks = segmentation_masks.get_mask_tensor()
    if masks.ndimension() == 2:
        masks = masks[None]
    return masks


def project_masks_on_boxes(segmentation_masks, boxes, matched_idxs, discretization_size):
    """Crops and resamples the GT instance masks to the RoIs.

    Args:
        segmentation_masks (SegmentationMask): the G GT instances of one image (size (w, h)).
        boxes (Tensor[P, 4]): RoIs xyxy in image pixels.
        matched_idxs (int64 Tensor[P]): GT instance of each RoI (all >= 0).
        discretization_size (int): M.
    Returns:
        float Tensor[P, M, M] with values in {0, 1}, on ``boxes``' device.
    """
    M = discretization_size
    device = boxes.device
    if boxes.shape[0] == 0:
        return torch.zeros((0, M, M), dtype=torch.float32, device=device)
    if hasattr(segmentation_masks, "crop_and_resize"):
        return segmentation_masks.crop_and_resize(boxes, M, matched_idxs).to(device=device, dtype=torch.float32)
    # Rasterise only the instances some RoI uses; an image can have many GT instances.
    used, inverse = torch.unique(matched_idxs, return_inverse=True)
    instances = segmentation_masks[used.cpu()] if len(used) < len(segmentation_masks) else segmentation_masks
    gt_masks = _instance_masks_tensor(instances).to(device=device, dtype=torch.float32)
    # As maskrcnn-benchmark's polygon crop, the continuous interval [x0, x1] (no +1) is mapped onto the M bins.
    rois = torch.cat([inverse.to(torch.float32)[:, None], boxes.to(torch.float32)], dim=1)
    # 2 x 2 bilinear samples per bin: an anti-aliased coverage estimate at a fixed cost per RoI.
    targets = roi_align(gt_masks[:, None], rois, (M, M), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return (targets[:, 0] >= 0.5).to(torch.float32)


class MaskRCNNLossComputation:
    """Builds the M x M targets of the positive RoIs and picks the GT class's logits.

    Args:
        discretization_size (int): M, the predictor's mask size (MODEL.ROI_MASK_HEAD.RESOLUTION).
    """

    def __init__(self, discretization_size):
        self.discretization_size = discretization_size

    def prepare_targets(self, proposals, targets):
        """proposals: positive sampled RoIs per image (fields "labels", "matched_idxs"); targets: GT per image
        (field "masks"). Returns (labels int64 Tensor[P], mask_targets float Tensor[P, M, M])."""
        labels, mask_targets = [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            labels.append(proposals_per_image.get_field("labels").to(torch.int64))
            mask_targets.append(project_masks_on_boxes(
                targets_per_image.get_field("masks"), proposals_per_image.bbox,
                proposals_per_image.get_field("matched_idxs"), self.discretization_size))
        return torch.cat(labels, dim=0), torch.cat(mask_targets, dim=0)

    def gt_class_logits_and_targets(self, proposals, mask_logits, targets):
        """mask_logits Tensor[P, C, M, M] for the positive ``proposals`` -> (GT class logits Tensor[P, M, M],
        targets Tensor[P, M, M]), the two inputs of ``maskrcnn_loss`` (and of the mask discriminator)."""
        if mask_logits.shape[-2:] != (self.discretization_size, self.discretization_size):
            raise ValueError("mask predictor outputs {}x{} masks but MODEL.ROI_MASK_HEAD.RESOLUTION is {}; set "
                             "RESOLUTION to the predictor's output size (2 x POOLER_RESOLUTION for the deconv "
                             "predictor)".format(*mask_logits.shape[-2:], self.discretization_size))
        labels, mask_targets = self.prepare_targets(proposals, targets)
        gt_class_logits = mask_logits[torch.arange(labels.numel(), device=labels.device), labels]
        return gt_class_logits, mask_targets.to(mask_logits.dtype)

    def __call__(self, proposals, mask_logits, targets):
        """Returns loss_mask (scalar) for ``mask_logits`` Tensor[P, C, M, M] of the positive ``proposals``."""
        return maskrcnn_loss(*self.gt_class_logits_and_targets(proposals, mask_logits, targets))


def make_roi_mask_loss_evaluator(cfg):
    """Reads MODEL.ROI_MASK_HEAD.RESOLUTION."""
    return MaskRCNNLossComputation(cfg.MODEL.ROI_MASK_HEAD.RESOLUTION)
