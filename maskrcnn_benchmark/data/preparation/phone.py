"""Phone recycling data (COCO format, 11 part categories): grouped train/val split and offline augmentation.

* :func:`split_by_group` keeps at least one image of every group (phone model) out of training, so validation
  always shows each model; the grouping key comes from the user (:func:`make_group_key`: a regex on the file name
  or an image-level JSON field).
* :func:`augment_coco_dataset` is the paper's offline augmentation (Le et al., Section 4: the phone training set
  is enlarged to 4000+ images with random noise, Gaussian blur, sharpness and lightness changes). Only pixel
  values change, so every annotation is carried over unchanged (new ids only); the result is a new COCO dataset
  folder written atomically.
"""
import copy
import json
import logging
import os
import random
import re
import shutil
from collections import OrderedDict

import cv2
import numpy as np
from PIL import Image, ImageEnhance

from maskrcnn_benchmark.utils.io import save_json

from ._atomic import write_atomically

logger = logging.getLogger(__name__)


def load_coco_json(ann_file):
    """The dict of a COCO annotation file, checked as COCODataset checks it (see coco.read_coco_json)."""
    from maskrcnn_benchmark.data.datasets.coco import read_coco_json

    return read_coco_json(ann_file)


def make_group_key(pattern=None, field=None):
    """A function image_entry -> group name.

    Args:
        pattern: regex searched in the image's file_name; the group is its first capture group (or the whole
            match without groups), e.g. r"^([A-Za-z]+_[A-Za-z0-9]+)_" for "samsung_s7_0013.jpg".
        field: name of an image-level key, e.g. "phone_model".
    Exactly one of them must be given. The returned function raises a KeyError naming the image when the key
    cannot be found.
    """
    if (pattern is None) == (field is None):
        raise ValueError("Give exactly one grouping key: a regex on the file name or an image-level JSON field")
    if field is not None:
        def key_from_field(image):
            if field not in image:
                raise KeyError("Image {!r} (id {}) has no field '{}' to group by; its fields are {}".format(
                    image.get("file_name"), image.get("id"), field, sorted(image)))
            return str(image[field])
        return key_from_field
    regex = re.compile(pattern)

    def key_from_name(image):
        match = regex.search(image["file_name"])
        if match is None:
            raise KeyError("File name {!r} (image id {}) does not match the grouping regex {!r}".format(
                image["file_name"], image.get("id"), pattern))
        return match.group(1) if regex.groups else match.group(0)
    return key_from_name


def split_by_group(images, group_key, val_fraction=0.1, seed=0):
    """Split image entries into (train ids, val ids) with every group represented in val.

    One randomly chosen image of each group goes to val first; more images are then moved from groups that keep
    at least one training image until val holds round(val_fraction * N) images. A group with a single image has
    it in val only (logged), and when there are more groups than the val budget, val grows to one per group.
    Returns:
        (sorted list of train image ids, sorted list of val image ids).
    """
    rng = random.Random(seed)
    groups = OrderedDict()
    for image in sorted(images, key=lambda im: im["id"]):
        groups.setdefault(group_key(image), []).append(image["id"])
    val, remaining = [], {}
    for name, ids in groups.items():
        ids = list(ids)
        rng.shuffle(ids)
        val.append(ids[0])
        remaining[name] = ids[1:]
        if not remaining[name]:
            logger.warning("Group '%s' has a single image (id %d): it goes to val and none of it is trained on",
                           name, ids[0])
    target = int(round(val_fraction * len(images)))
    if len(val) > target:
        logger.warning("%d groups need %d val images, more than %.0f%% of %d images", len(groups), len(val),
                       100 * val_fraction, len(images))
    movable = [(name, i) for name, ids in remaining.items() for i in ids[1:]]  # each group keeps one for training
    rng.shuffle(movable)
    for _, image_id in movable[:max(0, target - len(val))]:
        val.append(image_id)
    val_set = set(val)
    train = [im["id"] for im in images if im["id"] not in val_set]
    return sorted(train), sorted(val_set)


def subset_coco(data, image_ids):
    """Copy of a COCO dict restricted to `image_ids` (images and their annotations; categories kept)."""
    keep = set(image_ids)
    out = {k: copy.deepcopy(v) for k, v in data.items() if k not in ("images", "annotations")}
    out["images"] = [copy.deepcopy(im) for im in data["images"] if im["id"] in keep]
    out["annotations"] = [copy.deepcopy(a) for a in data["annotations"] if a["image_id"] in keep]
    return out


def dump_json_atomic(obj, path):
    """Write JSON to `path` through a temporary file, so `path` is either old or complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_json(obj, path)


# Ranges of the photometric changes (chosen to stay realistic for photos of phones on a conveyor).
AUG_NOISE_STD = (3.0, 15.0)  # std of additive Gaussian noise, grey levels
AUG_BLUR_SIGMA = (0.5, 2.0)  # Gaussian blur sigma, px
AUG_SHARPNESS = (0.3, 3.0)  # PIL sharpness factor (1 = unchanged, <1 softer, >1 sharper)
AUG_LIGHTNESS = (-40.0, 40.0)  # shift of the HLS lightness channel, grey levels


def augment_image(image_bgr, rng):
    """Photometric augmentation of one image: each of noise, blur, sharpness and lightness with probability 1/2
    (at least one), in random order.

    Args:
        image_bgr: uint8 [H, W, 3] (as read by cv2).
        rng: numpy RandomState.
    Returns:
        (uint8 [H, W, 3] augmented image, list of the operations applied with their parameters).
    """
    ops = [op for op in ("noise", "blur", "sharpness", "lightness") if rng.rand() < 0.5]
    if not ops:
        ops = [("noise", "blur", "sharpness", "lightness")[rng.randint(4)]]
    rng.shuffle(ops)
    image = image_bgr.astype(np.float32)
    applied = []
    for op in ops:
        if op == "noise":
            std = rng.uniform(*AUG_NOISE_STD)
            image = image + rng.normal(0.0, std, image.shape).astype(np.float32)
            applied.append(("noise", round(std, 3)))
        elif op == "blur":
            sigma = rng.uniform(*AUG_BLUR_SIGMA)
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
            applied.append(("blur", round(sigma, 3)))
        elif op == "sharpness":
            factor = rng.uniform(*AUG_SHARPNESS)
            pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
            image = np.asarray(ImageEnhance.Sharpness(pil).enhance(factor)).astype(np.float32)
            applied.append(("sharpness", round(factor, 3)))
        else:
            shift = rng.uniform(*AUG_LIGHTNESS)
            hls = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HLS).astype(np.float32)
            hls[..., 1] = np.clip(hls[..., 1] + shift, 0, 255)
            image = cv2.cvtColor(hls.astype(np.uint8), cv2.COLOR_HLS2BGR).astype(np.float32)
            applied.append(("lightness", round(shift, 3)))
    out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if np.array_equal(out, image_bgr):  # e.g. sharpness ~1 on a smooth image: an exact copy teaches nothing new
        std = rng.uniform(*AUG_NOISE_STD)
        out = np.clip(np.rint(out + rng.normal(0.0, std, out.shape)), 0, 255).astype(np.uint8)
        applied.append(("noise", round(std, 3)))
    return out, applied


def augment_coco_dataset(ann_file, img_dir, out_dir, num_images=4000, include_originals=True, seed=0):
    """Write a COCO dataset of `num_images` images made from the one in (ann_file, img_dir).

    The originals are copied first (with include_originals), then augmented copies of the source images, cycling
    through them in a shuffled order, fill the rest. An augmented image keeps its source's annotations unchanged
    apart from new "id"/"image_id"; its image entry records "aug_source" (source file name) and "aug_ops".
    Output: ``out_dir/annotations.json`` and ``out_dir/images/``, written to a temporary folder and renamed.
    Returns:
        out_dir.
    """
    data = load_coco_json(ann_file)
    images = sorted(data["images"], key=lambda im: im["id"])
    if not images:
        raise ValueError("'{}' has no images to augment".format(ann_file))
    missing = [im["file_name"] for im in images if not os.path.isfile(os.path.join(img_dir, im["file_name"]))]
    if missing:
        raise FileNotFoundError("{} image(s) of '{}' are not in '{}', e.g. {}".format(
            len(missing), ann_file, img_dir, missing[:3]))
    if include_originals and num_images < len(images):
        raise ValueError("num_images={} is less than the {} original images; raise it or drop the originals".format(
            num_images, len(images)))
    anns_by_image = OrderedDict((im["id"], []) for im in images)
    for ann in data["annotations"]:
        if ann["image_id"] in anns_by_image:
            anns_by_image[ann["image_id"]].append(ann)
    rng = np.random.RandomState(seed)

    def write(tmp_dir):
        os.makedirs(os.path.join(tmp_dir, "images"))
        out_images, out_anns = [], []

        def add(source, file_name, extra):
            entry = dict(copy.deepcopy(source), id=len(out_images) + 1, file_name=file_name, **extra)
            out_images.append(entry)
            for ann in anns_by_image[source["id"]]:
                out_anns.append(dict(copy.deepcopy(ann), id=len(out_anns) + 1, image_id=entry["id"]))

        if include_originals:
            for image in images:
                shutil.copyfile(os.path.join(img_dir, image["file_name"]),
                                os.path.join(tmp_dir, "images", os.path.basename(image["file_name"])))
                add(image, os.path.basename(image["file_name"]), {})
        order = []
        while len(out_images) < num_images:
            if not order:
                order = list(rng.permutation(len(images)))
            source = images[order.pop()]
            pixels = cv2.imread(os.path.join(img_dir, source["file_name"]), cv2.IMREAD_COLOR)
            if pixels is None:
                raise ValueError("Cannot read image '{}'".format(os.path.join(img_dir, source["file_name"])))
            augmented, ops = augment_image(pixels, rng)
            stem = os.path.splitext(os.path.basename(source["file_name"]))[0]
            file_name = "{}_aug{:05d}.png".format(stem, len(out_images) + 1)  # PNG: no compression artefacts
            cv2.imwrite(os.path.join(tmp_dir, "images", file_name), augmented)
            add(source, file_name, {"aug_source": source["file_name"], "aug_ops": [list(op) for op in ops]})
        out = {k: copy.deepcopy(v) for k, v in data.items() if k not in ("images", "annotations")}
        out["images"], out["annotations"] = out_images, out_anns
        with open(os.path.join(tmp_dir, "annotations.json"), "w") as f:
            json.dump(out, f)

    if os.path.isdir(out_dir):
        raise FileExistsError("'{}' already exists; remove it or choose another output folder".format(out_dir))
    return write_atomically(out_dir, write)
