"""RetinaNet post-processing: per-level score threshold and top-k, decode, clip, per-class NMS, detections per image."""
import torch
from torch import nn
from torchvision.ops import batched_nms

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.roi_heads.box_head.inference import clip_boxes
from maskrcnn_benchmark.structures.bounding_box import BoxList

from ..utils import permute_and_flatten


class RetinaNetPostProcessor(nn.Module):
    """Detections from RetinaNet's per-anchor class logits and box deltas.

    Per image and level: sigmoid scores, keep the (anchor, class) pairs scoring above ``pre_nms_thresh``, of those
    the ``pre_nms_top_n`` best, decode their boxes and clip them to the image. Over all levels: NMS per class at
    ``nms_thresh`` and the ``detections_per_img`` best.

    Args:
        pre_nms_thresh: MODEL.RETINANET.INFERENCE_TH (score, 0-1).
        pre_nms_top_n: MODEL.RETINANET.PRE_NMS_TOP_N (candidates per level and image).
        nms_thresh: MODEL.RETINANET.NMS_TH (IoU, +1 pixel convention).
        detections_per_img: TEST.DETECTIONS_PER_IMG (<= 0 keeps all).
        box_coder: BoxCoder with weights (10, 10, 5, 5).
    forward(anchors list (images) of list (levels) of BoxList, box_cls list (levels) of Tensor[N, A*C, H, W],
    box_regression list of Tensor[N, A*4, H, W]) -> list[BoxList] per image with fields "scores" and "labels"
    (int64 in [1, C]), sorted by decreasing score.
    """

    @configurable
    def __init__(self, pre_nms_thresh=0.05, pre_nms_top_n=1000, nms_thresh=0.4, detections_per_img=100,
                 box_coder=None):
        super().__init__()
        self.pre_nms_thresh = pre_nms_thresh
        self.pre_nms_top_n = pre_nms_top_n
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.box_coder = box_coder if box_coder is not None else BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))

    @classmethod
    def from_config(cls, cfg, box_coder=None):
        """The constructor arguments from MODEL.RETINANET.{INFERENCE_TH, PRE_NMS_TOP_N, NMS_TH} and
        TEST.DETECTIONS_PER_IMG."""
        retina = cfg.MODEL.RETINANET
        return dict(pre_nms_thresh=retina.INFERENCE_TH, pre_nms_top_n=retina.PRE_NMS_TOP_N, nms_thresh=retina.NMS_TH,
                    detections_per_img=cfg.TEST.DETECTIONS_PER_IMG, box_coder=box_coder)

    def _candidates(self, anchors, box_cls, box_regression):
        """One image, one level: anchors Tensor[M, 4], box_cls Tensor[M, C] logits, box_regression Tensor[M, 4]
        -> (boxes Tensor[K, 4], scores Tensor[K], labels Tensor[K]) with K <= pre_nms_top_n."""
        num_classes = box_cls.shape[1]
        scores = box_cls.sigmoid().flatten()
        candidate_inds = torch.nonzero(scores > self.pre_nms_thresh).squeeze(1)
        scores = scores[candidate_inds]
        if scores.numel() > self.pre_nms_top_n:
            scores, top = scores.topk(self.pre_nms_top_n, sorted=False)
            candidate_inds = candidate_inds[top]
        anchor_inds = torch.div(candidate_inds, num_classes, rounding_mode="floor")
        labels = candidate_inds % num_classes + 1
        boxes = self.box_coder.decode(box_regression[anchor_inds], anchors[anchor_inds])
        return boxes, scores, labels

    def forward(self, anchors, box_cls, box_regression):
        per_level = []
        for level, (cls_level, reg_level) in enumerate(zip(box_cls, box_regression)):
            N, AxC, H, W = cls_level.shape
            A = reg_level.shape[1] // 4
            per_level.append((level, permute_and_flatten(cls_level, N, A, AxC // A, H, W),
                              permute_and_flatten(reg_level, N, A, 4, H, W)))
        results = []
        for image_idx, anchors_per_image in enumerate(anchors):
            boxes, scores, labels = [], [], []
            for level, cls_level, reg_level in per_level:
                b, s, lab = self._candidates(anchors_per_image[level].bbox, cls_level[image_idx],
                                             reg_level[image_idx])
                boxes.append(b)
                scores.append(s)
                labels.append(lab)
            image_size = anchors_per_image[0].size
            boxes = clip_boxes(torch.cat(boxes), image_size)
            scores, labels = torch.cat(scores), torch.cat(labels)
            # +1 on x1/y1 makes torchvision's IoU equal to the +1-width IoU of maskrcnn-benchmark's NMS.
            keep = batched_nms(boxes + boxes.new_tensor([0, 0, 1, 1]), scores, labels, self.nms_thresh)
            if self.detections_per_img > 0:
                keep = keep[: self.detections_per_img]
            result = BoxList(boxes[keep], image_size, mode="xyxy")
            result.add_field("scores", scores[keep])
            result.add_field("labels", labels[keep])
            results.append(result)
        return results


def make_retinanet_postprocessor(cfg, box_coder=None):
    """RetinaNetPostProcessor from MODEL.RETINANET.* and TEST.DETECTIONS_PER_IMG."""
    return RetinaNetPostProcessor(cfg, box_coder)
