"""Class-specific layers of a detector, and how a checkpoint's rows for them map onto the model's by category name.

Fine-tuning from a checkpoint trained on other categories keeps every layer that does not depend on the
categories (backbone, FPN, RPN, box and mask towers) and decides the class-specific ones by name: a row of
``cls_score`` means a category, and the same position can mean another category in another dataset.

The class-specific layers are found by maskrcnn-benchmark's layer names (a user's predictor that keeps them is
covered too): ``cls_score`` and ``bbox_pred`` of a box predictor, ``mask_fcn_logits`` of a mask predictor, and
``cls_logits`` of the RetinaNet head (the one with a ``cls_tower``; the RPN's objectness is not per category).
Keypoint logits are per keypoint, not per category: they load when their
shape fits, like any other layer.
"""
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ClassAxis:
    """How a class-specific tensor lays out its classes along dimension 0.

    Row index = (block * num_labels + label_index) * group + offset, with ``label_index`` the label itself when
    ``background`` (label 0 is the background) or label - 1 otherwise (RetinaNet's logits have no background).

    Attributes:
        group (int): rows per class (4 for class-specific box deltas, else 1).
        blocks (int): repeats of the class list (RetinaNet: anchors per location, anchor-major), else 1.
        background (bool): label 0 (the background) has its own rows.
    """

    group: int = 1
    blocks: int = 1
    background: bool = True

    def num_labels(self, rows):
        """Labels a tensor with ``rows`` rows holds in this layout, or None when ``rows`` does not divide."""
        per_label = self.group * self.blocks
        return rows // per_label if rows % per_label == 0 and rows > 0 else None

    def copy_rows(self, target, source, label_pairs):
        """``target`` with the rows of ``source`` copied in for each (target label, source label) pair.

        Args:
            target: Tensor[R_t, ...] (the model's tensor; not modified).
            source: Tensor[R_s, ...] with the same trailing shape.
            label_pairs: iterable of (target label, source label), labels as the model counts them (0 = background).
        Returns:
            Tensor of ``target``'s shape and dtype.
        """
        offset = 0 if self.background else 1
        out = target.detach().clone()
        out_view = out.view(self.blocks, self.num_labels(target.shape[0]), self.group, *target.shape[1:])
        source_view = source.to(target.dtype).reshape(self.blocks, self.num_labels(source.shape[0]), self.group,
                                                      *source.shape[1:])
        for target_label, source_label in label_pairs:
            out_view[:, target_label - offset] = source_view[:, source_label - offset]
        return out


def class_specific_tensors(model):
    """The model's class-specific tensors and their layout.

    Args:
        model (nn.Module): the detector (bare, not DDP-wrapped).
    Returns:
        dict state-dict key -> ClassAxis, for the weight and bias of ``cls_score``, class-specific ``bbox_pred``
        (not a class-agnostic one), ``mask_fcn_logits`` and RetinaNet's ``cls_logits``.
    """
    layouts = {}

    def add(prefix, layer, axis):
        for name, _ in layer.named_parameters(recurse=False):
            layouts[prefix + name] = axis

    for name, module in model.named_modules():
        prefix = name + "." if name else ""
        cls_score = getattr(module, "cls_score", None)
        if isinstance(cls_score, nn.Linear):
            add(prefix + "cls_score.", cls_score, ClassAxis())
            bbox_pred = getattr(module, "bbox_pred", None)
            # a class-agnostic regressor has 2 x 4 rows (background + any object) whatever the class count
            if isinstance(bbox_pred, nn.Linear) and bbox_pred.out_features == 4 * cls_score.out_features:
                add(prefix + "bbox_pred.", bbox_pred, ClassAxis(group=4))
        mask_logits = getattr(module, "mask_fcn_logits", None)
        if isinstance(mask_logits, nn.Conv2d):
            add(prefix + "mask_fcn_logits.", mask_logits, ClassAxis())
        cls_logits, bbox_pred = getattr(module, "cls_logits", None), getattr(module, "bbox_pred", None)
        # RetinaNet's head (the RPN head also has cls_logits, but one objectness score per anchor and no towers):
        # channels anchor-major, C foreground classes per anchor (rpn/utils.py:permute_and_flatten)
        if isinstance(cls_logits, nn.Conv2d) and isinstance(bbox_pred, nn.Conv2d) and hasattr(module, "cls_tower"):
            add(prefix + "cls_logits.", cls_logits, ClassAxis(blocks=bbox_pred.out_channels // 4, background=False))
    return layouts


def _names(categories):
    return [c["name"] for c in categories]


def _shown(names, limit=12):
    """A category list for a log line: in full up to ``limit`` names (COCO's 80 would swamp the line)."""
    if len(names) <= limit:
        return str(names)
    return "[{}, ... ({} in all)]".format(", ".join(repr(n) for n in names[:limit - 2]), len(names))


def match_checkpoint_categories(checkpoint_categories, dataset_categories):
    """Decide, by category name, whether a checkpoint's class rows can serve the training set.

    Args:
        checkpoint_categories: list of {"id", "name"} in the checkpoint's label order, or None (not recorded).
        dataset_categories: the training set's list in label order, or None (the dataset has no category table).
    Returns:
        (label_pairs, reason): ``label_pairs`` a list of (model label, checkpoint label) covering the background
        and every training category, or None when the class rows must not be used by name (unknown categories:
        ``reason`` starts with "unknown"; a category missing from the checkpoint: the rows are re-initialised);
        ``reason`` is one sentence for the log.
    """
    if checkpoint_categories is None or dataset_categories is None:
        which = "the checkpoint" if checkpoint_categories is None else "the training set"
        return None, "unknown: {} records no category names".format(which)
    wanted, stored = _names(dataset_categories), _names(checkpoint_categories)
    if len(set(wanted)) < len(wanted):
        return None, "the training set's category names are not unique ({}), so they cannot be matched by " \
                     "name".format(_shown(wanted))
    label_by_name = {}
    for label, name in enumerate(stored, start=1):
        label_by_name.setdefault(name, label)
    missing = [name for name in wanted if name not in label_by_name]
    if missing:
        return None, "checkpoint categories {} vs training set {}: {} not in the checkpoint".format(
            _shown(stored), _shown(wanted), _shown(missing))
    pairs = [(0, 0)] + [(label, label_by_name[name]) for label, name in enumerate(wanted, start=1)]
    if wanted == stored:
        return pairs, "checkpoint categories {} are the training set's".format(_shown(stored))
    if set(wanted) == set(stored):
        return pairs, "checkpoint categories {} are the training set's {} in another order: rows reordered by " \
                      "name".format(_shown(stored), _shown(wanted))
    return pairs, "the training set's categories {} are among the checkpoint's {}: their rows picked by " \
                  "name".format(_shown(wanted), _shown(stored))


def transfer_class_tensors(model_state, loaded_state, layouts, label_pairs, key_for):
    """Class-specific tensors of the model filled from the checkpoint by ``label_pairs``.

    Args:
        model_state: the model's state dict (not modified).
        loaded_state: the checkpoint's model state dict.
        layouts: :func:`class_specific_tensors`'s dict.
        label_pairs: from :func:`match_checkpoint_categories`, or None to keep a tensor only where its shape fits
            as it is (categories unknown).
        key_for: callable model key -> the checkpoint key it loads from (None: not in the checkpoint).
    Returns:
        (kept, left): ``kept`` dict model key -> Tensor of the model's shape to load; ``left`` dict model key ->
        why it keeps its initial values.
    """
    kept, left = {}, {}
    for key, axis in sorted(layouts.items()):
        loaded_key = key_for(key)
        if loaded_key is None:
            left[key] = "not in the checkpoint"
            continue
        target, source = model_state[key], loaded_state[loaded_key]
        if label_pairs is None:
            if tuple(source.shape) == tuple(target.shape):
                kept[key] = source.to(target.dtype)
            else:
                left[key] = "shape {} in the checkpoint, {} in the model".format(
                    list(source.shape), list(target.shape))
            continue
        offset = 0 if axis.background else 1
        source_labels, target_labels = axis.num_labels(source.shape[0]), axis.num_labels(target.shape[0])
        source_needed = max(c for _, c in label_pairs) + 1 - offset
        target_needed = max(m for m, _ in label_pairs) + 1 - offset
        if source_labels is None or source_labels < source_needed or target_labels is None \
                or target_labels < target_needed or tuple(source.shape[1:]) != tuple(target.shape[1:]):
            left[key] = "shape {} in the checkpoint cannot hold its categories for the model's {}".format(
                list(source.shape), list(target.shape))
            continue
        pairs = [(m, c) for m, c in label_pairs if axis.background or m > 0]
        kept[key] = axis.copy_rows(target, source, pairs)
    return kept, left

