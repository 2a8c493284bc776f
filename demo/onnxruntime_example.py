#!/usr/bin/env python
"""Run a Mask R-CNN exported by tools/export.py with onnxruntime, without this package or torch.

    python demo/onnxruntime_example.py --model nuclei.onnx --image image.png \
        --min-size 352 --max-size 853 [--output overlay.png]

--min-size / --max-size are the config's INPUT.MIN_SIZE_TEST / INPUT.MAX_SIZE_TEST (352 / 853 for the demo). Prints
one line per detection (label, score, box in the image's pixels, mask area) and, with --output, writes the image
with the masks and boxes drawn. The steps are those of docs/deployment.md: resize as in training (PIL bilinear),
run the graph, scale the boxes back to the image, paste each 28x28 mask into its box in numpy.
"""
import argparse
import sys

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image


def resize_for_model(bgr, min_size, max_size):
    """BGR uint8 [h, w, 3] -> (the model's input float32 [3, H, W] BGR 0-255, the (x, y) factors from the input's
    pixels back to the image's): the shorter side to min_size unless the longer would exceed max_size."""
    h, w = bgr.shape[:2]
    size = min_size
    if max(h, w) / min(h, w) * size > max_size:
        size = int(round(max_size * min(h, w) / max(h, w)))
    if (w <= h and w == size) or (h <= w and h == size):
        out_h, out_w = h, w
    else:
        out_h, out_w = (int(size * h / w), size) if w < h else (size, int(size * w / h))
    rgb = Image.fromarray(bgr[:, :, ::-1]).resize((out_w, out_h), Image.BILINEAR)  # as the training transform
    return np.asarray(rgb)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32), (w / out_w, h / out_h)


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


def detect(session, bgr, min_size, max_size, mask_threshold=0.5):
    """Detections of the exported model on one BGR uint8 [h, w, 3] image, in the image's pixels:
    boxes float32 [N, 4] (x0, y0, x1, y1), scores float32 [N], labels int64 [N] (1 = first category), masks bool
    [N, h, w]."""
    image, (sx, sy) = resize_for_model(bgr, min_size, max_size)
    boxes, scores, labels, masks = session.run(None, {"image": image})
    boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    h, w = bgr.shape[:2]
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
    parser.add_argument("--image", required=True, help="an image file OpenCV reads")
    parser.add_argument("--min-size", type=int, required=True, help="the config's INPUT.MIN_SIZE_TEST")
    parser.add_argument("--max-size", type=int, required=True, help="the config's INPUT.MAX_SIZE_TEST")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability that counts as inside")
    parser.add_argument("--output", help="write the image with the detections drawn here (PNG)")
    args = parser.parse_args(argv)

    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        parser.error("--image {}: not an image file OpenCV can read".format(args.image))
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    boxes, scores, labels, masks = detect(session, bgr, args.min_size, args.max_size, args.mask_threshold)
    print("{} detections in {} ({}x{})".format(len(boxes), args.image, bgr.shape[1], bgr.shape[0]))
    for box, score, label, mask in zip(boxes, scores, labels, masks):
        print("label {} score {:.3f} box {:.1f} {:.1f} {:.1f} {:.1f} mask {} px".format(
            int(label), float(score), *(float(v) for v in box), int(mask.sum())))
    if args.output:
        texts = ["{} {:.2f}".format(int(lab), float(s)) for lab, s in zip(labels, scores)]
        if not cv2.imwrite(args.output, draw(bgr, boxes, masks, texts)):
            parser.error("--output {}: OpenCV could not write it (use a .png name in an existing folder)".format(
                args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
