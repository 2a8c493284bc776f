#!/usr/bin/env python
"""Evaluate a trained detector on DATASETS.TEST.

    python tools/test_net.py --config-file F [--ckpt P] [KEY VALUE ...]

Builds the detector alone and loads ``--ckpt`` (default: the checkpoint OUTPUT_DIR/last_checkpoint names,
else MODEL.WEIGHT). Checkpoints of adversarial training load too; their discriminator entries are ignored.
A checkpoint whose tensors do not all fit the model is refused (naming the first mismatching key). When the
checkpoint records its training categories and the test set's differ, detections are scored by category name.
Writes predictions.pth, bbox.json/segm.json and coco_results.json under OUTPUT_DIR/inference/<dataset>/.
With MODEL.MASK_ON, Boundary AP (task "boundary", scored on segm.json) is reported next to mask AP unless
TEST.BOUNDARY_AP is False. The log and coco_results.json ("per_category_ap") also give the AP of each category.
COCO AP is computed by faster-coco-eval; TEST.COCO_EVALUATOR pycocotools gives the same numbers with the official
COCO API (slower).
"""
from maskrcnn_benchmark.engine.defaults import default_argument_parser, default_setup, stalled_processes_reported
from maskrcnn_benchmark.engine.inference import run_test
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer


def parse_args(argv=None):
    def add_test_arguments(parser):
        parser.add_argument("--ckpt", default=None,
                            help="checkpoint to test (default: OUTPUT_DIR/last_checkpoint, else MODEL.WEIGHT)")

    return default_argument_parser("PyTorch Object Detection Inference", add_test_arguments).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg, distributed, _, _, _ = default_setup(args, log_file="test_log.txt", describe_run=False)
    save_dir = cfg.OUTPUT_DIR

    model = build_detection_model(cfg)
    model.to(cfg.MODEL.DEVICE)
    checkpointer = DetectronCheckpointer(cfg, model, save_dir=save_dir)
    # strict: a checkpoint that leaves any tensor of the model unloaded would be evaluated half random.
    if args.ckpt:
        extra = checkpointer.load(args.ckpt, use_latest=False, strict=True)
    elif checkpointer.has_checkpoint():
        extra = checkpointer.load(use_latest=True, strict=True)
    elif cfg.MODEL.WEIGHT:
        extra = checkpointer.load(cfg.MODEL.WEIGHT, use_latest=False, strict=True)
    else:
        raise FileNotFoundError(
            "Nothing to test: no --ckpt given, no last_checkpoint in OUTPUT_DIR '{}' and MODEL.WEIGHT is empty. "
            "Train first (tools/train_net.py) or pass --ckpt PATH".format(save_dir))
    # The training categories stored with the checkpoint: a test set with other categories is matched by name.
    with stalled_processes_reported(cfg, distributed):
        return run_test(cfg, model, distributed, model_categories=extra.get("categories"))


if __name__ == "__main__":
    main()
