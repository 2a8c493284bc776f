"""BoxList geometry with the +1 pixel convention, checked against hand-computed boxes."""
import pytest
import torch

from maskrcnn_benchmark.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM, BoxList
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask


def _boxes():
    # image 20 wide, 10 high; a 10x5-pixel box and a one-pixel box
    return BoxList(torch.tensor([[0.0, 0.0, 9.0, 4.0], [5.0, 5.0, 5.0, 5.0]]), (20, 10))


def test_convert_xywh_uses_plus_one_width_and_round_trips():
    boxes = _boxes()
    xywh = boxes.convert("xywh")
    assert torch.equal(xywh.bbox, torch.tensor([[0.0, 0.0, 10.0, 5.0], [5.0, 5.0, 1.0, 1.0]]))
    assert torch.equal(xywh.convert("xyxy").bbox, boxes.bbox)


def test_area_counts_inclusive_pixels():
    assert torch.equal(_boxes().area(), torch.tensor([50.0, 1.0]))
    assert torch.equal(_boxes().convert("xywh").area(), torch.tensor([50.0, 1.0]))


def test_resize_scales_coordinates_per_axis():
    resized = _boxes().resize((40, 5))
    assert resized.size == (40, 5)
    assert torch.equal(resized.bbox, torch.tensor([[0.0, 0.0, 18.0, 2.0], [10.0, 2.5, 10.0, 2.5]]))
    same_ratio = _boxes().resize((10, 5))
    assert torch.equal(same_ratio.bbox, _boxes().bbox * 0.5)


def test_transpose_mirrors_pixel_columns_and_rows():
    boxes = _boxes()
    lr = boxes.transpose(FLIP_LEFT_RIGHT)
    # pixel column i -> 19 - i: columns 0..9 -> 10..19
    assert torch.equal(lr.bbox, torch.tensor([[10.0, 0.0, 19.0, 4.0], [14.0, 5.0, 14.0, 5.0]]))
    tb = boxes.transpose(FLIP_TOP_BOTTOM)
    # pixel row j -> 9 - j: rows 0..4 -> 5..9
    assert torch.equal(tb.bbox, torch.tensor([[0.0, 5.0, 9.0, 9.0], [5.0, 4.0, 5.0, 4.0]]))
    # flipping twice is the identity, and the area is kept
    assert torch.equal(lr.transpose(FLIP_LEFT_RIGHT).bbox, boxes.bbox)
    assert torch.equal(lr.area(), boxes.area())
    with pytest.raises(NotImplementedError, match="FLIP_LEFT_RIGHT"):
        boxes.transpose(5)


def test_crop_shifts_and_clamps_to_window():
    cropped = _boxes().crop([2, 1, 8, 6])
    assert cropped.size == (6, 5)
    assert torch.equal(cropped.bbox, torch.tensor([[0.0, 0.0, 6.0, 3.0], [3.0, 4.0, 3.0, 4.0]]))


def test_clip_to_image_clamps_and_removes_empty():
    boxes = BoxList(torch.tensor([[-3.0, -2.0, 25.0, 4.0], [22.0, 1.0, 30.0, 3.0], [2.0, 2.0, 6.0, 8.0]]), (20, 10))
    clipped = boxes.clip_to_image(remove_empty=False)
    expected = torch.tensor([[0.0, 0.0, 19.0, 4.0], [19.0, 1.0, 19.0, 3.0], [2.0, 2.0, 6.0, 8.0]])
    assert torch.equal(clipped.bbox, expected)
    kept = BoxList(boxes.bbox.clone(), (20, 10)).clip_to_image(remove_empty=True)
    # the second box collapses onto the last column (x1 == x0) and is removed
    assert torch.equal(kept.bbox, torch.tensor([[0.0, 0.0, 19.0, 4.0], [2.0, 2.0, 6.0, 8.0]]))


def test_fields_follow_indexing_and_geometry():
    boxes = _boxes()
    boxes.add_field("labels", torch.tensor([3, 7]))
    boxes.add_field("masks", SegmentationMask([[[0, 0, 10, 0, 10, 5, 0, 5]], [[5, 5, 6, 5, 6, 6, 5, 6]]], (20, 10)))
    picked = boxes[torch.tensor([False, True])]
    assert len(picked) == 1 and picked.get_field("labels").tolist() == [7]
    assert len(picked.get_field("masks")) == 1
    flipped = boxes.transpose(FLIP_LEFT_RIGHT)
    mask = flipped.get_field("masks").get_mask_tensor()[0]
    # the mask moves with its box: columns 10..19, rows 0..4
    assert mask[:5, 10:].all() and mask.sum() == 50
    assert flipped.get_field("masks").size == (20, 10)
    assert boxes.resize((40, 20)).get_field("masks").size == (40, 20)
    assert boxes.crop([0, 0, 10, 5]).get_field("masks").size == (10, 5)


def test_copy_with_fields_and_errors():
    boxes = _boxes()
    boxes.add_field("scores", torch.tensor([0.5, 0.2]))
    copied = boxes.copy_with_fields(["scores"])
    assert copied.fields() == ["scores"]
    with pytest.raises(KeyError, match="labels"):
        boxes.copy_with_fields("labels")
    assert boxes.copy_with_fields("labels", skip_missing=True).fields() == []
    with pytest.raises(KeyError, match="scores"):
        BoxList(torch.zeros(0, 4), (4, 4)).get_field("scores")
    with pytest.raises(ValueError, match="size of 4"):
        BoxList(torch.zeros(2, 5), (4, 4))
    with pytest.raises(ValueError, match="mode"):
        BoxList(torch.zeros(2, 4), (4, 4), mode="cxcywh")
