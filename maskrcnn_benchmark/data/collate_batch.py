"""Turn a list of dataset samples into one batch."""


class BatchCollator(object):
    """Collate [(image Tensor[3,H,W], target BoxList, index), ...] into (ImageList, tuple[BoxList], tuple[int]).

    Images are zero-padded at the bottom/right to a common size whose H and W are multiples of
    `size_divisible` (0 = no rounding), as FPN needs sizes divisible by its coarsest stride.
    """

    def __init__(self, size_divisible=0):
        self.size_divisible = size_divisible

    def __call__(self, batch):
        from maskrcnn_benchmark.structures.image_list import to_image_list

        images, targets, img_ids = zip(*batch)
        return to_image_list(list(images), self.size_divisible), targets, img_ids


class BBoxAugCollator(object):
    """Collate [(PIL image, target, index), ...] into (tuple[PIL.Image], tuple[BoxList], tuple[int]) for
    test-time augmentation, which resizes and flips each original image itself."""

    def __call__(self, batch):
        images, targets, img_ids = zip(*batch)
        return images, targets, img_ids
