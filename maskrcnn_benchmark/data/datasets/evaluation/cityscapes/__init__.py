"""Cityscapes evaluation entry point: COCO-style AP plus cityscapesscripts' instance-level AP / AP50."""
from maskrcnn_benchmark.data.datasets.evaluation import make_evaluation_entry_point

from .cityscapes_eval import do_cityscapes_evaluation

cityscapes_evaluation = make_evaluation_entry_point(
    do_cityscapes_evaluation, "cityscapes_evaluation",
    "Evaluate on a CityscapesDataset; see :func:`cityscapes_eval.do_cityscapes_evaluation`.")
