import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.rpn.anchor_generator import AnchorGenerator
from maskrcnn_benchmark.modeling.rpn.inference import RPNPostProcessor
from maskrcnn_benchmark.modeling.rpn.loss import rpn_losses
from maskrcnn_benchmark.modeling.rpn.rpn import build_rpn
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import ImageList


def _fpn_rpn_cfg():
    cfg = default_cfg.clone()
    cfg.MODEL.RPN.USE_FPN = True
    cfg.MODEL.RPN.ANCHOR_STRIDE = (4, 8, 16, 32, 64)
    cfg.MODEL.RPN.ANCHOR_SIZES = (16, 32, 64, 128, 256)
    cfg.MODEL.RPN.PRE_NMS_TOP_N_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOP_N_TRAIN = 50
    cfg.MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN = 60
    cfg.MODEL.RPN.PRE_NMS_TOP_N_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOP_N_TEST = 40
    cfg.MODEL.RPN.FPN_POST_NMS_TOP_N_TEST = 70
    cfg.MODEL.RPN.FPN_POST_NMS_PER_BATCH = False
    return cfg


def _toy_batch(channels=8, size=64):
    images = ImageList(torch.zeros(2, 3, size, size), [(size, size), (size - 8, size - 16)])
    features = [torch.randn(2, channels, size // s, size // s) for s in (4, 8, 16, 32)]
    features.append(features[-1][:, :, ::2, ::2])
    targets = [
        BoxList(torch.tensor([[4., 6., 30., 40.], [30., 20., 60., 60.]]), (size, size)),
        BoxList(torch.tensor([[10., 10., 25., 20.]]), (size - 16, size - 8)),
    ]
    return images, features, targets


def test_rpn_losses_reference_values():
    objectness = torch.tensor([2.0, -1.0, 0.5, 3.0])
    box_regression = torch.tensor([[0.1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, 0]])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    targets = torch.zeros(4, 4)
    pos, neg = torch.tensor([0, 3]), torch.tensor([1])  # anchor 2 not sampled
    loss_obj, loss_box = rpn_losses(objectness, box_regression, labels, targets, pos, neg)
    expected_obj = (torch.nn.functional.softplus(-torch.tensor(2.0)) + torch.nn.functional.softplus(torch.tensor(-1.0))
                    + torch.nn.functional.softplus(-torch.tensor(3.0))) / 3
    beta = 1.0 / 9
    # |0.1| < beta -> 0.5 x^2 / beta; |1.0| >= beta -> |x| - 0.5 beta; normalised by 3 sampled anchors
    expected_box = (0.5 * 0.1 ** 2 / beta + (1.0 - 0.5 * beta)) / 3
    assert torch.allclose(loss_obj, expected_obj)
    assert torch.allclose(loss_box, torch.tensor(expected_box))


def test_rpn_losses_finite_and_decrease_on_toy_case():
    torch.manual_seed(0)
    cfg = _fpn_rpn_cfg()
    cfg.MODEL.RPN_ONLY = True
    rpn = build_rpn(cfg, in_channels=8).train()
    images, features, targets = _toy_batch()
    optimizer = torch.optim.SGD(rpn.parameters(), lr=0.05, momentum=0.9)
    history = []
    for _ in range(15):
        _, losses = rpn(images, features, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.7 * history[0]


def test_rpn_with_an_image_without_boxes():
    cfg = _fpn_rpn_cfg()
    rpn = build_rpn(cfg, in_channels=8).train()
    images, features, targets = _toy_batch()
    targets[1] = BoxList(torch.zeros(0, 4), targets[1].size)
    boxes, losses = rpn(images, features, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(boxes[1]) > 0


def test_post_processor_keeps_at_most_top_n_per_image():
    cfg = _fpn_rpn_cfg()
    rpn = build_rpn(cfg, in_channels=8)
    images, features, targets = _toy_batch(size=128)
    with torch.no_grad():
        rpn.eval()
        proposals, losses = rpn(images, features)
        assert losses == {}
        assert len(proposals) == 2
        for boxlist, (h, w) in zip(proposals, images.image_sizes):
            assert 0 < len(boxlist) <= 70
            assert boxlist.size == (w, h)
            scores = boxlist.get_field("objectness")
            assert torch.all(scores[:-1] >= scores[1:])
            assert boxlist.bbox[:, 2].max() <= w - 1 and boxlist.bbox[:, 3].max() <= h - 1
        rpn.train()
        proposals, _ = rpn(images, features, targets)
        for boxlist, target in zip(proposals, targets):
            # per image: FPN_POST_NMS_TOP_N_TRAIN proposals + the appended GT boxes
            assert len(boxlist) <= 60 + len(target)
            assert torch.equal(boxlist.bbox[-len(target):], target.bbox)
            assert (boxlist.get_field("objectness")[-len(target):] == 1).all()


def test_post_processor_caps_each_level_and_applies_nms():
    # One image, two levels of 4 anchors each with identical boxes: NMS leaves one box per level.
    anchors_level = torch.tensor([[0., 0., 15., 15.]] * 4)
    image = [BoxList(anchors_level, (32, 32)), BoxList(anchors_level + 8, (32, 32))]
    objectness = [torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1), torch.tensor([0.5, 0, 0, 0]).view(1, 4, 1, 1)]
    regression = [torch.zeros(1, 16, 1, 1), torch.zeros(1, 16, 1, 1)]
    post = RPNPostProcessor(pre_nms_top_n=10, post_nms_top_n=10, nms_thresh=0.7, min_size=0,
                            box_coder=BoxCoder((1.0, 1.0, 1.0, 1.0)), fpn_post_nms_top_n=10).eval()
    out = post([image], objectness, regression)[0]
    assert len(out) == 2
    assert torch.allclose(out.get_field("objectness"), torch.sigmoid(torch.tensor([4.0, 0.5])))
    # Without NMS the per-level cap (post_nms_top_n) binds.
    post = RPNPostProcessor(10, 3, 1.01, 0, BoxCoder((1.0, 1.0, 1.0, 1.0)), fpn_post_nms_top_n=10).eval()
    out = post([image], objectness, regression)[0]
    assert len(out) == 6


def test_rpn_requires_targets_in_training():
    rpn = build_rpn(_fpn_rpn_cfg(), in_channels=8).train()
    images, features, _ = _toy_batch()
    with pytest.raises(ValueError, match="targets"):
        rpn(images, features)


def test_c4_rpn_single_level():
    cfg = default_cfg.clone()  # C4 defaults: one stride-16 map, 15 anchors per location
    rpn = build_rpn(cfg, in_channels=8).eval()
    assert rpn.anchor_generator.num_anchors_per_location() == [15]
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    with torch.no_grad():
        proposals, _ = rpn(images, [torch.randn(1, 8, 4, 4)])
    assert 0 < len(proposals[0]) <= cfg.MODEL.RPN.POST_NMS_TOP_N_TEST


def test_rpn_head_state_dict_names():
    keys = set(build_rpn(_fpn_rpn_cfg(), in_channels=8).state_dict().keys())
    assert {"head.conv.weight", "head.cls_logits.weight", "head.bbox_pred.weight",
            "anchor_generator.cell_anchors.0"} <= keys


def test_anchor_generator_used_by_rpn_matches_config():
    rpn = build_rpn(_fpn_rpn_cfg(), in_channels=8)
    assert isinstance(rpn.anchor_generator, AnchorGenerator)
    assert rpn.anchor_generator.strides == (4, 8, 16, 32, 64)


def test_fpn_post_nms_per_batch_is_opt_in():
    cfg = _fpn_rpn_cfg()
    cfg.MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN = 30
    torch.manual_seed(1)
    images, features, targets = _toy_batch(size=128)
    no_gt = [BoxList(torch.zeros(0, 4), t.size) for t in targets]
    per_image = build_rpn(cfg, in_channels=8).train()
    with torch.no_grad():
        proposals, _ = per_image(images, features, no_gt)
    assert [len(p) for p in proposals] == [30, 30]
    cfg.MODEL.RPN.FPN_POST_NMS_PER_BATCH = True  # maskrcnn-benchmark's original: top-N over the whole batch
    per_batch = build_rpn(cfg, in_channels=8).train()
    per_batch.load_state_dict(per_image.state_dict())
    with torch.no_grad():
        proposals, _ = per_batch(images, features, no_gt)
    assert sum(len(p) for p in proposals) == 30
