"""RoIAlign (torchvision's implementation) with maskrcnn-benchmark's module interface."""
import torch
from torch import nn
from torchvision.ops import roi_align as _tv_roi_align


def roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=False):
    """Bilinear RoI pooling.

    Args:
        input: Tensor[N, C, H, W] feature map.
        rois: Tensor[K, 5] (batch_index, x0, y0, x1, y1) in image coordinates.
        output_size: int or (out_h, out_w).
        spatial_scale: feature-map size / image size (1 / stride).
        sampling_ratio: samples per bin side; <= 0 picks ceil(roi_size / output_size) adaptively.
        aligned: False (maskrcnn-benchmark, Detectron) samples without the half-pixel shift; True shifts the
            RoI by -0.5 px so pixel centres line up (Detectron2).
    Returns:
        Tensor[K, C, out_h, out_w].
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    return _tv_roi_align(input, rois.to(input.dtype), tuple(output_size), spatial_scale, sampling_ratio, aligned)


class ROIAlign(nn.Module):
    """Module form of :func:`roi_align` (see there for the arguments and shapes)."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        """input Tensor[N, C, H, W], rois Tensor[K, 5] -> Tensor[K, C, out_h, out_w]."""
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self):
        return "{}(output_size={}, spatial_scale={}, sampling_ratio={}, aligned={})".format(
            self.__class__.__name__, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
