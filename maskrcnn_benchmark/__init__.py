"""Mask R-CNN in maskrcnn-benchmark's layout, with the adversarial heads of Le et al."""
# The compiled extension links against torch's shared libraries: load them before anyone imports ._C.
import torch  # noqa: F401
