"""Load a state dict whose key names only partly match the model's (different prefixes, wrappers)."""
import logging
from collections import OrderedDict

import torch


def _suffix_matches(model_key, loaded_key):
    # Match whole dotted components only, so "conv1.weight" never matches "xconv1.weight".
    return model_key == loaded_key or model_key.endswith("." + loaded_key)


def matching_loaded_key(model_key, loaded_keys):
    """The loaded key that fills ``model_key``: the longest one that is a dotted suffix of it, or None."""
    candidates = [k for k in loaded_keys if _suffix_matches(model_key, k)]
    return max(candidates, key=len) if candidates else None


def align_and_update_state_dicts(model_state_dict, loaded_state_dict, logger=None, ignore=()):
    """Copy into ``model_state_dict`` the loaded tensors whose key is a dotted suffix of a model key.

    A loaded checkpoint may name parameters with a shorter path than the model (e.g. a bare ResNet's
    ``layer1.0.conv1.weight`` against our ``backbone.body.layer1.0.conv1.weight``, or the same body used by a
    C4 box head). For every model key the longest loaded key that is a suffix of it wins, as in
    maskrcnn-benchmark. Tensors whose shape differs from the model's are not copied and are reported.

    Args:
        model_state_dict: the model's ``state_dict()``, updated in place.
        loaded_state_dict: dict name -> Tensor from the checkpoint.
        ignore: model keys left alone and not reported (the caller loads and reports them, e.g. the class-specific
            layers, see utils/class_layers.py); the loaded keys that match them are not reported as unused.
    Returns:
        dict with lists "loaded" (model keys filled), "missing" (model keys left as they were),
        "mismatched" ((model key, loaded key, model shape, loaded shape) tuples) and "unused" (loaded keys
        no model key matched).
    """
    logger = logger or logging.getLogger(__name__)
    model_keys = sorted(model_state_dict.keys())
    loaded_keys = sorted(loaded_state_dict.keys())
    loaded, missing, mismatched = [], [], []
    used = set()
    max_model_len = max([len(k) for k in model_keys], default=1)
    max_loaded_len = max([len(k) for k in loaded_keys], default=1)
    log_format = "{: <{}} loaded from {: <{}} of shape {}"
    for model_key in model_keys:
        loaded_key = matching_loaded_key(model_key, loaded_keys)
        if loaded_key is not None:
            used.add(loaded_key)
        if model_key in ignore:
            continue
        if loaded_key is None:
            missing.append(model_key)
            continue
        source = loaded_state_dict[loaded_key]
        target = model_state_dict[model_key]
        if tuple(source.shape) != tuple(target.shape):
            mismatched.append((model_key, loaded_key, tuple(target.shape), tuple(source.shape)))
            continue
        model_state_dict[model_key] = source.to(dtype=target.dtype)
        loaded.append(model_key)
        logger.debug(log_format.format(model_key, max_model_len, loaded_key, max_loaded_len, tuple(source.shape)))
    unused = [k for k in loaded_keys if k not in used]

    logger.info("Loaded %d of %d model tensors from the checkpoint%s", len(loaded), len(model_keys) - len(ignore),
                " (class-specific layers apart)" if ignore else "")
    if missing:
        logger.info("Not in the checkpoint (kept their initial values): %s", ", ".join(missing))
    if mismatched:
        logger.warning(
            "Shape mismatch, NOT loaded (e.g. a different number of classes; these keep their initial values):\n%s",
            "\n".join("  {} {} <- checkpoint {} {}".format(m, ms, c, cs) for m, c, ms, cs in mismatched))
    if unused:
        logger.info("Checkpoint entries not used by the model: %s", ", ".join(unused))
    return {"loaded": loaded, "missing": missing, "mismatched": mismatched, "unused": unused}


def strip_prefix_if_present(state_dict, prefix):
    """Return a copy of ``state_dict`` without ``prefix`` on its keys if every key has it (e.g. "module.")."""
    keys = sorted(state_dict.keys())
    if not keys or not all(key.startswith(prefix) for key in keys):
        return state_dict
    stripped = OrderedDict()
    for key, value in state_dict.items():
        stripped[key[len(prefix):]] = value
    return stripped


def plain_weights_into_deformable_convs(model, loaded_state_dict, logger=None):
    """Rename a plain conv's ``<name>.weight`` to ``<name>.conv.weight`` for every deformable conv of ``model``.

    ImageNet (and plain-detector) checkpoints hold ``layer2.0.conv2.weight`` where a model with
    MODEL.RESNETS.STAGE_WITH_DCN has the deformable ``layer2.0.conv2.conv.weight`` (maskrcnn-benchmark did the
    same for Detectron ``.pkl`` files). With its offset conv still at zero, the block then computes what the
    plain block of the checkpoint computed. Keys are matched by dotted suffix, as in
    :func:`align_and_update_state_dicts`; a checkpoint that already has the deformable name is left alone.

    Returns:
        a new dict name -> Tensor.
    """
    from maskrcnn_benchmark.layers.deform_conv import DFConv2d

    logger = logger or logging.getLogger(__name__)
    renamed = OrderedDict(loaded_state_dict)
    model_keys = list(model.state_dict().keys())
    moved = []
    for name, module in model.named_modules():
        if not isinstance(module, DFConv2d):
            continue
        if any(_suffix_matches(name + ".conv.weight", k) for k in loaded_state_dict):
            continue
        plain = [k for k in loaded_state_dict if _suffix_matches(name + ".weight", k)]
        if not plain:
            continue
        source = max(plain, key=len)
        renamed[source[:-len("weight")] + "conv.weight"] = loaded_state_dict[source]
        moved.append(source)
    for source in set(moved):
        if not any(_suffix_matches(model_key, source) for model_key in model_keys):
            renamed.pop(source)
    if moved:
        logger.info("Plain 3x3 conv weights loaded into %d deformable convs (their offsets start at zero): %s",
                    len(moved), ", ".join(sorted(set(moved))))
    return renamed


def _config_derived_keys(model):
    """State-dict keys of buffers the model computes from its config (modules with ``derived_from_config``, e.g.
    the anchor generator's cell anchors): a checkpoint may lack them."""
    keys = set()
    for name, module in model.named_modules():
        if getattr(module, "derived_from_config", False):
            prefix = name + "." if name else ""
            keys.update(prefix + key for key in module.state_dict().keys())
    return keys


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the model, where every tensor must (testing, prediction)."""


def load_state_dict(model, loaded_state_dict, logger=None, strict=False, ignore=()):
    """Load ``loaded_state_dict`` into ``model`` by suffix matching; returns the report of
    :func:`align_and_update_state_dicts`.

    The "module." prefix that DistributedDataParallel adds is removed first, so checkpoints written
    from a wrapped model load into a bare one; plain conv weights fill the model's deformable convs
    (:func:`plain_weights_into_deformable_convs`).
    """
    if not isinstance(loaded_state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in loaded_state_dict.values()):
        raise TypeError("load_state_dict expects a dict name -> Tensor; got {}".format(
            type(loaded_state_dict).__name__))
    model_state_dict = model.state_dict()
    loaded_state_dict = strip_prefix_if_present(loaded_state_dict, prefix="module.")
    loaded_state_dict = plain_weights_into_deformable_convs(model, loaded_state_dict, logger=logger)
    report = align_and_update_state_dicts(model_state_dict, loaded_state_dict, logger=logger, ignore=ignore)
    if strict and report["mismatched"]:
        model_key, loaded_key, model_shape, loaded_shape = report["mismatched"][0]
        raise CheckpointMismatchError(
            "The checkpoint does not fit the model: '{}' has shape {} in the checkpoint ('{}') but {} in the model "
            "({} mismatching tensor(s) in all). The config does not describe the model the checkpoint was trained "
            "as (e.g. another NUM_CLASSES or backbone): use the config the checkpoint was trained with".format(
                model_key, list(loaded_shape), loaded_key, list(model_shape), len(report["mismatched"])))
    missing = [key for key in report["missing"] if key not in _config_derived_keys(model)]
    if strict and missing:
        raise CheckpointMismatchError(
            "The checkpoint does not fit the model: it has no tensor for '{}' ({} of the model's {} tensors missing). "
            "It holds another model, or only part of one (e.g. pretrained backbone weights): test a checkpoint "
            "written by tools/train_net.py for this config".format(
                missing[0], len(missing), len(model_state_dict)))
    # model_state_dict still holds every key (unmatched ones keep the model's values), so strict loading holds.
    model.load_state_dict(model_state_dict)
    return report
