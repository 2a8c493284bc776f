"""No silently ignored key: a key the package does not implement, set to a non-default value, is refused by name."""
import pytest
import torch

from maskrcnn_benchmark.config import (
    UNIMPLEMENTED_KEYS,
    UnimplementedConfigKeyError,
    cfg,
    check_implemented_keys,
    load_config,
)
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head.loss import make_roi_keypoint_loss_evaluator
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.keypoint import PersonKeypoints


def _get(node, full_key):
    for part in full_key.split("."):
        node = node[part]
    return node


def _other_value(default):
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 1
    if isinstance(default, tuple):
        return (400, 500)
    if isinstance(default, list):
        return [0]
    raise AssertionError("no non-default value for {!r}".format(default))


def _yaml_of(full_key, value):
    parts = full_key.split(".")
    lines = ["{}{}:".format("  " * depth, part) for depth, part in enumerate(parts[:-1])]
    text = repr(value) if isinstance(value, tuple) else str(value)
    lines.append("{}{}: {}".format("  " * (len(parts) - 1), parts[-1], text))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("full_key", sorted(UNIMPLEMENTED_KEYS))
def test_unimplemented_key_with_another_value_is_refused_by_name(full_key, tmp_path):
    default = _get(cfg, full_key)
    value = _other_value(default)
    with pytest.raises(UnimplementedConfigKeyError) as from_opts:
        load_config(opts=[full_key, value])
    assert "'{}'".format(full_key) in str(from_opts.value) and "command-line options" in str(from_opts.value)

    path = tmp_path / "uses_{}.yaml".format(full_key.replace(".", "_"))
    path.write_text(_yaml_of(full_key, value))
    with pytest.raises(UnimplementedConfigKeyError) as from_file:
        load_config(str(path))
    assert "'{}'".format(full_key) in str(from_file.value) and str(path) in str(from_file.value)

    # the default value written out (as maskrcnn-benchmark's files may) is accepted
    path.write_text(_yaml_of(full_key, default))
    assert _get(load_config(str(path)), full_key) == default
    assert _get(load_config(opts=[full_key, default]), full_key) == default


def test_a_value_assigned_in_python_is_refused_when_the_model_is_built(tiny_cfg):
    tiny_cfg.AMP_VERBOSE = True
    with pytest.raises(UnimplementedConfigKeyError, match="AMP_VERBOSE"):
        build_detection_model(tiny_cfg)
    tiny_cfg.AMP_VERBOSE = False
    check_implemented_keys(tiny_cfg)  # back at the default: accepted


def test_roi_heads_use_fpn_needs_several_pooler_scales(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.ROI_BOX_HEAD.POOLER_SCALES", (0.25,), "MODEL.MASK_ON", False])
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.USE_FPN.*MODEL.ROI_BOX_HEAD.POOLER_SCALES"):
        build_detection_model(tiny_cfg)
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.USE_FPN", False])
    build_detection_model(tiny_cfg)  # a single map without the FPN claim builds


def _keypoint_roi():
    proposal = BoxList(torch.tensor([[0.0, 0.0, 32.0, 32.0]]), (64, 64))
    keypoints = torch.full((1, 17, 3), 16.0)
    keypoints[..., 2] = 2
    proposal.add_field("keypoint_targets", PersonKeypoints(keypoints, (64, 64)).keypoints)
    return [proposal]


def test_keypoint_resolution_must_match_the_predictor_output():
    config = cfg.clone()
    config.merge_from_list(["MODEL.ROI_KEYPOINT_HEAD.RESOLUTION", 56])
    loss = make_roi_keypoint_loss_evaluator(config)
    assert loss(_keypoint_roi(), torch.zeros(1, 17, 56, 56, requires_grad=True)).item() > 0
    with pytest.raises(ValueError, match="MODEL.ROI_KEYPOINT_HEAD.RESOLUTION is 56.*set it to 28"):
        loss(_keypoint_roi(), torch.zeros(1, 17, 28, 28))
    # the default takes whatever the predictor outputs
    make_roi_keypoint_loss_evaluator(cfg)(_keypoint_roi(), torch.zeros(1, 17, 28, 28))
