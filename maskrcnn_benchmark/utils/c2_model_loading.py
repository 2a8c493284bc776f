"""Read Detectron (Caffe2) ``.pkl`` weights, e.g. catalog://ImageNetPretrained/MSRA/R-50, without running code.

Detectron saved its weights as a Python 2 pickle of ``{"blobs": {name: numpy array}}``. A plain
``pickle.load`` would execute any callable the file names, so the unpickler here resolves only the numpy
functions needed to rebuild arrays and refuses everything else.
"""
import logging
import pickle
import re
from collections import OrderedDict

import numpy as np
import torch

# (module, name) pairs a Detectron weights pickle legitimately references: numpy array reconstruction only.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    # Python 3 writes protocol-2 byte strings as _codecs.encode(str, "latin1"): a pure conversion.
    ("_codecs", "encode"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            "global '{}.{}' is not allowed: only numpy arrays may be unpickled".format(module, name))


def load_c2_pickle(path):
    """Unpickle a Detectron weights file allowing numpy arrays only.

    Returns:
        dict name -> numpy array (the "blobs" entry when present).
    Raises:
        RuntimeError naming ``path`` when the file holds anything else or is truncated.
    """
    try:
        with open(path, "rb") as f:
            data = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise RuntimeError("Refusing to load Detectron weights '{}': {}".format(path, e)) from e
    except (EOFError, ValueError) as e:
        raise RuntimeError("Cannot read Detectron weights '{}': truncated or corrupt ({})".format(path, e)) from e
    if isinstance(data, dict) and "blobs" in data:
        data = data["blobs"]
    if not isinstance(data, dict):
        raise RuntimeError("Detectron weights '{}' hold a {}, expected a dict of arrays".format(
            path, type(data).__name__))
    return data


# Detectron ResNet blob name -> our backbone name (body-relative; matched by suffix on loading).
# "s"/"b" of an affine BN or GN are its weight/bias; the folded statistics mean FrozenBatchNorm2d keeps
# running_mean 0 / running_var 1.
_RESNET_RULES = (
    (re.compile(r"^conv1_w$"), lambda m: "stem.conv1.weight"),
    (re.compile(r"^(?:res_conv1_bn|conv1_gn)_([sb])$"), lambda m: "stem.bn1." + _AFFINE[m.group(1)]),
    (re.compile(r"^res(\d)_(\d+)_branch2([abc])_w$"),
     lambda m: "layer{}.{}.conv{}.weight".format(int(m.group(1)) - 1, m.group(2), "abc".index(m.group(3)) + 1)),
    (re.compile(r"^res(\d)_(\d+)_branch2([abc])_(?:bn|gn)_([sb])$"),
     lambda m: "layer{}.{}.bn{}.{}".format(int(m.group(1)) - 1, m.group(2), "abc".index(m.group(3)) + 1,
                                           _AFFINE[m.group(4)])),
    (re.compile(r"^res(\d)_(\d+)_branch1_w$"),
     lambda m: "layer{}.{}.downsample.0.weight".format(int(m.group(1)) - 1, m.group(2))),
    (re.compile(r"^res(\d)_(\d+)_branch1_(?:bn|gn)_([sb])$"),
     lambda m: "layer{}.{}.downsample.1.{}".format(int(m.group(1)) - 1, m.group(2), _AFFINE[m.group(3)])),
)
_AFFINE = {"s": "weight", "b": "bias"}


def convert_c2_resnet_blobs(blobs, logger=None):
    """Rename Detectron ImageNet ResNet blobs to our backbone names and make them tensors.

    Momentum buffers (``*_momentum``) and the classifier (``fc1000_*``, ``pred_*``) are dropped; other
    unknown blobs are kept under their own name (they then show up as unused in the loading report).

    Returns:
        OrderedDict name -> Tensor.
    """
    logger = logger or logging.getLogger(__name__)
    converted = OrderedDict()
    for name in sorted(blobs):
        if name.endswith("_momentum") or name.startswith(("fc1000", "pred_")):
            continue
        value = blobs[name]
        if not isinstance(value, np.ndarray):
            continue
        new_name = name
        for pattern, rename in _RESNET_RULES:
            match = pattern.match(name)
            if match:
                new_name = rename(match)
                break
        converted[new_name] = torch.from_numpy(np.ascontiguousarray(value))
        logger.debug("C2 name: %s -> %s", name, new_name)
    return converted


def load_c2_format(path, logger=None):
    """Checkpoint dict ``{"model": state_dict}`` from a Detectron ImageNet ResNet ``.pkl``."""
    return {"model": convert_c2_resnet_blobs(load_c2_pickle(path), logger=logger)}
