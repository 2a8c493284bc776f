"""GlaS evaluation: COCO AP plus the challenge's F1, object Dice and object Hausdorff (see glas_eval.py)."""
import json
import logging
import os
from collections import OrderedDict

import numpy as np
import torch

from maskrcnn_benchmark.utils.io import save_json
# The GlaS key and metric names are defined once, in the module that reads them back into the paper's tables.
from maskrcnn_benchmark.utils.tables import GLAS_METRICS, GLAS_TASK

from .glas_eval import aggregate_glas_metrics, glas_metrics, image_object_terms, label_map_from_instances

GLAS_CATEGORY = "gland"

__all__ = ["glas_evaluation", "is_glas_dataset", "glas_metrics", "image_object_terms", "aggregate_glas_metrics",
           "label_map_from_instances"]


def is_glas_dataset(dataset):
    """True for a COCO-style dataset whose only category is "gland" (what tools/glas/convert_glas_to_coco.py writes)."""
    coco = getattr(dataset, "coco", None)
    categories = getattr(coco, "dataset", {}).get("categories", []) if coco is not None else []
    return len(categories) == 1 and categories[0].get("name") == GLAS_CATEGORY


def _gt_label_map(coco, image_id, height, width):
    label_map = np.zeros((height, width), dtype=np.int32)
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
    for k, ann in enumerate(anns, start=1):
        label_map[coco.annToMask(ann).astype(bool)] = k
    return label_map


def _predicted_label_map(prediction, width, height, score_threshold, masker):
    if len(prediction) == 0:
        return np.zeros((height, width), dtype=np.int32)
    prediction = prediction.resize((width, height))
    masks = prediction.get_field("mask")
    if list(masks.shape[-2:]) != [height, width]:
        masks = masker([masks], [prediction])[0]
    if masks.dtype.is_floating_point:
        masks = masks >= 0.5
    masks = masks.reshape(len(prediction), height, width).to(torch.bool).numpy()
    return label_map_from_instances(masks, prediction.get_field("scores").numpy(), score_threshold)


def evaluate_glas_predictions(dataset, predictions, score_threshold=0.5):
    """GlaS metrics of Mask R-CNN predictions on a COCO-style GlaS dataset.

    Args:
        dataset: COCODataset (``.coco``, ``.id_to_img_map``, ``get_img_info``).
        predictions: list[BoxList] per dataset index with "scores" and "mask" ([N,1,28,28] probabilities or pasted
            [N,1,H,W]); detections scoring >= score_threshold form the segmentation, higher scores winning overlaps.
    Returns:
        (dict of aggregate_glas_metrics, list of per-image dicts {"image_id", "file_name", "TP", "FP", "FN"}).
    """
    from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker

    masker = Masker(threshold=0.5, padding=1)
    terms, per_image = [], []
    for index, prediction in enumerate(predictions):
        if not prediction.has_field("mask"):
            raise ValueError("GlaS metrics need instance masks, but the prediction of image index {} has no 'mask' "
                             "field; evaluate a model with MODEL.MASK_ON True".format(index))
        image_id = dataset.id_to_img_map[index]
        info = dataset.get_img_info(index)
        height, width = int(info["height"]), int(info["width"])
        gt = _gt_label_map(dataset.coco, image_id, height, width)
        seg = _predicted_label_map(prediction, width, height, score_threshold, masker)
        image_terms = image_object_terms(gt, seg)
        terms.append(image_terms)
        per_image.append({"image_id": image_id, "file_name": info.get("file_name", ""), "TP": image_terms["tp"],
                          "FP": image_terms["fp"], "FN": image_terms["fn"]})
    return aggregate_glas_metrics(terms), per_image


def glas_evaluation(dataset, predictions, output_folder, box_only=False, expected_results=(),
                    expected_results_sigma_tol=4, score_threshold=0.5, **coco_kwargs):
    """COCO evaluation, then the GlaS metrics appended as task "glas" (F1, ObjDice, ObjHausdorff).

    The GlaS numbers are logged in the results table, added to ``coco_results.json`` and, with per-image
    TP/FP/FN, written to ``glas_results.json`` in ``output_folder``. TEST.EXPECTED_RESULTS may name them,
    e.g. ("glas", "F1", 0.8, 0.02).
    Other keyword arguments (iou_types, max_dets, ...) go to the COCO evaluator unchanged.
    Returns:
        the COCO evaluator's (COCOResults, coco_results, coco_evals) with results.results["glas"] filled in.
    """
    from maskrcnn_benchmark.data.datasets.evaluation.coco import coco_evaluation
    from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import check_expected_results

    coco_expected = [e for e in expected_results if e[0] != GLAS_TASK]
    glas_expected = [e for e in expected_results if e[0] == GLAS_TASK]
    output = coco_evaluation(dataset=dataset, predictions=predictions, output_folder=output_folder,
                             box_only=box_only, expected_results=coco_expected,
                             expected_results_sigma_tol=expected_results_sigma_tol, **coco_kwargs)
    if box_only:
        return output
    results = output[0]
    metrics, per_image = evaluate_glas_predictions(dataset, predictions, score_threshold)
    results.results[GLAS_TASK] = OrderedDict((name, float(metrics[name])) for name in GLAS_METRICS)
    logger = logging.getLogger("maskrcnn_benchmark.inference")
    logger.info("GlaS (detections with score >= %.2f): F1 %.4f | ObjDice %.4f | ObjHausdorff %.3f px "
                "(TP %d, FP %d, FN %d)", score_threshold, metrics["F1"], metrics["ObjDice"],
                metrics["ObjHausdorff"], metrics["TP"], metrics["FP"], metrics["FN"])
    print("GlaS: F1 {:.4f}  ObjDice {:.4f}  ObjHausdorff {:.3f}".format(
        metrics["F1"], metrics["ObjDice"], metrics["ObjHausdorff"]))
    check_expected_results(results, glas_expected, expected_results_sigma_tol)
    if output_folder:
        summary_path = os.path.join(output_folder, "coco_results.json")
        summary = OrderedDict()
        if os.path.isfile(summary_path):
            with open(summary_path) as f:
                summary = json.load(f, object_pairs_hook=OrderedDict)
        summary[GLAS_TASK] = results.results[GLAS_TASK]
        save_json(summary, summary_path, indent=1)
        save_json({"score_threshold": score_threshold, "metrics": metrics, "per_image": per_image},
                  os.path.join(output_folder, "glas_results.json"), indent=1)
    return output
