"""The global default configuration `cfg` and the checked merge of YAML files and command-line options.

    from maskrcnn_benchmark.config import cfg
    cfg = cfg.clone()
    cfg.merge_from_file("configs/demo/nuclei_R_18_FPN.yaml")
    cfg.merge_from_list(["SOLVER.MAX_ITER", 100])

`cfg` is a `CheckedCfgNode`: besides yacs' own checks, a key that does not exist raises `UnknownConfigKeyError`
naming the key, the file (or "command-line options") and the closest known key, and a value of the wrong type
(each element of a list/tuple value is checked: INPUT.MIN_SIZE_TRAIN "abc" is refused) raises `ConfigTypeError`
naming the key, the expected type and the file or the position on the command line. Two conveniences keep old
maskrcnn-benchmark YAML files loading unchanged: a scalar given for a list/tuple key becomes a 1-tuple
(`MIN_SIZE_TRAIN: 800`), an int given for a float key becomes a float, and the legacy
MODEL.BACKBONE.OUT_CHANNELS is copied into MODEL.RESNETS.BACKBONE_OUT_CHANNELS.

No key is silently ignored: a key of maskrcnn-benchmark's defaults that this package does not implement (see
`UNIMPLEMENTED_KEYS`) may stay at its default, but a file or option setting it to another value raises
`UnimplementedConfigKeyError` naming the key, its source and what to do instead.
"""
import difflib
import os

from yacs.config import CfgNode

from .defaults import _C

__all__ = ["cfg", "CheckedCfgNode", "ConfigTypeError", "UnknownConfigKeyError", "UnimplementedConfigKeyError",
           "UNIMPLEMENTED_KEYS", "check_implemented_keys", "load_config"]

# A YAML file may name a base file to merge first (detectron2's convention).
_BASE_KEY = "_BASE_"

# Old key -> current key; the old key stays in the defaults (so old files load) and its value is forwarded.
_LEGACY_ALIASES = {"MODEL.BACKBONE.OUT_CHANNELS": "MODEL.RESNETS.BACKBONE_OUT_CHANNELS"}

# Keys that exist so maskrcnn-benchmark files load, but that nothing in this package reads: key -> what they would
# do and what to use instead. Set to anything but their default, they are refused rather than ignored.
_FBNET_KPTS = ("there is no FBNet keypoint head (no FBNet architecture has keypoint stages); use a ResNet keypoint "
               "head (MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR) and remove the key")
UNIMPLEMENTED_KEYS = {
    "MODEL.BACKBONE.USE_GN": "GroupNorm in the ResNet body is chosen by MODEL.RESNETS.TRANS_FUNC "
                             "'BottleneckWithGN' and MODEL.RESNETS.STEM_FUNC 'StemWithGN' (MODEL.FPN.USE_GN for the "
                             "FPN); remove MODEL.BACKBONE.USE_GN",
    "MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM": "no mask head of this package has fully connected layers; remove the key",
    "MODEL.ROI_KEYPOINT_HEAD.MLP_HEAD_DIM": "the keypoint head has no fully connected layers; remove the key",
    "MODEL.FBNET.KPTS_HEAD_LAST_SCALE": _FBNET_KPTS,
    "MODEL.FBNET.KPTS_HEAD_BLOCKS": _FBNET_KPTS,
    "MODEL.FBNET.KPTS_HEAD_STRIDE": _FBNET_KPTS,
    "AMP_VERBOSE": "apex.amp is not used (mixed precision is torch.autocast, chosen by DTYPE); remove the key",
}


# Keys that take one of a few names: key -> the names (the first is the default). Any other value is refused as the
# file or option is read, not when the code that uses it runs hours later.
CHOICE_KEYS = {"TEST.COCO_EVALUATOR": ("faster_coco_eval", "pycocotools")}


class UnknownConfigKeyError(KeyError):
    """A YAML file or an option names a key that is not in config/defaults.py."""

    def __str__(self):
        # KeyError's default str() shows the repr of the message (quotes and escaped newlines).
        return str(self.args[0])


def _all_keys(node, prefix=""):
    """Dotted names of every leaf and sub-node of `node`."""
    keys = []
    for name, value in node.items():
        full = prefix + name
        keys.append(full)
        if isinstance(value, CfgNode):
            keys.extend(_all_keys(value, full + "."))
    return keys


def _unknown_key_error(full_key, source, root):
    known = _all_keys(root)
    close = difflib.get_close_matches(full_key, known, n=1, cutoff=0.5)
    if not close:
        # A typo in the leaf name under the wrong section still deserves a hint: compare leaf names alone.
        leaf = full_key.split(".")[-1]
        by_leaf = {k.split(".")[-1]: k for k in known}
        leaf_close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[leaf_close[0]]] if leaf_close else []
    hint = "Did you mean '{}'?".format(close[0]) if close else "See maskrcnn_benchmark/config/defaults.py for all keys."
    return UnknownConfigKeyError(
        "Unknown config key '{}' in {}. {}".format(full_key, source, hint)
    )


class UnimplementedConfigKeyError(ValueError):
    """A YAML file or an option sets a key this package does not implement to a non-default value."""


def _comparable(value):
    return tuple(_comparable(v) for v in value) if isinstance(value, (list, tuple)) else value


def _check_implemented(full_key, value, source):
    """Refuse `value` for an unimplemented key unless it is the key's default (files written for the defaults)."""
    if full_key not in UNIMPLEMENTED_KEYS:
        return
    default = _get(_C, full_key)
    if _comparable(value) != _comparable(default):
        raise UnimplementedConfigKeyError(
            "Config key '{}' = {!r} in {} is not implemented by this package, so it would be ignored: {}. "
            "(Its default {!r} is accepted.)".format(full_key, value, source, UNIMPLEMENTED_KEYS[full_key], default))


def _check_choice(full_key, value, source):
    """Refuse a value of a CHOICE_KEYS key that is not one of its names, naming the key, source and closest name."""
    choices = CHOICE_KEYS.get(full_key)
    if choices is None or value in choices:
        return
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    raise ValueError("Config key '{}' = {!r} in {} is not one of {}{}".format(
        full_key, value, source, choices, "; did you mean '{}'?".format(close[0]) if close else ""))


def check_implemented_keys(config, source="the config"):
    """Raise UnimplementedConfigKeyError if `config` holds a non-default value for a key of UNIMPLEMENTED_KEYS.

    Merges check every key as it is read; this catches values assigned in Python (``cfg.AMP_VERBOSE = True``).
    """
    for full_key in UNIMPLEMENTED_KEYS:
        value = _get(config, full_key)
        if value is not None:
            _check_implemented(full_key, value, source)


# Element type of list/tuple keys whose default is empty (the others take it from their default's elements).
_ELEMENT_TYPES = {"DATASETS.TRAIN": str, "DATASETS.TEST": str, "DATASETS.CUSTOM": str, "TEST.BBOX_AUG.SCALES": int}


class ConfigTypeError(ValueError):
    """A config value (or one element of a list/tuple value) does not have the key's type."""


def _type_matches(value, expected):
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _element_type(default, full_key):
    if full_key in _ELEMENT_TYPES:
        return _ELEMENT_TYPES[full_key]
    types = {type(e) for e in default}
    if len(types) == 1 and not issubclass(next(iter(types)), (list, tuple, dict)):
        return types.pop()
    return None  # empty default without a known type, or nested values (TEST.EXPECTED_RESULTS)


def _coerce(value, default, full_key, source):
    """Check `value` against the type of `default`, element by element for lists/tuples, with lenient fixes that
    yacs refuses but old maskrcnn-benchmark files rely on (a scalar for a list key, an int for a float key).

    Raises:
        ConfigTypeError naming the key, the expected type, the bad value and `source` (file or command line).
    """
    def refuse(bad, expected, what=""):
        if expected is int:
            hint = "; write a whole number, without quotes"
        elif expected is float:
            hint = "; write a number, without quotes"
        elif expected is bool:
            hint = "; write True or False"
        elif expected is str:
            hint = "; quote it (\"'{}'\") to keep it as text".format(bad)
        else:
            hint = ""
        raise ConfigTypeError("Config key '{}'{} in {} must be {}, got {!r} ({}){}".format(
            full_key, what, source, expected.__name__, bad, type(bad).__name__, hint))

    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            value = [value]
        element_type = _element_type(default, full_key)
        if element_type is not None:
            for position, element in enumerate(value):
                if not _type_matches(element, element_type):
                    refuse(element, element_type, " (element {} of {!r})".format(position, value))
            if element_type is float:
                value = [float(e) for e in value]
        return type(default)(value)
    if default is None or isinstance(default, dict):
        return value
    if not _type_matches(value, type(default)):
        refuse(value, type(default))
    if isinstance(default, float):
        return float(value)
    return value


def _check_tree(loaded, defaults, source, root, prefix=""):
    """Raise on unknown keys of `loaded` (a CfgNode read from `source`) and coerce its values in place."""
    for name in list(loaded.keys()):
        full_key = prefix + name
        if name not in defaults:
            if root.key_is_deprecated(full_key) or root.key_is_renamed(full_key):
                continue  # yacs reports these itself
            raise _unknown_key_error(full_key, source, root)
        default = defaults[name]
        value = loaded[name]
        if not isinstance(value, dict):
            # YAML gives "(4, 8)" as a string; decode it (as yacs would) before judging its type.
            value = CfgNode._decode_cfg_value(value)
        if isinstance(default, CfgNode):
            if not isinstance(value, dict):
                raise ValueError(
                    "Config key '{}' in {} is a section of keys, got the value {!r}".format(full_key, source, value)
                )
            _check_tree(value, default, source, root, full_key + ".")
        else:
            loaded[name] = _coerce(value, default, full_key, source)
            _check_implemented(full_key, loaded[name], source)
            _check_choice(full_key, loaded[name], source)


def _get(node, full_key):
    for part in full_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(node, full_key, value):
    parts = full_key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


class CheckedCfgNode(CfgNode):
    """yacs CfgNode whose merges name unknown keys, their source and the closest known key."""

    def merge_from_file(self, cfg_filename, _seen=()):
        """Merge a YAML file; unknown keys raise UnknownConfigKeyError naming the key and the file.

        A file may start with `_BASE_: other.yaml` (a path relative to the file): the base is merged first and
        the file's own keys override it, so a variant (e.g. the GAN twin of a config) states only what differs.
        """
        if not os.path.isfile(cfg_filename):
            raise FileNotFoundError("Config file not found: '{}'".format(cfg_filename))
        with open(cfg_filename, "r") as f:
            loaded = self.load_cfg(f)
        base = loaded.pop(_BASE_KEY, None)
        if base is not None:
            base_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(cfg_filename)), base))
            if base_path in _seen:
                raise ValueError("Config file '{}' includes itself through {}: {}".format(
                    cfg_filename, _BASE_KEY, " -> ".join(_seen + (base_path,))))
            if not os.path.isfile(base_path):
                raise FileNotFoundError("{} '{}' of config file '{}' not found (looked for '{}')".format(
                    _BASE_KEY, base, cfg_filename, base_path))
            self.merge_from_file(base_path, _seen + (os.path.abspath(cfg_filename),))
        self._merge_checked(loaded, "config file '{}'".format(cfg_filename))

    def merge_from_other_cfg(self, cfg_other):
        """Merge another CfgNode (or dict); unknown keys raise UnknownConfigKeyError."""
        other = cfg_other if isinstance(cfg_other, CfgNode) else CfgNode(cfg_other)
        self._merge_checked(other.clone(), "the merged config")

    def merge_from_list(self, cfg_list):
        """Merge ["KEY.PATH", value, ...] pairs (e.g. command-line opts); unknown keys name the key and the hint."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                "Config options must come in KEY VALUE pairs, got an odd number of items: {}".format(list(cfg_list))
            )
        source = "command-line options"
        coerced, for_yacs = [], []
        for pair, (full_key, raw) in enumerate(zip(cfg_list[0::2], cfg_list[1::2])):
            if self.key_is_deprecated(full_key) or self.key_is_renamed(full_key):
                for_yacs.extend([full_key, raw])
                continue
            default = _get(self, full_key)
            if default is None or isinstance(default, CfgNode):
                if isinstance(default, CfgNode):
                    raise ValueError(
                        "Config key '{}' in {} is a section, give one of its keys".format(full_key, source)
                    )
                raise _unknown_key_error(full_key, source, self)
            value = _coerce(self._decode_cfg_value(raw), default, full_key,
                            "{} (item {} of the KEY VALUE list)".format(source, 2 * pair + 2))
            _check_implemented(full_key, value, source)
            _check_choice(full_key, value, source)
            coerced.append((full_key, value))
        super().merge_from_list(for_yacs)
        # Set directly: yacs would decode an already decoded string again ("'2024'" -> "2024" -> 2024).
        for full_key, value in coerced:
            _set(self, full_key, value)
        for old, new in _LEGACY_ALIASES.items():
            if old in cfg_list[0::2]:
                self._forward_alias(old, new)

    def _merge_checked(self, loaded, source):
        _check_tree(loaded, self, source, self)
        super().merge_from_other_cfg(loaded)
        for old, new in _LEGACY_ALIASES.items():
            if _get(loaded, old) is not None:
                self._forward_alias(old, new)

    def _forward_alias(self, old, new):
        value = _get(self, old)
        if value:  # 0 / False means "not set" for the legacy keys
            _set(self, new, value)


def load_config(config_file=None, opts=(), base=None):
    """Return a fresh config: `base` (default: the package defaults) + YAML `config_file` + `opts` pairs.

    Args:
        config_file (str or None): path of a maskrcnn-benchmark style YAML file.
        opts (sequence): ["KEY.PATH", value, ...] overrides applied after the file.
        base (CfgNode or None): config to start from; it is cloned, never modified.
    """
    config = (base if base is not None else cfg).clone()
    if config_file:
        config.merge_from_file(config_file)
    if opts:
        config.merge_from_list(list(opts))
    return config


cfg = CheckedCfgNode(_C)
