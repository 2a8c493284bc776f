"""Box head post-processing: class scores and decoded boxes -> per-image detections."""
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from maskrcnn_benchmark.modeling.box_coder import BoxCoder, box_convention_to_remove
from maskrcnn_benchmark.structures.bounding_box import BoxList


def clip_boxes(boxes, image_size, to_remove=1):
    """Clips Tensor[..., 4] xyxy boxes to an image of ``image_size`` (w, h): x in [0, w - to_remove], y in
    [0, h - to_remove] (to_remove 1: maskrcnn-benchmark's last pixel index; 0: torchvision's right edge)."""
    w, h = image_size
    upper = boxes.new_tensor([w - to_remove, h - to_remove, w - to_remove, h - to_remove])
    return torch.minimum(boxes.clamp(min=0), upper)


def filter_detections(boxes, scores, score_thresh, nms_thresh, detections_per_img, to_remove=1, min_size=0.0):
    """Score threshold, small-box removal, per-class NMS and top-k for one image, vectorised over classes.

    Args:
        boxes (Tensor[N, C, 4]): per-class boxes (column 0, the background, is ignored).
        scores (Tensor[N, C]): class probabilities.
        to_remove (int): 1 for IoUs of +1 widths (maskrcnn-benchmark), 0 for x1 - x0 (torchvision).
        min_size (float): boxes with a side (x1 - x0 + to_remove) below this are dropped before NMS (torchvision:
            0.01 px); 0 keeps all.
    Returns:
        (boxes Tensor[D, 4], scores Tensor[D], labels int64 Tensor[D]) sorted by decreasing score, D <=
        detections_per_img (all when detections_per_img <= 0).
    """
    boxes, scores = boxes[:, 1:], scores[:, 1:]
    roi_idx, class_idx = torch.nonzero(scores > score_thresh, as_tuple=True)
    boxes, scores, labels = boxes[roi_idx, class_idx], scores[roi_idx, class_idx], class_idx + 1
    if min_size > 0:
        sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + to_remove
        keep = torch.nonzero(sides >= min_size).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    # +1 on x1/y1 makes torchvision's IoU equal to the +1-width IoU that maskrcnn-benchmark's NMS uses.
    keep = batched_nms(boxes + boxes.new_tensor([0, 0, to_remove, to_remove]), scores, labels, nms_thresh)
    if detections_per_img > 0:
        keep = keep[:detections_per_img]
    return boxes[keep], scores[keep], labels[keep]


class PostProcessor(nn.Module):
    """Turns the box head's outputs into detections: softmax, decode, clip, score threshold, per-class NMS, top-k.

    Args:
        score_thresh (float): minimum class probability kept (MODEL.ROI_HEADS.SCORE_THRESH).
        nms (float): IoU threshold of the per-class NMS (MODEL.ROI_HEADS.NMS).
        detections_per_img (int): maximum detections per image (MODEL.ROI_HEADS.DETECTIONS_PER_IMG).
        box_coder (BoxCoder): decoder of the regression deltas (weights MODEL.ROI_HEADS.BBOX_REG_WEIGHTS).
        cls_agnostic_bbox_reg (bool): the predictor regresses one box shared by all classes.
        min_size (float): detections with a side below this many px are dropped before NMS (torchvision: 0.01).
    Clipping, widths and NMS overlaps follow ``box_coder.to_remove`` (MODEL.BOX_CONVENTION).
    """

    def __init__(self, score_thresh=0.05, nms=0.5, detections_per_img=100, box_coder=None,
                 cls_agnostic_bbox_reg=False, min_size=0.0):
        super().__init__()
        self.min_size = min_size
        self.score_thresh = score_thresh
        self.nms = nms
        self.detections_per_img = detections_per_img
        self.box_coder = box_coder if box_coder is not None else BoxCoder(weights=(10., 10., 5., 5.))
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg

    def forward(self, x, boxes):
        """
        Args:
            x (tuple[Tensor[K, C], Tensor[K, 4C']]): class logits and box regression for the K RoIs of ``boxes``.
            boxes (list[BoxList]): the RoIs per image, in the order of ``x``.
        Returns:
            list[BoxList]: detections per image (xyxy, the image's size) with fields "scores" and "labels".
        """
        class_logits, box_regression = x
        class_prob = F.softmax(class_logits, -1)
        num_classes = class_prob.shape[1]
        concat_boxes = torch.cat([b.bbox for b in boxes], dim=0)
        if self.cls_agnostic_bbox_reg:
            box_regression = box_regression[:, -4:]
        proposals = self.box_coder.decode(box_regression, concat_boxes)
        if self.cls_agnostic_bbox_reg:
            proposals = proposals.repeat(1, num_classes)
        proposals = proposals.view(-1, num_classes, 4)

        results = []
        boxes_per_image = [len(b) for b in boxes]
        for prob, boxes_i, image in zip(class_prob.split(boxes_per_image), proposals.split(boxes_per_image), boxes):
            boxes_i = clip_boxes(boxes_i, image.size, self.box_coder.to_remove)
            det_boxes, det_scores, det_labels = filter_detections(
                boxes_i, prob, self.score_thresh, self.nms, self.detections_per_img, self.box_coder.to_remove,
                self.min_size)
            result = BoxList(det_boxes, image.size, mode="xyxy")
            result.add_field("scores", det_scores)
            result.add_field("labels", det_labels)
            results.append(result)
        return results


def make_roi_box_post_processor(cfg):
    """Reads MODEL.ROI_HEADS.{SCORE_THRESH, NMS, DETECTIONS_PER_IMG, BBOX_REG_WEIGHTS}, MODEL.CLS_AGNOSTIC_BBOX_REG
    and MODEL.BOX_CONVENTION (torchvision's drops detections with a side under 0.01 px, as its RoIHeads)."""
    heads = cfg.MODEL.ROI_HEADS
    to_remove = box_convention_to_remove(cfg)
    return PostProcessor(heads.SCORE_THRESH, heads.NMS, heads.DETECTIONS_PER_IMG,
                         BoxCoder(weights=heads.BBOX_REG_WEIGHTS, to_remove=to_remove), cfg.MODEL.CLS_AGNOSTIC_BBOX_REG,
                         min_size=0.0 if to_remove else 1e-2)
