"""COCO-style evaluation of Mask R-CNN predictions with faster-coco-eval (default) or pycocotools.

Predictions (list[BoxList], one per dataset index, in original image sizes) are converted to the COCO
results format (bbox in xywh, segmentation as RLE, keypoints as flat lists), written to
``bbox.json``/``segm.json``/``keypoints.json`` and scored by one of two evaluators (TEST.COCO_EVALUATOR):

* ``faster_coco_eval``: faster-coco-eval's ``COCOeval_faster`` (matching and accumulation in C++, mask IoU and
  Boundary IoU over several threads; it reproduces pycocotools' numbers, see tests/evaluation);
* ``pycocotools``: the official ``pycocotools.cocoeval.COCOeval``, with Boundary AP from boundary_eval.py
  (pycocotools has no Boundary IoU).

The numbers reported are those of COCOeval.summarize() on the written files with the same maxDets, plus the AP of
each category (:func:`per_category_ap`).
"""
import copy
import logging
import math
import os
from collections import OrderedDict

import numpy as np
import torch

from maskrcnn_benchmark.utils.io import save_json
from maskrcnn_benchmark.utils.tables import PER_CATEGORY_KEY

from .boundary_eval import DEFAULT_DILATION_RATIO

# "boundary": Boundary AP (Cheng et al. 2021), scored on the same results as "segm".
IOU_TYPES = ("bbox", "segm", "keypoints", "boundary")
# TEST.COCO_EVALUATOR: the library that scores the results; the first is the default.
COCO_EVALUATORS = ("faster_coco_eval", "pycocotools")
# Tasks whose AP is also reported per category (keypoints have one category; proposals none).
PER_CATEGORY_TASKS = ("bbox", "segm", "boundary")


def check_coco_evaluator(evaluator):
    """Raise ValueError naming TEST.COCO_EVALUATOR unless ``evaluator`` is one of COCO_EVALUATORS."""
    if evaluator not in COCO_EVALUATORS:
        raise ValueError(
            "TEST.COCO_EVALUATOR {!r} is unknown; use one of {} (faster_coco_eval: the default, same AP sooner; "
            "pycocotools: the official COCO API, to reproduce numbers with it)".format(evaluator, COCO_EVALUATORS))


def _original_size(dataset, image_index):
    info = dataset.get_img_info(image_index)
    return int(info["width"]), int(info["height"])


def _json_labels(dataset, labels, image_index):
    try:
        return [dataset.contiguous_category_id_to_json_id[int(label)] for label in labels]
    except KeyError as e:
        raise KeyError(
            "Prediction for image index {} has label {} which the dataset's contiguous_category_id_to_json_id does "
            "not know (known: {}); the model's MODEL.ROI_BOX_HEAD.NUM_CLASSES probably does not match the "
            "dataset".format(image_index, e.args[0], sorted(dataset.contiguous_category_id_to_json_id))) from e


def prepare_for_coco_detection(predictions, dataset):
    """Convert predictions to COCO detection results.

    Returns:
        list of {"image_id", "category_id", "bbox": [x, y, w, h] (w = x1 - x0 + 1), "score"}.
    """
    coco_results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        original_id = dataset.id_to_img_map[image_index]
        prediction = prediction.resize(_original_size(dataset, image_index)).convert("xywh")
        boxes = prediction.bbox.tolist()
        scores = prediction.get_field("scores").tolist()
        labels = _json_labels(dataset, prediction.get_field("labels").tolist(), image_index)
        coco_results.extend(
            {"image_id": original_id, "category_id": labels[k], "bbox": box, "score": scores[k]}
            for k, box in enumerate(boxes))
    return coco_results


def prepare_for_coco_segmentation(predictions, dataset):
    """Convert predictions with a "mask" field (Tensor[N,1,28,28] probabilities, or already pasted
    Tensor[N,1,H,W]) to COCO segmentation results with RLE-encoded binary masks.

    The 28x28 probabilities are pasted into the image and thresholded at 0.5 by the mask head's Masker.
    """
    import pycocotools.mask as mask_util

    masker = None
    coco_results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        original_id = dataset.id_to_img_map[image_index]
        image_width, image_height = _original_size(dataset, image_index)
        prediction = prediction.resize((image_width, image_height))
        masks = prediction.get_field("mask")
        if list(masks.shape[-2:]) != [image_height, image_width]:
            if masker is None:
                from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker

                masker = Masker(threshold=0.5, padding=1)
            masks = masker([masks], [prediction])[0]
        scores = prediction.get_field("scores").tolist()
        labels = _json_labels(dataset, prediction.get_field("labels").tolist(), image_index)
        # Already-pasted masks may still be probabilities: binarise at the Masker's threshold.
        if masks.dtype.is_floating_point:
            masks = masks >= 0.5
        masks_np = masks.reshape(len(prediction), image_height, image_width).to(torch.uint8).numpy()
        rles = mask_util.encode(np.asfortranarray(masks_np.transpose(1, 2, 0)))
        for k, rle in enumerate(rles):
            rle["counts"] = rle["counts"].decode("utf-8")
            coco_results.append(
                {"image_id": original_id, "category_id": labels[k], "segmentation": rle, "score": scores[k]})
    return coco_results


def prepare_for_coco_keypoint(predictions, dataset):
    """Convert predictions with a "keypoints" field (PersonKeypoints, [N,K,3]) to COCO keypoint results."""
    coco_results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        original_id = dataset.id_to_img_map[image_index]
        prediction = prediction.resize(_original_size(dataset, image_index)).convert("xywh")
        scores = prediction.get_field("scores").tolist()
        labels = _json_labels(dataset, prediction.get_field("labels").tolist(), image_index)
        keypoints = prediction.get_field("keypoints")
        keypoints = getattr(keypoints, "keypoints", keypoints)
        keypoints = keypoints.reshape(keypoints.shape[0], -1).tolist()
        coco_results.extend(
            {"image_id": original_id, "category_id": labels[k], "keypoints": kp, "score": scores[k]}
            for k, kp in enumerate(keypoints))
    return coco_results


def evaluate_box_proposals(predictions, dataset, thresholds=None, area="all", limit=None):
    """Average recall of proposals against non-crowd GT boxes (the RPN-only evaluation).

    Returns:
        dict with "ar" (scalar Tensor), "recalls" (Tensor[T]), "thresholds", "gt_overlaps", "num_pos".
    """
    from maskrcnn_benchmark.structures.bounding_box import BoxList
    from maskrcnn_benchmark.structures.boxlist_ops import boxlist_iou

    areas = {"all": 0, "small": 1, "medium": 2, "large": 3, "96-128": 4, "128-256": 5, "256-512": 6,
             "512-inf": 7}
    area_ranges = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2],
                   [96 ** 2, 128 ** 2], [128 ** 2, 256 ** 2], [256 ** 2, 512 ** 2], [512 ** 2, 1e5 ** 2]]
    if area not in areas:
        raise ValueError("Unknown area range '{}'; use one of {}".format(area, sorted(areas)))
    area_range = area_ranges[areas[area]]
    gt_overlaps = []
    num_pos = 0
    for image_index, prediction in enumerate(predictions):
        original_id = dataset.id_to_img_map[image_index]
        prediction = prediction.resize(_original_size(dataset, image_index))
        # Proposals are ranked by objectness.
        score_field = "objectness" if prediction.has_field("objectness") else "scores"
        order = prediction.get_field(score_field).sort(descending=True)[1]
        prediction = prediction[order]

        ann_ids = dataset.coco.getAnnIds(imgIds=original_id)
        anns = [a for a in dataset.coco.loadAnns(ann_ids) if a.get("iscrowd", 0) == 0]
        gt_boxes = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        gt_boxes = BoxList(gt_boxes, prediction.size, mode="xywh").convert("xyxy")
        gt_areas = torch.as_tensor([a["area"] for a in anns], dtype=torch.float32)
        keep = (gt_areas >= area_range[0]) & (gt_areas <= area_range[1])
        gt_boxes = gt_boxes[keep]
        num_pos += len(gt_boxes)
        if len(gt_boxes) == 0 or len(prediction) == 0:
            continue
        if limit is not None and len(prediction) > limit:
            prediction = prediction[:limit]
        overlaps = boxlist_iou(prediction, gt_boxes)
        # Greedily pair each GT with its best remaining proposal, best-covered GT first.
        covered = torch.zeros(len(gt_boxes))
        for j in range(min(len(prediction), len(gt_boxes))):
            max_overlaps, argmax_overlaps = overlaps.max(dim=0)
            gt_ovr, gt_ind = max_overlaps.max(dim=0)
            covered[j] = gt_ovr
            box_ind = argmax_overlaps[gt_ind]
            overlaps[box_ind, :] = -1
            overlaps[:, gt_ind] = -1
        gt_overlaps.append(covered)
    gt_overlaps = torch.cat(gt_overlaps, dim=0) if gt_overlaps else torch.zeros(0)
    gt_overlaps, _ = torch.sort(gt_overlaps)
    if thresholds is None:
        thresholds = torch.arange(0.5, 0.95 + 1e-5, 0.05, dtype=torch.float32)
    recalls = torch.zeros_like(thresholds)
    for i, t in enumerate(thresholds):
        recalls[i] = (gt_overlaps >= t).float().sum() / float(max(num_pos, 1))
    return {"ar": recalls.mean(), "recalls": recalls, "thresholds": thresholds, "gt_overlaps": gt_overlaps,
            "num_pos": num_pos}


def _empty_results_coco(coco_gt):
    """A COCO object with GT's images/categories and no detections (loadRes cannot take an empty list)."""
    from maskrcnn_benchmark.data.datasets.coco import _coco_from_dict

    return _coco_from_dict({"images": copy.deepcopy(coco_gt.dataset.get("images", [])),
                            "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])), "annotations": []})


def _max_dets_list(iou_type, max_dets):
    """params.maxDets for ``max_dets``: [1, 10, max_dets] (each capped at max_dets, so the list stays sorted, as
    faster-coco-eval sorts it), keypoints pycocotools' [20]. Both evaluators report AP at the last entry."""
    if iou_type == "keypoints":
        return [20]
    max_dets = int(max_dets)
    return [min(1, max_dets), min(10, max_dets), max_dets]


def faster_coco_gt(coco_gt):
    """A faster_coco_eval COCO over the images, categories and annotations of ``coco_gt`` (a pycocotools COCO).

    Each annotation dict is copied (shallow): faster-coco-eval stores "rle", "boundary" and "ignore" in the
    annotations it evaluates, and the dataset's own stay as they are. Build it once per evaluation and share it
    between bbox, segm and boundary.
    """
    from faster_coco_eval import COCO as FasterCOCO

    return FasterCOCO({"images": list(coco_gt.imgs.values()), "categories": list(coco_gt.cats.values()),
                       "annotations": [dict(ann) for ann in coco_gt.anns.values()]})


def _faster_cocoeval_class():
    """COCOeval_faster whose Boundary IoU band width rounds as the authors' reference (Python ``round``).

    faster-coco-eval's C++ band width is round(0.02 * diagonal - 1e-10): on an image whose 0.02 * diagonal is
    exactly k + 0.5 with k odd (105 x 140, 225 x 300, 465 x 620, ...) it is one pixel narrower than the Boundary
    IoU API's round() (Python rounds half to even). The bands of those images' masks are recomputed with
    faster-coco-eval's OpenCV path, which rounds like the reference, so both evaluators give the same numbers.
    """
    from faster_coco_eval import COCOeval_faster
    from faster_coco_eval.core import mask as faster_mask

    class ReferenceBandCOCOeval(COCOeval_faster):
        def _prepare(self):
            super()._prepare()
            if self.params.iouType != "boundary":
                return
            ratio = self.boundary_dilation_ratio
            for coco in (self.cocoGt, self.cocoDt):
                tie_images = {image_id for image_id, image in coco.imgs.items()
                              if _half_pixel_band(image["height"], image["width"], ratio)}
                if not tie_images:
                    continue
                for ann in coco.anns.values():
                    if ann["image_id"] in tie_images and "rle" in ann:
                        # The C++ dataset holds references to these dicts: replacing the entry is enough.
                        ann["boundary"] = faster_mask.rleToBoundary(ann["rle"], ratio, backend="opencv")

    return ReferenceBandCOCOeval


def _half_pixel_band(height, width, dilation_ratio):
    """True where dilation_ratio * diagonal sits on a rounding tie (x.5), where C++ and Python round differ."""
    band = dilation_ratio * math.sqrt(height ** 2 + width ** 2)
    return abs(band - math.floor(band) - 0.5) < 1e-6


def evaluate_predictions_on_coco(coco_gt, coco_results, json_result_file, iou_type="bbox", max_dets=100,
                                 evaluator=COCO_EVALUATORS[0], faster_gt=None):
    """Write ``coco_results`` to ``json_result_file`` and score them with ``evaluator``.

    Args:
        coco_gt: the ground truth (pycocotools COCO, as COCODataset.coco).
        coco_results: list of COCO result dicts (not modified).
        json_result_file: where to write them (None: not written).
        iou_type: "bbox", "segm", "boundary" (Boundary AP on segm results) or "keypoints".
        max_dets: detections per image the AP is computed at. ``params.maxDets`` becomes
            [1, 10, max_dets] because summarize() reports AP at maxDets[2] (keypoints keep pycocotools' 20).
        evaluator: "faster_coco_eval" or "pycocotools" (TEST.COCO_EVALUATOR).
        faster_gt: the :func:`faster_coco_gt` of ``coco_gt`` when already built (faster_coco_eval only).
    Returns:
        the evaluator's COCOeval after evaluate/accumulate/summarize (``stats`` holds the numbers,
        ``eval["precision"]`` the [T, R, K, A, M] precision array).
    """
    check_coco_evaluator(evaluator)
    if iou_type not in IOU_TYPES:
        raise ValueError("Unknown iou_type '{}'; use any of {}".format(iou_type, IOU_TYPES))
    if json_result_file is not None:
        save_json(coco_results, json_result_file)
    if not coco_results:
        logging.getLogger("maskrcnn_benchmark.inference").warning(
            "No %s predictions at all: every AP is 0", iou_type)
    if evaluator == "faster_coco_eval":
        gt = faster_gt if faster_gt is not None else faster_coco_gt(coco_gt)
        # Copies: loadRes and the evaluation add fields ("area", "id", "rle", ...) to the dicts they are given.
        coco_dt = gt.loadRes([dict(r) for r in coco_results])
        coco_eval = _faster_cocoeval_class()(gt, coco_dt, iouType=iou_type, print_function=print,
                                             boundary_dilation_ratio=DEFAULT_DILATION_RATIO)
        coco_eval.params.maxDets = _max_dets_list(iou_type, max_dets)
        coco_eval.evaluate()
        coco_eval.accumulate()
        # faster-coco-eval's summarize() reports every AP at maxDets[-1]: no own summary is needed.
        coco_eval.summarize()
        return coco_eval
    return _pycocotools_evaluate(coco_gt, coco_results, json_result_file, iou_type, max_dets)


def _pycocotools_evaluate(coco_gt, coco_results, json_result_file, iou_type, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if coco_results:
        coco_dt = coco_gt.loadRes(str(json_result_file)) if json_result_file else \
            coco_gt.loadRes([dict(r) for r in coco_results])
    else:
        coco_dt = _empty_results_coco(coco_gt)
    assert isinstance(coco_dt, COCO)
    if iou_type == "boundary":
        from .boundary_eval import BoundaryCOCOeval

        coco_eval = BoundaryCOCOeval(coco_gt, coco_dt, dilation_ratio=DEFAULT_DILATION_RATIO)
    else:
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    coco_eval.params.maxDets = _max_dets_list(iou_type, max_dets)
    coco_eval.evaluate()
    coco_eval.accumulate()
    if iou_type == "keypoints" or int(max_dets) == 100:
        coco_eval.summarize()
    else:
        # pycocotools' summarize() computes the first AP at a hard-coded maxDets=100 (it prints -1 when 100
        # is not in params.maxDets), so the same summary is computed here at maxDets[2] for every entry.
        summarize_at_max_dets(coco_eval)
    return coco_eval


def per_category_ap(coco_eval):
    """AP of each category from an accumulated COCOeval (either evaluator).

    AP_k = mean of precision[:, :, k, area "all", maxDets[-1]] over IoU thresholds and recall points (the cells
    that are not -1), as the overall AP is the same mean over every category. When every category has ground
    truth, the mean of the AP_k is the overall AP.

    Returns:
        OrderedDict category name -> AP in [0, 1], -1.0 for a category without ground truth; in the order of
        the category ids. A name shared by two categories is followed by " (id N)".
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    area = list(params.areaRngLbl).index("all")
    categories = coco_eval.cocoGt.cats
    names = [str(categories[int(c)].get("name", c)) for c in params.catIds]
    out = OrderedDict()
    for k, (cat_id, name) in enumerate(zip(params.catIds, names)):
        if names.count(name) > 1:
            name = "{} (id {})".format(name, int(cat_id))
        values = precision[:, :, k, area, -1]
        valid = values[values > -1]
        out[name] = float(np.mean(valid)) if valid.size else -1.0
    return out


def summarize_at_max_dets(coco_eval):
    """Fill ``coco_eval.stats`` (12 bbox/segm numbers) like COCOeval.summarize(), with every AP at maxDets[2].

    Prints the same lines as pycocotools. Each entry is the mean of the accumulated precision (or recall)
    over the selected IoU thresholds, recall points, categories, area range and maxDets, ignoring -1 cells.
    """
    params = coco_eval.params
    max_dets = params.maxDets[2]

    def _summarize(ap, iou_thr=None, area_rng="all", max_det=max_dets):
        area_index = [i for i, label in enumerate(params.areaRngLbl) if label == area_rng]
        det_index = [i for i, m in enumerate(params.maxDets) if m == max_det]
        if ap:
            values = coco_eval.eval["precision"]  # [T, R, K, A, M]
            if iou_thr is not None:
                values = values[np.where(np.isclose(params.iouThrs, iou_thr))[0]]
            values = values[:, :, :, area_index, det_index]
        else:
            values = coco_eval.eval["recall"]  # [T, K, A, M]
            if iou_thr is not None:
                values = values[np.where(np.isclose(params.iouThrs, iou_thr))[0]]
            values = values[:, :, area_index, det_index]
        valid = values[values > -1]
        mean = -1.0 if valid.size == 0 else float(np.mean(valid))
        iou_str = "{:0.2f}:{:0.2f}".format(params.iouThrs[0], params.iouThrs[-1]) if iou_thr is None \
            else "{:0.2f}".format(iou_thr)
        print(" {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}".format(
            "Average Precision" if ap else "Average Recall", "(AP)" if ap else "(AR)", iou_str, area_rng,
            max_det, mean))
        return mean

    stats = np.zeros((12,))
    stats[0] = _summarize(1)
    stats[1] = _summarize(1, iou_thr=0.5)
    stats[2] = _summarize(1, iou_thr=0.75)
    stats[3] = _summarize(1, area_rng="small")
    stats[4] = _summarize(1, area_rng="medium")
    stats[5] = _summarize(1, area_rng="large")
    stats[6] = _summarize(0, max_det=params.maxDets[0])
    stats[7] = _summarize(0, max_det=params.maxDets[1])
    stats[8] = _summarize(0, max_det=params.maxDets[2])
    stats[9] = _summarize(0, area_rng="small")
    stats[10] = _summarize(0, area_rng="medium")
    stats[11] = _summarize(0, area_rng="large")
    coco_eval.stats = stats
    return stats


class COCOResults:
    """The headline numbers of each task, in COCO's order, as maskrcnn-benchmark reports them."""

    METRICS = {
        "bbox": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
        "segm": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
        "boundary": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
        "box_proposal": ["AR@100", "ARs@100", "ARm@100", "ARl@100", "AR@1000", "ARs@1000", "ARm@1000",
                         "ARl@1000"],
        "keypoints": ["AP", "AP50", "AP75", "APm", "APl"],
    }

    def __init__(self, *iou_types):
        allowed = ("box_proposal", "bbox", "segm", "keypoints", "boundary")
        for iou_type in iou_types:
            if iou_type not in allowed:
                raise ValueError("Unknown IoU type '{}'; use one of {}".format(iou_type, allowed))
        self.results = OrderedDict(
            (iou_type, OrderedDict((metric, -1.0) for metric in COCOResults.METRICS[iou_type]))
            for iou_type in iou_types)
        # task -> category name -> AP (see per_category_ap), for the tasks of PER_CATEGORY_TASKS. Kept apart from
        # `results` so that every entry of `results` stays a task -> metric -> number table.
        self.per_category = OrderedDict()

    def update(self, coco_eval):
        """Copy the first stats of a summarized COCOeval into this table, and its per-category AP."""
        if coco_eval is None:
            return
        # Boundary AP runs as pycocotools "segm" evaluation; its evaluator names the task it reports.
        iou_type = getattr(coco_eval, "result_type", coco_eval.params.iouType)
        res = self.results[iou_type]
        for idx, metric in enumerate(COCOResults.METRICS[iou_type]):
            res[metric] = float(coco_eval.stats[idx])
        if iou_type in PER_CATEGORY_TASKS:
            self.per_category[iou_type] = per_category_ap(coco_eval)

    def table(self):
        """Readable table: one row per task with AP, AP50, AP75, APs, APm, APl."""
        lines = []
        for task, metrics in self.results.items():
            lines.append("Task: {}".format(task))
            lines.append(" | ".join("{:>8}".format(m) for m in metrics.keys()))
            lines.append(" | ".join("{:>8.4f}".format(v) for v in metrics.values()))
        return "\n".join(lines)

    def per_category_table(self):
        """Readable tables of the per-category AP, one per task; "n/a" for a category without ground truth."""
        blocks = []
        for task, per_category in self.per_category.items():
            width = max([len("category")] + [len(name) for name in per_category])
            lines = ["Per-category AP, task: {}".format(task), "{:<{w}} | {:>8}".format("category", "AP", w=width)]
            lines += ["{:<{w}} | {:>8}".format(name, "n/a" if ap < 0 else "{:.4f}".format(ap), w=width)
                      for name, ap in per_category.items()]
            blocks.append("\n".join(lines))
        return "\n".join(blocks)

    def __repr__(self):
        return repr(self.results)


def check_expected_results(results, expected_results, sigma_tol):
    """Log (and return False on) any metric outside mean +- sigma_tol * std of ``expected_results``.

    Args:
        expected_results: iterable of (task, metric, mean, std) as in TEST.EXPECTED_RESULTS, or
            maskrcnn-benchmark's (task, metric, (mean, std)); e.g. ("bbox", "AP", 0.37, 0.002).
    """
    if not expected_results:
        return True
    logger = logging.getLogger("maskrcnn_benchmark.inference")
    all_ok = True
    for entry in expected_results:
        if len(entry) == 4:
            task, metric, mean, std = entry
        elif len(entry) == 3 and len(entry[2]) == 2:
            task, metric, (mean, std) = entry
        else:
            raise ValueError("TEST.EXPECTED_RESULTS entry {!r} must be [task, metric, mean, std]".format(entry))
        if task not in results.results or metric not in results.results[task]:
            raise ValueError("TEST.EXPECTED_RESULTS names {}/{}, which this evaluation did not compute (it has {})"
                             .format(task, metric, {t: list(m) for t, m in results.results.items()}))
        actual_val = results.results[task][metric]
        lo = mean - sigma_tol * std
        hi = mean + sigma_tol * std
        ok = lo < actual_val < hi
        msg = "{} > {} sanity check (actual vs. expected): {:.3f} vs. mean={:.4f}, std={:.4}, range=({:.4f}, {:.4f})"
        msg = msg.format(task, metric, actual_val, mean, std, lo, hi)
        if not ok:
            all_ok = False
            logger.error("FAIL: " + msg)
        else:
            logger.info("PASS: " + msg)
    return all_ok


def do_coco_evaluation(dataset, predictions, box_only, output_folder, iou_types, expected_results,
                       expected_results_sigma_tol, max_dets=100, coco_evaluator=COCO_EVALUATORS[0]):
    """Evaluate ``predictions`` on a COCO-style ``dataset`` with ``coco_evaluator`` (TEST.COCO_EVALUATOR).

    Writes to ``output_folder`` (when given): ``<iou_type>.json`` (COCO results, loadable by pycocotools),
    ``coco_results.json`` ({task: {metric: value}, "max_dets": N, "coco_evaluator": name,
    "per_category_ap": {task: {category name: AP}}}) and, for box_only, ``box_proposals.json``.

    Returns:
        (COCOResults, dict iou_type -> COCO results list, dict iou_type -> COCOeval).
    """
    check_coco_evaluator(coco_evaluator)
    logger = logging.getLogger("maskrcnn_benchmark.inference")
    if output_folder:
        os.makedirs(output_folder, exist_ok=True)
    if len(predictions) != len(dataset):
        logger.warning("Evaluating %d predictions for a dataset of %d images", len(predictions), len(dataset))

    if box_only:
        logger.info("Evaluating bbox proposals")
        res = COCOResults("box_proposal")
        for limit in (100, 1000):
            for area, suffix in (("all", ""), ("small", "s"), ("medium", "m"), ("large", "l")):
                stats = evaluate_box_proposals(predictions, dataset, area=area, limit=limit)
                res.results["box_proposal"]["AR{}@{:d}".format(suffix, limit)] = float(stats["ar"])
        logger.info("\n" + res.table())
        check_expected_results(res, expected_results, expected_results_sigma_tol)
        if output_folder:
            save_json(res.results, os.path.join(output_folder, "box_proposals.json"))
        return res, {}, {}

    preparers = {"bbox": prepare_for_coco_detection, "segm": prepare_for_coco_segmentation,
                 "keypoints": prepare_for_coco_keypoint, "boundary": prepare_for_coco_segmentation}
    coco_results = {}
    for iou_type in iou_types:
        if iou_type not in preparers:
            raise ValueError("Unknown iou_type '{}'; use any of {}".format(iou_type, IOU_TYPES))
        if iou_type == "boundary" and "segm" in coco_results:
            # Same masks as "segm": shallow copies, because loadRes adds area/id/bbox to the dicts it is given.
            coco_results[iou_type] = [dict(r) for r in coco_results["segm"]]
            continue
        logger.info("Preparing %s results", iou_type)
        coco_results[iou_type] = preparers[iou_type](predictions, dataset)

    results = COCOResults(*iou_types)
    coco_evals = {}
    logger.info("Evaluating predictions (maxDets = %d) with %s", max_dets, coco_evaluator)
    # One ground truth copy for every task of this evaluation (see faster_coco_gt).
    faster_gt = faster_coco_gt(dataset.coco) if coco_evaluator == "faster_coco_eval" else None
    for iou_type in iou_types:
        # Boundary AP scores the segm results: no second copy of segm.json on disk.
        json_file = os.path.join(output_folder, iou_type + ".json") if output_folder and iou_type != "boundary" \
            else None
        coco_eval = evaluate_predictions_on_coco(dataset.coco, coco_results[iou_type], json_file, iou_type,
                                                 max_dets=max_dets, evaluator=coco_evaluator, faster_gt=faster_gt)
        results.update(coco_eval)
        coco_evals[iou_type] = coco_eval
    logger.info("\n" + results.table())
    if results.per_category:
        logger.info("\n" + results.per_category_table())
    check_expected_results(results, expected_results, expected_results_sigma_tol)
    if output_folder:
        summary = OrderedDict(results.results)
        summary["max_dets"] = int(max_dets)
        summary["coco_evaluator"] = coco_evaluator
        summary[PER_CATEGORY_KEY] = results.per_category
        save_json(summary, os.path.join(output_folder, "coco_results.json"))
    return results, coco_results, coco_evals
