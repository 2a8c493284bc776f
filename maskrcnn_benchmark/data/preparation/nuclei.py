"""Real nuclei data without download: tiles of the 2018 Data Science Bowl image shipped inside the stardist package.

stardist/data/images/img2d.tif is a 512x512 uint16 fluorescence image and mask2d.tif its label map (0 = background,
k > 0 one nucleus; 125 nuclei, ids not contiguous). The image is cut into four non-overlapping 256x256 quadrants:
three for training, the bottom-right one for validation. A nucleus cut by a tile border is clipped to the tile;
clipped fragments smaller than MIN_FRAGMENT_AREA px are dropped (too small to learn or score). Instances are stored
as RLE of the label map (exact pixels), images as 8-bit RGB PNGs contrast-stretched with one stretch for all tiles.

Layout: <root>/{train,val}/annotations.json and <root>/{train,val}/images/*.png, each split written atomically.
"""
import importlib.util
import json
import logging
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ._atomic import is_complete, write_atomically

TILE_SIZE = 256
# (row, col) of each tile's top-left corner in the 512x512 image
TILES = {"train": [(0, 0), (0, 256), (256, 0)], "val": [(256, 256)]}
MIN_FRAGMENT_AREA = 10
CATEGORIES = [{"id": 1, "name": "nucleus", "supercategory": "cell"}]
INSTALL_HINT = "pip install --no-deps stardist==0.9.2"


def stardist_data_files():
    """Paths of (img2d.tif, mask2d.tif) inside the installed stardist package, without importing it.

    stardist's __init__ needs scikit-image and TensorFlow-era dependencies we do not install, so only its file
    location is looked up.
    """
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        raise ImportError(
            "The nuclei demo data ships inside the 'stardist' package, which is not installed. "
            "Install it with: {}".format(INSTALL_HINT)
        )
    folder = os.path.join(os.path.dirname(spec.origin), "data", "images")
    paths = (os.path.join(folder, "img2d.tif"), os.path.join(folder, "mask2d.tif"))
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                "stardist is installed but its sample file {} is missing; reinstall it with: {}".format(
                    path, INSTALL_HINT
                )
            )
    return paths


def load_image_and_labels():
    """Return (image HxW uint16, label map HxW int) read with tifffile."""
    import tifffile

    image_path, mask_path = stardist_data_files()
    return tifffile.imread(image_path), tifffile.imread(mask_path).astype(np.int64)


def contrast_stretch(image, low_percentile=1.0, high_percentile=99.8):
    """Map the [low, high] percentile range of `image` linearly to 0-255 uint8 (clipping outside)."""
    low, high = np.percentile(image, [low_percentile, high_percentile])
    scaled = (image.astype(np.float64) - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def tile_instances(labels_tile):
    """Binary masks (list of HxW bool) of the nuclei in a tile, in increasing label order, small fragments dropped."""
    ids, counts = np.unique(labels_tile[labels_tile > 0], return_counts=True)
    return [labels_tile == k for k, c in zip(ids, counts) if c >= MIN_FRAGMENT_AREA]


def _write_split(out_dir, split, image8, labels):
    os.makedirs(os.path.join(out_dir, "images"))
    images, annotations = [], []
    for index, (row, col) in enumerate(TILES[split]):
        pixels = image8[row:row + TILE_SIZE, col:col + TILE_SIZE]
        file_name = "tile_r{}_c{}.png".format(row, col)
        cv2.imwrite(os.path.join(out_dir, "images", file_name), np.repeat(pixels[:, :, None], 3, axis=2))
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "width": TILE_SIZE, "height": TILE_SIZE,
                       "tile_origin_yx": [row, col]})
        for mask in tile_instances(labels[row:row + TILE_SIZE, col:col + TILE_SIZE]):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    dataset = {"info": {"description": "stardist img2d.tif, {} tiles".format(split)},
               "images": images, "annotations": annotations, "categories": CATEGORIES}
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump(dataset, f, sort_keys=True)


def generate_nuclei_coco(root):
    """Write the train and val splits under `root` (skipping complete ones); return {split: split_dir}."""
    image, labels = load_image_and_labels()
    image8 = contrast_stretch(image)
    out = {}
    for split in TILES:
        split_dir = os.path.join(root, split)
        if not is_complete(split_dir):
            write_atomically(split_dir, lambda tmp, s=split: _write_split(tmp, s, image8, labels))
        out[split] = split_dir
    return out


def ensure_dataset(split_dir):
    """Generate the nuclei splits next to `split_dir` (…/nuclei/train or …/nuclei/val) if missing."""
    split = os.path.basename(os.path.normpath(split_dir))
    if split not in TILES:
        raise ValueError("Unknown nuclei split folder '{}': expected one of {}".format(split_dir, sorted(TILES)))
    if not is_complete(split_dir):
        logging.getLogger(__name__).info("Writing nuclei tiles from the stardist sample image to %s", split_dir)
        generate_nuclei_coco(os.path.dirname(os.path.normpath(split_dir)))
