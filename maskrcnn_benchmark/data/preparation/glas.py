"""GlaS (MICCAI 2015 Gland Segmentation challenge, Warwick-QU) to COCO instance segmentation.

The challenge folder holds, for each image, ``<split>_<N>.bmp`` (RGB H&E image) and ``<split>_<N>_anno.bmp``
(instance label map: 0 background, each k > 0 one gland), with split "train" (85 images), "testA" (60) and
"testB" (20); ``Grade.csv`` (name, patient ID, grades) may sit beside them. Each split becomes
``<out_dir>/<split>/annotations.json`` + ``<out_dir>/<split>/images/<split>_<N>.bmp`` with one category "gland";
every gland is one annotation whose segmentation is the RLE of its exact pixels (a gland label may have several
connected components). A split folder appears only when all of it is written (see _atomic.py).

Everything is checked before anything is written: a missing annotation file, an unreadable or empty image, an
annotation whose size differs from its image, or an annotation with no gland are all reported together, one line
per file.
"""
import csv
import logging
import os
import re
import shutil

import numpy as np
from PIL import Image

from ._atomic import write_atomically

SPLITS = ("train", "testA", "testB")
EXPECTED_COUNTS = {"train": 85, "testA": 60, "testB": 20}  # the released Warwick-QU data
CATEGORIES = [{"id": 1, "name": "gland", "supercategory": "gland"}]
_IMAGE_RE = re.compile(r"^(train|testA|testB)_(\d+)\.bmp$")


class GlaSInputError(ValueError):
    """The input folder is not a GlaS tree, or some of its files are unusable (one line per file)."""


def find_glas_pairs(glas_dir, split):
    """Sorted [(N, image path, annotation path)] of `split` in `glas_dir` (annotation path may not exist)."""
    if split not in SPLITS:
        raise ValueError("Unknown GlaS split '{}'; use one of {}".format(split, SPLITS))
    if not os.path.isdir(glas_dir):
        raise GlaSInputError("GlaS folder '{}' does not exist".format(glas_dir))
    pairs = []
    for name in os.listdir(glas_dir):
        match = _IMAGE_RE.match(name)
        if match and match.group(1) == split:
            number = int(match.group(2))
            pairs.append((number, os.path.join(glas_dir, name),
                          os.path.join(glas_dir, "{}_{}_anno.bmp".format(split, number))))
    if not pairs:
        raise GlaSInputError(
            "'{}' is not a GlaS folder: expected files like '{}_1.bmp' with '{}_1_anno.bmp' in it (the "
            "'Warwick QU Dataset' folder of the challenge download)".format(glas_dir, split, split))
    return sorted(pairs)


def read_label_map(path):
    """HxW int64 instance labels of a GlaS annotation bmp (grey or palette; an RGB file is read per colour)."""
    with Image.open(path) as image:
        array = np.array(image)
    if array.ndim == 3:  # a colour-coded label image: each distinct colour is one label, black is background
        flat = array[..., :3].reshape(-1, 3).astype(np.int64)
        codes = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]
        _, labels = np.unique(codes, return_inverse=True)
        labels = labels.reshape(array.shape[:2])
        if codes.min() != 0:  # no black pixel: every colour is a gland
            labels = labels + 1
        return labels.astype(np.int64)
    return array.astype(np.int64)


def read_grades(glas_dir):
    """{image name without extension: {column: value}} from Grade.csv, or {} when the file is absent."""
    path = os.path.join(glas_dir, "Grade.csv")
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    key = next(iter(rows[0]))
    return {row[key].strip(): {k.strip(): (v or "").strip() for k, v in row.items() if k != key} for row in rows}


def instances_from_label_map(label_map):
    """[(label, bool mask [H, W])] of the glands of a label map, in increasing label order."""
    ids = np.unique(label_map)
    return [(int(k), label_map == k) for k in ids if k > 0]


def _check_pair(image_path, anno_path):
    """(image size (w, h), label map) of one pair, or raise GlaSInputError naming the file and the problem."""
    if not os.path.isfile(anno_path):
        raise GlaSInputError("{}: expected its annotation '{}' next to it".format(
            image_path, os.path.basename(anno_path)))
    for path in (image_path, anno_path):
        if os.path.getsize(path) == 0:
            raise GlaSInputError("{}: the file is empty (0 bytes)".format(path))
    try:
        with Image.open(image_path) as image:
            size = image.size
    except OSError as e:
        raise GlaSInputError("{}: not a readable image ({})".format(image_path, e)) from e
    if size[0] == 0 or size[1] == 0:
        raise GlaSInputError("{}: the image has no pixels ({}x{})".format(image_path, *size))
    try:
        label_map = read_label_map(anno_path)
    except OSError as e:
        raise GlaSInputError("{}: not a readable annotation image ({})".format(anno_path, e)) from e
    if (label_map.shape[1], label_map.shape[0]) != tuple(size):
        raise GlaSInputError("{}: annotation is {}x{} but its image {} is {}x{} (width x height)".format(
            anno_path, label_map.shape[1], label_map.shape[0], os.path.basename(image_path), *size))
    if not (label_map > 0).any():
        raise GlaSInputError("{}: the annotation has no gland (every pixel is 0)".format(anno_path))
    return size, label_map


def glas_split_to_coco(glas_dir, split):
    """COCO dict of one GlaS split plus the image paths to copy; checks every file first.

    Returns:
        (coco dict with "images", "annotations", "categories", "info"; list of source image paths).
    Raises:
        GlaSInputError listing every bad file (one per line) when any file is unusable.
    """
    from pycocotools import mask as mask_utils

    pairs = find_glas_pairs(glas_dir, split)
    grades = read_grades(glas_dir)
    problems, images, annotations, sources = [], [], [], []
    for image_id, (_, image_path, anno_path) in enumerate(pairs, start=1):
        try:
            (width, height), label_map = _check_pair(image_path, anno_path)
        except GlaSInputError as e:
            problems.append(str(e))
            continue
        file_name = os.path.basename(image_path)
        image_entry = {"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)}
        stem = os.path.splitext(file_name)[0]
        if stem in grades:
            image_entry["grade"] = grades[stem]
        images.append(image_entry)
        sources.append(image_path)
        for label, mask in instances_from_label_map(label_map):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                "area": float(mask.sum()), "bbox": [x, y, w, h], "iscrowd": 0, "glas_label": label,
            })
    if problems:
        raise GlaSInputError("GlaS split '{}' in '{}' has {} unusable file(s); nothing was written:\n  {}".format(
            split, glas_dir, len(problems), "\n  ".join(problems)))
    expected = EXPECTED_COUNTS[split]
    if len(images) != expected:
        logging.getLogger(__name__).warning(
            "GlaS split '%s' in '%s' has %d images; the released data has %d", split, glas_dir, len(images), expected)
    info = {"description": "GlaS MICCAI 2015 gland segmentation, split {}".format(split), "source": glas_dir}
    return {"info": info, "images": images, "annotations": annotations, "categories": CATEGORIES}, sources


def convert_glas(glas_dir, out_dir, splits=SPLITS):
    """Convert GlaS splits to ``<out_dir>/<split>/{annotations.json,images/}``.

    All splits are checked before the first one is written, so bad input leaves no new folder behind.
    Returns:
        {split: (annotation file path, number of images, number of glands)}.
    """
    import json

    converted = {split: glas_split_to_coco(glas_dir, split) for split in splits}
    summary = {}
    for split, (coco, sources) in converted.items():
        def write(tmp_dir, coco=coco, sources=sources, split_dir=os.path.join(out_dir, split)):
            os.makedirs(os.path.join(tmp_dir, "images"))
            for source in sources:
                shutil.copyfile(source, os.path.join(tmp_dir, "images", os.path.basename(source)))
            with open(os.path.join(tmp_dir, "annotations.json"), "w") as f:
                json.dump(coco, f)
            if os.path.isdir(split_dir):
                shutil.rmtree(split_dir)  # a re-conversion replaces the old split, once the new one is complete

        split_dir = os.path.join(out_dir, split)
        write_atomically(split_dir, write)
        summary[split] = (os.path.join(split_dir, "annotations.json"), len(coco["images"]),
                          len(coco["annotations"]))
    return summary
