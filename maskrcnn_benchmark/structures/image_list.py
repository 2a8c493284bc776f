"""A batch of images of different sizes, zero-padded into one tensor, with each image's true size."""
import math

import torch


class ImageList(object):
    """Images padded to a common size.

    Args:
        tensors: Tensor[N, C, H, W], images zero-padded at the bottom / right.
        image_sizes: list of N (height, width) of each image before padding.
    """

    def __init__(self, tensors, image_sizes):
        self.tensors = tensors
        self.image_sizes = [tuple(int(s) for s in size) for size in image_sizes]

    def to(self, *args, **kwargs):
        """Same as ``Tensor.to`` on the padded batch; sizes are kept."""
        return ImageList(self.tensors.to(*args, **kwargs), self.image_sizes)

    def __len__(self):
        return len(self.image_sizes)

    def __repr__(self):
        return "ImageList(tensors={}, image_sizes={})".format(tuple(self.tensors.shape), self.image_sizes)


def to_image_list(tensors, size_divisible=0):
    """Batch images into an ImageList.

    Args:
        tensors: an ImageList (returned as is), a Tensor[C, H, W] or Tensor[N, C, H, W], or a list/tuple of
            Tensor[C, H_i, W_i].
        size_divisible: if > 0, the padded height and width are rounded up to a multiple of it (FPN needs the
            input divisible by its coarsest stride, 32).
    Returns:
        ImageList whose ``tensors`` is Tensor[N, C, H_pad, W_pad] and ``image_sizes`` the (H_i, W_i).
    """
    if isinstance(tensors, ImageList):
        return tensors
    if isinstance(tensors, torch.Tensor):
        if tensors.dim() == 3:
            tensors = tensors[None]
        if tensors.dim() != 4:
            raise ValueError("to_image_list: a tensor input must be [C, H, W] or [N, C, H, W], got shape {}".format(
                tuple(tensors.shape)))
        if size_divisible <= 0:
            return ImageList(tensors, [tuple(t.shape[-2:]) for t in tensors])
        tensors = list(tensors.unbind(0))
    if not isinstance(tensors, (tuple, list)):
        raise TypeError("to_image_list: unsupported input type {}; pass a Tensor, a list of Tensor[C, H, W] or an "
                        "ImageList".format(type(tensors).__name__))
    if len(tensors) == 0:
        raise ValueError("to_image_list: got an empty list of images")
    for i, img in enumerate(tensors):
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise ValueError("to_image_list: image {} should be a Tensor[C, H, W], got {}".format(
                i, tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__))

    max_size = [max(s) for s in zip(*[img.shape for img in tensors])]
    if size_divisible > 0:
        stride = int(size_divisible)
        max_size[1] = int(math.ceil(max_size[1] / stride) * stride)
        max_size[2] = int(math.ceil(max_size[2] / stride) * stride)

    batched_imgs = tensors[0].new_zeros((len(tensors),) + tuple(max_size))
    for img, pad_img in zip(tensors, batched_imgs):
        pad_img[: img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
    image_sizes = [tuple(img.shape[-2:]) for img in tensors]
    return ImageList(batched_imgs, image_sizes)
