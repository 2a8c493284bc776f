"""The training categories: NUM_CLASSES checked against them, matched by name at test time, unknown names."""
import json
import logging

import pytest
import torch

from maskrcnn_benchmark.config.paths_catalog import UnknownDatasetError
from maskrcnn_benchmark.data import make_data_loader
from maskrcnn_benchmark.data.build import load_catalog, resolve_dataset
from maskrcnn_benchmark.data.categories import (
    dataset_categories,
    match_categories,
    relabel_predictions,
)
from maskrcnn_benchmark.structures.bounding_box import BoxList

CATS = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"}]


def test_num_classes_smaller_than_categories_plus_one_is_refused_before_training(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3])
    with pytest.raises(ValueError) as e:
        make_data_loader(tiny_cfg, is_train=True)
    message = str(e.value)
    assert "MODEL.ROI_BOX_HEAD.NUM_CLASSES is 3" in message and "has 3 categories" in message
    assert "Set MODEL.ROI_BOX_HEAD.NUM_CLASSES 4" in message


def test_num_classes_larger_than_needed_warns_and_the_log_names_the_categories(tiny_cfg, caplog):
    tiny_cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.NUM_CLASSES", 6])
    with caplog.at_level(logging.INFO, logger="maskrcnn_benchmark"):
        make_data_loader(tiny_cfg, is_train=True)
    text = caplog.text
    assert "has 3 categories" in text
    names = [c["name"] for c in json.load(open(tiny_cfg.DATASETS.CUSTOM[0].split(":")[1]))["categories"]]
    assert all(name in text for name in names)
    assert "2 classes will never be trained" in text


def test_dataset_categories_are_in_label_order(tiny_cfg):
    loader = make_data_loader(tiny_cfg, is_train=True)
    dataset = loader.dataset
    categories = dataset_categories(dataset)
    assert [c["id"] for c in categories] == [dataset.contiguous_category_id_to_json_id[k] for k in (1, 2, 3)]
    assert [c["name"] for c in categories] == [dataset.categories[c["id"]] for c in categories]


def test_a_renamed_category_is_matched_by_name_and_reported(caplog):
    test_cats = [{"id": 10, "name": "square"}, {"id": 20, "name": "circle"}, {"id": 30, "name": "hexagon"}]
    with caplog.at_level(logging.WARNING, logger="maskrcnn_benchmark"):
        label_map = match_categories(CATS, test_cats, "shapes_val")
    assert label_map == {1: 2, 2: 1}  # circle -> test label 2, square -> test label 1; triangle unmatched
    assert "only the model has: triangle" in caplog.text and "only the test set has: hexagon" in caplog.text
    assert "shapes_val" in caplog.text


def test_a_test_set_sharing_no_category_is_refused_with_both_lists():
    with pytest.raises(ValueError) as e:
        match_categories(CATS, [{"id": 1, "name": "person"}], "people_val")
    message = str(e.value)
    assert "people_val" in message and "person" in message and "circle" in message and "triangle" in message


def test_relabel_maps_labels_and_drops_unmatched_detections():
    boxes = BoxList(torch.tensor([[0., 0., 5., 5.], [1., 1., 6., 6.], [2., 2., 8., 8.]]), (10, 10))
    boxes.add_field("labels", torch.tensor([1, 3, 2]))
    boxes.add_field("scores", torch.tensor([0.9, 0.8, 0.7]))
    (out,) = relabel_predictions([boxes], {1: 2, 2: 1})
    assert out.get_field("labels").tolist() == [2, 1]
    assert out.get_field("scores").tolist() == pytest.approx([0.9, 0.7])
    assert out.bbox.tolist() == [[0., 0., 5., 5.], [2., 2., 8., 8.]]
    assert boxes.get_field("labels").tolist() == [1, 3, 2]  # input unchanged


def test_unknown_dataset_error_lists_the_custom_names_too(tiny_cfg):
    catalog = load_catalog(tiny_cfg.PATHS_CATALOG)
    with pytest.raises(UnknownDatasetError) as e:
        resolve_dataset("synthetic_fixtur", catalog, tiny_cfg.DATASETS.CUSTOM)
    message = str(e.value)
    assert "synthetic_fixture" in message and "DATASETS.CUSTOM" in message and "coco_2017_train" in message


def test_concatenating_datasets_with_different_categories_is_refused(tmp_path):
    class Part:
        def __init__(self, ann_file, names):
            self.ann_file = ann_file
            self.contiguous_category_id_to_json_id = {k: k for k in range(1, len(names) + 1)}
            self.categories = {k: n for k, n in enumerate(names, start=1)}

    class Concat:
        datasets = [Part("a.json", ["cat", "dog"]), Part("b.json", ["dog", "cat"])]

    with pytest.raises(ValueError, match="a.json.*b.json"):
        dataset_categories(Concat())
