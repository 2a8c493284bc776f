"""Dispatch evaluation of a list of predictions to the evaluator for the dataset's type."""


def make_evaluation_entry_point(do_evaluation, name, doc):
    """maskrcnn-benchmark's ``<name>_evaluation(dataset, predictions, output_folder, box_only, ...)`` around a
    ``do_<name>_evaluation(dataset, predictions, box_only, output_folder, ...)``: the public argument order and
    defaults that user code calls positionally, in one place for every dataset type."""
    def entry_point(dataset, predictions, output_folder, box_only=False, iou_types=("bbox",), expected_results=(),
                    expected_results_sigma_tol=4, max_dets=100, coco_evaluator="faster_coco_eval"):
        return do_evaluation(dataset=dataset, predictions=predictions, box_only=box_only,
                             output_folder=output_folder, iou_types=iou_types, expected_results=expected_results,
                             expected_results_sigma_tol=expected_results_sigma_tol, max_dets=max_dets,
                             coco_evaluator=coco_evaluator)

    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__doc__ = doc
    return entry_point


def evaluate(dataset, predictions, output_folder, glas_score_threshold=0.5, **kwargs):
    """Evaluate ``predictions`` on ``dataset``.

    Args:
        dataset: the test dataset. A CityscapesDataset gets COCO AP plus cityscapesscripts' instance-level AP.
            COCO-style datasets (COCODataset and subclasses, or anything with a
            pycocotools ``.coco`` and the id maps) get COCO AP from faster-coco-eval or pycocotools
            (``coco_evaluator``), GlaS datasets the challenge's metrics too.
        predictions: list[BoxList], one per dataset index, in the original image sizes.
        output_folder: where result files go (None: nothing written).
        glas_score_threshold: on a GlaS dataset, the score a detection needs to enter the segmentation that F1,
            object Dice and object Hausdorff are computed on (TEST.GLAS_SCORE_THRESHOLD); unused elsewhere.
        kwargs: evaluator options (box_only, iou_types, expected_results, expected_results_sigma_tol, max_dets,
            coco_evaluator: "faster_coco_eval" or "pycocotools", TEST.COCO_EVALUATOR).
    Returns:
        the evaluator's result.
    """
    from maskrcnn_benchmark.data.datasets.evaluation.coco import coco_evaluation

    if hasattr(dataset, "gt_instance_file") and hasattr(dataset, "coco"):  # a CityscapesDataset
        from maskrcnn_benchmark.data.datasets.evaluation.cityscapes import cityscapes_evaluation

        return cityscapes_evaluation(dataset=dataset, predictions=predictions, output_folder=output_folder, **kwargs)

    try:
        from maskrcnn_benchmark.data.datasets.coco import COCODataset
    except ImportError:  # the dataset module is optional for evaluating hand-built COCO-like datasets
        COCODataset = None
    is_coco = (COCODataset is not None and isinstance(dataset, COCODataset)) or all(
        hasattr(dataset, attr) for attr in ("coco", "id_to_img_map", "contiguous_category_id_to_json_id"))
    if is_coco:
        from maskrcnn_benchmark.data.datasets.evaluation.glas import glas_evaluation, is_glas_dataset

        if is_glas_dataset(dataset):  # COCO AP plus the challenge's F1 / object Dice / object Hausdorff
            return glas_evaluation(dataset=dataset, predictions=predictions, output_folder=output_folder,
                                   score_threshold=glas_score_threshold, **kwargs)
        return coco_evaluation(dataset=dataset, predictions=predictions, output_folder=output_folder, **kwargs)
    raise NotImplementedError(
        "No evaluator for dataset type {}; evaluation supports COCO-style datasets (with .coco, .id_to_img_map and "
        ".contiguous_category_id_to_json_id)".format(type(dataset).__name__))
