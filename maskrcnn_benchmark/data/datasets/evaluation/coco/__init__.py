"""COCO evaluation entry point."""
from .coco_eval import do_coco_evaluation


def coco_evaluation(dataset, predictions, output_folder, box_only=False, iou_types=("bbox",),
                    expected_results=(), expected_results_sigma_tol=4, max_dets=100):
    """Evaluate with pycocotools; see :func:`coco_eval.do_coco_evaluation`."""
    return do_coco_evaluation(
        dataset=dataset,
        predictions=predictions,
        box_only=box_only,
        output_folder=output_folder,
        iou_types=iou_types,
        expected_results=expected_results,
        expected_results_sigma_tol=expected_results_sigma_tol,
        max_dets=max_dets,
    )
