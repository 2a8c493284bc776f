#!/usr/bin/env python
"""Predict an image or a folder of images (recursively) into files other tools read.

    python tools/predict.py --config-file configs/demo/nuclei_R_18_FPN.yaml \\
        --ckpt output/nuclei_R_18_FPN/model_final.pth --input new_images/ --output-dir predictions/ \\
        [--tile 512 --tile-overlap 64] [--confidence 0.5] [--overlays] [--polygons] [KEY VALUE ...]

Writes OUTPUT/predictions.json (COCO: images, categories of the checkpoint, annotations with score, bbox and RLE
segmentation, which pycocotools and CVAT read; --polygons writes outer contours instead, for Label Studio),
OUTPUT/instances/<relative path>.png (16-bit label map: 0 background, i the i-th detection, highest score first)
and with --overlays OUTPUT/overlays/<relative path>.png. --tile cuts large images into overlapping tiles at full
resolution and merges the detections (objects cut by a seam are taken from the tile where they are whole,
duplicates removed by mask overlap). TEST.BBOX_AUG.* and TEST.DTYPE given as KEY VALUE apply. Images that cannot
be read are named, skipped and counted; the exit status is then 1.
"""
import argparse
import sys

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.engine.predict_files import predict_files
from maskrcnn_benchmark.engine.predictor import COCODemo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Predict images into COCO JSON and 16-bit instance label maps")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    parser.add_argument("--ckpt", default=None, help="checkpoint (default: OUTPUT_DIR's last checkpoint, else "
                                                     "MODEL.WEIGHT)")
    parser.add_argument("--input", required=True, help="an image file, or a folder searched recursively")
    parser.add_argument("--output-dir", required=True, help="where predictions.json, instances/ (overlays/) go")
    parser.add_argument("--tile", type=int, default=None, help="tile side in px (default: whole images)")
    parser.add_argument("--tile-overlap", type=int, default=64,
                        help="px shared by neighbouring tiles; objects up to this size are seen whole by a tile")
    parser.add_argument("--confidence", type=float, default=0.5, help="minimum score written")
    parser.add_argument("--overlays", action="store_true", help="also write the detections drawn on the images")
    parser.add_argument("--polygons", action="store_true",
                        help="segmentations as polygons (outer contours, approximate) instead of RLE, for tools "
                             "that import polygons only (Label Studio); the label maps stay exact")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts or ())
    demo = COCODemo(cfg, confidence_threshold=args.confidence, min_image_size=None, weight=args.ckpt)
    summary = predict_files(demo, args.input, args.output_dir, tile=args.tile, overlap=args.tile_overlap,
                            confidence=args.confidence, overlays=args.overlays, polygons=args.polygons)
    print("predicted {} image(s), {} detection(s) scoring >= {} into {}".format(
        summary["images"], summary["detections"], args.confidence, args.output_dir))
    if summary["unreadable"]:
        print("skipped {} unreadable file(s): {}".format(len(summary["unreadable"]), ", ".join(summary["unreadable"])),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
