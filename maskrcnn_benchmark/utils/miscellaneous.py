"""Small helpers used by the tools: folders, config and label dumps, seeding."""
import errno
import logging
import os
import random

import numpy as np
import torch

from maskrcnn_benchmark.utils.comm import is_main_process
from maskrcnn_benchmark.utils.io import atomic_open, save_json


def mkdir(path):
    """Create ``path`` and its parents; no error if it exists."""
    try:
        os.makedirs(path)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def save_labels(dataset_list, output_dir):
    """Write ``labels.json`` (contiguous label id -> category name) of the first dataset that has categories."""
    if not is_main_process():
        return
    logger = logging.getLogger(__name__)
    ids_to_labels = {}
    for dataset in dataset_list:
        if hasattr(dataset, "categories"):
            ids_to_labels.update(dataset.categories)
        else:
            logger.warning("Dataset [%s] has no categories attribute, labels.json file won't be created",
                           dataset.__class__.__name__)
    if ids_to_labels:
        labels_file = os.path.join(output_dir, "labels.json")
        logger.info("Saving labels mapping into %s", labels_file)
        save_json(ids_to_labels, labels_file, indent=2)


def save_config(cfg, path):
    """Write the merged config as YAML so the run can be reproduced with ``--config-file path``."""
    if not is_main_process():
        return
    with atomic_open(path) as f:
        f.write(cfg.dump())


def set_random_seed(seed, rank=0):
    """Seed python, numpy and torch; returns the seed used.

    Args:
        seed: SOLVER.SEED. A negative value draws a fresh seed from the OS so runs differ.
        rank: process rank, added to the seed so data augmentation differs between processes.
    """
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") % (2 ** 31)
    seed = int(seed) + int(rank)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    return seed
