"""Time forward+backward of Precise RoI Pooling (compiled op and torch implementation) against torchvision's
roi_align and the plain reference, on the CPU or a GPU.

All run in one process on the same input: by default features [2, 256, 100, 168] at spatial scale 1/4 (a stride-4
FPN level of a 672 x 400 image) and 512 RoIs whose sides are log-uniform in [16, 320] px, at output sizes 7x7 and
28x28 (roi_align with sampling_ratio=2, aligned=False). On a GPU every timed region starts and ends with
torch.cuda.synchronize, so the times cover the kernels and not only their launch. Prints the times and the ratios
compiled / roi_align, torch / roi_align and reference / compiled, and what MODEL.PRROI_POOL_IMPL "auto" picks.

    python tools/benchmark_prroi_pool.py [--device cpu|cuda] [--rois 512] [--repeats 5] [--threads N]
"""
import argparse
import math
import time

import torch
from torchvision.ops import roi_align

from maskrcnn_benchmark.layers import prroi_pool as prroi_module
from maskrcnn_benchmark.layers.prroi_pool import prroi_pool2d, prroi_pool2d_reference
from maskrcnn_benchmark.utils.benchmarking import synchronizer


def make_rois(num_rois, image_width, image_height, batch_size, generator):
    """Tensor[K, 5] of boxes with log-uniform sides in [16, 320] px, centred inside the image, clipped to it."""
    sides = torch.exp(torch.empty(num_rois, 2).uniform_(math.log(16), math.log(320), generator=generator))
    centres = torch.rand(num_rois, 2, generator=generator) * torch.tensor([image_width, image_height])
    x0y0 = (centres - sides / 2).clamp(min=0)
    x1y1 = torch.minimum(centres + sides / 2, torch.tensor([image_width - 1.0, image_height - 1.0]))
    batch_index = torch.randint(0, batch_size, (num_rois, 1), generator=generator).float()
    return torch.cat([batch_index, x0y0, x1y1], dim=1)


def time_fwd_bwd(fn, features, rois, repeats, synchronize=lambda: None):
    """Median seconds of one forward + backward (sum of outputs) over `repeats` runs after one warm-up, each
    between two calls of `synchronize`."""
    times = []
    for attempt in range(repeats + 1):
        features.grad = None
        if rois.requires_grad:
            rois.grad = None
        synchronize()
        start = time.perf_counter()
        fn(features, rois).sum().backward()
        synchronize()
        if attempt:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--map", default="100x168", help="feature map height x width (stride 4)")
    parser.add_argument("--sizes", default="7,28", help="output sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA GPU on this machine; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(side) for side in args.map.split("x"))

    generator = torch.Generator().manual_seed(0)
    scale = 0.25
    features = torch.randn(2, args.channels, height, width, generator=generator).to(device).requires_grad_()
    boxes = make_rois(args.rois, width * 4, height * 4, 2, generator).to(device)
    synchronize = synchronizer(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device} ({name}); features {tuple(features.shape)}, {args.rois} RoIs, "
          f"spatial_scale {scale}; MODEL.PRROI_POOL_IMPL auto -> {prroi_module._auto_implementation(device)}")

    for size in (int(s) for s in args.sizes.split(",")):
        def compiled(f, r):
            return prroi_pool2d(f, r, size, size, scale, impl="compiled")

        def torch_impl(f, r):
            return prroi_pool2d(f, r, size, size, scale, impl="torch")

        def theirs(f, r):
            return roi_align(f, r, (size, size), spatial_scale=scale, sampling_ratio=2, aligned=False)

        def reference(f, r):
            return prroi_pool2d_reference(f, r, size, size, scale)

        rois_fixed = boxes.clone()
        rois_grad = boxes.clone().requires_grad_()
        t_align = time_fwd_bwd(theirs, features, rois_fixed, args.repeats, synchronize)
        t_ours = time_fwd_bwd(compiled, features, rois_fixed, args.repeats, synchronize)
        t_ours_rois = time_fwd_bwd(compiled, features, rois_grad, args.repeats, synchronize)
        t_torch = time_fwd_bwd(torch_impl, features, rois_grad, args.repeats, synchronize)
        t_ref = time_fwd_bwd(reference, features, rois_grad, args.reference_repeats, synchronize)
        print(f"{size}x{size}: roi_align {t_align * 1e3:8.1f} ms | compiled (grad features) {t_ours * 1e3:8.1f} ms | "
              f"compiled (grad features+rois) {t_ours_rois * 1e3:8.1f} ms | torch (features+rois) "
              f"{t_torch * 1e3:8.1f} ms | reference (features+rois) {t_ref * 1e3:8.1f} ms")
        print(f"{size}x{size}: compiled/roi_align = {t_ours / t_align:.2f} (features grad), "
              f"{t_ours_rois / t_align:.2f} (features+rois grad); torch/roi_align = {t_torch / t_align:.2f}; "
              f"reference/compiled = {t_ref / t_ours_rois:.1f}x")


if __name__ == "__main__":
    main()
