import pytest
import torch

from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import to_image_list


def _targets(with_masks=True):
    from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

    specs = [
        ((128, 128), [[10., 12., 60., 70.], [70., 20., 120., 100.]], [1, 2]),
        ((128, 96), [[5., 5., 40., 50.]], [3]),
    ]
    targets = []
    for (w, h), boxes, labels in specs:
        target = BoxList(torch.tensor(boxes), (w, h))
        target.add_field("labels", torch.tensor(labels, dtype=torch.int64))
        if with_masks:
            polygons = [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in boxes]
            target.add_field("masks", SegmentationMask(polygons, (w, h), mode="poly"))
        targets.append(target)
    return targets


def _images():
    torch.manual_seed(0)
    return to_image_list([torch.randn(3, 128, 128) * 50, torch.randn(3, 96, 128) * 50], size_divisible=32)


def test_missing_targets_in_training_is_a_clear_error(tiny_cfg):
    tiny_cfg.MODEL.RPN_ONLY = True
    model = build_detection_model(tiny_cfg).train()
    with pytest.raises(ValueError, match="targets"):
        model(_images())


def test_rpn_only_trains_and_returns_proposals(tiny_cfg):
    tiny_cfg.MODEL.RPN_ONLY = True
    model = build_detection_model(tiny_cfg).train()
    assert model.roi_heads is None
    losses = model(_images(), _targets(with_masks=False))
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        results = model(_images())
    assert len(results) == 2 and all(isinstance(r, BoxList) for r in results)
    assert results[1].size == (128, 96)
    assert all(len(r) <= tiny_cfg.MODEL.RPN.FPN_POST_NMS_TOP_N_TEST for r in results)


def test_mask_rcnn_r18_fpn_trains_one_step_and_evaluates(tiny_cfg):
    torch.manual_seed(0)
    model = build_detection_model(tiny_cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    before = model.rpn.head.conv.weight.detach().clone()
    losses = model(_images(), _targets())
    assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert not torch.equal(before, model.rpn.head.conv.weight)

    model.eval()
    with torch.no_grad():
        results = model(_images())
    assert len(results) == 2
    for result, size in zip(results, [(128, 128), (128, 96)]):
        assert isinstance(result, BoxList) and result.size == size
        assert {"scores", "labels", "mask"} <= set(result.fields())
        assert result.get_field("mask").shape[1:] == (1, 28, 28)


def test_adv_inputs_carry_roi_feature_maps_and_strides(tiny_cfg):
    model = build_detection_model(tiny_cfg).train()
    losses, adv_inputs = model(_images(), _targets(), return_adv_inputs=True)
    assert "loss_mask" in losses
    assert adv_inputs.feature_strides == [4, 8, 16, 32]  # the maps the RoI heads pool from (no P6)
    features = adv_inputs.features
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    assert all(f.requires_grad for f in features)  # not detached: the generator loss reaches the backbone
    for key in ("box_rois_pred", "box_rois_gt", "mask_logits", "mask_targets", "mask_rois"):
        assert getattr(adv_inputs, key) is not None, key
    # Without the flag the output is maskrcnn-benchmark's: the loss dict itself, nothing else.
    torch.manual_seed(0)
    output = model(_images(), _targets())
    assert type(output) is dict and set(output) == set(losses)


def test_losses_do_not_depend_on_asking_for_the_adversarial_inputs(tiny_cfg):
    model = build_detection_model(tiny_cfg).train()
    torch.manual_seed(3)
    plain = model(_images(), _targets())
    torch.manual_seed(3)
    with_extras, _ = model(_images(), _targets(), return_adv_inputs=True)
    assert list(plain) == list(with_extras)  # same terms in the same order: their sum is the same float
    for key, value in plain.items():
        assert torch.equal(value, with_extras[key]), key


def test_eval_ignores_return_adv_inputs(tiny_cfg):
    model = build_detection_model(tiny_cfg).eval()
    with torch.no_grad():
        results = model(_images(), return_adv_inputs=True)
    assert isinstance(results, list) and all(isinstance(r, BoxList) for r in results)
