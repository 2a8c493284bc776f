"""What tools/train_net.py and tools/test_net.py share: their command line and their start-up.

(Anchor: detectron2's ``engine/defaults.py`` with ``default_argument_parser`` and ``default_setup``.)
"""
import argparse
import collections
import contextlib
import os

import torch

from maskrcnn_benchmark.config import load_config
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

# What default_setup hands back to the tool: the frozen config, whether this is one process of several, the
# process's local rank, the torch.device it runs on (cfg.MODEL.DEVICE names the same) and the
# "maskrcnn_benchmark" logger.
ToolSetup = collections.namedtuple("ToolSetup", ["cfg", "distributed", "local_rank", "device", "logger"])


def default_argument_parser(description, add_tool_arguments=None):
    """The command line of the tools: ``--config-file FILE``, ``--local_rank N``, the tool's own options, then
    ``KEY VALUE`` config overrides.

    Args:
        description (str): the tool's --help title.
        add_tool_arguments (callable): ``add_tool_arguments(parser)`` adds the tool's own options.
    Returns:
        argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int,
                        default=int(os.environ.get("LOCAL_RANK", "0")),
                        help="GPU index of this process (torchrun sets $LOCAL_RANK instead)")
    if add_tool_arguments is not None:
        add_tool_arguments(parser)
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="Modify config options using the command-line: KEY VALUE pairs")
    return parser


def default_setup(args, log_file="log.txt", describe_run=True):
    """Start a tool: config, distributed init, device, output folder and logger, then log what runs.

    Loads ``args.config_file`` with ``args.opts``, joins the process group when launched by torchrun /
    torch.distributed.launch, sets MODEL.DEVICE to the device actually used (periodic and final tests read it),
    freezes the config, creates OUTPUT_DIR and logs to stdout and ``OUTPUT_DIR/log_file`` (rank 0 only).

    Args:
        args (argparse.Namespace): from ``default_argument_parser``.
        log_file (str): name of the log file in OUTPUT_DIR.
        describe_run (bool): also log the process count and the config file's name (training does).
    Returns:
        ToolSetup(cfg, distributed, local_rank, device, logger)
    """
    cfg = load_config(args.config_file or None, args.opts or ())
    distributed, local_rank = init_distributed_from_env(
        args.local_rank, use_cuda=cfg.MODEL.DEVICE.startswith("cuda") and torch.cuda.is_available(),
        timeout_seconds=cfg.DISTRIBUTED.TIMEOUT)
    device = resolve_device(cfg.MODEL.DEVICE, local_rank, distributed)
    cfg.MODEL.DEVICE = str(device)
    cfg.freeze()

    if cfg.OUTPUT_DIR:
        mkdir(cfg.OUTPUT_DIR)
    setup_environment()
    logger = setup_logger("maskrcnn_benchmark", cfg.OUTPUT_DIR, get_rank(), filename=log_file)
    if describe_run:
        logger.info("Using %d processes", int(os.environ.get("WORLD_SIZE", "1")))
    logger.info(args)
    logger.debug("Collecting env info (might take some time)\n%s", collect_env_info())
    if describe_run and args.config_file:
        logger.info("Loaded configuration file %s", args.config_file)
    logger.info("Running with config:\n%s", cfg)
    return ToolSetup(cfg, distributed, local_rank, device, logger)


@contextlib.contextmanager
def stalled_processes_reported(cfg, distributed):
    """Turn a collective that timed out (another process died or hangs) into the error that says so."""
    try:
        yield
    except RuntimeError as e:
        if distributed and is_collective_timeout(e):
            raise stalled_process_error(e, cfg.DISTRIBUTED.TIMEOUT) from e
        raise


__all__ = ["ToolSetup", "default_argument_parser", "default_setup", "stalled_processes_reported"]
