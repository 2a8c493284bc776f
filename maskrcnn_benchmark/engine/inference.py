"""Run a detector over a test data loader, save the predictions and evaluate them."""
import datetime
import errno
import json
import logging
import os
import shutil
import tempfile
import time

import torch
from tqdm import tqdm

from maskrcnn_benchmark.data.categories import (
    dataset_categories,
    is_identity,
    match_categories,
    num_classes_key,
    relabel_predictions,
)
from maskrcnn_benchmark.data.datasets.evaluation import evaluate
from maskrcnn_benchmark.engine.bbox_aug import BBoxAugDetector, check_bbox_aug_supported
from maskrcnn_benchmark.engine.mixed_precision import build_inference_precision, detections_to_float32
from maskrcnn_benchmark.utils.comm import all_gather, get_world_size, is_main_process, synchronize, unwrap_model
from maskrcnn_benchmark.utils.io import save_json


def compute_on_dataset(model, data_loader, device, timer=None, precision=None, bbox_aug=None):
    """Predict every image this process's loader yields.

    Args:
        precision (MixedPrecision | None): autocast of the forward passes (TEST.DTYPE); None: float32.
        bbox_aug (BBoxAugDetector | None): test-time augmentation (TEST.BBOX_AUG); the loader then yields the
            original PIL images (make_data_loader does so when TEST.BBOX_AUG.ENABLED).
    Returns:
        dict image index -> BoxList on the CPU in float32, in the resized input image's size (the original
        image's size with ``bbox_aug``).
    """
    model.eval()
    results_dict = {}
    cpu_device = torch.device("cpu")
    for images, targets, image_ids in tqdm(data_loader, disable=not is_main_process(), desc="inference"):
        with torch.no_grad():
            if timer is not None:
                timer["start"] = time.time()
            if bbox_aug is not None:
                output = bbox_aug(list(images))
            elif precision is not None:
                with precision.autocast():
                    output = model(images.to(device))
            else:
                output = model(images.to(device))
            if timer is not None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                timer["total"] += time.time() - timer["start"]
            output = [detections_to_float32(o.to(cpu_device)) for o in output]
        results_dict.update({int(img_id): result for img_id, result in zip(image_ids, output)})
    return results_dict


def _accumulate_predictions_from_multiple_gpus(predictions_per_gpu):
    all_predictions = all_gather(predictions_per_gpu)
    if not is_main_process():
        return None
    predictions = {}
    for p in all_predictions:
        predictions.update(p)
    image_ids = sorted(predictions.keys())
    if image_ids != list(range(len(image_ids))):
        logging.getLogger("maskrcnn_benchmark.inference").warning(
            "Number of images that were gathered from multiple processes is not a contiguous set "
            "(got {} images, largest index {}); some images might be missing from the evaluation".format(
                len(image_ids), image_ids[-1] if image_ids else None))
    return [predictions[i] for i in image_ids], image_ids


def resize_to_original(predictions, image_ids, dataset):
    """Resize each prediction to its image's original (width, height) from ``dataset.get_img_info``."""
    resized = []
    for prediction, image_id in zip(predictions, image_ids):
        info = dataset.get_img_info(image_id)
        size = (int(info["width"]), int(info["height"]))
        resized.append(prediction if tuple(prediction.size) == size else prediction.resize(size))
    return resized


def test_set_label_map(cfg, model_categories, dataset, dataset_name):
    """Model label -> test-set label by category name, decided before any inference is spent on the test set.

    Returns None when the labels are used as they are: the model's categories are not known (a warning says so
    when the class counts differ, as labels are then taken by position), the dataset has no category table, or the
    test set's categories are the model's. Raises ValueError (see match_categories) when no name is shared.
    """
    test_categories = dataset_categories(dataset)
    if test_categories is None or cfg.MODEL.RPN_ONLY:
        return None
    if model_categories is None:
        _warn_unknown_categories(cfg, test_categories, dataset_name)
        return None
    label_map = match_categories(model_categories, test_categories, dataset_name)
    return None if is_identity(label_map, len(model_categories)) else label_map


def _warn_unknown_categories(cfg, test_categories, dataset_name):
    """Without the model's categories, labels are taken by position: say so when the class counts differ."""
    key, num_classes = num_classes_key(cfg)
    if num_classes != len(test_categories) + 1:
        logging.getLogger("maskrcnn_benchmark.inference").warning(
            "The checkpoint does not say which categories the model was trained on (it predates category records "
            "or is not a training checkpoint), and %s = %d does not fit the %d categories + background of '%s': "
            "the model's labels are taken as the test set's by position", key, num_classes, len(test_categories),
            dataset_name)


RESULT_SET_FILE = ".result_set.json"  # names of the files the last complete evaluation left in its folder
_STAGING_PREFIX = ".evaluation-"
# What earlier versions wrote, removed when a folder has no RESULT_SET_FILE yet.
_KNOWN_RESULT_NAMES = ("predictions.pth", "bbox.json", "segm.json", "keypoints.json", "coco_results.json",
                       "box_proposals.json", "glas_results.json", "cityscapes_results.json", "cityscapes_predictions")


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def publish_result_set(staging_dir, output_folder):
    """Move everything in ``staging_dir`` into ``output_folder`` as one set, replacing the previous set.

    The previous set is what ``output_folder/.result_set.json`` lists (or, for a folder written before that file
    existed, the file names evaluations write), so no result of an earlier evaluation stays beside the new ones.
    Sub-folders that are not results (the ``iter_<N>`` folders of periodic evaluations) are left alone.
    """
    new_names = sorted(os.listdir(staging_dir))
    manifest = os.path.join(output_folder, RESULT_SET_FILE)
    try:
        with open(manifest) as f:
            old_names = json.load(f)
    except (OSError, ValueError):
        old_names = _KNOWN_RESULT_NAMES
    for name in old_names:
        if name not in new_names and os.path.basename(name) == name:
            _remove(os.path.join(output_folder, name))
    for name in new_names:
        target = os.path.join(output_folder, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging_dir, name), target)
    save_json(new_names, manifest)
    os.rmdir(staging_dir)


def _remove_stale_staging(output_folder):
    for name in os.listdir(output_folder):
        if name.startswith(_STAGING_PREFIX):
            shutil.rmtree(os.path.join(output_folder, name), ignore_errors=True)


def inference(model, data_loader, dataset_name, iou_types=("bbox",), box_only=False, device="cpu",
              expected_results=(), expected_results_sigma_tol=4, output_folder=None, label_map=None,
              precision=None, bbox_aug=None, **eval_kwargs):
    """Predict the whole test set, save ``predictions.pth`` and evaluate it.

    Predictions are gathered from all processes on rank 0, moved to the CPU and resized to the original
    image sizes; ``output_folder/predictions.pth`` holds the list of BoxList ordered by dataset index. Only
    rank 0 evaluates. predictions.pth and the evaluator's files are published together once the evaluation
    succeeded (see :func:`publish_result_set`): a failed evaluation leaves the folder as it was.

    Args:
        model: detector, returns list[BoxList] in eval mode.
        data_loader: a test DataLoader over a dataset with ``get_img_info``.
        dataset_name: for the log and the results.
        iou_types: any of "bbox", "segm", "keypoints".
        box_only: evaluate proposals (RPN only) by average recall instead of detections.
        expected_results, expected_results_sigma_tol: optional regression check, see the evaluator.
        output_folder: where predictions.pth and the evaluator's files go (None: nothing written).
        label_map: dict model label -> test-set label (:func:`test_set_label_map`): detections are relabelled
            into the test set's categories (those of unmapped labels dropped) before they are saved and scored;
            None keeps the model's labels.
        precision, bbox_aug: TEST.DTYPE's autocast and TEST.BBOX_AUG's detector, see :func:`compute_on_dataset`.
        eval_kwargs: passed on to :func:`evaluate` (e.g. max_dets and coco_evaluator for COCO).
    Returns:
        the evaluator's result on rank 0 (e.g. (COCOResults, coco_results, eval objects)), None elsewhere.
    """
    device = torch.device(device)
    num_devices = get_world_size()
    logger = logging.getLogger("maskrcnn_benchmark.inference")
    dataset = data_loader.dataset
    logger.info("Start evaluation on {} dataset({} images).".format(dataset_name, len(dataset)))
    timer = {"total": 0.0, "start": 0.0}
    start_time = time.time()
    predictions = compute_on_dataset(model, data_loader, device, timer, precision=precision, bbox_aug=bbox_aug)
    synchronize()
    total_time = time.time() - start_time
    logger.info("Total run time: {} ({:.4f} s / img per device, on {} devices)".format(
        str(datetime.timedelta(seconds=int(total_time))), total_time * num_devices / max(len(dataset), 1),
        num_devices))
    logger.info("Model inference time: {:.4f} s / img per device, on {} devices".format(
        timer["total"] * num_devices / max(len(dataset), 1), num_devices))

    gathered = _accumulate_predictions_from_multiple_gpus(predictions)
    if not is_main_process():
        return None
    predictions, image_ids = gathered
    predictions = resize_to_original(predictions, image_ids, dataset)
    if label_map is not None and not box_only:
        predictions = relabel_predictions(predictions, label_map)

    extra_args = dict(
        box_only=box_only,
        iou_types=iou_types,
        expected_results=expected_results,
        expected_results_sigma_tol=expected_results_sigma_tol,
    )
    extra_args.update(eval_kwargs)
    if not output_folder:
        return evaluate(dataset=dataset, predictions=predictions, output_folder=None, **extra_args)
    # Everything is written into a staging folder and published as one set when the evaluation succeeded: an
    # evaluation that fails leaves the previous complete set untouched and none of its own files.
    os.makedirs(output_folder, exist_ok=True)
    _remove_stale_staging(output_folder)
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=output_folder)
    try:
        torch.save(predictions, os.path.join(staging, "predictions.pth"))
        result = evaluate(dataset=dataset, predictions=predictions, output_folder=staging, **extra_args)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(e.errno, "No disk space left to write the evaluation results of {} in '{}' ({} bytes "
                                   "free); the results already there are unchanged".format(
                                       dataset_name, output_folder, shutil.disk_usage(output_folder).free)) from e
        raise
    publish_result_set(staging, output_folder)
    return result


def coco_max_dets(cfg):
    """maxDets for COCO AP: TEST.COCO_MAX_DETS, raised to the detections kept per image so none is ignored."""
    return max(cfg.TEST.COCO_MAX_DETS, cfg.TEST.DETECTIONS_PER_IMG, cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG)


def run_test(cfg, model, distributed, output_subdir=None, model_categories=None):
    """Evaluate ``model`` on every dataset of DATASETS.TEST, as train_net.py and test_net.py do.

    Results go to ``OUTPUT_DIR/inference/<dataset>/`` (plus ``output_subdir`` when given, e.g. for the
    periodic evaluation during training). ``model_categories`` (the training categories stored with the
    checkpoint) lets a test set with other categories be scored by category name, see :func:`inference`.

    Returns:
        list of the evaluator's results (None entries on non-main processes).
    """
    from maskrcnn_benchmark.data import make_data_loader
    from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import check_coco_evaluator

    check_coco_evaluator(cfg.TEST.COCO_EVALUATOR)  # before any inference is spent on the test sets
    model = unwrap_model(model)
    iou_types = ("bbox",)
    if cfg.MODEL.MASK_ON:
        iou_types = iou_types + ("segm",)
        if cfg.TEST.BOUNDARY_AP:
            iou_types = iou_types + ("boundary",)
    if cfg.MODEL.KEYPOINT_ON:
        iou_types = iou_types + ("keypoints",)
    precision = build_inference_precision(cfg, cfg.MODEL.DEVICE)
    check_bbox_aug_supported(cfg)
    bbox_aug = BBoxAugDetector(model, cfg, cfg.MODEL.DEVICE) if cfg.TEST.BBOX_AUG.ENABLED else None
    dataset_names = cfg.DATASETS.TEST
    data_loaders_val = make_data_loader(cfg, is_train=False, is_distributed=distributed)
    results = []
    for dataset_name, data_loader_val in zip(dataset_names, data_loaders_val):
        label_map = test_set_label_map(cfg, model_categories, data_loader_val.dataset, dataset_name)
        output_folder = None
        if cfg.OUTPUT_DIR:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
            if output_subdir:
                output_folder = os.path.join(output_folder, output_subdir)
            if is_main_process():
                os.makedirs(output_folder, exist_ok=True)
        results.append(inference(
            model,
            data_loader_val,
            dataset_name=dataset_name,
            iou_types=iou_types,
            box_only=cfg.MODEL.RPN_ONLY and not cfg.MODEL.RETINANET_ON,  # RetinaNet's outputs are detections
            device=cfg.MODEL.DEVICE,
            expected_results=cfg.TEST.EXPECTED_RESULTS,
            expected_results_sigma_tol=cfg.TEST.EXPECTED_RESULTS_SIGMA_TOL,
            output_folder=output_folder,
            max_dets=coco_max_dets(cfg),
            coco_evaluator=cfg.TEST.COCO_EVALUATOR,
            glas_score_threshold=cfg.TEST.GLAS_SCORE_THRESHOLD,
            label_map=label_map,
            precision=precision,
            bbox_aug=bbox_aug,
        ))
        synchronize()
    return results
