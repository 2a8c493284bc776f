"""Layers and ops under maskrcnn-benchmark's names (torchvision ops where torchvision has them)."""
from torchvision.ops import RoIPool as ROIPool
from torchvision.ops import roi_pool

from .batch_norm import FrozenBatchNorm2d
from .misc import BatchNorm2d, Conv2d, ConvTranspose2d, Scale, interpolate
from .nms import batched_nms, nms
from .prroi_pool import PrRoIPool2D, prroi_pool2d  # compiled kernel is imported lazily on first call
from .roi_align import ROIAlign, roi_align
from .sigmoid_focal_loss import SigmoidFocalLoss, sigmoid_focal_loss
from .smooth_l1_loss import smooth_l1_loss

__all__ = [
    "BatchNorm2d", "Conv2d", "ConvTranspose2d", "FrozenBatchNorm2d", "interpolate", "Scale",
    "nms", "batched_nms", "ROIAlign", "roi_align", "ROIPool", "roi_pool", "smooth_l1_loss",
    "PrRoIPool2D", "prroi_pool2d", "SigmoidFocalLoss", "sigmoid_focal_loss",
]
