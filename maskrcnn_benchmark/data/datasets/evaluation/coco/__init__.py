"""COCO evaluation entry point."""
from maskrcnn_benchmark.data.datasets.evaluation import make_evaluation_entry_point

from .coco_eval import do_coco_evaluation

coco_evaluation = make_evaluation_entry_point(
    do_coco_evaluation, "coco_evaluation",
    "COCO AP with faster-coco-eval or pycocotools; see :func:`coco_eval.do_coco_evaluation`.")
