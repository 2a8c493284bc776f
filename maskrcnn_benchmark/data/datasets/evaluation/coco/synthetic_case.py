"""Seeded synthetic COCO ground truth and mask detections, to compare and time the COCO evaluators.

Used by tests/evaluation/test_coco_evaluators.py (a small case: both evaluators must agree) and by
tools/benchmark_eval.py (COCO-sized images: seconds per 1000 images). The case holds what real evaluations meet:
crowd regions, images without ground truth, images without detections, objects cut by the image border, several
categories (one without ground truth), detections that match, that are off by a few pixels and that are false.
"""
import numpy as np


def _ellipse_mask(height, width, cx, cy, ax, ay, angle):
    import cv2

    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (int(round(cx)), int(round(cy))), (max(int(round(ax)), 1), max(int(round(ay)), 1)),
                float(angle), 0.0, 360.0, 1, -1)
    return mask


def _encode(mask):
    import pycocotools.mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def synthetic_coco_case(num_images=10, width=160, height=120, detections_per_image=30, objects_per_image=8,
                        num_categories=3, seed=0):
    """Ground truth and detections of ``num_images`` images of ``width`` x ``height`` pixels.

    Every ground-truth object is an ellipse (RLE) of one of ``num_categories`` categories (the last category has
    no ground truth); about 1 in 12 is a crowd region. Image 1 has no ground truth and image 2 no detection
    (when there are at least 3 images). Each image gets ``detections_per_image`` ellipse detections (fewer when
    one falls outside the image): jittered copies of its objects (7 in 10; 1 in 10 of those with a random category)
    and false positives, with random scores.

    Returns:
        (gt, segm_results, bbox_results): ``gt`` a COCO instances dict (images, categories, annotations with
        RLE segmentation, area, bbox, iscrowd); ``segm_results`` COCO results with RLE "segmentation";
        ``bbox_results`` the same detections as boxes (the masks' bounding boxes).
    """
    import pycocotools.mask as mask_util

    rng = np.random.RandomState(seed)
    categories = [{"id": 2 * k + 1, "name": "category_{}".format(k)} for k in range(num_categories)]
    gt_categories = [c["id"] for c in categories[:max(num_categories - 1, 1)]]
    images, annotations, segm_results, bbox_results = [], [], [], []
    diagonal = float(np.hypot(width, height))
    for index in range(num_images):
        image_id = 100 + index
        images.append({"id": image_id, "width": width, "height": height, "file_name": "{}.png".format(image_id)})
        objects = []
        if not (num_images >= 3 and index == 1):
            for _ in range(objects_per_image):
                # Centres reach past the border, so some objects are cut by it.
                ellipse = (rng.uniform(-0.05, 1.05) * width, rng.uniform(-0.05, 1.05) * height,
                           rng.uniform(0.01, 0.12) * diagonal, rng.uniform(0.01, 0.12) * diagonal,
                           rng.uniform(0, 180))
                mask = _ellipse_mask(height, width, *ellipse)
                if mask.sum() == 0:
                    continue
                category = int(rng.choice(gt_categories))
                rle = _encode(mask)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "segmentation": rle, "area": float(mask.sum()),
                                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                                    "iscrowd": int(rng.rand() < 1.0 / 12)})
                objects.append((ellipse, category))
        if num_images >= 3 and index == 2:
            continue
        for _ in range(detections_per_image):
            if objects and rng.rand() < 0.7:
                (cx, cy, ax, ay, angle), category = objects[rng.randint(len(objects))]
                scale = rng.uniform(0.0, 0.15)
                ellipse = (cx + rng.randn() * scale * ax, cy + rng.randn() * scale * ay,
                           ax * (1 + rng.randn() * scale), ay * (1 + rng.randn() * scale), angle + rng.randn() * 10)
                if rng.rand() < 0.1:
                    category = int(rng.choice([c["id"] for c in categories]))
            else:
                ellipse = (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.01, 0.1) * diagonal,
                           rng.uniform(0.01, 0.1) * diagonal, rng.uniform(0, 180))
                category = int(rng.choice([c["id"] for c in categories]))
            mask = _ellipse_mask(height, width, *ellipse)
            if mask.sum() == 0:
                continue
            rle = _encode(mask)
            score = float(rng.uniform(0.05, 1.0))
            segm_results.append({"image_id": image_id, "category_id": category, "segmentation": rle,
                                 "score": score})
            bbox_results.append({"image_id": image_id, "category_id": category,
                                 "bbox": [float(v) for v in mask_util.toBbox(rle)], "score": score})
    gt = {"images": images, "categories": categories, "annotations": annotations}
    return gt, segm_results, bbox_results
