"""Map torchvision's ResNet checkpoints (``resnet50-*.pth``) onto maskrcnn-benchmark's backbone names."""
import logging
import re
from collections import OrderedDict

# torchvision's stem lives at the top level of its ResNet; ours is ``body.stem``. The residual stages
# (layer1..layer4, with conv/bn/downsample.{0,1} inside each block) already share names.
_STEM_RENAMES = (
    (re.compile(r"^conv1\."), "stem.conv1."),
    (re.compile(r"^bn1\."), "stem.bn1."),
)


def is_torchvision_resnet_state_dict(state_dict):
    """True when the keys look like torchvision's ``ResNet.state_dict()`` (top-level conv1/bn1/layer1...)."""
    keys = set(state_dict.keys())
    return "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys)


def convert_torchvision_resnet_state_dict(state_dict, logger=None):
    """Rename a torchvision ResNet state dict to maskrcnn-benchmark backbone names.

    ``conv1``/``bn1`` become ``stem.conv1``/``stem.bn1``; ``layerN.*`` are kept (they are then matched by suffix
    against ``backbone.body.layerN.*`` or a C4 box head's ``layer4``); the classifier ``fc.*`` and the
    ``num_batches_tracked`` counters, which FrozenBatchNorm2d does not have, are dropped. BatchNorm weight,
    bias, running_mean and running_var keep their names and land in the FrozenBatchNorm2d buffers.

    Args:
        state_dict: dict name -> Tensor as saved by torchvision.
    Returns:
        OrderedDict name -> Tensor with the new names.
    """
    logger = logger or logging.getLogger(__name__)
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        new_key = key
        for pattern, replacement in _STEM_RENAMES:
            new_key = pattern.sub(replacement, new_key)
        converted[new_key] = value
        if new_key != key:
            logger.debug("torchvision ResNet: %s -> %s", key, new_key)
    return converted
