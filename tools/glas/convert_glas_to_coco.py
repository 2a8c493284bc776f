"""Convert the GlaS challenge data (Warwick-QU bmp images + *_anno.bmp label maps) to COCO JSON.

Usage:
    python tools/glas/convert_glas_to_coco.py "path/to/Warwick QU Dataset (Released 2016_07_08)" datasets/glas

writes datasets/glas/{train,testA,testB}/{annotations.json,images/}, the layout of the catalog entries
glas_train, glas_testA and glas_testB. Nothing is written if any file is unusable; the error lists them all.
"""
import argparse
import sys

from maskrcnn_benchmark.data.preparation.glas import SPLITS, GlaSInputError, convert_glas


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("glas_dir", help="folder holding train_1.bmp, train_1_anno.bmp, testA_1.bmp, ...")
    parser.add_argument("out_dir", help="output root, e.g. datasets/glas")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to convert")
    args = parser.parse_args(argv)
    try:
        summary = convert_glas(args.glas_dir, args.out_dir, args.splits)
    except GlaSInputError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1
    for split, (ann_file, num_images, num_glands) in summary.items():
        print("{}: {} images, {} glands -> {}".format(split, num_images, num_glands, ann_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
