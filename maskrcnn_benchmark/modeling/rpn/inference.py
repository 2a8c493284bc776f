"""RPN post-processing: turn objectness + deltas into proposals (top-k, decode, clip, NMS)."""
import torch
from torchvision.ops import batched_nms

from maskrcnn_benchmark.modeling.utils import check_finite
from maskrcnn_benchmark.structures.bounding_box import BoxList

from .utils import permute_and_flatten


class RPNPostProcessor(torch.nn.Module):
    """Select proposals from the RPN outputs, batched over images and levels.

    Per image and level: keep the ``pre_nms_top_n`` highest objectness anchors, decode them,
    clip to the image, drop boxes with a side < ``min_size``, NMS at ``nms_thresh`` and keep at most
    ``post_nms_top_n``. With several levels (FPN) the survivors of all levels are merged and the
    ``fpn_post_nms_top_n`` best are kept per image (or per batch when ``fpn_post_nms_per_batch``
    and training, maskrcnn-benchmark's original behaviour). In training the GT boxes are appended
    (objectness 1) so the RoI heads always see positives.

    forward(anchors, objectness, box_regression, targets=None): anchors list (images) of list
    (levels) of BoxList; objectness list (levels) of Tensor[N, A, H, W]; box_regression list of
    Tensor[N, 4A, H, W] -> list[BoxList] per image with field "objectness" (sigmoid probabilities),
    sorted by decreasing objectness before the GT boxes.

    ``to_remove`` (MODEL.BOX_CONVENTION) is 1 for maskrcnn-benchmark's boxes (clipped to [0, w - 1], widths and NMS
    overlaps with +1) and 0 for torchvision's (clipped to [0, w], widths x1 - x0).
    """

    def __init__(self, pre_nms_top_n, post_nms_top_n, nms_thresh, min_size, box_coder,
                 fpn_post_nms_top_n=None, fpn_post_nms_per_batch=False, add_gt_proposals=True, to_remove=1):
        super().__init__()
        self.to_remove = to_remove
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.box_coder = box_coder
        self.fpn_post_nms_top_n = post_nms_top_n if fpn_post_nms_top_n is None else fpn_post_nms_top_n
        self.fpn_post_nms_per_batch = fpn_post_nms_per_batch
        self.add_gt_proposals = add_gt_proposals

    def _top_candidates(self, anchors_per_level, objectness, box_regression):
        """Top-k per image and level, decoded. Returns boxes [N, K, 4], scores [N, K], levels [K]."""
        boxes_all, scores_all, levels_all = [], [], []
        for level, (anchors, obj, reg) in enumerate(zip(anchors_per_level, objectness, box_regression)):
            N, A, H, W = obj.shape
            obj = permute_and_flatten(obj, N, A, 1, H, W).reshape(N, -1)
            reg = permute_and_flatten(reg, N, A, 4, H, W)
            k = min(self.pre_nms_top_n, obj.shape[1])
            obj, topk_idx = obj.topk(k, dim=1, sorted=True)
            reg = reg.gather(1, topk_idx[:, :, None].expand(N, k, 4))
            proposals = self.box_coder.decode(reg.reshape(-1, 4), anchors[topk_idx.reshape(-1)])
            # Checked before clipping, which would turn an infinite box into one reaching the image edge.
            check_finite(proposals, "the RPN proposals decoded from rpn_box_regression (level {})".format(level))
            boxes_all.append(proposals.view(N, k, 4))
            scores_all.append(obj.sigmoid())
            levels_all.append(torch.full((k,), level, dtype=torch.int64, device=obj.device))
        return torch.cat(boxes_all, dim=1), torch.cat(scores_all, dim=1), torch.cat(levels_all)

    def _select_per_image(self, boxes, scores, levels, image_size, num_levels):
        """boxes [K, 4], scores [K], levels [K], image_size (h, w) -> kept (boxes, scores) sorted by score."""
        height, width = image_size
        # Clip with the +1 convention the last pixel index is size - 1; with torchvision's the right edge is size.
        boxes = torch.stack([
            boxes[:, 0].clamp(0, width - self.to_remove), boxes[:, 1].clamp(0, height - self.to_remove),
            boxes[:, 2].clamp(0, width - self.to_remove), boxes[:, 3].clamp(0, height - self.to_remove),
        ], dim=1)
        if self.min_size > 0:
            ws = boxes[:, 2] - boxes[:, 0] + self.to_remove
            hs = boxes[:, 3] - boxes[:, 1] + self.to_remove
            keep = torch.nonzero((ws >= self.min_size) & (hs >= self.min_size)).squeeze(1)
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        # NMS within each level (levels as categories); +1 makes torchvision's IoU use inclusive
        # pixel widths like maskrcnn-benchmark's.
        exclusive = torch.cat([boxes[:, :2], boxes[:, 2:] + self.to_remove], dim=1)
        keep = batched_nms(exclusive, scores, levels, self.nms_thresh)  # sorted by decreasing score
        levels_kept = levels[keep]
        # At most post_nms_top_n per level: rank of each kept box among the kept boxes of its level.
        one_hot = levels_kept[:, None] == torch.arange(num_levels, device=levels.device)[None, :]
        rank_in_level = (one_hot.cumsum(0) * one_hot).sum(1) - 1
        keep = keep[rank_in_level < self.post_nms_top_n]
        if num_levels > 1 and not (self.training and self.fpn_post_nms_per_batch):
            keep = keep[: self.fpn_post_nms_top_n]
        return boxes[keep], scores[keep]

    def forward(self, anchors, objectness, box_regression, targets=None):
        num_levels = len(objectness)
        anchors_per_level = [a.bbox for a in anchors[0]]  # the same grid for every image of the batch
        boxes, scores, levels = self._top_candidates(anchors_per_level, objectness, box_regression)
        results = []
        for i, anchors_per_image in enumerate(anchors):
            width, height = anchors_per_image[0].size
            kept_boxes, kept_scores = self._select_per_image(boxes[i], scores[i], levels, (height, width), num_levels)
            boxlist = BoxList(kept_boxes, (width, height), mode="xyxy")
            boxlist.add_field("objectness", kept_scores)
            results.append(boxlist)
        if num_levels > 1 and self.training and self.fpn_post_nms_per_batch:
            results = self._select_over_batch(results)
        if self.training and self.add_gt_proposals and targets is not None:
            results = [self._add_gt(p, t) for p, t in zip(results, targets)]
        return results

    def _select_over_batch(self, boxlists):
        """Keep the fpn_post_nms_top_n best proposals of the whole batch (maskrcnn-benchmark's per-batch mode)."""
        objectness = torch.cat([b.get_field("objectness") for b in boxlists])
        k = min(self.fpn_post_nms_top_n, objectness.numel())
        keep_mask = torch.zeros_like(objectness, dtype=torch.bool)
        keep_mask[objectness.topk(k, sorted=True)[1]] = True
        out, start = [], 0
        for b in boxlists:
            out.append(b[keep_mask[start:start + len(b)]])
            start += len(b)
        return out

    @staticmethod
    def _add_gt(proposals, target):
        gt_boxes = target.convert("xyxy").bbox.to(proposals.bbox.dtype)
        boxlist = BoxList(torch.cat([proposals.bbox, gt_boxes], dim=0), proposals.size, mode="xyxy")
        boxlist.add_field("objectness", torch.cat([
            proposals.get_field("objectness"),
            torch.ones(gt_boxes.shape[0], dtype=proposals.bbox.dtype, device=gt_boxes.device),
        ]))
        return boxlist


def make_rpn_postprocessor(cfg, rpn_box_coder, is_train):
    """RPNPostProcessor from MODEL.RPN.{PRE,POST,FPN_POST}_NMS_TOP_N_{TRAIN,TEST}, NMS_THRESH, MIN_SIZE,
    FPN_POST_NMS_PER_BATCH."""
    rpn = cfg.MODEL.RPN
    if is_train:
        pre_nms_top_n, post_nms_top_n = rpn.PRE_NMS_TOP_N_TRAIN, rpn.POST_NMS_TOP_N_TRAIN
        fpn_post_nms_top_n = rpn.FPN_POST_NMS_TOP_N_TRAIN
    else:
        pre_nms_top_n, post_nms_top_n = rpn.PRE_NMS_TOP_N_TEST, rpn.POST_NMS_TOP_N_TEST
        fpn_post_nms_top_n = rpn.FPN_POST_NMS_TOP_N_TEST
    return RPNPostProcessor(
        pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n, nms_thresh=rpn.NMS_THRESH,
        min_size=rpn.MIN_SIZE, box_coder=rpn_box_coder, fpn_post_nms_top_n=fpn_post_nms_top_n,
        fpn_post_nms_per_batch=rpn.FPN_POST_NMS_PER_BATCH, to_remove=rpn_box_coder.to_remove,
    )
