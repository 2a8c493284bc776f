"""Predict a folder of images into files other tools read (tools/predict.py).

For an image or a folder (searched recursively) it writes into the output folder:

- ``predictions.json``: a COCO file. ``images`` (``id``, ``file_name`` relative to the input folder, ``width``,
  ``height``), ``categories`` (the model's, as stored with its checkpoint), ``annotations`` (``id``, ``image_id``,
  ``category_id``, ``score``, ``bbox`` [x, y, w, h], ``segmentation`` as compressed RLE with ``counts`` a string,
  ``area``, ``iscrowd`` 0; with ``polygons`` the segmentation is the masks' outer contours instead, for tools
  that import polygons only, e.g. Label Studio). An image's annotations are in its label map's order: the i-th is
  label i.
- ``instances/<relative path without extension>.png``: 16-bit label map per image, 0 background, i the i-th
  detection (highest score first; where masks overlap the higher score is on top).
- with ``overlays``: ``overlays/<relative path without extension>.png``, the detections drawn as tools/demo.py does
  (class names and scores only where an image has at most OVERLAY_TEXT_MAX_DETECTIONS detections).

Only detections scoring at least ``confidence`` are written. Every file is written atomically. An image that
cannot be read is reported by name and skipped; the summary counts them.
"""
import logging
import os
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

from maskrcnn_benchmark.data.image_io import read_image
from maskrcnn_benchmark.engine.tiling import (
    Detections,
    detect_tiled,
    detections_from_boxlist,
    image_hw,
    label_map,
    tile_starts,
    window_to_polygons,
    window_to_rle,
)
from maskrcnn_benchmark.utils.io import atomic_write, save_json

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Overlays write class names and scores only for images with at most this many detections: the demo's text grows
# with the image, and on a slide with thousands of objects it would cover everything.
OVERLAY_TEXT_MAX_DETECTIONS = 100

logger = logging.getLogger(__name__)


def list_image_files(path):
    """[(file path, path relative to ``path`` with '/' separators)] of the image files under ``path`` (a folder,
    searched recursively, sorted), or [(path, its base name)] for one file."""
    if os.path.isfile(path):
        return [(path, os.path.basename(path))]
    if not os.path.isdir(path):
        raise FileNotFoundError("--input '{}' is neither an image file nor a folder".format(path))
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                full = os.path.join(root, name)
                found.append((full, os.path.relpath(full, path).replace(os.sep, "/")))
    if not found:
        raise FileNotFoundError("Folder '{}' holds no images ({}), also in its sub-folders".format(
            path, ", ".join(IMAGE_EXTENSIONS)))
    stems = {}
    for full, rel in found:
        stem = os.path.splitext(rel)[0]
        if stem in stems:
            raise ValueError("'{}' and '{}' would both write instances/{}.png; rename one of them".format(
                stems[stem], full, stem))
        stems[stem] = full
    return found


def predict_detections(demo, image, tile=None, overlap=64, overlap_thresh=0.5, progress=False):
    """Detections of one image (as data.image_io.read_image returns it, or a BGR uint8 array), highest score first:
    the whole image through ``demo`` (COCODemo), or with ``tile`` overlapping tiles of it merged (engine/tiling.py).
    INPUT.HIGH_BIT_DEPTH is applied to the whole image before it is cut, so "percentiles" are the image's, not
    each tile's."""
    image = demo.map_high_bit_depth(image)

    def predict(part):
        return detections_from_boxlist(demo.predict_raw(part, mapped=True)).sorted_by_score()

    if tile:
        return detect_tiled(predict, image, tile, overlap, overlap_thresh, progress)
    return predict(image)


def coco_annotations(detections, image_id, category_records, first_id, height, width, polygons=False):
    """COCO result records of ``detections`` (in their order) with ids from ``first_id`` on; ``segmentation`` is
    compressed RLE (exact), or with ``polygons`` the masks' outer contours (approximate, for polygon-only tools)."""
    # xywh as the COCO evaluation converts boxes (BoxList.convert), so the bbox AP is tools/test_net.py's
    xywh = _boxlist(detections, height, width).convert("xywh").bbox.tolist()
    records = []
    for k in range(len(detections)):
        record = {"id": first_id + k, "image_id": image_id,
                  "category_id": int(category_records[int(detections.labels[k]) - 1]["id"]),
                  "score": float(detections.scores[k]), "bbox": xywh[k], "iscrowd": 0}
        if detections.masks is not None:
            record["segmentation"] = (window_to_polygons(detections.masks[k]) if polygons
                                      else window_to_rle(detections.masks[k], height, width))
            record["area"] = int(np.count_nonzero(detections.masks[k][2]))
        else:
            record["area"] = float(xywh[k][2] * xywh[k][3])
        records.append(record)
    return records


def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ext = os.path.splitext(path)[1]

    def write(tmp_path):
        ok, encoded = cv2.imencode(ext, array)
        if not ok:
            raise OSError("Could not encode '{}'".format(path))
        with open(tmp_path, "wb") as f:
            f.write(encoded.tobytes())

    atomic_write(path, write)


def _boxlist(detections, height, width):
    """Boxes, scores and labels as a BoxList (masks stay windows)."""
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    boxes = BoxList(torch.from_numpy(detections.boxes).reshape(-1, 4), (width, height), mode="xyxy")
    boxes.add_field("scores", torch.from_numpy(detections.scores))
    boxes.add_field("labels", torch.from_numpy(detections.labels))
    return boxes


def predict_files(demo, input_path, output_dir, tile=None, overlap=64, confidence=0.5, overlays=False,
                  overlap_thresh=0.5, reader=read_image, progress=True, polygons=False):
    """Predict every image under ``input_path`` and write the files of the module docstring into ``output_dir``.

    Args:
        demo (COCODemo): the loaded model (its TEST.BBOX_AUG and TEST.DTYPE apply) and its drawing helpers.
        tile, overlap (int | None, int): tile side and overlap in px; None: whole images.
        confidence (float): minimum score written.
        overlays (bool): also write the drawn detections.
        overlap_thresh (float): with tiles, IoS above which detections of two tiles are one object.
        reader (callable): path -> image (data.image_io.read_image: the reader of training and evaluation;
            raises OSError/ValueError naming a bad file).
        polygons (bool): write segmentations as polygons instead of RLE (see coco_annotations).
    Returns:
        dict: "images" (number predicted), "detections" (written), "unreadable" (list of paths skipped).
    """
    if tile:
        tile_starts(tile, tile, overlap)  # refuses a bad --tile / --tile-overlap before any work
    files = list_image_files(input_path)
    os.makedirs(output_dir, exist_ok=True)
    images, annotations, unreadable = [], [], []
    for path, rel in tqdm(files, desc="predict", unit="image", disable=not progress):
        try:
            image = reader(path)
        except (OSError, ValueError) as e:
            print("skipped: {}".format(e), file=sys.stderr)
            unreadable.append(path)
            continue
        height, width = image_hw(image)
        detections = predict_detections(demo, image, tile, overlap, overlap_thresh, progress)
        detections = detections.select(np.flatnonzero(detections.scores >= confidence))
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": rel, "width": int(width), "height": int(height)})
        annotations += coco_annotations(detections, image_id, demo.category_records, len(annotations) + 1,
                                        height, width, polygons)
        stem = os.path.splitext(rel)[0]
        if detections.masks is not None:
            _write_png(os.path.join(output_dir, "instances", stem + ".png"), label_map(detections, height, width))
        if overlays:
            drawn = demo.draw(demo.display_image(image), _boxlist(detections, height, width),
                              mask_windows=detections.masks,
                              show_text=demo.show_text and len(detections) <= OVERLAY_TEXT_MAX_DETECTIONS)
            _write_png(os.path.join(output_dir, "overlays", stem + ".png"), drawn)
    categories = [{"id": int(c["id"]), "name": c["name"], "supercategory": c.get("supercategory", "")}
                  for c in demo.category_records]
    save_json({"info": {"description": "predictions of tools/predict.py"}, "images": images,
               "annotations": annotations, "categories": categories}, os.path.join(output_dir, "predictions.json"))
    return {"images": len(images), "detections": len(annotations), "unreadable": unreadable}


__all__ = ["Detections", "IMAGE_EXTENSIONS", "coco_annotations", "list_image_files", "predict_detections",
           "predict_files"]
