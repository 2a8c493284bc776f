"""Joint image + target transforms: every geometric change of the image is applied to its BoxList too.

Images are what ``data.image_io.read_image`` returns: a PIL RGB image (8-bit files; transformed exactly as
maskrcnn-benchmark does) or a float32 Tensor[3, H, W] in [0, 1] units (files of more than 8 bits; transformed
in float so their precision reaches the model).
"""
import random

import torch
import torchvision
from torchvision.transforms import functional as F


class Compose(object):
    """Apply transforms in order to (image, target)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target=None):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        return "{}([{}])".format(type(self).__name__, ", ".join(repr(t) for t in self.transforms))


RESIZE_STYLES = ("maskrcnn_benchmark", "torchvision")


class Resize(object):
    """Resize so the shorter side is `min_size` (one value drawn at random per call) unless the longer side would
    exceed `max_size`, in which case the longer side becomes `max_size`.

    Args:
        min_size (int or sequence[int]): candidate shorter-side lengths, px.
        max_size (int): cap on the longer side, px.
        style (str): INPUT.RESIZE_STYLE. "maskrcnn_benchmark": a PIL image resized by PIL (bilinear, uint8) to
            maskrcnn-benchmark's rounded size. "torchvision": a float Tensor[3, H, W] (put ToTensor first) resized as
            torchvision's GeneralizedRCNNTransform does: scale = min(min_size / short, max_size / long), output
            floor(side * scale), ``interpolate`` bilinear without antialiasing (align_corners=False).
    """

    def __init__(self, min_size, max_size, style="maskrcnn_benchmark"):
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        if not self.min_size:
            raise ValueError("Resize needs at least one min_size (INPUT.MIN_SIZE_TRAIN is empty)")
        if style not in RESIZE_STYLES:
            raise ValueError("INPUT.RESIZE_STYLE='{}' is unknown; use one of {}".format(
                style, ", ".join(RESIZE_STYLES)))
        self.max_size = max_size
        self.style = style

    def get_size(self, image_size):
        """(w, h) of input size (w, h) -> output (h, w) as maskrcnn-benchmark: rounding keeps the aspect ratio."""
        width, height = image_size
        size = random.choice(self.min_size)
        short, long = float(min(width, height)), float(max(width, height))
        if self.max_size is not None and self.max_size > 0 and long / short * size > self.max_size:
            size = int(round(self.max_size * short / long))
        if (width <= height and width == size) or (height <= width and height == size):
            return height, width
        if width < height:
            return int(size * height / width), size
        return size, int(size * width / height)

    def __call__(self, image, target=None):
        if self.style == "torchvision":
            if not isinstance(image, torch.Tensor):
                raise TypeError("INPUT.RESIZE_STYLE torchvision resizes image tensors: put ToTensor before Resize")
            height, width = image.shape[-2:]
            size = random.choice(self.min_size)
            scale = min(size / min(height, width), self.max_size / max(height, width))
            image = torch.nn.functional.interpolate(image[None], scale_factor=scale, mode="bilinear",
                                                    recompute_scale_factor=True, align_corners=False)[0]
            if target is not None:
                target = target.resize((image.shape[-1], image.shape[-2]))
            return image, target
        if isinstance(image, torch.Tensor):  # a high-bit image: the same antialiased bilinear filter, in float
            out_h, out_w = self.get_size((image.shape[-1], image.shape[-2]))
            image = F.resize(image, [out_h, out_w], antialias=True)
            if target is not None:
                target = target.resize((out_w, out_h))
            return image, target
        out_h, out_w = self.get_size(image.size)
        image = F.resize(image, [out_h, out_w])
        if target is not None:
            target = target.resize(image.size)
        return image, target

    def __repr__(self):
        return "Resize(min_size={}, max_size={}, style={})".format(self.min_size, self.max_size, self.style)


class RandomHorizontalFlip(object):
    """Flip image and target left-right with probability `prob`."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, target=None):
        if random.random() < self.prob:
            from maskrcnn_benchmark.structures.bounding_box import FLIP_LEFT_RIGHT

            image = F.hflip(image)
            if target is not None:
                target = target.transpose(FLIP_LEFT_RIGHT)
        return image, target


class RandomVerticalFlip(object):
    """Flip image and target top-bottom with probability `prob`."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, target=None):
        if random.random() < self.prob:
            from maskrcnn_benchmark.structures.bounding_box import FLIP_TOP_BOTTOM

            image = F.vflip(image)
            if target is not None:
                target = target.transpose(FLIP_TOP_BOTTOM)
        return image, target


class ColorJitter(object):
    """Random brightness / contrast / saturation / hue change of the image only (torchvision's ColorJitter)."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        self.color_jitter = torchvision.transforms.ColorJitter(
            brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
        )

    def __call__(self, image, target=None):
        return self.color_jitter(image), target


class ToTensor(object):
    """PIL image -> float Tensor[3, H, W] in [0, 1], RGB; a float tensor (a high-bit image) passes unchanged."""

    def __call__(self, image, target=None):
        if isinstance(image, torch.Tensor):
            return image, target
        return F.to_tensor(image), target


class MapHighBitDepth(object):
    """INPUT.HIGH_BIT_DEPTH on images of more than 8 bits (see ``data.image_io.map_high_bit_depth``); 8-bit
    (PIL) images pass unchanged. Put it first: percentiles are taken over the whole image, before any resize.

    Args:
        rule (str): "full_range" or "percentiles".
        percentiles ((float, float)): (low, high) percentiles mapped to 0 and 255 by "percentiles".
    """

    def __init__(self, rule="full_range", percentiles=(0.0, 100.0)):
        from maskrcnn_benchmark.data.image_io import check_high_bit_depth

        check_high_bit_depth(rule, percentiles)
        self.rule = rule
        self.percentiles = tuple(float(p) for p in percentiles)

    def __call__(self, image, target=None):
        from maskrcnn_benchmark.data.image_io import map_high_bit_depth

        return map_high_bit_depth(image, self.rule, self.percentiles), target

    def __repr__(self):
        return "MapHighBitDepth(rule={}, percentiles={})".format(self.rule, self.percentiles)


class Normalize(object):
    """Tensor[3, H, W] RGB in [0, 1] -> (x - mean) / std, in BGR 0-255 first when `to_bgr255`.

    Args:
        mean, std (sequence[float]): per channel, in the channel order and range after the optional BGR255 step.
        to_bgr255 (bool): reorder RGB -> BGR and scale to 0-255 (Caffe2 / Detectron weights expect this).
    """

    def __init__(self, mean, std, to_bgr255=True):
        self.mean = list(mean)
        self.std = list(std)
        self.to_bgr255 = to_bgr255

    def __call__(self, image, target=None):
        if self.to_bgr255:
            image = image[[2, 1, 0]] * 255
        image = F.normalize(image, mean=self.mean, std=self.std)
        return image, target
