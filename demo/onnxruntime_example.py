#!/usr/bin/env python
"""Run a Mask R-CNN exported by tools/export.py with onnxruntime, on an image read as training read it.

    python demo/onnxruntime_example.py --model nuclei.onnx --config-file configs/demo/nuclei_R_18_FPN.yaml \
        --image image.png [--output overlay.png] [KEY VALUE ...]

--config-file is the config the model was trained and exported with (KEY VALUE pairs override it as in
tools/export.py). The image goes through the package's own reader and test-time preparation
(maskrcnn_benchmark.engine.export.export_input: read_image with its EXIF orientation and 16-bit handling,
INPUT.HIGH_BIT_DEPTH, the resize to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, BGR 0-255), so the graph sees the pixels
training and evaluation saw for the same file. Then the graph runs in onnxruntime and the rest is numpy: boxes scaled
back to the image, each MxM mask pasted into its box. Prints one line per detection (label, score, box in the image's
pixels, mask area) and, with --output, writes the image with the masks and boxes drawn.
"""
import argparse
import sys

import cv2
import numpy as np
import onnxruntime as ort

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.data.image_io import image_size, read_image, to_display_bgr
from maskrcnn_benchmark.engine.export import export_input


def paste_mask(mask, box, h, w, threshold=0.5):
    """mask float [M, M] probabilities inside a box (x0, y0, x1, y1) -> bool [h, w]: the mask padded by one cell,
    its box grown to match and truncated to integers, the mask bilinearly resized to it and thresholded (the rule
    of the package's paste_masks_in_image)."""
    m = mask.shape[0]
    mask, scale = np.pad(mask, 1), (m + 2.0) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) / 2 * scale, (box[3] - box[1]) / 2 * scale
    x0, y0, x1, y1 = (int(v) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    inside = cv2.resize(mask, (max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), bool)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = inside[ya - y0:yb - y0, xa - x0:xb - x0] > threshold
    return out


def detect(session, image, cfg, mask_threshold=0.5):
    """Detections of the exported model on one image, in the image's pixels.

    Args:
        session: onnxruntime InferenceSession of the .onnx file.
        image: an image file, or what ``maskrcnn_benchmark.data.image_io.read_image`` returned for it.
        cfg: the model's config (test size, INPUT.HIGH_BIT_DEPTH, INPUT.RESIZE_STYLE).
    Returns:
        boxes float32 [N, 4] (x0, y0, x1, y1), scores float32 [N], labels int64 [N] (1 = first category), masks
        bool [N, h, w].
    """
    if isinstance(image, str):
        image = read_image(image)
    w, h = image_size(image)
    model_input, (sx, sy) = export_input(image, cfg)
    boxes, scores, labels, masks = session.run(None, {"image": model_input.numpy()})
    boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    full_masks = np.stack([paste_mask(m[0], b, h, w, mask_threshold) for m, b in zip(masks, boxes)]) if len(boxes) \
        else np.zeros((0, h, w), bool)
    return boxes, scores, labels, full_masks


def draw(bgr, boxes, masks, score_labels):
    """The image with each mask tinted and each box outlined, in colours that cycle over detections."""
    out = bgr.copy()
    palette = np.array([[60, 180, 75], [230, 50, 25], [255, 225, 25], [0, 130, 200], [245, 130, 48]], np.uint8)
    for i, (box, mask) in enumerate(zip(boxes, masks)):
        colour = palette[i % len(palette)]
        out[mask] = (0.5 * out[mask] + 0.5 * colour).astype(np.uint8)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(c) for c in colour), 1)
        cv2.putText(out, score_labels[i], (x0, max(y0 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    tuple(int(c) for c in colour), 1)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the .onnx file written by tools/export.py")
    parser.add_argument("--config-file", required=True, help="the config the model was trained and exported with")
    parser.add_argument("--image", required=True, help="an image file (any format the package's reader reads)")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability that counts as inside")
    parser.add_argument("--output", help="write the image with the detections drawn here (PNG)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    args = parser.parse_args(argv)

    cfg = load_config(args.config_file, args.opts)
    try:
        image = read_image(args.image)
    except (OSError, ValueError) as e:  # the reader's messages name the file and the reason
        parser.error("--image {}: not an image file the package's reader can read: {}".format(args.image, e))
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    boxes, scores, labels, masks = detect(session, image, cfg, args.mask_threshold)
    width, height = image_size(image)
    print("{} detections in {} ({}x{})".format(len(boxes), args.image, width, height))
    for box, score, label, mask in zip(boxes, scores, labels, masks):
        print("label {} score {:.3f} box {:.1f} {:.1f} {:.1f} {:.1f} mask {} px".format(
            int(label), float(score), *(float(v) for v in box), int(mask.sum())))
    if args.output:
        # the picture the model saw (16-bit images mapped by INPUT.HIGH_BIT_DEPTH, then clipped for display)
        picture = to_display_bgr(image, cfg.INPUT.HIGH_BIT_DEPTH, cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)
        texts = ["{} {:.2f}".format(int(lab), float(s)) for lab, s in zip(labels, scores)]
        if not cv2.imwrite(args.output, draw(picture, boxes, masks, texts)):
            parser.error("--output {}: OpenCV could not write it (use a .png name in an existing folder)".format(
                args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
