"""Cityscapes fine instances: conversion of the official gtFine tree to COCO JSON, and the dataset class.

On-disk layout read (the official archives gtFine_trainvaltest.zip + leftImg8bit_trainvaltest.zip, unpacked into
one root):

    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   uint16, id = classId*1000 + k
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json     imgHeight / imgWidth / objects
    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     the RGB image

Instance masks are taken from the instance-id image (the exact pixels cityscapesscripts' evaluator scores against).
The classes are the labels that cityscapesscripts.helpers.labels marks `hasInstances` (person, rider, car, truck,
bus, caravan, trailer, train, motorcycle, bicycle); the COCO category id of each is its Cityscapes label id, so
predictions map back to the evaluator's label ids without a table. Pixels of an instance class without an instance
number (id < 1000, e.g. a "car group") become crowd regions (iscrowd=1): never training targets, ignored by COCOeval.
"""
import glob
import json
import os
import re

import numpy as np
from PIL import Image

from maskrcnn_benchmark.data.image_io import read_image_size
from maskrcnn_benchmark.utils.io import save_json

from .coco import COCODataset

_FRAME_RE = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)_gtFine_instanceIds\.png$")
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
POLYGONS_SUFFIX = "_gtFine_polygons.json"
IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesFormatError(ValueError):
    """The folder or some of its files are not in Cityscapes' on-disk format; the message lists each problem."""


def cityscapes_instance_labels():
    """The Cityscapes labels that have instances, in label-id order (list of cityscapesscripts Label tuples)."""
    from cityscapesscripts.helpers.labels import labels

    return [label for label in labels if label.hasInstances and label.id >= 0]


def _frame_stem(instance_ids_path):
    return os.path.basename(instance_ids_path)[: -len(INSTANCE_IDS_SUFFIX)]


def find_frames(cityscapes_root, split):
    """List the frames of `split`: dicts with "city", "stem", "instance_ids", "polygons", "image" (absolute paths).

    Raises:
        CityscapesFormatError naming the folder or file that was expected and where, when the tree is not there.
    """
    root = os.path.abspath(cityscapes_root)
    example = os.path.join(root, "gtFine", split, "<city>", "<city>_<seq>_<frame>" + INSTANCE_IDS_SUFFIX)
    if not os.path.isdir(root):
        raise CityscapesFormatError("Cityscapes root '{}' does not exist; expected a folder holding gtFine/ and "
                                    "leftImg8bit/ (e.g. {})".format(root, example))
    gt_split = os.path.join(root, "gtFine", split)
    img_split = os.path.join(root, "leftImg8bit", split)
    for folder, archive in ((gt_split, "gtFine_trainvaltest.zip"), (img_split, "leftImg8bit_trainvaltest.zip")):
        if not os.path.isdir(folder):
            raise CityscapesFormatError(
                "Not a Cityscapes tree: folder '{}' is missing (unpack {} into '{}'; files are expected like "
                "{})".format(folder, archive, root, example))
    files = sorted(glob.glob(os.path.join(gt_split, "*", "*" + INSTANCE_IDS_SUFFIX)))
    if not files:
        raise CityscapesFormatError(
            "No instance-id images in '{}': expected files like {}".format(gt_split, example))
    frames = []
    for path in files:
        city = os.path.basename(os.path.dirname(path))
        stem = _frame_stem(path)
        frames.append({
            "city": city,
            "stem": stem,
            "instance_ids": path,
            "polygons": os.path.join(os.path.dirname(path), stem + POLYGONS_SUFFIX),
            "image": os.path.join(img_split, city, stem + IMAGE_SUFFIX),
        })
    return frames


def read_instance_ids(path):
    """Read a *_gtFine_instanceIds.png as an int64 array [H, W]; raise ValueError saying what is wrong with it."""
    if os.path.getsize(path) == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except (OSError, ValueError) as e:
        raise ValueError("cannot be read as a PNG image ({})".format(e)) from e
    if mode not in ("I;16", "I;16B", "I"):
        raise ValueError("has PIL mode '{}', expected a 16-bit instance-id PNG (mode 'I;16'); is it a *_labelIds.png "
                         "or *_color.png renamed?".format(mode))
    if array.ndim != 2 or array.size == 0:
        raise ValueError("has shape {}, expected a non-empty [H, W] image".format(array.shape))
    return array.astype(np.int64)


def check_instance_ids(array):
    """Return the ids in `array` that do not fit the Cityscapes label set (sorted list; empty when valid).

    Valid: a label id (0..33) for pixels without instances, or classId*1000 + k with classId a label that
    has instances.
    """
    from cityscapesscripts.helpers.labels import id2label

    instance_class_ids = {label.id for label in cityscapes_instance_labels()}
    bad = []
    for value in np.unique(array).tolist():
        if value < 1000:
            if value not in id2label or value < 0:
                bad.append(value)
        elif value // 1000 not in instance_class_ids:
            bad.append(value)
    return bad


def instances_from_ids(array):
    """Split an instance-id image into instance masks.

    Args:
        array: int array [H, W] of Cityscapes instance ids.
    Returns:
        list of (label_id, instance_id, mask bool [H, W], iscrowd) for every instance of an instance class
        (iscrowd 1 for group regions without an instance number), in increasing instance-id order.
    """
    instance_class_ids = {label.id for label in cityscapes_instance_labels()}
    out = []
    for value in np.unique(array).tolist():
        label_id = value // 1000 if value >= 1000 else value
        if label_id not in instance_class_ids:
            continue
        out.append((label_id, value, array == value, 0 if value >= 1000 else 1))
    return out


def _mask_to_polygons(mask):
    """Outer contours of a binary mask as COCO polygons (flat [x0, y0, x1, y1, ...], >= 3 points each)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) >= 3:
            polygons.append([float(v) for v in contour.reshape(-1).tolist()])
    return polygons


def _check_frame(frame):
    """Read one frame's files and check them against each other; return (array, (w, h)) or raise ValueError."""
    if not os.path.isfile(frame["polygons"]):
        raise ValueError("its polygons file '{}' is missing".format(frame["polygons"]))
    if not os.path.isfile(frame["image"]):
        raise ValueError("its image '{}' is missing (expected under leftImg8bit/)".format(frame["image"]))
    array = read_instance_ids(frame["instance_ids"])
    bad = check_instance_ids(array)
    if bad:
        raise ValueError("has ids {} that are neither a Cityscapes label id nor classId*1000+k of an instance "
                         "class".format(bad[:10]))
    height, width = array.shape
    try:
        with open(frame["polygons"]) as f:
            polygons = json.load(f)
        poly_size = (int(polygons["imgWidth"]), int(polygons["imgHeight"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError("polygons file '{}' is not Cityscapes JSON with imgWidth/imgHeight ({})".format(
            frame["polygons"], e)) from e
    if poly_size != (width, height):
        raise ValueError("is {}x{} but '{}' says {}x{}".format(width, height, frame["polygons"], *poly_size))
    if os.path.getsize(frame["image"]) == 0:
        raise ValueError("its image '{}' is an empty file".format(frame["image"]))
    try:
        image_size = read_image_size(frame["image"])  # the size the model will see (EXIF orientation applied)
    except (OSError, ValueError) as e:
        raise ValueError("its image '{}' cannot be read ({})".format(frame["image"], e)) from e
    if image_size != (width, height):
        raise ValueError("is {}x{} but its image '{}' is {}x{}".format(width, height, frame["image"], *image_size))
    return array, (width, height)


def cityscapes_to_coco(cityscapes_root, split, mask_format="rle"):
    """Build the COCO instances dict of one split of the gtFine tree.

    Images' "file_name" is "<city>/<stem>_leftImg8bit.png" (relative to leftImg8bit/<split>) and "gt_file" is
    "<city>/<stem>_gtFine_instanceIds.png" (relative to gtFine/<split>). Boxes are the masks' pixel extents
    [x, y, w, h] with w = x1 - x0 + 1.

    Args:
        mask_format: "rle" (exact pixels) or "poly" (outer contours, smaller files, holes filled).
    Raises:
        CityscapesFormatError listing every bad file (all frames are checked before anything is returned).
    """
    import pycocotools.mask as mask_util

    if mask_format not in ("rle", "poly"):
        raise ValueError("mask_format must be 'rle' or 'poly', got {!r}".format(mask_format))
    frames = find_frames(cityscapes_root, split)
    categories = [{"id": label.id, "name": label.name, "supercategory": label.category}
                  for label in cityscapes_instance_labels()]
    images, annotations, errors = [], [], []
    for image_id, frame in enumerate(frames, start=1):
        try:
            array, (width, height) = _check_frame(frame)
        except ValueError as e:
            errors.append("{}: {}".format(frame["instance_ids"], e))
            continue
        images.append({
            "id": image_id, "width": width, "height": height,
            "file_name": "{}/{}{}".format(frame["city"], frame["stem"], IMAGE_SUFFIX),
            "gt_file": "{}/{}{}".format(frame["city"], frame["stem"], INSTANCE_IDS_SUFFIX),
        })
        for label_id, instance_id, mask, iscrowd in instances_from_ids(array):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            bbox = [float(v) for v in mask_util.toBbox(rle).tolist()]
            area = float(mask_util.area(rle))
            if mask_format == "poly" and not iscrowd:
                segmentation = _mask_to_polygons(mask)
                if not segmentation:  # thinner than a polygon: keep the exact pixels
                    segmentation = dict(rle, counts=rle["counts"].decode("ascii"))
            else:
                segmentation = dict(rle, counts=rle["counts"].decode("ascii"))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label_id,
                "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": iscrowd,
                "cityscapes_instance_id": instance_id,
            })
    if errors:
        raise CityscapesFormatError("{} of {} frames of '{}' ({}) are not valid Cityscapes ground truth; nothing "
                                    "was written:\n  {}".format(len(errors), len(frames), cityscapes_root, split,
                                                                "\n  ".join(errors)))
    return {"info": {"description": "Cityscapes gtFine {} instances".format(split), "split": split,
                     "mask_format": mask_format},
            "images": images, "annotations": annotations, "categories": categories}


def convert_cityscapes_split(cityscapes_root, split, out_file, mask_format="rle"):
    """Convert one split and write it to `out_file` (temporary name, then rename: never a half-written file).

    Returns:
        dict with the number of "images", "instances" (non-crowd) and "crowd" regions written.
    """
    data = cityscapes_to_coco(cityscapes_root, split, mask_format=mask_format)
    out_file = os.path.abspath(out_file)
    os.makedirs(os.path.dirname(out_file), exist_ok=True)
    save_json(data, out_file)
    crowd = sum(a["iscrowd"] for a in data["annotations"])
    return {"images": len(data["images"]), "instances": len(data["annotations"]) - crowd, "crowd": crowd}


class CityscapesDataset(COCODataset):
    """A converted Cityscapes split: a COCODataset that also knows the gtFine folder of its split, so the official
    instance-level evaluation (cityscapesscripts) can run next to COCO AP.

    Args:
        ann_file (str): JSON written by tools/cityscapes/convert_cityscapes_to_coco.py.
        root (str): leftImg8bit/<split> folder.
        gt_dir (str): gtFine/<split> folder (the *_gtFine_instanceIds.png files the evaluator reads).
        remove_images_without_annotations (bool): drop images without instances (training).
        transforms (callable or None): f(image, target) -> (image, target).
    """

    def __init__(self, ann_file, root, gt_dir, remove_images_without_annotations=False, transforms=None):
        super(CityscapesDataset, self).__init__(ann_file, root, remove_images_without_annotations, transforms)
        self.gt_dir = gt_dir
        cityscapes_ids = {label.id: label.name for label in cityscapes_instance_labels()}
        unknown = [(cid, name) for cid, name in self.categories.items() if cityscapes_ids.get(cid) != name]
        if unknown:
            raise ValueError(
                "'{}' has categories {} that are not Cityscapes instance labels (id, name) {}; convert the data with "
                "tools/cityscapes/convert_cityscapes_to_coco.py".format(
                    ann_file, unknown, sorted(cityscapes_ids.items())))

    def gt_instance_file(self, index):
        """Absolute path of the *_gtFine_instanceIds.png of dataset index `index`."""
        info = self.coco.imgs[self.id_to_img_map[index]]
        rel = info.get("gt_file")
        if rel is None:  # written by another converter: derive it from the image name
            name = os.path.basename(info["file_name"]).replace(IMAGE_SUFFIX, INSTANCE_IDS_SUFFIX)
            # Detectron's converter flattens the city folders; city names never contain "_".
            rel = os.path.join(name.split("_")[0], name)
        return os.path.join(self.gt_dir, rel)
