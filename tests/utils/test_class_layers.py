"""Initialising from MODEL.WEIGHT: weights only, class-specific rows decided by category name."""
import logging

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.utils.checkpoint import Checkpointer
from maskrcnn_benchmark.utils.class_layers import (
    ClassAxis,
    class_specific_tensors,
    match_checkpoint_categories,
)


def _cats(*names):
    return [{"id": 10 + i, "name": name} for i, name in enumerate(names)]


class _BoxPredictor(nn.Module):
    def __init__(self, num_classes, agnostic=False):
        super().__init__()
        self.cls_score = nn.Linear(3, num_classes)
        self.bbox_pred = nn.Linear(3, 4 * (2 if agnostic else num_classes))


class _MaskPredictor(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.mask_fcn_logits = nn.Conv2d(2, num_classes, 1)


class _RetinaHead(nn.Module):
    def __init__(self, num_classes, anchors=3):
        super().__init__()
        self.cls_tower = nn.Sequential()
        self.cls_logits = nn.Conv2d(2, anchors * (num_classes - 1), 3, padding=1)
        self.bbox_pred = nn.Conv2d(2, anchors * 4, 3, padding=1)


class _Detector(nn.Module):
    """The class-specific layers of maskrcnn-benchmark's heads, under their usual names, plus a shared trunk."""

    def __init__(self, num_classes, seed, agnostic=False):
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Linear(3, 3)
        self.box = _BoxPredictor(num_classes, agnostic)
        self.mask = _MaskPredictor(num_classes)
        self.retina = _RetinaHead(num_classes)
        self.rpn = _RpnHead()


class _RpnHead(nn.Module):
    def __init__(self, anchors=3):
        super().__init__()
        self.cls_logits = nn.Conv2d(2, anchors, 1)  # objectness: one score per anchor, not per category
        self.bbox_pred = nn.Conv2d(2, anchors * 4, 1)


def test_class_specific_tensors_are_found_by_maskrcnn_benchmark_names():
    layouts = class_specific_tensors(_Detector(4, 0))
    assert sorted(layouts) == ["box.bbox_pred.bias", "box.bbox_pred.weight", "box.cls_score.bias",
                               "box.cls_score.weight", "mask.mask_fcn_logits.bias", "mask.mask_fcn_logits.weight",
                               "retina.cls_logits.bias", "retina.cls_logits.weight"]
    assert layouts["box.bbox_pred.weight"] == ClassAxis(group=4)
    assert layouts["retina.cls_logits.weight"] == ClassAxis(blocks=3, background=False)
    # a class-agnostic regressor does not depend on the categories
    assert "box.bbox_pred.weight" not in class_specific_tensors(_Detector(4, 0, agnostic=True))


def test_rows_are_matched_by_name():
    pairs, reason = match_checkpoint_categories(_cats("a", "b"), _cats("a", "b"))
    assert pairs == [(0, 0), (1, 1), (2, 2)] and "are the training set's" in reason
    pairs, reason = match_checkpoint_categories(_cats("a", "b", "c"), _cats("c", "a"))
    assert pairs == [(0, 0), (1, 3), (2, 1)] and "among the checkpoint's" in reason
    pairs, reason = match_checkpoint_categories(_cats("a", "b"), _cats("b", "a"))
    assert pairs == [(0, 0), (1, 2), (2, 1)] and "reordered by name" in reason
    pairs, reason = match_checkpoint_categories(_cats("a", "b"), _cats("a", "b", "c"))
    assert pairs is None and reason == "checkpoint categories ['a', 'b'] vs training set ['a', 'b', 'c']: ['c'] not " \
                                       "in the checkpoint"
    # torchvision's COCO labels: 90 entries with repeated "N/A" placeholders; the first of a name counts
    pairs, _ = match_checkpoint_categories(_cats("person", "N/A", "car", "N/A"), _cats("car", "person"))
    assert pairs == [(0, 0), (1, 3), (2, 1)]
    pairs, reason = match_checkpoint_categories(None, _cats("a"))
    assert pairs is None and reason.startswith("unknown: the checkpoint records no category names")


def _save(tmp_path, model, categories, name="source.pth", **extra):
    data = {"model": model.state_dict(), "iteration": 90, "optimizer": {"state": {}, "param_groups": []}}
    if categories is not None:
        data["categories"] = categories
    data.update(extra)
    path = str(tmp_path / name)
    torch.save(data, path)
    return path


def test_reordered_categories_move_every_class_layer_row_by_name(tmp_path, caplog):
    source = _Detector(3, seed=1)
    path = _save(tmp_path, source, _cats("a", "b"))
    model = _Detector(3, seed=2)
    with caplog.at_level(logging.INFO):
        report = Checkpointer(model).initialise(path, _cats("b", "a"))
    src, dst = source.state_dict(), model.state_dict()
    assert torch.equal(dst["trunk.weight"], src["trunk.weight"])
    for key in ("box.cls_score.weight", "box.cls_score.bias", "mask.mask_fcn_logits.weight"):
        assert torch.equal(dst[key][0], src[key][0])  # background stays
        assert torch.equal(dst[key][1], src[key][2]) and torch.equal(dst[key][2], src[key][1])
    assert torch.equal(dst["box.bbox_pred.weight"][4:8], src["box.bbox_pred.weight"][8:12])
    # RetinaNet: 3 anchors x 2 foreground classes, anchor-major, no background
    assert torch.equal(dst["retina.cls_logits.weight"][0::2], src["retina.cls_logits.weight"][1::2])
    assert torch.equal(dst["retina.cls_logits.bias"][1::2], src["retina.cls_logits.bias"][0::2])
    assert report["class_layers_reinitialised"] == {}
    assert "Class-specific layers kept (box.bbox_pred, box.cls_score, mask.mask_fcn_logits, retina.cls_logits)" \
        in caplog.text and "reordered by name" in caplog.text


def test_other_categories_reinitialise_the_class_layers_and_shapes_never_crash(tmp_path, caplog):
    source = _Detector(3, seed=1)
    path = _save(tmp_path, source, _cats("a", "b"))
    model = _Detector(4, seed=2)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        report = Checkpointer(model).initialise(path, _cats("a", "b", "c"))
    state = model.state_dict()
    assert torch.equal(state["trunk.weight"], source.state_dict()["trunk.weight"])
    for key in class_specific_tensors(model):
        assert torch.equal(state[key], initial[key]), key
    assert set(report["class_layers_reinitialised"]) == set(class_specific_tensors(model))
    assert "Class-specific layers re-initialised (box.bbox_pred, box.cls_score, mask.mask_fcn_logits, " \
           "retina.cls_logits): checkpoint categories ['a', 'b'] vs training set ['a', 'b', 'c']" in caplog.text


def test_same_categories_with_more_model_classes_fill_the_rows_they_have(tmp_path):
    source = _Detector(3, seed=1)
    path = _save(tmp_path, source, _cats("a", "b"))
    model = _Detector(5, seed=2)  # NUM_CLASSES larger than needed: the unused rows keep their initial values
    initial = model.state_dict()["box.cls_score.weight"].clone()
    Checkpointer(model).initialise(path, _cats("a", "b"))
    weight = model.state_dict()["box.cls_score.weight"]
    assert torch.equal(weight[:3], source.state_dict()["box.cls_score.weight"])
    assert torch.equal(weight[3:], initial[3:])


def test_unknown_categories_load_by_shape_with_a_warning(tmp_path, caplog):
    source = _Detector(3, seed=1)
    path = _save(tmp_path, source, None)
    model = _Detector(3, seed=2)
    with caplog.at_level(logging.WARNING):
        Checkpointer(model).initialise(path, _cats("a", "b"))
    assert torch.equal(model.state_dict()["box.cls_score.weight"], source.state_dict()["box.cls_score.weight"])
    assert "kept by shape only, unchecked" in caplog.text and "The checkpoint records no category names" in caplog.text


def test_initialise_takes_weights_only_and_the_discriminators_but_never_their_optimizer(tmp_path):
    source, source_d = _Detector(3, seed=1), nn.Linear(2, 2)
    d_optimizer_state = torch.optim.SGD(source_d.parameters(), lr=0.5).state_dict()
    path = _save(tmp_path, source, _cats("a", "b"), discriminators=source_d.state_dict(),
                 d_optimizer=d_optimizer_state, scheduler={"last_epoch": 90}, rng_states=[{}])
    model = _Detector(3, seed=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5)
    discriminators = nn.Linear(2, 2)
    d_optimizer = torch.optim.SGD(discriminators.parameters(), lr=0.02)
    checkpointer = Checkpointer(model, optimizer, scheduler, str(tmp_path / "new_run"),
                                extra={"discriminators": discriminators, "d_optimizer": d_optimizer})
    report = checkpointer.initialise(path, _cats("a", "b"))
    assert torch.equal(discriminators.weight, source_d.weight)
    assert d_optimizer.param_groups[0]["lr"] == 0.02 and scheduler.last_epoch == 0
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert "iteration" not in report and "rng_states" not in report


def test_resume_refuses_a_run_of_another_model_naming_how_to_fine_tune(tmp_path):
    run = tmp_path / "run"
    Checkpointer(_Detector(3, 1), save_dir=str(run)).save("model_final", iteration=4)
    with pytest.raises(ValueError, match=r"model_final\.pth.*holds a run of another model.*set MODEL\.WEIGHT"):
        Checkpointer(_Detector(4, 1), save_dir=str(run)).resume()


def test_a_checkpoint_without_a_model_entry_is_refused_by_name(tmp_path):
    path = str(tmp_path / "odd.pth")
    torch.save({"weights": {}}, path)
    with pytest.raises(KeyError, match="odd.pth"):
        Checkpointer(_Detector(3, 1)).initialise(path, None)


def test_backbone_only_weights_leave_the_class_layers_quietly(tmp_path, caplog):
    source = _Detector(3, seed=1)
    path = str(tmp_path / "backbone.pth")
    torch.save({"model": {"trunk.weight": source.trunk.weight.detach(), "trunk.bias": source.trunk.bias.detach()}},
               path)
    model = _Detector(3, seed=2)
    with caplog.at_level(logging.INFO):
        Checkpointer(model).initialise(path, _cats("a", "b"))
    assert torch.equal(model.trunk.weight, source.trunk.weight)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "backbone.pth has no class-specific layers: box.bbox_pred, box.cls_score" in caplog.text
