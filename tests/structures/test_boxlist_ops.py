"""IoU, NMS, small-box removal and concatenation with the +1 pixel convention."""
import pytest
import torch

from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.boxlist_ops import boxlist_iou, boxlist_nms, cat_boxlist, remove_small_boxes
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask


def test_boxlist_iou_hand_values():
    a = BoxList(torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]]), (32, 32))
    b = BoxList(torch.tensor([[5.0, 5.0, 14.0, 14.0], [0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 19.0, 9.0]]), (32, 32))
    iou = boxlist_iou(a, b)
    # 5x5 overlap of two 10x10 boxes: 25 / 175; identical one-pixel boxes: 1; touching boxes: 0
    expected = torch.tensor([[25.0 / 175.0, 1.0 / 100.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(iou, expected)


def test_boxlist_iou_rejects_different_images():
    with pytest.raises(RuntimeError, match="same image size"):
        boxlist_iou(BoxList(torch.zeros(1, 4), (4, 4)), BoxList(torch.zeros(1, 4), (5, 4)))


def test_boxlist_nms_uses_plus_one_overlap_and_max_proposals():
    boxes = BoxList(torch.tensor([[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 8.0], [0.0, 5.0, 9.0, 14.0],
                                  [20.0, 20.0, 29.0, 29.0]]), (40, 40))
    boxes.add_field("scores", torch.tensor([0.9, 0.95, 0.8, 0.7]))
    # IoU(box1, box0) = 90/100; IoU(box2, box1) = 40/(90+100-40) = 0.267 (0.25 without the +1)
    kept = boxlist_nms(boxes, 0.26)
    assert kept.get_field("scores").tolist() == pytest.approx([0.95, 0.7])
    kept = boxlist_nms(boxes, 0.3)
    assert kept.get_field("scores").tolist() == pytest.approx([0.95, 0.8, 0.7])
    assert len(boxlist_nms(boxes, 0.3, max_proposals=2)) == 2
    # xywh in, xywh out
    assert boxlist_nms(boxes.convert("xywh"), 0.3).mode == "xywh"


def test_remove_small_boxes_counts_inclusive_pixels():
    boxes = BoxList(torch.tensor([[0.0, 0.0, 1.0, 9.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 5.0]]), (10, 10))
    # widths 2, 3, 1
    assert remove_small_boxes(boxes, 2).bbox.tolist() == [[0.0, 0.0, 1.0, 9.0], [0.0, 0.0, 2.0, 2.0]]
    assert remove_small_boxes(boxes, 3).bbox.tolist() == [[0.0, 0.0, 2.0, 2.0]]


def test_cat_boxlist_concatenates_boxes_and_fields():
    a = BoxList(torch.tensor([[0.0, 0.0, 3.0, 3.0]]), (8, 8))
    a.add_field("labels", torch.tensor([1]))
    a.add_field("masks", SegmentationMask([[[0, 0, 4, 0, 4, 4]]], (8, 8)))
    b = BoxList(torch.tensor([[1.0, 1.0, 2.0, 2.0], [4.0, 4.0, 7.0, 7.0]]), (8, 8))
    b.add_field("labels", torch.tensor([2, 3]))
    b.add_field("masks", SegmentationMask([[[1, 1, 3, 1, 3, 3]], [[4, 4, 8, 4, 8, 8]]], (8, 8)))
    c = cat_boxlist([a, b])
    assert c.bbox.shape == (3, 4) and c.get_field("labels").tolist() == [1, 2, 3]
    assert len(c.get_field("masks")) == 3
    b.extra_fields.pop("masks")
    with pytest.raises(ValueError, match="same fields"):
        cat_boxlist([a, b])
