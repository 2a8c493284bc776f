"""Run a detector over a test data loader, save the predictions and evaluate them."""
import logging
import os
import time
import datetime

import torch
from tqdm import tqdm

from maskrcnn_benchmark.data.datasets.evaluation import evaluate
from maskrcnn_benchmark.utils.comm import all_gather, get_world_size, is_main_process, synchronize


def compute_on_dataset(model, data_loader, device, timer=None):
    """Predict every image this process's loader yields.

    Returns:
        dict image index -> BoxList on the CPU, in the resized input image's size.
    """
    model.eval()
    results_dict = {}
    cpu_device = torch.device("cpu")
    for images, targets, image_ids in tqdm(data_loader, disable=not is_main_process(), desc="inference"):
        with torch.no_grad():
            if timer is not None:
                timer["start"] = time.time()
            output = model(images.to(device))
            if timer is not None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                timer["total"] += time.time() - timer["start"]
            output = [o.to(cpu_device) for o in output]
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


def _atomic_torch_save(obj, path):
    tmp_path = path + ".tmp"
    torch.save(obj, tmp_path)
    os.replace(tmp_path, path)


def inference(model, data_loader, dataset_name, iou_types=("bbox",), box_only=False, device="cpu",
              expected_results=(), expected_results_sigma_tol=4, output_folder=None, **eval_kwargs):
    """Predict the whole test set, save ``predictions.pth`` and evaluate it.

    Predictions are gathered from all processes on rank 0, moved to the CPU and resized to the original
    image sizes; ``output_folder/predictions.pth`` holds the list of BoxList ordered by dataset index
    (written atomically). Only rank 0 evaluates.

    Args:
        model: detector, returns list[BoxList] in eval mode.
        data_loader: a test DataLoader over a dataset with ``get_img_info``.
        dataset_name: for the log and the results.
        iou_types: any of "bbox", "segm", "keypoints".
        box_only: evaluate proposals (RPN only) by average recall instead of detections.
        expected_results, expected_results_sigma_tol: optional regression check, see the evaluator.
        output_folder: where predictions.pth and the evaluator's files go (None: nothing written).
        eval_kwargs: passed on to :func:`evaluate` (e.g. max_dets for COCO).
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
    predictions = compute_on_dataset(model, data_loader, device, timer)
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

    if output_folder:
        os.makedirs(output_folder, exist_ok=True)
        _atomic_torch_save(predictions, os.path.join(output_folder, "predictions.pth"))

    extra_args = dict(
        box_only=box_only,
        iou_types=iou_types,
        expected_results=expected_results,
        expected_results_sigma_tol=expected_results_sigma_tol,
    )
    extra_args.update(eval_kwargs)
    return evaluate(dataset=dataset, predictions=predictions, output_folder=output_folder, **extra_args)


def coco_max_dets(cfg):
    """maxDets for COCO AP: TEST.COCO_MAX_DETS, raised to the detections kept per image so none is ignored."""
    return max(cfg.TEST.COCO_MAX_DETS, cfg.TEST.DETECTIONS_PER_IMG, cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMG)


def run_test(cfg, model, distributed, output_subdir=None):
    """Evaluate ``model`` on every dataset of DATASETS.TEST, as train_net.py and test_net.py do.

    Results go to ``OUTPUT_DIR/inference/<dataset>/`` (plus ``output_subdir`` when given, e.g. for the
    periodic evaluation during training).

    Returns:
        list of the evaluator's results (None entries on non-main processes).
    """
    from maskrcnn_benchmark.data import make_data_loader

    if distributed and hasattr(model, "module"):
        model = model.module
    iou_types = ("bbox",)
    if cfg.MODEL.MASK_ON:
        iou_types = iou_types + ("segm",)
        if cfg.TEST.BOUNDARY_AP:
            iou_types = iou_types + ("boundary",)
    if cfg.MODEL.KEYPOINT_ON:
        iou_types = iou_types + ("keypoints",)
    dataset_names = cfg.DATASETS.TEST
    data_loaders_val = make_data_loader(cfg, is_train=False, is_distributed=distributed)
    results = []
    for dataset_name, data_loader_val in zip(dataset_names, data_loaders_val):
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
            glas_score_threshold=cfg.TEST.GLAS_SCORE_THRESHOLD,
        ))
        synchronize()
    return results
