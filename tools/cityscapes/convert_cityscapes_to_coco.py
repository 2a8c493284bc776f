#!/usr/bin/env python
"""Convert Cityscapes fine instance annotations (gtFine) to COCO JSON for training and COCO-style evaluation.

    python tools/cityscapes/convert_cityscapes_to_coco.py --datadir datasets/cityscapes \
        --outdir datasets/cityscapes/annotations --splits train val

writes <outdir>/instancesonly_gtFine_<split>.json, the files the catalog entries cityscapes_fine_instanceonly_seg_*
read (images under leftImg8bit/<split>, evaluation ground truth under gtFine/<split>). See
maskrcnn_benchmark/data/datasets/cityscapes.py for the format details.
"""
import argparse
import os
import sys

from maskrcnn_benchmark.data.datasets.cityscapes import CityscapesFormatError, convert_cityscapes_split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Cityscapes gtFine instances -> COCO JSON")
    parser.add_argument("--datadir", required=True, help="Cityscapes root holding gtFine/ and leftImg8bit/")
    parser.add_argument("--outdir", default=None, help="output folder (default: <datadir>/annotations)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to convert")
    parser.add_argument("--mask-format", choices=("rle", "poly"), default="rle",
                        help="rle: exact pixels of the instance-id images; poly: outer contours (smaller files)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    outdir = args.outdir or os.path.join(args.datadir, "annotations")
    for split in args.splits:
        out_file = os.path.join(outdir, "instancesonly_gtFine_{}.json".format(split))
        try:
            counts = convert_cityscapes_split(args.datadir, split, out_file, mask_format=args.mask_format)
        except CityscapesFormatError as e:
            print("error: {}".format(e), file=sys.stderr)
            return 1
        print("{}: {} images, {} instances, {} crowd regions -> {}".format(
            split, counts["images"], counts["instances"], counts["crowd"], out_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
