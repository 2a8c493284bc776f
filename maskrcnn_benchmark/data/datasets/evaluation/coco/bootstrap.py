"""Paired bootstrap of COCO AP over test images: how much of a gap between two models on one test set is the
luck of which images the test set holds.

pycocotools matches detections to ground truth image by image (``COCOeval.evaluate``); AP is then accumulated over
the images. So the matching is computed once per run (:func:`match_images`), and the AP of any resample of the test
images, drawn with replacement, follows from per-image counts (:func:`resampled_ap`) without evaluating again. An
image drawn twice counts twice, exactly as if the test set held two copies of it (the tests check this against
pycocotools on a test set with the copies written out). :func:`paired_bootstrap` draws the same resamples for both
models, so the interval is that of the difference on shared images.
"""
import contextlib
import io
import json
import os
from dataclasses import dataclass
from typing import List

import numpy as np

# Which COCOeval scores each task and on which results file of inference/<dataset>/ (Boundary AP scores the masks).
RESULT_FILES = {"bbox": "bbox.json", "segm": "segm.json", "boundary": "segm.json"}


@dataclass
class CategoryMatches:
    """One category's detections over the whole test set, sorted by score as pycocotools sorts them.

    Fields (D detections, T IoU thresholds, I images):
        image_index: int64 [D], which image (position in ImageMatches.image_ids) each detection belongs to.
        true_positive: bool [T, D], matched to a non-ignored ground truth at each IoU threshold.
        false_positive: bool [T, D], unmatched and not ignored (a detection matched to a crowd region is neither).
        num_ground_truth: int64 [I], non-ignored ground-truth instances of this category per image.
    """

    image_index: np.ndarray
    true_positive: np.ndarray
    false_positive: np.ndarray
    num_ground_truth: np.ndarray


@dataclass
class ImageMatches:
    """One run's per-image COCO matching for one task, from which the AP of any resample of the images follows.

    Fields:
        image_ids: the test set's image ids, in the order the weights of :func:`resampled_ap` refer to.
        categories: one CategoryMatches per category id of the ground truth.
        recall_thresholds: float [R], COCOeval's (101 points).
        task: "bbox", "segm" or "boundary".
        max_dets: detections per image the AP is computed at.
    """

    image_ids: List[int]
    categories: List[CategoryMatches]
    recall_thresholds: np.ndarray
    task: str
    max_dets: int


def load_coco_gt(ann_file):
    """pycocotools COCO of a ground-truth file (checked and read as the datasets read it)."""
    from maskrcnn_benchmark.data.datasets.coco import _load_coco_json

    return _load_coco_json(ann_file)


def match_images(coco_gt, results, task="bbox", max_dets=100):
    """Run COCOeval's per-image matching once (area range "all", ``max_dets`` detections per image).

    Args:
        coco_gt (pycocotools.coco.COCO): the test set.
        results (list[dict]): COCO results (the content of bbox.json or segm.json); may be empty.
        task: "bbox", "segm" or "boundary" (segm results scored with Boundary IoU).
        max_dets: detections per image, as in coco_results.json's "max_dets".
    Returns:
        ImageMatches. ``resampled_ap`` with every weight 1 gives COCOeval's AP (stats[0]).
    """
    from pycocotools.cocoeval import COCOeval

    from .coco_eval import _empty_results_coco

    if task not in RESULT_FILES:
        raise ValueError("unknown task {!r}: use one of {}".format(task, sorted(RESULT_FILES)))
    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes adds fields to the dicts it is given: work on copies so the caller's results stay as they were
        coco_dt = coco_gt.loadRes([dict(r) for r in results]) if results else _empty_results_coco(coco_gt)
        if task == "boundary":
            from .boundary_eval import BoundaryCOCOeval

            evaluator = BoundaryCOCOeval(coco_gt, coco_dt)
        else:
            evaluator = COCOeval(coco_gt, coco_dt, task)
        params = evaluator.params
        params.areaRng, params.areaRngLbl = [[0, 1e10]], ["all"]
        params.maxDets = [int(max_dets)]
        evaluator.evaluate()
    num_images = len(params.imgIds)
    categories = []
    for k in range(len(params.catIds)):
        per_image = evaluator.evalImgs[k * num_images:(k + 1) * num_images]  # one area range: [K, A=1, I] order
        num_gt = np.zeros(num_images, dtype=np.int64)
        scores, images, matched, ignored = [], [], [], []
        for i, e in enumerate(per_image):
            if e is None:
                continue
            num_gt[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            n = len(e["dtScores"])
            if n:
                scores.append(np.asarray(e["dtScores"], dtype=np.float64))
                images.append(np.full(n, i, dtype=np.int64))
                matched.append(np.asarray(e["dtMatches"]) != 0)
                ignored.append(np.asarray(e["dtIgnore"], dtype=bool))
        num_thresholds = len(params.iouThrs)
        if scores:
            # pycocotools concatenates the images in order and sorts with mergesort (stable): same order here
            order = np.argsort(-np.concatenate(scores), kind="mergesort")
            matched = np.concatenate(matched, axis=1)[:, order]
            ignored = np.concatenate(ignored, axis=1)[:, order]
            images = np.concatenate(images)[order]
        else:
            matched = ignored = np.zeros((num_thresholds, 0), dtype=bool)
            images = np.zeros(0, dtype=np.int64)
        categories.append(CategoryMatches(images, matched & ~ignored, ~matched & ~ignored, num_gt))
    return ImageMatches(list(params.imgIds), categories, np.asarray(params.recThrs, dtype=np.float64), task,
                        int(max_dets))


def load_matches(results_dir, ann_file, task="bbox", coco_gt=None):
    """match_images for one run's evaluation output folder (inference/<dataset>/ with coco_results.json and
    bbox.json / segm.json) against the ground truth it was evaluated on."""
    summary_file = os.path.join(results_dir, "coco_results.json")
    results_file = os.path.join(results_dir, RESULT_FILES[task])
    for path in (summary_file, results_file):
        if not os.path.isfile(path):
            raise FileNotFoundError("'{}' is missing: the bootstrap needs the detections the evaluation wrote "
                                    "(run tools/test_net.py with an OUTPUT_DIR to write them)".format(path))
    with open(summary_file) as f:
        max_dets = json.load(f).get("max_dets", 100)
    with open(results_file) as f:
        results = json.load(f)
    return match_images(coco_gt if coco_gt is not None else load_coco_gt(ann_file), results, task, max_dets)


def resampled_ap(matches, weights, chunk_elements=4_000_000):
    """COCO AP (IoU 0.50:0.95, area all) of resamples of the test images.

    Args:
        matches (ImageMatches): from match_images.
        weights: int array [B, I], how many times each image is in each resample (all ones: the test set itself).
        chunk_elements: bounds the [b, D] work arrays (memory).
    Returns:
        float array [B], AP as a fraction; NaN for a resample without any ground truth.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(matches.image_ids):
        raise ValueError("weights must be [B, {}] (one count per test image), got shape {}".format(
            len(matches.image_ids), weights.shape))
    num_samples = weights.shape[0]
    total = np.zeros(num_samples)
    valid = np.zeros(num_samples)
    recall_thresholds = matches.recall_thresholds
    for category in matches.categories:
        num_gt = weights @ category.num_ground_truth.astype(np.float64)  # [B]
        num_thresholds, num_dets = category.true_positive.shape
        counted = category.true_positive | category.false_positive  # [T, D]; ignored detections count for nothing
        step = max(1, chunk_elements // max(1, num_dets))
        for start in range(0, num_samples, step):
            stop = min(num_samples, start + step)
            det_weights = weights[start:stop][:, category.image_index]  # [b, D]
            all_counted = np.cumsum(det_weights, axis=1)
            has_gt = num_gt[start:stop] > 0
            sampled = np.zeros(stop - start)
            for t in range(num_thresholds):
                # Recall only rises at true positives, and a false positive only lowers precision at the recall
                # reached before it, so the interpolated precision (the best precision at this recall or a higher
                # one) is attained at true positives: the curve is evaluated there only.
                hits = np.flatnonzero(category.true_positive[t])
                if hits.size == 0:
                    continue  # precision 0 at every recall threshold
                tp = np.cumsum(det_weights[:, hits], axis=1)  # [b, P]
                seen = (all_counted if counted[t].all() else np.cumsum(det_weights * counted[t], axis=1))[:, hits]
                precision = tp / (seen + np.spacing(1))  # seen = tp + fp, the sum pycocotools divides by
                precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
                for b in np.flatnonzero(has_gt):
                    recall = tp[b] / num_gt[start + b]
                    index = np.searchsorted(recall, recall_thresholds, side="left")
                    sampled[b] += precision[b, index[index < hits.size]].sum()
            total[start:stop] += np.where(has_gt, sampled / (num_thresholds * len(recall_thresholds)), 0.0)
            valid[start:stop] += has_gt  # no ground truth of this category in a resample: pycocotools leaves it out
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid > 0, total / np.maximum(valid, 1), np.nan)


def resample_weights(num_images, num_samples, seed):
    """[B, I] counts of each image in B resamples of I images drawn with replacement (numpy Generator ``seed``)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(num_samples, num_images))
    flat = draws + num_images * np.arange(num_samples)[:, None]
    return np.bincount(flat.ravel(), minlength=num_samples * num_images).reshape(num_samples, num_images)


def paired_bootstrap(reference, other, num_samples=1000, seed=0, confidence=0.95):
    """Interval of mean AP(other) - mean AP(reference) over resamples of the test images, in AP points (%).

    Args:
        reference, other: lists of ImageMatches of the two models on the same test set (e.g. one per training seed;
            one each is the classic two-model case). Every resample draws the same images for all of them.
        num_samples: B, number of resamples.
        seed: seed of the resampling (same seed, same interval).
        confidence: two-sided coverage of the percentile interval.
    Returns:
        {"diff": difference on the test set itself, "low", "high": percentile interval, "num_samples", "seed",
        "confidence", "num_images"}.
    """
    runs = list(reference) + list(other)
    if not reference or not other:
        raise ValueError("paired_bootstrap needs at least one run of each model")
    image_ids = runs[0].image_ids
    for run in runs[1:]:
        if run.image_ids != image_ids:
            raise ValueError("the runs were evaluated on different test images ({} vs {} images, or other ids): a "
                             "paired bootstrap needs one test set".format(len(image_ids), len(run.image_ids)))
    if num_samples < 1:
        raise ValueError("num_samples must be at least 1, got {}".format(num_samples))
    weights = np.vstack([np.ones((1, len(image_ids)), dtype=np.int64),
                         resample_weights(len(image_ids), num_samples, seed)])

    def mean_ap(group):
        return np.mean([resampled_ap(run, weights) for run in group], axis=0)

    diffs = 100.0 * (mean_ap(other) - mean_ap(reference))
    samples = diffs[1:][np.isfinite(diffs[1:])]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha]) if samples.size else (np.nan, np.nan)
    return {"diff": float(diffs[0]), "low": float(low), "high": float(high), "num_samples": int(num_samples),
            "seed": int(seed), "confidence": confidence, "num_images": len(image_ids)}
