"""Instance label maps -> COCO instances JSON with RLE masks (``tools/labelmap_to_coco.py``).

The format most microscopy tools write (CellPose, StarDist, QuPath, ilastik, Fiji's label images): one 8- or 16-bit
single-channel PNG or TIFF per image, 0 = background, each positive value one instance (its pixels need not be
connected). Image and label files are matched by their path relative to their folders, without the extension
(``--label-suffix _masks`` for names like CellPose's ``img_masks.png``). Every instance gets one category, or the
class its pixels carry in a second, semantic map per image (0 = no class; ids 1..K named by ``class_names``).

Nothing is written unless every pair is usable: an unmatched image or label file, sizes that differ (the image
measured as the project's reader sees it, EXIF orientation applied), a label map that is not one channel of
non-negative integers, or an instance without a class is refused, all problems listed by file.
"""
import os

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")


class LabelMapError(ValueError):
    """Unusable label-map input; the message lists every problem with its file."""


def _files_by_key(folder, extensions, suffix=""):
    """{relative path without extension (and without ``suffix``), '/'-separated: path} of a folder's files."""
    if not os.path.isdir(folder):
        raise LabelMapError("'{}' is not a folder".format(folder))
    found, problems = {}, []
    for dirpath, _, filenames in os.walk(folder):
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in extensions or name.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, stem), folder).replace(os.sep, "/")
            if suffix:
                if not rel.endswith(suffix):
                    continue
                rel = rel[: -len(suffix)]
            path = os.path.join(dirpath, name)
            if rel in found:
                problems.append("'{}' and '{}' have the same name without extension".format(found[rel], path))
            found[rel] = path
    if problems:
        raise LabelMapError("Ambiguous files:\n  " + "\n  ".join(problems))
    return found


def match_files(images_dir, labels_dir, label_suffix=""):
    """[(key, image path, label path)] sorted by key, every image with exactly one label file.

    Raises:
        LabelMapError naming the images without a label file and the label files without an image.
    """
    labels = _files_by_key(labels_dir, LABEL_EXTENSIONS, label_suffix)
    # label maps may sit next to their images (CellPose's img.png + img_masks.png): they are not images
    label_files = {os.path.abspath(p) for p in labels.values()}
    images = {k: p for k, p in _files_by_key(images_dir, IMAGE_EXTENSIONS).items()
              if os.path.abspath(p) not in label_files}
    problems = ["image '{}' has no label file '{}{}.(png|tif|tiff)' in '{}'".format(images[k], k, label_suffix,
                                                                                      labels_dir)
                for k in sorted(set(images) - set(labels))]
    problems += ["label file '{}' has no image '{}.*' in '{}'".format(labels[k], k, images_dir)
                 for k in sorted(set(labels) - set(images))]
    if problems:
        raise LabelMapError("{} unmatched file(s); nothing was written:\n  {}".format(len(problems),
                                                                                      "\n  ".join(problems)))
    if not images:
        raise LabelMapError("No images ({}) in '{}'".format(", ".join(IMAGE_EXTENSIONS), images_dir))
    return [(k, images[k], labels[k]) for k in sorted(images)]


def read_label_map(path):
    """The [H, W] int64 array of a single-channel label map (PNG: 1/8/16-bit grey or palette indices; TIFF).

    Raises:
        LabelMapError naming the file when it has several channels or pages, or values that are not
        non-negative integers.
    """
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            array = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as image:
                array = np.array(image)  # "P" gives the palette indices: the label values, not colours
    except Exception as e:
        raise LabelMapError("label file '{}' cannot be read: {}".format(path, e)) from e
    array = np.squeeze(array)
    if array.ndim != 2:
        raise LabelMapError("label file '{}' has shape {}: a label map has one channel (0 = background, 1, 2, ... "
                            "one value per instance)".format(path, list(array.shape)))
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise LabelMapError("label file '{}' holds non-integer values; label values are integers".format(path))
    elif array.dtype.kind not in "ui":
        raise LabelMapError("label file '{}' has pixels of type {}".format(path, array.dtype))
    if array.size and array.min() < 0:
        raise LabelMapError("label file '{}' has negative values ({}); 0 is background, instances are "
                            "1, 2, ...".format(path, int(array.min())))
    return array.astype(np.int64)


def instance_annotations(label_map, image_id, first_id=1, category_of=None):
    """COCO annotations (RLE masks) of the instances of one label map, in increasing label value.

    Args:
        label_map (ndarray[H, W] int): 0 background, each positive value one instance.
        image_id (int): the image's COCO id.
        first_id (int): id of the first annotation.
        category_of (callable or None): (mask bool [H, W], label value) -> category id; None: every instance is
            category 1.
    Returns:
        list of dicts with "id", "image_id", "category_id", "segmentation" (compressed RLE, counts as str),
        "area", "bbox" [x, y, w, h], "iscrowd" 0, and "label_value" (the instance's value in the map).
    """
    from pycocotools import mask as mask_utils

    annotations = []
    for value in np.unique(label_map):
        if value <= 0:
            continue
        mask = label_map == value
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        rle["counts"] = rle["counts"].decode("ascii")
        category_id = 1 if category_of is None else category_of(mask, int(value))
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id, "category_id": int(category_id),
            "segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "iscrowd": 0,
            "label_value": int(value),
        })
    return annotations


def _majority_class(class_map, where):
    def category_of(mask, value):
        classes, counts = np.unique(class_map[mask], return_counts=True)
        keep = classes > 0
        if not keep.any():
            raise LabelMapError("instance {} of '{}' has class 0 (no class) on all its pixels in the class "
                                "map".format(value, where))
        return int(classes[keep][np.argmax(counts[keep])])
    return category_of


def label_maps_to_coco(images_dir, labels_dir, category="object", label_suffix="", class_maps_dir=None,
                       class_names=None, class_suffix=""):
    """The COCO instances dict of a folder of images and their instance label maps.

    Args:
        images_dir (str): images (any format ``data.image_io.read_image`` reads), in sub-folders or not; the
            images' "file_name"s are relative to it (use it as the dataset's image folder).
        labels_dir (str): label maps, same relative paths and names (plus ``label_suffix``), PNG or TIFF.
        category (str): name of the one category when ``class_maps_dir`` is None.
        class_maps_dir (str or None): semantic maps (same names plus ``class_suffix``): the class id of each pixel,
            0 = none; an instance takes the class most of its pixels carry.
        class_names (sequence[str] or None): names of class ids 1..K (required with ``class_maps_dir``).
    Returns:
        dict with "images" ({"id", "file_name", "width", "height"}), "annotations" (see
        :func:`instance_annotations`), "categories" ({"id", "name"}), "info".
    Raises:
        LabelMapError listing every problem (one per line) when any file is unusable.
    """
    from maskrcnn_benchmark.data.image_io import read_image_size

    if class_maps_dir is not None and not class_names:
        raise LabelMapError("class maps given without class names: name the class ids 1, 2, ... (--class-names)")
    if class_maps_dir is None and class_names:
        raise LabelMapError("class names given without class maps (--class-maps DIR); with one category use "
                            "--category NAME")
    pairs = match_files(images_dir, labels_dir, label_suffix)
    class_maps = ({key: path for key, _, path in match_files(images_dir, class_maps_dir, class_suffix)}
                  if class_maps_dir else None)
    names = list(class_names) if class_maps_dir else [category]
    images, annotations, problems = [], [], []
    for image_id, (key, image_path, label_path) in enumerate(pairs, start=1):
        try:
            width, height = read_image_size(image_path)
            label_map = read_label_map(label_path)
            _check_size(label_map, label_path, image_path, width, height)
            category_of = None
            if class_maps is not None:
                class_path = class_maps[key]
                class_map = read_label_map(class_path)
                _check_size(class_map, class_path, image_path, width, height)
                if class_map.max() > len(names):
                    raise LabelMapError("class map '{}' has class id {} but {} class names are given".format(
                        class_path, int(class_map.max()), len(names)))
                category_of = _majority_class(class_map, label_path)
            annotations += instance_annotations(label_map, image_id, len(annotations) + 1, category_of)
        except (LabelMapError, OSError, ValueError) as e:
            problems.append(str(e))
            continue
        file_name = os.path.relpath(image_path, images_dir).replace(os.sep, "/")
        images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
    if problems:
        raise LabelMapError("{} unusable pair(s); nothing was written:\n  {}".format(len(problems),
                                                                                     "\n  ".join(problems)))
    categories = [{"id": k, "name": str(name), "supercategory": ""} for k, name in enumerate(names, start=1)]
    info = {"description": "instance label maps of '{}' converted by tools/labelmap_to_coco.py".format(labels_dir)}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _check_size(label_map, label_path, image_path, width, height):
    if label_map.shape != (height, width):
        raise LabelMapError("label file '{}' is {}x{} but its image '{}' is {}x{} (width x height, after the "
                            "image's EXIF orientation)".format(label_path, label_map.shape[1], label_map.shape[0],
                                                              image_path, width, height))


def convert_label_maps(output, images_dir, labels_dir, **kwargs):
    """Write :func:`label_maps_to_coco` of the folders to ``output`` (atomically); returns the dict written."""
    from maskrcnn_benchmark.utils.io import save_json

    coco = label_maps_to_coco(images_dir, labels_dir, **kwargs)
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    save_json(coco, output)
    return coco
