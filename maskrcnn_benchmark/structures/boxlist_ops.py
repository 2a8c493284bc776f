"""Operations on BoxLists: NMS, small-box removal, IoU and concatenation, all with the +1 pixel convention."""
import torch
from torchvision.ops import box_iou as _box_iou
from torchvision.ops import nms as _nms

from .bounding_box import TO_REMOVE, BoxList


def _to_exclusive(boxes):
    """Tensor[N, 4] inclusive xyxy -> exclusive xyxy (x1 + 1, y1 + 1).

    torchvision's nms / box_iou measure width as x1 - x0; shifting the far corner by one pixel makes their areas
    and intersections equal to maskrcnn-benchmark's (x1 - x0 + 1) ones.
    """
    return torch.cat((boxes[:, :2], boxes[:, 2:] + TO_REMOVE), dim=1)


def boxlist_nms(boxlist, nms_thresh, max_proposals=-1, score_field="scores"):
    """Non-maximum suppression of a BoxList by the scores stored in ``score_field``.

    Args:
        boxlist: BoxList with N boxes and a Tensor[N] field ``score_field``.
        nms_thresh: IoU (+1 convention) above which the lower-scored box is dropped; <= 0 disables NMS.
        max_proposals: keep at most this many boxes (highest scores first); -1 keeps all.
    Returns:
        BoxList with the kept boxes sorted by decreasing score, in the input's mode.
    """
    if nms_thresh <= 0:
        return boxlist
    mode = boxlist.mode
    boxlist = boxlist.convert("xyxy")
    score = boxlist.get_field(score_field)
    keep = _nms(_to_exclusive(boxlist.bbox), score, nms_thresh)
    if max_proposals > 0:
        keep = keep[:max_proposals]
    boxlist = boxlist[keep]
    return boxlist.convert(mode)


def remove_small_boxes(boxlist, min_size):
    """Keep only the boxes whose width and height (+1 convention) are both >= ``min_size`` pixels."""
    xywh_boxes = boxlist.convert("xywh").bbox
    _, _, ws, hs = xywh_boxes.unbind(dim=1)
    keep = ((ws >= min_size) & (hs >= min_size)).nonzero().squeeze(1)
    return boxlist[keep]


def boxlist_iou(boxlist1, boxlist2):
    """Pairwise IoU of two BoxLists of the same image.

    Args:
        boxlist1: BoxList with N boxes. boxlist2: BoxList with M boxes.
    Returns:
        Tensor[N, M] of IoUs, areas and intersections measured with the +1 convention
        (two identical one-pixel boxes have IoU 1).
    """
    if boxlist1.size != boxlist2.size:
        raise RuntimeError(
            "boxlist_iou: boxlists should have the same image size, got {}, {}".format(boxlist1, boxlist2))
    box1 = boxlist1.convert("xyxy").bbox
    box2 = boxlist2.convert("xyxy").bbox
    return _box_iou(_to_exclusive(box1), _to_exclusive(box2))


def _cat(tensors, dim=0):
    """torch.cat that avoids a copy for a single tensor."""
    assert isinstance(tensors, (list, tuple))
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


def _cat_field(values, field):
    first = values[0]
    if isinstance(first, torch.Tensor):
        return _cat(values, dim=0)
    cat = getattr(type(first), "cat", None)
    if cat is None:
        raise TypeError("cat_boxlist: field {!r} of type {} cannot be concatenated (it has no .cat); drop it "
                        "with copy_with_fields first".format(field, type(first).__name__))
    return cat(values)


def cat_boxlist(bboxes):
    """Concatenate BoxLists of the same image (same size, mode and field names) into one BoxList.

    Tensor fields are concatenated with torch.cat; other fields with their type's ``cat`` (e.g.
    ``SegmentationMask.cat``).
    """
    if not isinstance(bboxes, (list, tuple)) or len(bboxes) == 0:
        raise ValueError("cat_boxlist expects a non-empty list of BoxList, got {!r}".format(bboxes))
    if not all(isinstance(bbox, BoxList) for bbox in bboxes):
        raise TypeError("cat_boxlist expects BoxList entries, got {}".format([type(b).__name__ for b in bboxes]))

    size = bboxes[0].size
    if any(bbox.size != size for bbox in bboxes):
        raise ValueError("cat_boxlist: all BoxLists must have the same image size, got {}".format(
            [bbox.size for bbox in bboxes]))
    mode = bboxes[0].mode
    if any(bbox.mode != mode for bbox in bboxes):
        raise ValueError("cat_boxlist: all BoxLists must have the same mode, got {}".format(
            [bbox.mode for bbox in bboxes]))
    fields = set(bboxes[0].fields())
    if any(set(bbox.fields()) != fields for bbox in bboxes):
        raise ValueError("cat_boxlist: all BoxLists must have the same fields, got {}".format(
            [bbox.fields() for bbox in bboxes]))

    cat_boxes = BoxList(_cat([bbox.bbox for bbox in bboxes], dim=0), size, mode)
    for field in bboxes[0].fields():
        cat_boxes.add_field(field, _cat_field([bbox.get_field(field) for bbox in bboxes], field))
    return cat_boxes


def boxes_to_rois(boxes):
    """The RoI format of the pooling ops and the discriminators: rows (batch_index, x0, y0, x1, y1).

    Args:
        boxes (list[BoxList] in "xyxy" mode, or list[Tensor[K_i, 4]]): one entry per image, image i's rows
            getting batch index i.
    Returns:
        Tensor[K, 5] in the boxes' dtype and device, K = sum K_i, in the order of the concatenated boxes
        (Tensor[0, 5] float32 on the CPU for an empty list). Differentiable w.r.t. the coordinates.
    """
    tensors = [b.bbox if isinstance(b, BoxList) else b for b in boxes]
    if not tensors:
        return torch.zeros((0, 5))
    concat = _cat(tensors, dim=0)
    counts = torch.tensor([t.shape[0] for t in tensors], device=concat.device)
    ids = torch.repeat_interleave(torch.arange(len(tensors), device=concat.device, dtype=concat.dtype), counts)
    return torch.cat([ids[:, None], concat], dim=1)
