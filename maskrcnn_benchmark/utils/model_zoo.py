"""Download of pretrained weights into a local cache."""
import logging
import os
import sys
from urllib.parse import urlparse

import torch
from torch.hub import download_url_to_file

from maskrcnn_benchmark.utils.comm import is_main_process, synchronize


def default_cache_dir():
    """``$TORCH_HOME/maskrcnn_benchmark`` (torch.hub's cache root), the folder downloads go to."""
    return os.path.join(torch.hub.get_dir(), "maskrcnn_benchmark")


def cache_url(url, model_dir=None, progress=True):
    """Download ``url`` once into ``model_dir`` and return the local path.

    Only the main process downloads; the others wait at a barrier and then use the cached file.
    ``download_url_to_file`` writes to a temporary file and renames it, so an interrupted download never
    leaves a partial file under the final name. Works for http(s):// and file:// URLs.
    """
    if model_dir is None:
        model_dir = default_cache_dir()
    os.makedirs(model_dir, exist_ok=True)
    parts = urlparse(url)
    filename = os.path.basename(parts.path)
    if not filename:
        raise ValueError("Cannot derive a file name from URL '{}'; give a URL that ends in a file name".format(url))
    if filename == "model_final.pkl":
        # Detectron's model-zoo URLs all end in model_final.pkl; keep them apart by their path.
        filename = parts.path.replace("/", "_").lstrip("_")
    cached_file = os.path.join(model_dir, filename)
    if not os.path.exists(cached_file) and is_main_process():
        logging.getLogger(__name__).info("Downloading %s to %s", url, cached_file)
        sys.stderr.flush()
        download_url_to_file(url, cached_file, hash_prefix=None, progress=progress)
    synchronize()
    return cached_file
