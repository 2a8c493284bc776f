#!/usr/bin/env python
"""Evaluate a trained detector on DATASETS.TEST.

    python tools/test_net.py --config-file F [--ckpt P] [KEY VALUE ...]

Builds the detector alone and loads ``--ckpt`` (default: the checkpoint OUTPUT_DIR/last_checkpoint names,
else MODEL.WEIGHT). Checkpoints of adversarial training load too; their discriminator entries are ignored.
A checkpoint whose tensors do not all fit the model is refused (naming the first mismatching key). When the
checkpoint records its training categories and the test set's differ, detections are scored by category name.
Writes predictions.pth, bbox.json/segm.json and coco_results.json under OUTPUT_DIR/inference/<dataset>/.
With MODEL.MASK_ON, Boundary AP (task "boundary", scored on segm.json) is reported next to mask AP unless
TEST.BOUNDARY_AP is False.
"""
import argparse
import os

import torch

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.engine.inference import run_test
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer
from maskrcnn_benchmark.utils.collect_env import collect_env_info
from maskrcnn_benchmark.utils.comm import (
    get_rank,
    init_distributed_from_env,
    is_collective_timeout,
    resolve_device,
    stalled_process_error,
)
from maskrcnn_benchmark.utils.env import setup_environment
from maskrcnn_benchmark.utils.logger import setup_logger
from maskrcnn_benchmark.utils.miscellaneous import mkdir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="PyTorch Object Detection Inference")
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int,
                        default=int(os.environ.get("LOCAL_RANK", "0")))
    parser.add_argument("--ckpt", default=None,
                        help="checkpoint to test (default: OUTPUT_DIR/last_checkpoint, else MODEL.WEIGHT)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="Modify config options using the command-line: KEY VALUE pairs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file or None, args.opts or ())
    distributed, local_rank = init_distributed_from_env(
        args.local_rank, use_cuda=cfg.MODEL.DEVICE.startswith("cuda") and torch.cuda.is_available(),
        timeout_seconds=cfg.DISTRIBUTED.TIMEOUT)
    cfg.MODEL.DEVICE = str(resolve_device(cfg.MODEL.DEVICE, local_rank, distributed))
    cfg.freeze()

    save_dir = cfg.OUTPUT_DIR
    if save_dir:
        mkdir(save_dir)
    setup_environment()
    logger = setup_logger("maskrcnn_benchmark", save_dir, get_rank(), filename="test_log.txt")
    logger.info(args)
    logger.debug("Collecting env info (might take some time)\n%s", collect_env_info())
    logger.info("Running with config:\n%s", cfg)

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
    try:
        return run_test(cfg, model, distributed, model_categories=extra.get("categories"))
    except RuntimeError as e:
        if distributed and is_collective_timeout(e):
            raise stalled_process_error(e, cfg.DISTRIBUTED.TIMEOUT) from e
        raise


if __name__ == "__main__":
    main()
