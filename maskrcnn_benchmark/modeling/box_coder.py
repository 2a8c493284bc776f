"""Box regression parametrisation (R-CNN deltas) with maskrcnn-benchmark's +1 pixel convention or torchvision's."""
import math

import torch

# the +1 of the inclusive pixel convention (width = x1 - x0 + 1)
TO_REMOVE = 1
# MODEL.BOX_CONVENTION -> the pixel added to x1 - x0 to get a box's width
BOX_CONVENTION_TO_REMOVE = {"maskrcnn_benchmark": 1, "torchvision": 0}


def box_convention_to_remove(cfg):
    """1 or 0: the width offset of ``cfg.MODEL.BOX_CONVENTION``; an unknown value is refused by name."""
    convention = cfg.MODEL.BOX_CONVENTION
    if convention not in BOX_CONVENTION_TO_REMOVE:
        raise ValueError("MODEL.BOX_CONVENTION='{}' is unknown; use one of {}".format(
            convention, ", ".join(sorted(BOX_CONVENTION_TO_REMOVE))))
    return BOX_CONVENTION_TO_REMOVE[convention]


class BoxCoder(object):
    """Encodes boxes as deltas (dx, dy, dw, dh) relative to reference boxes, and decodes them back.

    For a proposal with centre (px, py) and size (pw, ph) (pw = x1 - x0 + 1) and a target with (gx, gy, gw, gh):
        dx = wx * (gx - px) / pw,  dy = wy * (gy - py) / ph,  dw = ww * log(gw / pw),  dh = wh * log(gh / ph).

    Args:
        weights: (wx, wy, ww, wh); (10, 10, 5, 5) for the box head, (1, 1, 1, 1) for the RPN.
        bbox_xform_clip: upper clamp of dw / dh before exp when decoding, so a wild prediction cannot overflow.
        to_remove: 1 for maskrcnn-benchmark's widths x1 - x0 + 1 (decoded x1 = cx + w / 2 - 1), 0 for torchvision's
            x1 - x0 (MODEL.BOX_CONVENTION).
    """

    def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16), to_remove=TO_REMOVE):
        if len(weights) != 4:
            raise ValueError("BoxCoder: weights should be (wx, wy, ww, wh), got {!r}".format(weights))
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip
        self.to_remove = to_remove

    def encode(self, reference_boxes, proposals):
        """Regression targets.

        Args:
            reference_boxes: Tensor[N, 4] xyxy target (ground-truth) boxes.
            proposals: Tensor[N, 4] xyxy boxes they are expressed relative to (anchors / proposals).
        Returns:
            Tensor[N, 4] deltas (dx, dy, dw, dh).
        """
        ex_widths = proposals[:, 2] - proposals[:, 0] + self.to_remove
        ex_heights = proposals[:, 3] - proposals[:, 1] + self.to_remove
        ex_ctr_x = proposals[:, 0] + 0.5 * ex_widths
        ex_ctr_y = proposals[:, 1] + 0.5 * ex_heights

        gt_widths = reference_boxes[:, 2] - reference_boxes[:, 0] + self.to_remove
        gt_heights = reference_boxes[:, 3] - reference_boxes[:, 1] + self.to_remove
        gt_ctr_x = reference_boxes[:, 0] + 0.5 * gt_widths
        gt_ctr_y = reference_boxes[:, 1] + 0.5 * gt_heights

        wx, wy, ww, wh = self.weights
        targets_dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
        targets_dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
        targets_dw = ww * torch.log(gt_widths / ex_widths)
        targets_dh = wh * torch.log(gt_heights / ex_heights)
        return torch.stack((targets_dx, targets_dy, targets_dw, targets_dh), dim=1)

    def decode(self, rel_codes, boxes):
        """Apply deltas to boxes (differentiable w.r.t. ``rel_codes``).

        Args:
            rel_codes: Tensor[N, 4 * C] deltas, C groups of (dx, dy, dw, dh) (e.g. one per class).
            boxes: Tensor[N, 4] xyxy reference boxes.
        Returns:
            Tensor[N, 4 * C] decoded xyxy boxes (x1 = cx + w / 2 - to_remove).
        """
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0] + self.to_remove
        heights = boxes[:, 3] - boxes[:, 1] + self.to_remove
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = (rel_codes[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (rel_codes[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        pred_boxes = torch.stack(
            (pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h,
             pred_ctr_x + 0.5 * pred_w - self.to_remove, pred_ctr_y + 0.5 * pred_h - self.to_remove), dim=2)
        return pred_boxes.reshape(rel_codes.shape)
