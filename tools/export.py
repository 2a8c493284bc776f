#!/usr/bin/env python
"""Write a trained Mask R-CNN for inference outside this package: ONNX (onnxruntime) or TorchScript.

    python tools/export.py --config-file configs/demo/nuclei_R_18_FPN.yaml \\
        --ckpt output/nuclei_R_18_FPN/model_final.pth --format onnx --output nuclei.onnx [KEY VALUE ...]

The graph takes one image, float32 [3, H, W], BGR 0-255, already resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST
(H, W dynamic), and returns boxes [N, 4] (xyxy, input pixels), scores [N], labels [N] int64 and masks [N, 1, 28, 28]
(probabilities in each box; paste them as demo/onnxruntime_example.py does). See maskrcnn_benchmark/engine/export.py.

The checkpoint loads as in tools/test_net.py (strict, weights only); a GAN checkpoint's discriminator and D
optimizer entries are not used. A config the export module does not cover (keypoints, RetinaNet, DCN, FBNet,
PrRoIPool heads, torchvision box convention, no masks) is refused by name before any weight is read.
After writing, the file is run on two random images of different sizes (or on ``--images FILE ...``, prepared by
``engine.export.export_input`` with the project's image reader) and compared with the PyTorch module
(``--no-check`` skips it); ``--time-runs K`` also prints the median time per image of both.
ONNX needs the extra: pip install -r requirements-export.txt (or pip install .[export]).
"""
import argparse
import os
import statistics
import sys
import time

import torch

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.engine.export import (
    EXPORT_FORMATS,
    ExportableMaskRCNN,
    check_exportable,
    export_input,
    export_model,
)
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer
from maskrcnn_benchmark.utils.logger import setup_logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Export a Mask R-CNN to ONNX or TorchScript")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    parser.add_argument("--ckpt", default=None, help="checkpoint to export (default: MODEL.WEIGHT)")
    parser.add_argument("--random-init", action="store_true",
                        help="export the randomly initialised model (for timing the graph; no checkpoint read)")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--output", required=True, metavar="FILE", help="file to write (.onnx or .pt)")
    parser.add_argument("--no-check", action="store_true", help="do not compare the written file with PyTorch")
    parser.add_argument("--images", nargs="+", default=None, metavar="FILE",
                        help="trace and check on these image files (read and resized as evaluation does: "
                             "engine.export.export_input) instead of two random images")
    parser.add_argument("--time-runs", type=int, default=0,
                        help="after the check, time this many runs of the file and of PyTorch (median per image)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="Modify config options using the command-line: KEY VALUE pairs")
    return parser.parse_args(argv)


def example_images(cfg, seed=0):
    """Two random BGR 0-255 images of different test sizes: a landscape one of short side INPUT.MIN_SIZE_TEST and a
    portrait one 3/4 as large, both within INPUT.MAX_SIZE_TEST (traced on the first, checked on both)."""
    generator = torch.Generator().manual_seed(seed)
    short = cfg.INPUT.MIN_SIZE_TEST
    long_side = min(int(short * 4 / 3), cfg.INPUT.MAX_SIZE_TEST)
    sizes = [(short, long_side), (int(long_side * 3 / 4), int(short * 3 / 4))]
    return [torch.rand((3, h, w), generator=generator) * 255 for h, w in sizes]


def load_exported(path, fmt):
    """A callable image -> (boxes, scores, labels, masks) as numpy arrays, running the written file."""
    if fmt == "torchscript":
        module = torch.jit.load(path)

        def run(image):
            with torch.no_grad():
                return [t.numpy() for t in module(image)]
        return run
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("checking the ONNX file needs onnxruntime: pip install -r requirements-export.txt "
                          "(or pass --no-check)") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda image: session.run(None, {"image": image.numpy()})


def compare(export_module, run_exported, images):
    """Per image: (number of detections PyTorch / file, max |difference| of boxes, scores and masks, labels equal)."""
    rows = []
    for image in images:
        with torch.no_grad():
            expected = [t.numpy() for t in export_module(image)]
        got = run_exported(image)
        same_count = expected[0].shape == got[0].shape
        diffs = [float(abs(expected[i] - got[i]).max()) if same_count and expected[i].size else
                 (0.0 if same_count else float("nan")) for i in (0, 1, 3)]  # boxes, scores, masks
        rows.append((len(expected[0]), len(got[0]), diffs, same_count and bool((expected[2] == got[2]).all())))
    return rows


def median_seconds(fn, image, runs):
    """Median wall time of ``fn(image)`` over ``runs`` runs after one warm-up run."""
    fn(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file, list(args.opts or ()) + ["MODEL.DEVICE", "cpu"])
    check_exportable(cfg, args.config_file)  # before building the model or reading weights
    cfg.freeze()
    logger = setup_logger("maskrcnn_benchmark", "", 0)
    model = build_detection_model(cfg)
    if args.random_init:
        logger.info("exporting the randomly initialised model (--random-init)")
    else:
        ckpt = args.ckpt or cfg.MODEL.WEIGHT
        if not ckpt:
            raise FileNotFoundError("Nothing to export: no --ckpt given and MODEL.WEIGHT is empty in '{}'; pass "
                                    "--ckpt PATH (or --random-init to export untrained weights)".format(
                                        args.config_file))
        # strict, as tools/test_net.py: an exported half-random model would be worse than an error
        DetectronCheckpointer(cfg, model).load(ckpt, use_latest=False, strict=True)
    export_module = ExportableMaskRCNN(cfg, model).eval()
    images = [export_input(path, cfg)[0] for path in args.images] if args.images else example_images(cfg)
    seconds = export_model(export_module, images, args.output, args.format)
    print("wrote {} ({}, {:.1f} MB) in {:.1f} s".format(
        args.output, args.format, os.path.getsize(args.output) / 2 ** 20, seconds))
    if args.no_check:
        return 0
    run_exported = load_exported(args.output, args.format)
    for image, (n_torch, n_file, diffs, labels_equal) in zip(images, compare(export_module, run_exported, images)):
        print("image {}x{}: {} detections (PyTorch {}), max |diff| boxes {:.2g} px, scores {:.2g}, masks {:.2g}, "
              "labels {}".format(image.shape[1], image.shape[2], n_file, n_torch, *diffs,
                                 "equal" if labels_equal else "DIFFER"))
    if args.time_runs > 0:
        image = images[0]
        with torch.no_grad():
            t_torch = median_seconds(export_module, image, args.time_runs)
        t_file = median_seconds(run_exported, image, args.time_runs)
        print("median per image {}x{} over {} runs ({} threads): PyTorch {:.3f} s, {} {:.3f} s".format(
            image.shape[1], image.shape[2], args.time_runs, torch.get_num_threads(), t_torch, args.format, t_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
