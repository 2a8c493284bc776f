"""Logging set-up shared by the tools: console on the main process, plus a log file in the output folder."""
import logging
import os
import sys

_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def setup_logger(name, save_dir, distributed_rank, filename="log.txt"):
    """Configure and return ``logging.getLogger(name)``.

    Only rank 0 gets handlers (stdout, and ``save_dir/filename`` when save_dir is given); other ranks
    stay silent so a multi-process run prints each line once. Calling it again replaces the handlers this
    function installed before instead of duplicating every line.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_maskrcnn_benchmark", False):
            logger.removeHandler(handler)
            handler.close()
    if distributed_rank > 0:
        return logger

    formatter = logging.Formatter(_FORMAT)
    console = logging.StreamHandler(stream=sys.stdout)
    # Per-tensor loading reports and the environment dump are DEBUG: in the log file, not on the console.
    console.setLevel(logging.INFO)
    console.setFormatter(formatter)
    console._maskrcnn_benchmark = True
    logger.addHandler(console)

    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(save_dir, filename))
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        file_handler._maskrcnn_benchmark = True
        logger.addHandler(file_handler)
    return logger
