"""Cityscapes instance-level evaluation with cityscapesscripts, next to COCO-style AP.

The official evaluator (cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling) reads, per image, a text file
listing one binary mask PNG per predicted instance with its Cityscapes label id and score:

    <relative/path/to/mask.png> <labelID> <confidence>

Predictions are written in that format to a temporary folder, the evaluator is called in-process on them and the
gtFine *_gtFine_instanceIds.png files, and its AP (mean over IoU 0.5:0.95) and AP50 per class and on average are
reported. Only the 8 classes the evaluator scores count (it marks caravan and trailer ignoreInEval).
"""
import copy
import json
import logging
import math
import os
import shutil
import tempfile
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

from maskrcnn_benchmark.utils.io import save_json


def pasted_masks(prediction, image_size):
    """Binary masks of one image's prediction in its original size.

    Args:
        prediction: BoxList with "mask" (Tensor[N,1,28,28] probabilities or already pasted Tensor[N,1,H,W]).
        image_size: (width, height) of the original image.
    Returns:
        (prediction resized to image_size, bool ndarray [N, H, W]).
    """
    width, height = image_size
    prediction = prediction.resize((width, height))
    masks = prediction.get_field("mask")
    if list(masks.shape[-2:]) != [height, width]:
        from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker

        masks = Masker(threshold=0.5, padding=1)([masks], [prediction])[0]
    if masks.dtype.is_floating_point:
        masks = masks >= 0.5
    return prediction, masks.reshape(len(prediction), height, width).to(torch.bool).numpy()


def write_cityscapes_predictions(dataset, predictions, pred_dir):
    """Write predictions in cityscapesscripts' instance format under `pred_dir`.

    Args:
        dataset: CityscapesDataset (COCO category ids are Cityscapes label ids).
        predictions: list[BoxList], one per dataset index, with "scores", "labels" (contiguous) and "mask".
    Returns:
        list of the per-image text files, in dataset order (an image without predictions gets an empty file).
    """
    txt_files = []
    for index in range(len(dataset)):
        stem = os.path.basename(dataset.gt_instance_file(index)).replace("_gtFine_instanceIds.png", "")
        txt_file = os.path.join(pred_dir, stem + "_pred.txt")
        lines = []
        prediction = predictions[index] if index < len(predictions) else None
        if prediction is not None and len(prediction) > 0:
            info = dataset.get_img_info(index)
            prediction, masks = pasted_masks(prediction, (int(info["width"]), int(info["height"])))
            scores = prediction.get_field("scores").tolist()
            labels = prediction.get_field("labels").tolist()
            mask_dir = os.path.join(pred_dir, "masks")
            os.makedirs(mask_dir, exist_ok=True)
            for k, (score, label) in enumerate(zip(scores, labels)):
                label_id = dataset.contiguous_category_id_to_json_id[int(label)]
                name = "{}_{:04d}.png".format(stem, k)
                Image.fromarray(masks[k].astype(np.uint8) * 255).save(os.path.join(mask_dir, name))
                lines.append("masks/{} {:d} {:.6f}".format(name, label_id, score))
        with open(txt_file, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        txt_files.append(txt_file)
    return txt_files


class _NumpyForCityscapesScripts(object):
    """numpy as cityscapesscripts 2.x expects it: np.in1d (removed in numpy 2.4) is np.isin flattened."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique=False, invert=False):
        return np.isin(ar1, ar2, assume_unique=assume_unique, invert=invert).ravel()


def _write_dict_to_json(data, path):
    """cityscapesscripts' writeDict2JSON, also for the numpy integers numpy 2 returns from count_nonzero."""
    def _default(obj):
        return obj.item() if isinstance(obj, np.generic) else obj.__dict__

    with open(path, "w") as f:
        json.dump(data, f, default=_default, sort_keys=True, indent=1)


def evaluate_instance_level(gt_files, pred_files, pred_dir, work_dir):
    """Run cityscapesscripts' instance-level evaluation on explicit file lists.

    Args:
        gt_files: *_gtFine_instanceIds.png paths; pred_files: the matching prediction text files (same order).
        pred_dir: folder all predicted masks are inside (the evaluator refuses masks outside it).
        work_dir: scratch folder for the evaluator's files (gt instance cache, matches.json, result JSON).
    Returns:
        the evaluator's result dict ("averages" with "allAp", "allAp50%" and per-class "ap", "ap50%").
    """
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as cs_eval

    args = cs_eval.CArgs()
    args.__dict__.update(copy.deepcopy(cs_eval.args.__dict__))
    args.predictionPath = os.path.abspath(pred_dir)
    args.predictionWalk = None
    args.gtInstancesFile = os.path.join(work_dir, "gtInstances.json")
    args.exportFile = os.path.join(work_dir, "resultInstanceLevelSemanticLabeling.json")
    args.JSONOutput = True
    args.quiet = True
    args.colorized = False
    args.distanceAvailable = False
    missing = [path for path in gt_files if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError("Cityscapes ground truth not found: {} (the dataset's gt_dir must be the "
                                "gtFine/<split> folder of the converted data)".format(missing[:5]))
    cwd = os.getcwd()
    module_np, module_write = cs_eval.np, cs_eval.writeDict2JSON
    # The evaluator writes matches.json into the working directory.
    os.chdir(work_dir)
    # cityscapesscripts 2.3 predates numpy 2: give it the two pieces it misses, for this call only.
    cs_eval.np, cs_eval.writeDict2JSON = _NumpyForCityscapesScripts(), _write_dict_to_json
    try:
        return cs_eval.evaluateImgLists([os.path.abspath(p) for p in pred_files],
                                        [os.path.abspath(p) for p in gt_files], args)
    except SystemExit as e:  # cityscapesscripts' printError() exits; its message was printed just before
        raise RuntimeError("cityscapesscripts' instance evaluation failed (see the 'ERROR:' line above) on "
                           "predictions in '{}'".format(pred_dir)) from e
    finally:
        cs_eval.np, cs_eval.writeDict2JSON = module_np, module_write
        os.chdir(cwd)


def _finite_or_none(value):
    value = float(value)
    return None if math.isnan(value) else value


def summarize_instance_level(result):
    """{"AP", "AP50", "classes": {name: {"AP", "AP50"}}} in [0, 1] from the evaluator's result (None: no GT)."""
    averages = result["averages"]
    classes = OrderedDict(
        (name, {"AP": _finite_or_none(values["ap"]), "AP50": _finite_or_none(values["ap50%"])})
        for name, values in averages["classes"].items())
    return OrderedDict([("AP", _finite_or_none(averages["allAp"])), ("AP50", _finite_or_none(averages["allAp50%"])),
                        ("classes", classes)])


def cityscapes_instance_ap(dataset, predictions, keep_dir=None):
    """Official Cityscapes AP / AP50 of `predictions` on a CityscapesDataset (see summarize_instance_level).

    keep_dir: when given, the prediction files and the evaluator's JSON are kept there; otherwise a temporary
    folder is used and removed.
    """
    work_dir = tempfile.mkdtemp(prefix="cityscapes_eval_")
    try:
        pred_dir = os.path.join(work_dir, "predictions")
        os.makedirs(pred_dir)
        pred_files = write_cityscapes_predictions(dataset, predictions, pred_dir)
        gt_files = [dataset.gt_instance_file(i) for i in range(len(dataset))]
        result = evaluate_instance_level(gt_files, pred_files, pred_dir, work_dir)
        if keep_dir:
            os.makedirs(keep_dir, exist_ok=True)
            target = os.path.join(keep_dir, "cityscapes_predictions")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(pred_dir, target)
        return summarize_instance_level(result)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def format_instance_level(summary):
    """Readable table of the Cityscapes AP / AP50 (in %) per class and on average."""
    lines = ["{:<12} {:>7} {:>7}".format("class", "AP", "AP50")]
    for name, values in list(summary["classes"].items()) + [("average", summary)]:
        lines.append("{:<12} {:>7} {:>7}".format(name, *[
            "n/a" if values[key] is None else "{:.1f}".format(100 * values[key]) for key in ("AP", "AP50")]))
    return "\n".join(lines)


def do_cityscapes_evaluation(dataset, predictions, box_only, output_folder, iou_types, expected_results,
                             expected_results_sigma_tol, max_dets=100, coco_evaluator="faster_coco_eval"):
    """COCO-style evaluation (with ``coco_evaluator``), then (with "segm") cityscapesscripts' instance-level AP.

    Writes ``cityscapes_results.json`` ({"AP", "AP50", "classes": {...}}, fractions) to `output_folder` next to
    the COCO files. The Cityscapes AP and AP50 are also added to the returned COCOResults as task "cityscapes",
    so TEST.EXPECTED_RESULTS can name ("cityscapes", "AP", mean, std).

    Returns:
        the COCO evaluator's (COCOResults, coco_results, coco_evals).
    """
    from ..coco.coco_eval import check_expected_results, do_coco_evaluation

    coco_expected = [e for e in expected_results if e[0] != "cityscapes"]
    cs_expected = [e for e in expected_results if e[0] == "cityscapes"]
    results, coco_results, coco_evals = do_coco_evaluation(
        dataset=dataset, predictions=predictions, box_only=box_only, output_folder=output_folder,
        iou_types=iou_types, expected_results=coco_expected, expected_results_sigma_tol=expected_results_sigma_tol,
        max_dets=max_dets, coco_evaluator=coco_evaluator)
    if box_only or "segm" not in iou_types:
        return results, coco_results, coco_evals
    logger = logging.getLogger("maskrcnn_benchmark.inference")
    logger.info("Evaluating masks with cityscapesscripts' instance-level evaluation")
    summary = cityscapes_instance_ap(dataset, predictions)
    logger.info("Cityscapes instance-level AP (%%):\n%s", format_instance_level(summary))
    # -1 like COCOResults' "not computed" when no class had ground truth.
    results.results["cityscapes"] = OrderedDict(
        (key, -1.0 if summary[key] is None else summary[key]) for key in ("AP", "AP50"))
    check_expected_results(results, cs_expected, expected_results_sigma_tol)
    if output_folder:
        save_json(summary, os.path.join(output_folder, "cityscapes_results.json"), indent=1)
    return results, coco_results, coco_evals
