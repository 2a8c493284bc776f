"""Mask head post-processing (GT-free): per-detection mask probabilities, and pasting them into the image."""
import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.structures.bounding_box import BoxList


class MaskPostProcessor(nn.Module):
    """Picks each detection's predicted-class mask and attaches it as the "mask" field.

    Args:
        masker (Masker | None): when given, masks are pasted into the image (Tensor[N, 1, H, W]); otherwise the
            field holds the M x M probabilities Tensor[N, 1, M, M].
    """

    def __init__(self, masker=None):
        super().__init__()
        self.masker = masker

    def forward(self, x, boxes):
        """
        Args:
            x (Tensor[K, C, M, M]): mask logits of the K detections of ``boxes``; C == 1 means each detection's
                own class channel was already picked (``ROIMaskHead.detection_class_logits``) or the masks are
                class-agnostic.
            boxes (list[BoxList]): detections per image with field "labels".
        Returns:
            list[BoxList]: the detections (same boxes and fields) plus field "mask".
        """
        if x.shape[1] > 1:
            labels = torch.cat([box.get_field("labels") for box in boxes]).to(torch.int64)
            # Pick each detection's class channel before the sigmoid: one [N, M, M] map, not N x classes of them.
            x = x[torch.arange(labels.numel(), device=labels.device), labels][:, None]
        mask_prob = x.sigmoid()
        mask_prob = mask_prob.split([len(box) for box in boxes], dim=0)
        if self.masker is not None:
            mask_prob = self.masker(mask_prob, boxes)

        results = []
        for prob, box in zip(mask_prob, boxes):
            bbox = BoxList(box.bbox, box.size, mode="xyxy")
            for field in box.fields():
                bbox.add_field(field, box.get_field(field))
            bbox.add_field("mask", prob)
            results.append(bbox)
        return results


def expand_boxes(boxes, scale):
    """Scales Tensor[N, 4] xyxy boxes about their centres by ``scale``."""
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([x_c - half_w, y_c - half_h, x_c + half_w, y_c + half_h], dim=1)


def paste_masks_in_image(masks, boxes, image_shape, threshold=0.5, padding=1):
    """Resizes each M x M mask to its box and places it in an image-sized canvas.

    Semantics of maskrcnn-benchmark's ``paste_mask_in_image``: the mask is zero-padded by ``padding`` cells, its box
    expanded by (M + 2 padding) / M and truncated to integers, the mask bilinearly resized (align_corners=False) to
    the box's (x1 - x0 + 1) x (y1 - y0 + 1) pixels, thresholded and written inside the box. Done here with one
    ``grid_sample`` per mask over the part of its box inside the image, instead of an ``interpolate`` of the whole
    box: batching masks needs a common grid (the union of their boxes, i.e. most of the image), whose sampling
    grid and samples for a chunk of 69 masks of a 400 x 600 image took ~400 MB on top of the output, and on the
    CPU sampling only each mask's own box is also less work.

    Args:
        masks (Tensor[N, M, M] or Tensor[N, 1, M, M]): probabilities.
        boxes (Tensor[N, 4]): xyxy boxes in image pixels.
        image_shape (tuple[int, int]): (height, width).
        threshold (float): masks are binarised with ``> threshold``; negative returns the probabilities.
    Returns:
        Tensor[N, 1, H, W]: uint8 in {0, 1}, or float probabilities when ``threshold < 0``.
    """
    if masks.ndimension() == 4:
        masks = masks[:, 0]
    im_h, im_w = int(image_shape[0]), int(image_shape[1])
    out_dtype = torch.uint8 if threshold >= 0 else masks.dtype
    result = torch.zeros((masks.shape[0], 1, im_h, im_w), dtype=out_dtype, device=masks.device)
    for i, window in enumerate(paste_masks_in_windows(masks, boxes, image_shape, threshold, padding)):
        if window is not None:
            top, left, region = window
            result[i, 0, top:top + region.shape[0], left:left + region.shape[1]] = region
    return result


def paste_masks_in_windows(masks, boxes, image_shape, threshold=0.5, padding=1):
    """Each mask pasted as paste_masks_in_image does, but returned as the window of its box inside the image only:
    a large image's masks need no image-sized canvas each (the same pixels, computed by the same code).

    Args: as :func:`paste_masks_in_image`.
    Returns:
        list with, per mask, None (its box lies outside the image) or (top, left, Tensor[h, w]): the pixels
        ``[top:top + h, left:left + w]`` of the pasted mask (uint8 {0, 1}, or probabilities if threshold < 0);
        every pixel outside the window is 0.
    """
    if masks.ndimension() == 4:
        masks = masks[:, 0]
    im_h, im_w = int(image_shape[0]), int(image_shape[1])
    num_masks, mask_size = masks.shape[0], masks.shape[-1]
    device = masks.device
    out_dtype = torch.uint8 if threshold >= 0 else masks.dtype
    windows = []
    if num_masks == 0:
        return windows

    masks = masks.float()
    if padding > 0:
        masks = F.pad(masks, (padding, padding, padding, padding))
        boxes = expand_boxes(boxes.float(), (mask_size + 2.0 * padding) / mask_size)
    boxes = boxes.to(torch.int64)  # truncation toward zero, as maskrcnn-benchmark
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    widths = (x1 - x0 + 1).clamp(min=1).float()
    heights = (y1 - y0 + 1).clamp(min=1).float()

    for i, (left, top, right, bottom) in enumerate(boxes.tolist()):
        col_lo, col_hi = max(left, 0), min(right, im_w - 1)
        row_lo, row_hi = max(top, 0), min(bottom, im_h - 1)
        if col_hi < col_lo or row_hi < row_lo:
            windows.append(None)  # the box is outside the image
            continue
        cols = torch.arange(col_lo, col_hi + 1, device=device)
        rows = torch.arange(row_lo, row_hi + 1, device=device)
        # Normalised grid_sample coordinate of pixel p in a box resized to w pixels: 2 (p - x0 + 0.5) / w - 1.
        gx = (cols - x0[i] + 0.5) / widths[i] * 2 - 1
        gy = (rows - y0[i] + 0.5) / heights[i] * 2 - 1
        grid = torch.stack([gx[None, :].expand(rows.numel(), cols.numel()),
                            gy[:, None].expand(rows.numel(), cols.numel())], dim=2)
        # "border" reproduces interpolate's edge clamping for pixels between the edge cell centres.
        sampled = F.grid_sample(masks[i:i + 1, None], grid[None], mode="bilinear", padding_mode="border",
                                align_corners=False)[0, 0]
        region = (sampled > threshold).to(out_dtype) if threshold >= 0 else sampled.to(out_dtype)
        windows.append((row_lo, col_lo, region))
    return windows


class Masker:
    """Pastes M x M mask probabilities into full-image masks (what COCO evaluation and users need).

    Args:
        threshold (float): binarisation threshold (``> threshold``); negative keeps probabilities.
        padding (int): zero cells added around each mask before resizing, so edges fade out inside the box.
    """

    def __init__(self, threshold=0.5, padding=1):
        self.threshold = threshold
        self.padding = padding

    def forward_single_image(self, masks, boxes):
        """masks Tensor[N, 1, M, M], boxes BoxList of N boxes -> Tensor[N, 1, H, W] for image size boxes.size."""
        boxes = boxes.convert("xyxy")
        im_w, im_h = boxes.size
        return paste_masks_in_image(masks, boxes.bbox, (im_h, im_w), self.threshold, self.padding)

    def __call__(self, masks, boxes):
        """masks: Tensor[N, 1, M, M] or a list of them (one per image); boxes: BoxList or list[BoxList].
        Returns a list with one Tensor[N_i, 1, H_i, W_i] per image."""
        if isinstance(boxes, BoxList):
            boxes = [boxes]
        if isinstance(masks, torch.Tensor):
            masks = [masks]
        if len(masks) != len(boxes):
            raise ValueError("Masker got masks for {} images but boxes for {}; pass one entry per image"
                             .format(len(masks), len(boxes)))
        return [self.forward_single_image(mask, box) for mask, box in zip(masks, boxes)]


def make_roi_mask_post_processor(cfg):
    """Reads MODEL.ROI_MASK_HEAD.{POSTPROCESS_MASKS, POSTPROCESS_MASKS_THRESHOLD}."""
    masker = None
    if cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS:
        masker = Masker(threshold=cfg.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD, padding=1)
    return MaskPostProcessor(masker)
