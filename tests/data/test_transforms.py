"""Transforms move boxes and masks with the image; sizes, flips and normalisation follow the config."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_benchmark.data.transforms import (
    ColorJitter,
    Normalize,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    Resize,
    ToTensor,
    build_transforms,
)
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask


def _sample(width=60, height=40):
    """An image with a bright 10x6 rectangle at x 5..14, y 3..8 and the matching box + polygon target."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[3:9, 5:15] = (255, 128, 0)
    target = BoxList(torch.tensor([[5.0, 3.0, 14.0, 8.0]]), (width, height))
    target.add_field("masks", SegmentationMask([[[5, 3, 15, 3, 15, 9, 5, 9]]], (width, height)))
    return Image.fromarray(pixels), target


def test_resize_shorter_side_and_max_size_cap():
    image, target = _sample(60, 40)
    out, out_target = Resize(80, 1000)(image, target)
    assert out.size == (120, 80) and out_target.size == (120, 80)
    assert torch.allclose(out_target.bbox, target.bbox * 2, atol=1.0)
    out, _ = Resize(80, 90)(image, target)  # 80 would make the long side 120 > 90
    assert max(out.size) == 90 and out.size == (90, 60)


def test_resize_draws_among_several_min_sizes():
    image, target = _sample(60, 40)
    resize = Resize((40, 48, 56), 1000)
    random.seed(0)
    shorter = {min(resize(image, target)[0].size) for _ in range(40)}
    assert shorter == {40, 48, 56}


def test_horizontal_flip_moves_box_and_mask_with_the_image():
    image, target = _sample()
    out, out_target = RandomHorizontalFlip(1.0)(image, target)
    pixels = np.asarray(out)
    assert (pixels[3:9, 60 - 15:60 - 5, 0] == 255).all() and pixels[:, :45, 0].max() == 0
    # +1 convention: x' = w - x - 1
    assert out_target.bbox.tolist() == [[60 - 14 - 1, 3.0, 60 - 5 - 1, 8.0]]
    mask = out_target.get_field("masks").get_mask_tensor().numpy().astype(bool)
    assert (mask == (pixels[..., 0] == 255)).all()
    same, same_target = RandomHorizontalFlip(0.0)(image, target)
    assert np.array_equal(np.asarray(same), np.asarray(image)) and same_target.bbox.tolist() == target.bbox.tolist()


def test_vertical_flip_moves_box_and_mask_with_the_image():
    image, target = _sample()
    out, out_target = RandomVerticalFlip(1.0)(image, target)
    pixels = np.asarray(out)
    assert out_target.bbox.tolist() == [[5.0, 40 - 8 - 1, 14.0, 40 - 3 - 1]]
    mask = out_target.get_field("masks").get_mask_tensor().numpy().astype(bool)
    assert (mask == (pixels[..., 0] == 255)).all()


def test_to_tensor_and_normalize_to_bgr255():
    image, target = _sample()
    tensor, _ = ToTensor()(image, target)
    assert tensor.shape == (3, 40, 60) and tensor.max() == 1.0
    normalized, _ = Normalize([10.0, 20.0, 30.0], [1.0, 1.0, 2.0], to_bgr255=True)(tensor, target)
    # pixel (R, G, B) = (255, 128, 0) -> BGR (0, 128, 255) - mean, / std
    assert torch.allclose(normalized[:, 4, 6], torch.tensor([0 - 10.0, 128 - 20.0, (255 - 30.0) / 2]), atol=1e-3)
    rgb, _ = Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], to_bgr255=False)(tensor, target)
    assert torch.allclose(rgb[:, 4, 6], torch.tensor([1.0, 128 / 255 * 2 - 1, -1.0]), atol=1e-3)


def test_color_jitter_changes_pixels_not_targets():
    image, target = _sample()
    torch.manual_seed(0)
    out, out_target = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)(image, target)
    assert not np.array_equal(np.asarray(out), np.asarray(image))
    assert out_target is target


def test_build_transforms_reads_the_config():
    from maskrcnn_benchmark.config import cfg

    c = cfg.clone()
    c.merge_from_list(["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 500, "INPUT.MIN_SIZE_TEST", 32,
                       "INPUT.HORIZONTAL_FLIP_PROB_TRAIN", 1.0, "INPUT.PIXEL_MEAN", [0.0, 0.0, 0.0]])
    image, target = _sample()
    train_image, train_target = build_transforms(c, is_train=True)(image, target)
    assert train_image.shape == (3, 64, 96)
    # flipped: the red object (BGR channel 2) is now on the right
    assert train_image[2, :, 48:].max() == 255 and train_image[2, :, :48].max() == 0
    test_image, test_target = build_transforms(c, is_train=False)(image, target)
    assert test_image.shape == (3, 32, 48)
    assert test_image[2, :, :24].max() == 255  # never flipped at test time
    with pytest.raises(ValueError, match="MIN_SIZE_TRAIN"):
        Resize((), 100)
