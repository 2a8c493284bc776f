"""Non-maximum suppression: torchvision's implementation under maskrcnn-benchmark's name.

torchvision measures box width as x1 - x0; ``structures.boxlist_ops.boxlist_nms`` adds the +1 of the inclusive
pixel convention before calling it.
"""
from torchvision.ops import batched_nms, nms

__all__ = ["nms", "batched_nms"]
