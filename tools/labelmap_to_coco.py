#!/usr/bin/env python
"""Convert instance label maps (one PNG/TIFF per image, 0 = background, each positive value one instance: what
CellPose, StarDist, QuPath, ilastik and Fiji export) to a COCO instances JSON with RLE masks.

    python tools/labelmap_to_coco.py --images data/images --labels data/masks --output data/annotations.json \\
        [--category nucleus] [--label-suffix _masks]
    python tools/labelmap_to_coco.py --images data/images --labels data/instances --output data/annotations.json \\
        --class-maps data/classes --class-names tumour,lymphocyte,stroma

Image and label files are matched by relative path and name without extension (plus --label-suffix on the label
side). With --class-maps, a second single-channel map per image holds each pixel's class id (1..K, named by
--class-names in order; 0 = none) and each instance takes the class most of its pixels carry. Train on the result
with DATASETS.CUSTOM "('NAME:data/annotations.json:data/images',)". Nothing is written if any file is unusable;
the error lists them all. See maskrcnn_benchmark/data/preparation/labelmaps.py.
"""
import argparse
import collections
import sys

from maskrcnn_benchmark.data.preparation.labelmaps import LabelMapError, convert_label_maps


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of the images")
    parser.add_argument("--labels", required=True, metavar="DIR", help="folder of the instance label maps")
    parser.add_argument("--output", required=True, metavar="FILE", help="COCO JSON to write")
    parser.add_argument("--category", default="object", help="name of the one category (without --class-maps)")
    parser.add_argument("--label-suffix", default="", help="label files are named <image name><suffix>.png|tif")
    parser.add_argument("--class-maps", default=None, metavar="DIR", help="folder of per-pixel class-id maps")
    parser.add_argument("--class-suffix", default="", help="class maps are named <image name><suffix>.png|tif")
    parser.add_argument("--class-names", default=None, help="comma-separated names of class ids 1, 2, ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    class_names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    try:
        coco = convert_label_maps(args.output, args.images, args.labels, category=args.category,
                                  label_suffix=args.label_suffix, class_maps_dir=args.class_maps,
                                  class_names=class_names, class_suffix=args.class_suffix)
    except LabelMapError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1
    per_category = collections.Counter(a["category_id"] for a in coco["annotations"])
    print("{}: {} images, {} instances ({})".format(
        args.output, len(coco["images"]), len(coco["annotations"]),
        ", ".join("{} {}".format(per_category[c["id"]], c["name"]) for c in coco["categories"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
