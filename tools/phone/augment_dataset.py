"""Offline photometric augmentation of the phone training split (Le et al., Section 4): noise, Gaussian blur,
sharpness and lightness changes, annotations carried over unchanged.

Usage:
    python tools/phone/augment_dataset.py datasets/phone/annotations/train.json datasets/phone/images \
        datasets/phone/train_aug --num-images 4000

writes datasets/phone/train_aug/{annotations.json,images/} (the catalog's phone_train_aug), atomically.
"""
import argparse
import sys

from maskrcnn_benchmark.data.preparation.phone import augment_coco_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ann_file")
    parser.add_argument("img_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--num-images", type=int, default=4000, help="images in the output, originals included")
    parser.add_argument("--no-originals", action="store_true", help="write augmented images only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        out = augment_coco_dataset(args.ann_file, args.img_dir, args.out_dir, args.num_images,
                                   include_originals=not args.no_originals, seed=args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1
    print("wrote {} images to {}".format(args.num_images, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
