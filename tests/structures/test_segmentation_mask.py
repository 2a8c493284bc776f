"""SegmentationMask geometry in both modes against hand-computed masks, and the per-RoI target path."""
import pytest
import torch

from maskrcnn_benchmark.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

# image 8 wide, 6 high; polygon coordinates are continuous, pixel (x, y) covers [x, x+1) x [y, y+1)
POLYGONS = [
    [[1, 1, 4, 1, 4, 3, 1, 3]],  # pixels x 1..3, y 1..2
    [[5, 0, 7, 0, 7, 2, 5, 2], [6, 4, 8, 4, 8, 6, 6, 6]],  # x 5..6, y 0..1  and  x 6..7, y 4..5
]
SIZE = (8, 6)


def _hand_masks():
    masks = torch.zeros(2, 6, 8, dtype=torch.uint8)
    masks[0, 1:3, 1:4] = 1
    masks[1, 0:2, 5:7] = 1
    masks[1, 4:6, 6:8] = 1
    return masks


def _both_modes():
    return [SegmentationMask(POLYGONS, SIZE, mode="poly"), SegmentationMask(_hand_masks(), SIZE, mode="mask")]


def test_polygons_rasterise_to_hand_mask():
    assert torch.equal(SegmentationMask(POLYGONS, SIZE).get_mask_tensor(), _hand_masks())
    assert torch.equal(SegmentationMask(POLYGONS, SIZE).convert("mask").instances.masks, _hand_masks())


@pytest.mark.parametrize("masks", _both_modes(), ids=["poly", "mask"])
def test_crop_hand_values(masks):
    cropped = masks.crop([1, 0, 7, 4])
    assert cropped.size == (6, 4)
    expected = torch.zeros(2, 4, 6, dtype=torch.uint8)
    expected[0, 1:3, 0:3] = 1
    expected[1, 0:2, 4:6] = 1
    assert torch.equal(cropped.get_mask_tensor(), expected)


@pytest.mark.parametrize("masks", _both_modes(), ids=["poly", "mask"])
def test_resize_hand_values(masks):
    resized = masks.resize((16, 12))
    assert resized.size == (16, 12)
    expected = torch.zeros(2, 12, 16, dtype=torch.uint8)
    expected[0, 2:6, 2:8] = 1
    expected[1, 0:4, 10:14] = 1
    expected[1, 8:12, 12:16] = 1
    assert torch.equal(resized.get_mask_tensor(), expected)


@pytest.mark.parametrize("masks", _both_modes(), ids=["poly", "mask"])
def test_flips_hand_values(masks):
    expected = torch.zeros(2, 6, 8, dtype=torch.uint8)
    expected[0, 1:3, 4:7] = 1  # columns 1..3 -> 8 - 1 - (1..3) = 6..4
    expected[1, 0:2, 1:3] = 1
    expected[1, 4:6, 0:2] = 1
    assert torch.equal(masks.transpose(FLIP_LEFT_RIGHT).get_mask_tensor(), expected)
    expected = torch.zeros(2, 6, 8, dtype=torch.uint8)
    expected[0, 3:5, 1:4] = 1  # rows 1..2 -> 6 - 1 - (1..2) = 4..3
    expected[1, 4:6, 5:7] = 1
    expected[1, 0:2, 6:8] = 1
    assert torch.equal(masks.transpose(FLIP_TOP_BOTTOM).get_mask_tensor(), expected)


def test_modes_agree_after_a_chain_of_ops_and_mask_to_poly():
    poly, mask = _both_modes()
    ops = lambda m: m.transpose(FLIP_LEFT_RIGHT).crop([0, 0, 8, 5]).resize((24, 15))  # noqa: E731
    assert torch.equal(ops(poly).get_mask_tensor(), ops(mask).get_mask_tensor())
    assert torch.equal(mask.convert("poly").get_mask_tensor(), _hand_masks())


def test_mask_mode_crop_outside_image_pads_with_zeros():
    mask = SegmentationMask(_hand_masks(), SIZE, mode="mask")
    cropped = mask.crop([4, 3, 10, 8])
    poly_cropped = SegmentationMask(POLYGONS, SIZE).crop([4, 3, 10, 8])
    assert cropped.size == (6, 5)
    assert torch.equal(cropped.get_mask_tensor(), poly_cropped.get_mask_tensor())


def test_indexing_and_single_instance_squeeze():
    masks = SegmentationMask(POLYGONS, SIZE)
    assert masks[1].get_mask_tensor().shape == (6, 8)  # [H, W] for one instance, as maskrcnn-benchmark
    assert len(masks[torch.tensor([True, True])]) == 2
    assert torch.equal(masks[torch.tensor([1, 0])].get_mask_tensor(), _hand_masks()[[1, 0]])
    mask_mode = SegmentationMask(_hand_masks(), SIZE, mode="mask")
    assert torch.equal(mask_mode[torch.tensor([1, 0])].get_mask_tensor(), _hand_masks()[[1, 0]])


def test_degenerate_polygon_is_rejected_naming_the_instance():
    with pytest.raises(ValueError, match="instance 1, polygon 0 has 2 point"):
        SegmentationMask([POLYGONS[0], [[0, 0, 3, 3]]], SIZE)
    with pytest.raises(ValueError, match="odd number"):
        SegmentationMask([[[0, 0, 3, 3, 4]]], SIZE)
    with pytest.raises(ValueError, match=r"\(H, W\) = \(6, 8\)"):
        SegmentationMask(_hand_masks(), (6, 8), mode="mask")


def test_crop_and_resize_hand_values_both_modes():
    boxes = torch.tensor([[1.0, 1.0, 5.0, 3.0], [4.0, 0.0, 8.0, 6.0]])
    indices = torch.tensor([0, 1])
    expected = torch.zeros(2, 4, 4)
    expected[0, :, 0:3] = 1  # x 1..4 -> 0..3 (scale 1), y 1..3 -> 0..4 (scale 2)
    expected[1, 0:1, 1:3] = 1  # x 5..7 -> 1..3, y 0..2 -> 0..1.33 (scale 2/3)
    expected[1, 3:4, 2:4] = 1  # x 6..8 -> 2..4, y 4..6 -> 2.67..4
    for masks in _both_modes():
        targets = masks.crop_and_resize(boxes, 4, indices)
        assert targets.dtype == torch.float32 and targets.shape == (2, 4, 4)
        assert torch.equal(targets, expected), masks.mode


def test_crop_and_resize_matches_crop_resize_convert():
    """The fast path reproduces maskrcnn-benchmark's per-RoI crop -> resize -> rasterise for polygons."""
    g = torch.Generator().manual_seed(0)
    masks = SegmentationMask(POLYGONS, SIZE)
    xy0 = torch.rand(12, 2, generator=g) * 6 - 1
    boxes = torch.cat([xy0, xy0 + 0.5 + torch.rand(12, 2, generator=g) * 5], dim=1)
    indices = torch.randint(0, 2, (12,), generator=g)
    fast = masks.crop_and_resize(boxes, 7, indices)
    for k in range(12):
        slow = masks[int(indices[k])].crop(boxes[k]).resize((7, 7)).get_mask_tensor()
        assert torch.equal(fast[k], slow.float()), k
    assert masks.crop_and_resize(boxes[:0], 7, indices[:0]).shape == (0, 7, 7)


def test_cat_and_empty():
    masks = SegmentationMask.cat([SegmentationMask(POLYGONS, SIZE), SegmentationMask([POLYGONS[0]], SIZE)])
    assert len(masks) == 3
    no_polygons = SegmentationMask([POLYGONS[0], []], SIZE)
    targets = no_polygons.crop_and_resize(torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2), 8, torch.tensor([1, 0]))
    assert targets[0].sum() == 0 and torch.equal(targets[1, :6], no_polygons.get_mask_tensor()[0].float())
    empty = SegmentationMask([], SIZE)
    assert empty.get_mask_tensor().shape == (0, 6, 8)
    assert len(empty.resize((4, 3)).transpose(FLIP_LEFT_RIGHT)) == 0


def test_crop_and_resize_modes_agree_on_random_boxes():
    g = torch.Generator().manual_seed(1)
    poly, mask = _both_modes()
    xy0 = torch.rand(20, 2, generator=g) * 8 - 2
    boxes = torch.cat([xy0, xy0 + 0.3 + torch.rand(20, 2, generator=g) * 7], dim=1)
    indices = torch.randint(0, 2, (20,), generator=g)
    assert torch.equal(poly.crop_and_resize(boxes, 9, indices), mask.crop_and_resize(boxes, 9, indices))
