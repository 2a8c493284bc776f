"""Cityscapes evaluation entry point: COCO-style AP plus cityscapesscripts' instance-level AP / AP50."""
from .cityscapes_eval import do_cityscapes_evaluation


def cityscapes_evaluation(dataset, predictions, output_folder, box_only=False, iou_types=("bbox",),
                          expected_results=(), expected_results_sigma_tol=4, max_dets=100):
    """Evaluate on a CityscapesDataset; see :func:`cityscapes_eval.do_cityscapes_evaluation`."""
    return do_cityscapes_evaluation(
        dataset=dataset,
        predictions=predictions,
        box_only=box_only,
        output_folder=output_folder,
        iou_types=iou_types,
        expected_results=expected_results,
        expected_results_sigma_tol=expected_results_sigma_tol,
        max_dets=max_dets,
    )
