"""RoIAlign (torchvision's kernels) with maskrcnn-benchmark's module interface.

torchvision's CPU kernels of roi_align, forward and backward, run on one thread whatever
``torch.get_num_threads()`` says, and in a Mask R-CNN training step they take a fifth of the time on 2 cores.
On the CPU with more than one thread, :func:`roi_align` therefore runs torchvision's own kernels on independent
slices of the work, one slice per thread:

* forward, by RoIs: output row k depends on RoI k only;
* backward, by channels: channel c of the input's gradient depends on channel c of the output's gradient only.

Every element is computed by the same kernel code with the same operands in the same order, so the result is
bitwise the one of a single call (tests/layers/test_roi_align.py). The threads come from one pool per process
(made again after a fork, e.g. in DataLoader workers); torchvision's op releases the GIL while it runs.
Everything else (a GPU, one thread, autocast, tracing for export, small calls) calls torchvision's op as it is.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torchvision.ops import roi_align as _tv_roi_align

# Below this many output elements one call is faster than handing slices to threads (about 50 us each).
MIN_PARALLEL_ELEMENTS = 1 << 16

_pool_lock = threading.Lock()
_pool = {"pid": None, "workers": 0, "executor": None}


def _executor(workers):
    """The process's thread pool with ``workers`` threads (a forked child gets its own: the parent's threads
    do not exist in it)."""
    with _pool_lock:
        if _pool["pid"] != os.getpid() or _pool["workers"] != workers:
            if _pool["executor"] is not None and _pool["pid"] == os.getpid():
                _pool["executor"].shutdown(wait=False)
            _pool.update(pid=os.getpid(), workers=workers,
                         executor=ThreadPoolExecutor(workers, thread_name_prefix="roi_align"))
        return _pool["executor"]


def _slices(length, parts):
    """``parts`` (at most ``length``) contiguous, near-equal, non-empty (start, stop) ranges covering range(length)."""
    parts = max(1, min(parts, length))
    bounds = [length * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_sliced(function, slices):
    """function(start, stop) for every slice, on the pool's threads; the results in slice order."""
    if len(slices) == 1:
        return [function(*slices[0])]
    return list(_executor(len(slices)).map(lambda bounds: function(*bounds), slices))


class _SlicedRoIAlign(torch.autograd.Function):
    """torchvision's roi_align on the CPU, forward sliced by RoIs and backward by channels (see the module)."""

    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned, workers):
        height, width = output_size
        input = input.contiguous()  # the kernel makes a contiguous copy: once here rather than once per slice

        def pool(start, stop):
            return torch.ops.torchvision.roi_align(input, rois[start:stop], spatial_scale, height, width,
                                                   sampling_ratio, aligned)

        ctx.save_for_backward(rois)
        ctx.arguments = (output_size, spatial_scale, sampling_ratio, aligned, workers, tuple(input.shape))
        return torch.cat(_run_sliced(pool, _slices(rois.shape[0], workers)))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        rois, = ctx.saved_tensors
        (height, width), spatial_scale, sampling_ratio, aligned, workers, (n, c, h, w) = ctx.arguments

        def grad_of_channels(start, stop):
            return torch.ops.torchvision._roi_align_backward(
                grad_output[:, start:stop].contiguous(), rois, spatial_scale, height, width, n, stop - start, h, w,
                sampling_ratio, aligned)

        grad_input = torch.cat(_run_sliced(grad_of_channels, _slices(c, workers)), dim=1)
        return grad_input, None, None, None, None, None, None


def _parallel_workers(input, rois, output_size):
    """Threads to slice this call over, or 1 for torchvision's op as it is."""
    if input.device.type != "cpu" or torch.get_num_threads() < 2 or input.dim() != 4:
        return 1
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return 1  # export and compilation see torchvision's op, which they know
    if torch.is_autocast_enabled("cpu"):
        return 1  # torchvision's autocast rule (float32 inside) applies
    if rois.shape[0] * input.shape[1] * output_size[0] * output_size[1] < MIN_PARALLEL_ELEMENTS:
        return 1
    return torch.get_num_threads()


def roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned=False):
    """Bilinear RoI pooling (torchvision's ``roi_align``, on several CPU threads where that pays; see the module).

    Args:
        input: Tensor[N, C, H, W] feature map.
        rois: Tensor[K, 5] (batch_index, x0, y0, x1, y1) in image coordinates.
        output_size: int or (out_h, out_w).
        spatial_scale: feature-map size / image size (1 / stride).
        sampling_ratio: samples per bin side; <= 0 picks ceil(roi_size / output_size) adaptively.
        aligned: False (maskrcnn-benchmark, Detectron) samples without the half-pixel shift; True shifts the
            RoI by -0.5 px so pixel centres line up (Detectron2).
    Returns:
        Tensor[K, C, out_h, out_w]; its gradient reaches ``input`` (not ``rois``), as torchvision's.
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    output_size = tuple(output_size)
    rois = rois.to(input.dtype)
    workers = _parallel_workers(input, rois, output_size)
    if workers == 1:
        return _tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _SlicedRoIAlign.apply(input, rois, output_size, float(spatial_scale), int(sampling_ratio), bool(aligned),
                                 workers)


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
