"""Split a COCO dataset 90/10 so that every phone model has at least one image outside training.

Usage (group by the file-name prefix before the frame number, or by an image-level field):
    python tools/phone/split_dataset.py datasets/phone/annotations/all.json datasets/phone/annotations \
        --group-regex '^(.+)_\\d+\\.\\w+$'
    python tools/phone/split_dataset.py all.json out_dir --group-field phone_model --val-fraction 0.1

writes out_dir/train.json and out_dir/val.json (the catalog's phone_train / phone_val).
"""
import argparse
import collections
import os
import sys

from maskrcnn_benchmark.data.preparation.phone import (
    dump_json_atomic,
    load_coco_json,
    make_group_key,
    split_by_group,
    subset_coco,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ann_file", help="COCO annotation file of the whole dataset")
    parser.add_argument("out_dir", help="folder for train.json and val.json")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--group-regex", help="regex on file_name; its first group (or whole match) names the model")
    key.add_argument("--group-field", help="image-level JSON field naming the model")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data = load_coco_json(args.ann_file)
    except (OSError, ValueError) as e:  # missing, not JSON, not COCO: the message names the file
        print("error: {}".format(e), file=sys.stderr)
        return 1
    group_key = make_group_key(pattern=args.group_regex, field=args.group_field)
    try:
        train_ids, val_ids = split_by_group(data["images"], group_key, args.val_fraction, args.seed)
    except KeyError as e:
        print("error: {}".format(e.args[0]), file=sys.stderr)
        return 1
    dump_json_atomic(subset_coco(data, train_ids), os.path.join(args.out_dir, "train.json"))
    dump_json_atomic(subset_coco(data, val_ids), os.path.join(args.out_dir, "val.json"))
    groups = collections.Counter(group_key(im) for im in data["images"] if im["id"] in set(val_ids))
    print("train: {} images, val: {} images covering {} groups -> {}".format(
        len(train_ids), len(val_ids), len(groups), args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
