#!/usr/bin/env python
"""Draw a detector's masks, boxes, class names and scores on images; compare two detectors side by side.

One checkpoint: one overlay per image::

    python tools/demo.py --config-file configs/demo/nuclei_R_18_FPN.yaml \\
        --ckpt output/nuclei_R_18_FPN/model_final.pth \\
        --input datasets/nuclei/val/images --output-dir demo_out

Two checkpoints (baseline and GAN; the GAN model's own config with --config-file-2): panels side by side, like the
paper's figures, plus the ground truth as a third panel when --ann-file (the images' COCO JSON) is given::

    python tools/demo.py --config-file configs/demo/nuclei_R_18_FPN.yaml --ckpt base/model_final.pth \\
        --config-file-2 configs/demo/nuclei_R_18_FPN_gan.yaml --ckpt-2 gan/model_final.pth \\
        --input datasets/nuclei/val/images --ann-file datasets/nuclei/val/annotations.json --output-dir cmp

Ground-truth browser (to check a dataset conversion; no model)::

    python tools/demo.py --show-gt --ann-file A.json --image-dir IMAGES --output-dir gt_out
    python tools/demo.py --show-gt --dataset nuclei_dsb2018_val --output-dir gt_out

Every output is a PNG named after its input image. Panels are the image's size times --scale; a panel's title is
written in its top-left corner, so a comparison of k panels is exactly k panel widths wide. An image that cannot be
read is reported and skipped; the others are still drawn, and the exit status is 1 with the unreadable files listed.
"""
import argparse
import os
import sys

import cv2
import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(path):
    """The image files of ``path`` (a file, or a folder's images sorted by name)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError("--input '{}' is neither an image file nor a folder".format(path))
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError("Folder '{}' holds no images ({})".format(path, ", ".join(IMAGE_EXTENSIONS)))
    return files


def read_image(path):
    """The image as the model sees it in training and evaluation (``data.image_io.read_image``: EXIF orientation
    applied, 16-bit kept): PIL RGB for 8-bit files, float32 Tensor[3, H, W] for more bits."""
    from maskrcnn_benchmark.data.image_io import read_image as read_model_image

    return read_model_image(path)


def read_or_report(path, unreadable):
    """read_image(path), or None after printing why it failed and adding ``path`` to ``unreadable``: one bad file
    must not cost the overlays of the others."""
    try:
        return read_image(path)
    except (OSError, ValueError) as e:
        print("skipped: {}".format(e), file=sys.stderr)
        unreadable.append(path)
        return None


def titled(panel, title):
    """Write ``title`` in the top-left corner of ``panel`` (BGR uint8) on a dark strip; in place."""
    if not title:
        return panel
    scale = max(0.35, panel.shape[1] / 700.0)
    (text_w, text_h), baseline = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(panel, (0, 0), (text_w + 6, text_h + baseline + 6), (0, 0, 0), -1)
    cv2.putText(panel, title, (3, text_h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def side_by_side(panels, titles=None):
    """Concatenate equally sized BGR panels horizontally, each titled; width = len(panels) * panel width."""
    shapes = {p.shape for p in panels}
    if len(shapes) != 1:
        raise ValueError("Panels differ in size: {}".format(sorted(shapes)))
    titles = titles or [None] * len(panels)
    return np.concatenate([titled(p.copy(), t) for p, t in zip(panels, titles)], axis=1)


class GroundTruth:
    """COCO annotations of a folder of images, drawn with the predictor's overlay helpers.

    Args:
        ann_file (str): COCO instances JSON.
        image_dir (str | None): folder the JSON's file_names are relative to (for browsing).
    """

    def __init__(self, ann_file, image_dir=None):
        from maskrcnn_benchmark.data.datasets.coco import _load_coco_json

        self.coco = _load_coco_json(ann_file)
        self.ann_file = ann_file
        self.image_dir = image_dir
        category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
        self.by_basename = {os.path.basename(img["file_name"]): img for img in self.coco.dataset["images"]}

    def image_info(self, image_path):
        """The JSON's image entry for ``image_path`` (matched by file name), or None."""
        return self.by_basename.get(os.path.basename(image_path))

    def boxlist(self, image_info, scale=1.0):
        """BoxList (xyxy, original size times ``scale``) of the image's non-crowd annotations with "labels" and
        "mask" (uint8 Tensor[N, 1, H, W] of that size)."""
        from maskrcnn_benchmark.structures.bounding_box import BoxList

        width, height = int(image_info["width"]), int(image_info["height"])
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_info["id"]))
                if not a.get("iscrowd", 0)]
        boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        target = BoxList(boxes, (width, height), mode="xywh").convert("xyxy")
        target.add_field("labels", torch.as_tensor([self.label_of[a["category_id"]] for a in anns],
                                                   dtype=torch.int64))
        if anns and all("segmentation" in a for a in anns):
            masks = np.stack([self.coco.annToMask(a) for a in anns])
            target.add_field("mask", torch.from_numpy(masks)[:, None])
        return target if scale == 1 else scale_target(target, scale)


def draw_ground_truth(drawer, image, target):
    """The GT overlay: masks, boxes and class names (no scores) with the predictor's drawing helpers."""
    return drawer.draw(image, target)


def _scaled_size(width, height, scale):
    return int(round(width * scale)), int(round(height * scale))


def scale_image(image, scale):
    """BGR image resized by ``scale`` (bilinear); drawing then happens at the output resolution, so lines and
    text stay sharp."""
    if scale == 1:
        return image
    return cv2.resize(image, _scaled_size(image.shape[1], image.shape[0], scale), interpolation=cv2.INTER_LINEAR)


def scale_target(target, scale):
    """A BoxList with a pasted "mask" field (Tensor[N, 1, H, W]) resized by ``scale`` (masks: nearest)."""
    size = _scaled_size(target.size[0], target.size[1], scale)
    scaled = target.resize(size)
    if target.has_field("mask"):
        masks = target.get_field("mask")
        resized = [cv2.resize(m[0].numpy(), size, interpolation=cv2.INTER_NEAREST) for m in masks]
        scaled.add_field("mask", torch.from_numpy(np.stack(resized))[:, None] if resized else
                         torch.zeros(0, 1, size[1], size[0], dtype=masks.dtype))
    return scaled


def _load_cfg(config_file, opts):
    from maskrcnn_benchmark.config import load_config

    return load_config(config_file or None, opts or ())


def run_show_gt(args, unreadable=None):
    """Write one GT overlay per image of the dataset; returns the written paths (unreadable images are skipped
    and appended to ``unreadable``)."""
    unreadable = [] if unreadable is None else unreadable
    if args.dataset:
        from maskrcnn_benchmark.data.build import load_catalog, resolve_dataset

        cfg = _load_cfg(args.config_file, args.opts)  # PATHS_CATALOG and DATASETS.CUSTOM may name the dataset
        spec = resolve_dataset(args.dataset, load_catalog(cfg.PATHS_CATALOG), cfg.DATASETS.CUSTOM)
        ann_file, image_dir = spec["args"]["ann_file"], spec["args"]["root"]
    else:
        if not args.ann_file or not args.image_dir:
            raise SystemExit("--show-gt needs --dataset NAME, or --ann-file A.json and --image-dir FOLDER")
        ann_file, image_dir = args.ann_file, args.image_dir
    gt = GroundTruth(ann_file, image_dir)
    from maskrcnn_benchmark.data.image_io import to_display_bgr
    from maskrcnn_benchmark.engine.predictor import DetectionVisualizer, category_names_from_coco_json

    drawer = DetectionVisualizer(category_names_from_coco_json(ann_file), show_text=not args.no_text)
    cfg = _load_cfg(args.config_file, args.opts)  # INPUT.HIGH_BIT_DEPTH: show 16-bit images as the model sees them
    images = gt.coco.dataset["images"][: args.limit] if args.limit else gt.coco.dataset["images"]
    os.makedirs(args.output_dir, exist_ok=True)
    written = []
    for info in images:
        path = os.path.join(image_dir, info["file_name"])
        image = read_or_report(path, unreadable)
        if image is None:
            continue
        image = to_display_bgr(image, cfg.INPUT.HIGH_BIT_DEPTH, cfg.INPUT.HIGH_BIT_DEPTH_PERCENTILES)
        if image.shape[:2] != (int(info["height"]), int(info["width"])):
            raise ValueError("'{}' is {}x{} (w x h) but '{}' says {}x{}: the JSON does not describe this image".format(
                path, image.shape[1], image.shape[0], ann_file, info["width"], info["height"]))
        overlay = draw_ground_truth(drawer, scale_image(image, args.scale), gt.boxlist(info, args.scale))
        out = os.path.join(args.output_dir, os.path.splitext(os.path.basename(info["file_name"]))[0] + ".png")
        cv2.imwrite(out, titled(overlay, "ground truth ({} objects)".format(
            len(gt.coco.getAnnIds(imgIds=info["id"])))))
        written.append(out)
    return written


def run_models(args, unreadable=None):
    """Overlays of one model, or side-by-side panels of two (plus ground truth); returns the written paths
    (unreadable images are skipped and appended to ``unreadable``)."""
    unreadable = [] if unreadable is None else unreadable
    from maskrcnn_benchmark.engine.predictor import COCODemo

    cfg = _load_cfg(args.config_file, args.opts)
    demos = [COCODemo(cfg, confidence_threshold=args.confidence_threshold, min_image_size=args.min_image_size,
                      weight=args.ckpt, ann_file=args.ann_file)]
    if args.ckpt_2:
        cfg_2 = _load_cfg(args.config_file_2 or args.config_file, args.opts)
        demos.append(COCODemo(cfg_2, confidence_threshold=args.confidence_threshold,
                              min_image_size=args.min_image_size, weight=args.ckpt_2, ann_file=args.ann_file))
    for demo in demos:
        demo.show_text = not args.no_text
    titles = list(args.titles) if args.titles else (["Mask R-CNN", "with GAN"][: len(demos)])
    gt = GroundTruth(args.ann_file) if args.ann_file and len(demos) == 2 else None
    os.makedirs(args.output_dir, exist_ok=True)
    written = []
    for path in list_images(args.input):
        # The models predict on the image as it is; --scale only sets the panels' size, at which the detections
        # are drawn (boxes scaled, masks pasted at the panel's resolution).
        original = read_or_report(path, unreadable)
        if original is None:
            continue
        image = scale_image(demos[0].display_image(original), args.scale)
        panel_size = (image.shape[1], image.shape[0])
        panels = []
        for demo in demos:
            predictions = demo.select_top_predictions(demo.compute_prediction(original, output_size=panel_size))
            panels.append(demo.draw(image, predictions))
        panel_titles = titles[: len(demos)]
        if gt is not None:
            info = gt.image_info(path)
            if info is not None:
                panels.append(draw_ground_truth(demos[0], image, gt.boxlist(info, args.scale)))
                panel_titles = panel_titles + ["ground truth"]
        out = os.path.join(args.output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        result = side_by_side(panels, panel_titles) if len(panels) > 1 else panels[0]
        cv2.imwrite(out, result)
        written.append(out)
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Draw detections (or ground truth) on images")
    parser.add_argument("--config-file", default="", metavar="FILE", help="config of the (first) model")
    parser.add_argument("--ckpt", default=None, help="checkpoint of the (first) model (default: OUTPUT_DIR's last "
                                                     "checkpoint, else MODEL.WEIGHT)")
    parser.add_argument("--config-file-2", default="", metavar="FILE",
                        help="config of the second model (default: --config-file)")
    parser.add_argument("--ckpt-2", default=None, help="checkpoint of a second model: write side-by-side panels")
    parser.add_argument("--titles", nargs="+", default=None, help="panel titles of the models")
    parser.add_argument("--input", default=None, help="image file or folder of images")
    parser.add_argument("--output-dir", required=True, help="where the PNGs go")
    parser.add_argument("--ann-file", default=None,
                        help="COCO JSON of the images: category names, and the ground-truth panel with two models")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score drawn")
    parser.add_argument("--min-image-size", type=int, default=None,
                        help="shorter side the model sees (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--scale", type=float, default=1.0, help="output size relative to the input image")
    parser.add_argument("--no-text", action="store_true", help="draw masks and boxes only (no names, scores)")
    parser.add_argument("--show-gt", action="store_true", help="draw a dataset's ground truth instead")
    parser.add_argument("--image-dir", default=None, help="with --show-gt: folder of the --ann-file's images")
    parser.add_argument("--dataset", default=None, help="with --show-gt: a dataset name of the catalog")
    parser.add_argument("--limit", type=int, default=0, help="with --show-gt: draw at most this many images")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    unreadable = []
    if args.show_gt:
        written = run_show_gt(args, unreadable)
    else:
        if not args.input:
            raise SystemExit("--input (an image or a folder) is required unless --show-gt")
        written = run_models(args, unreadable)
    print("wrote {} image(s) to {}".format(len(written), args.output_dir))
    if unreadable:
        # after the others were written; the exit status says that some are missing
        raise SystemExit("could not read {} image(s): {}".format(len(unreadable), ", ".join(unreadable)))
    return written


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
