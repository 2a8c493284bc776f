"""The categories a model is trained on: read from the dataset, checked against the config, stored with the
checkpoint, and matched by name against a test set's categories.

A model's label ``k`` (1..C) is the k-th category of its training set in the order of the sorted category ids
(``COCODataset.contiguous_category_id_to_json_id``); label 0 is the background. A category list here is
``[{"id": json id, "name": name}, ...]`` in label order, so entry ``k - 1`` is label ``k``.
"""
import logging

from maskrcnn_benchmark.structures.bounding_box import BoxList

logger = logging.getLogger(__name__)


def dataset_categories(dataset):
    """The category list of a COCO-style dataset (or of a ConcatDataset of them) in label order.

    Args:
        dataset: has ``contiguous_category_id_to_json_id`` and ``categories`` (json id -> name), or ``datasets``
            (a ConcatDataset) whose parts all have the same categories.
    Returns:
        list of {"id": int, "name": str}, entry k - 1 for label k; None when the dataset has no category table.
    Raises:
        ValueError: the parts of a concatenation have different categories (their labels would mean different
            things); the message names both annotation files.
    """
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        lists = [(getattr(part, "ann_file", "?"), dataset_categories(part)) for part in parts]
        first_file, first = lists[0]
        for ann_file, categories in lists[1:]:
            if categories != first:
                raise ValueError(
                    "DATASETS.TRAIN concatenates datasets with different categories: '{}' has {} and '{}' has {}. "
                    "Labels are numbered per file, so they would mean different classes; train on files with the "
                    "same categories".format(first_file, _names(first), ann_file, _names(categories)))
        return first
    to_json = getattr(dataset, "contiguous_category_id_to_json_id", None)
    names = getattr(dataset, "categories", None)
    if to_json is None or names is None:
        return None
    return [{"id": int(to_json[label]), "name": str(names.get(to_json[label], to_json[label]))}
            for label in sorted(to_json)]


def _names(categories):
    return [c["name"] for c in categories]


def num_classes_key(cfg):
    """The config key holding the model's class count (background included) and its value."""
    if cfg.MODEL.RETINANET_ON:
        return "MODEL.RETINANET.NUM_CLASSES", cfg.MODEL.RETINANET.NUM_CLASSES
    return "MODEL.ROI_BOX_HEAD.NUM_CLASSES", cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES


def check_num_classes(cfg, categories, source):
    """Log the training categories; refuse a class count that cannot hold them, warn on unused classes.

    Args:
        categories: list of {"id", "name"} in label order (see :func:`dataset_categories`).
        source: what the categories come from (dataset names or file), for the messages.
    Raises:
        ValueError: the class count is smaller than categories + 1; names both numbers and the key to set.
    """
    if categories is None:
        return
    key, num_classes = num_classes_key(cfg)
    logger.info("Training set %s has %d categories: %s", source, len(categories),
                ", ".join("{} (id {})".format(c["name"], c["id"]) for c in categories))
    needed = len(categories) + 1
    if num_classes < needed:
        raise ValueError(
            "{} is {}, but the training set {} has {} categories, so the model needs {} classes (the categories + "
            "1 for the background). Set {} {} in the config or on the command line".format(
                key, num_classes, source, len(categories), needed, key, needed))
    if num_classes > needed:
        logger.warning(
            "%s is %d but the training set %s has %d categories (%d classes with the background): %d classes "
            "will never be trained. Set %s %d unless that is intended", key, num_classes, source, len(categories),
            needed, num_classes - needed, key, needed)


def match_categories(model_categories, test_categories, dataset_name):
    """Map the model's labels to a test set's labels by category name.

    Args:
        model_categories, test_categories: category lists in label order.
        dataset_name: the test set, for the messages.
    Returns:
        dict model label -> test label for the categories both have (an identity map when they agree).
    Raises:
        ValueError: no category name is shared; the message lists both sets.
    """
    test_label_by_name = {c["name"]: label for label, c in enumerate(test_categories, start=1)}
    label_map = {}
    for label, category in enumerate(model_categories, start=1):
        if category["name"] in test_label_by_name:
            label_map[label] = test_label_by_name[category["name"]]
    if not label_map:
        raise ValueError(
            "The model was trained on categories {} but the test set '{}' has {}: no category name in common, so "
            "its detections cannot be scored. Test on data with the model's categories, or fine-tune the model on "
            "this data".format(_names(model_categories), dataset_name, _names(test_categories)))
    only_model = [c["name"] for label, c in enumerate(model_categories, start=1) if label not in label_map]
    matched_test = set(label_map.values())
    only_test = [c["name"] for label, c in enumerate(test_categories, start=1) if label not in matched_test]
    if only_model or only_test or any(k != v for k, v in label_map.items()):
        logger.warning(
            "Test set '%s' has other categories than the model: matched by name %d of the model's %d categories%s%s. "
            "Detections of unmatched model categories are dropped; unmatched test categories score as missed",
            dataset_name, len(label_map), len(model_categories),
            "; only the model has: " + ", ".join(only_model) if only_model else "",
            "; only the test set has: " + ", ".join(only_test) if only_test else "")
    return label_map


def is_identity(label_map, num_model_categories):
    """True when ``label_map`` keeps every one of the model's labels as it is."""
    return len(label_map) == num_model_categories and all(k == v for k, v in label_map.items())


def relabel_predictions(predictions, label_map):
    """Predictions in a test set's labels: each detection's label mapped, detections of unmapped labels dropped.

    Args:
        predictions: list of BoxList with a "labels" field (int64 [N]).
        label_map: dict model label -> test label.
    Returns:
        list of BoxList (new objects; the inputs are unchanged).
    """
    relabelled = []
    for prediction in predictions:
        labels = prediction.get_field("labels")
        mapped = [label_map.get(int(label), 0) for label in labels]
        keep = [i for i, label in enumerate(mapped) if label > 0]
        subset = prediction[labels.new_tensor(keep, dtype=labels.dtype)] if len(keep) < len(mapped) else prediction
        result = BoxList(subset.bbox, subset.size, mode=subset.mode)
        for field in subset.fields():
            result.add_field(field, subset.get_field(field))
        result.add_field("labels", labels.new_tensor([mapped[i] for i in keep], dtype=labels.dtype))
        relabelled.append(result)
    return relabelled
