"""CombinedROIHeads: training/eval outputs, the discriminator inputs (shapes, order, gradient path) and that
asking for them changes nothing else; C4 feature sharing; images without positives."""
import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling.roi_heads.roi_heads import build_roi_heads
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.boxlist_ops import cat_boxlist
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

IMAGE_SIZE = (64, 48)  # (w, h)


def _fpn_cfg():
    cfg = default_cfg.clone()
    cfg.merge_from_list([
        "MODEL.MASK_ON", True, "MODEL.ROI_HEADS.USE_FPN", True, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor", "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
        "MODEL.ROI_BOX_HEAD.POOLER_SCALES", (0.25, 0.125), "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3, "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 32,
        "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", "MaskRCNNFPNFeatureExtractor",
        "MODEL.ROI_MASK_HEAD.POOLER_SCALES", (0.25, 0.125), "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 2,
        "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (8, 8), "MODEL.ROI_MASK_HEAD.RESOLUTION", 28,
        "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
    ])
    return cfg


def _targets(num_images=2, with_objects=True):
    targets = []
    for _ in range(num_images):
        if with_objects:
            boxes = torch.tensor([[10.0, 8.0, 29.0, 27.0], [30.0, 20.0, 55.0, 45.0]])
            polygons = [[[10.0, 8.0, 30.0, 8.0, 30.0, 28.0, 10.0, 28.0]], [[30.0, 20.0, 56.0, 20.0, 43.0, 46.0]]]
        else:
            boxes, polygons = torch.zeros(0, 4), []
        target = BoxList(boxes, IMAGE_SIZE)
        target.add_field("labels", torch.tensor([1, 2])[:len(boxes)])
        target.add_field("masks", SegmentationMask(polygons, IMAGE_SIZE))
        targets.append(target)
    return targets


def _proposals(targets, seed=0):
    generator = torch.Generator().manual_seed(seed)
    proposals = []
    for target in targets:
        jitter = torch.rand(40, 4, generator=generator) * 40
        random_boxes = torch.cat([jitter[:, :2], jitter[:, :2] + 4 + jitter[:, 2:]], dim=1)
        # the GT boxes themselves (as maskrcnn-benchmark's RPN adds them in training) guarantee positives
        random_boxes = BoxList(random_boxes, IMAGE_SIZE).clip_to_image(remove_empty=False)  # as RPN proposals
        proposals.append(cat_boxlist([random_boxes, BoxList(target.bbox, IMAGE_SIZE)]))
    return proposals


def _features(in_channels=8):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, in_channels, 12, 16, generator=generator),
            torch.randn(2, in_channels, 6, 8, generator=generator)]


def _tensor_attributes(module):
    """(module name, attribute) of every plain tensor attribute (not parameters/buffers) in the module tree."""
    found = set()
    for name, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Tensor) or (isinstance(value, (list, tuple)) and value
                                                   and isinstance(value[0], (torch.Tensor, BoxList))):
                found.add((name, attr))
    return found


def test_training_returns_losses_and_adv_inputs_with_matching_shapes():
    torch.manual_seed(0)
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    targets = _targets()
    attributes_before = _tensor_attributes(heads)
    x, sampled, losses, adv = heads(_features(), _proposals(targets), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    filled = {name for name, value in vars(adv).items() if value is not None}
    assert filled == {"box_rois_pred", "box_rois_gt", "mask_logits", "mask_targets", "mask_rois"}
    num_positive = sum(int((s.get_field("labels") > 0).sum()) for s in sampled)
    assert num_positive > 0
    assert adv.box_rois_pred.shape == adv.box_rois_gt.shape == (num_positive, 5)
    assert adv.mask_logits.shape == adv.mask_targets.shape == (num_positive, 28, 28)
    assert adv.mask_rois.shape == (num_positive, 5)
    assert set(adv.mask_targets.unique().tolist()) <= {0.0, 1.0}
    # every GT row is one of its image's GT boxes, and the batch index column agrees across the outputs
    for row in adv.box_rois_gt:
        assert (targets[int(row[0])].bbox == row[1:]).all(dim=1).any()
    assert torch.equal(adv.box_rois_pred[:, 0], adv.box_rois_gt[:, 0])
    assert torch.equal(adv.box_rois_pred[:, 0], adv.mask_rois[:, 0])
    w, h = IMAGE_SIZE
    pred = adv.box_rois_pred[:, 1:]
    assert pred.min() >= 0 and pred[:, 0::2].max() <= w - 1 and pred[:, 1::2].max() <= h - 1
    assert _tensor_attributes(heads) == attributes_before


def test_box_rois_pred_has_gradient_path_to_the_box_regression_weights():
    torch.manual_seed(0)
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    targets = _targets()
    *_, adv = heads(_features(), _proposals(targets), targets)
    bbox_pred = heads.box.predictor.bbox_pred.weight
    grad, = torch.autograd.grad(adv.box_rois_pred[:, 1:].sum(), bbox_pred)
    assert grad.abs().sum() > 0
    mask_weight = heads.mask.predictor.mask_fcn_logits.weight
    grad, = torch.autograd.grad(adv.mask_logits.sum(), mask_weight)
    assert grad.abs().sum() > 0


def test_box_rois_pred_are_the_proposals_when_the_regression_is_zero():
    torch.manual_seed(0)
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    torch.nn.init.zeros_(heads.box.predictor.bbox_pred.weight)
    torch.nn.init.zeros_(heads.box.predictor.bbox_pred.bias)
    targets = _targets()
    *_, adv = heads(_features(), _proposals(targets), targets)
    # decode(0, proposal) == proposal; the mask RoIs are the same positive proposals in the same order
    assert torch.allclose(adv.box_rois_pred, adv.mask_rois, atol=1e-4)


def test_a_maskrcnn_benchmark_style_custom_head_returning_three_items_still_runs():
    """maskrcnn-benchmark's heads return (x, detections, losses): such a custom head runs in the combined heads,
    adding its losses and no adversarial inputs; a fourth item that is not AdversarialInputs is refused by name."""
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    real_mask_head = heads.mask

    class ThreeItemMaskHead(torch.nn.Module):
        def forward(self, features, proposals, targets=None):
            return real_mask_head(features, proposals, targets)[:3]

    heads["mask"] = ThreeItemMaskHead()
    targets = _targets()
    torch.manual_seed(3)
    _, _, losses, adv = heads(_features(), _proposals(targets), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    assert adv.box_rois_pred is not None and adv.box_rois_gt is not None
    assert adv.mask_logits is None and adv.mask_targets is None and adv.mask_rois is None

    class DictExtrasMaskHead(torch.nn.Module):
        def forward(self, features, proposals, targets=None):
            return real_mask_head(features, proposals, targets)[:3] + ({"mask_logits": None},)

    heads["mask"] = DictExtrasMaskHead()
    with pytest.raises(TypeError, match="the mask head returned a dict as its fourth item"):
        heads(_features(), _proposals(targets), targets)


def test_images_without_objects_give_zero_mask_loss_with_gradient_and_empty_adv_inputs():
    torch.manual_seed(0)
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    targets = _targets(with_objects=False)
    _, _, losses, adv = heads(_features(), _proposals(targets), targets)
    assert losses["loss_mask"].item() == 0 and losses["loss_box_reg"].item() == 0
    sum(losses.values()).backward()
    assert heads.mask.predictor.mask_fcn_logits.weight.grad is not None
    assert adv.box_rois_pred.shape == (0, 5) and adv.mask_logits.shape == (0, 28, 28)
    assert adv.mask_rois.shape == (0, 5)


def test_eval_returns_detections_with_masks_and_no_adv_inputs():
    heads = build_roi_heads(_fpn_cfg(), 8).eval()
    heads.box.post_processor.score_thresh = 0.0
    targets = _targets()
    with torch.no_grad():
        outputs = heads(_features(), _proposals(targets))
    assert len(outputs) == 4
    _, detections, losses, adv = outputs
    assert losses == {} and adv == AdversarialInputs() and len(detections) == 2
    for det in detections:
        assert len(det) > 0 and det.size == IMAGE_SIZE
        assert det.get_field("mask").shape == (len(det), 1, 28, 28)
        assert det.get_field("scores").shape == (len(det),) and det.get_field("labels").min() >= 1


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_eval_masks_do_not_depend_on_the_predictor_chunk_size(chunk_size):
    # Reference: the predictor on all detections at once, then each detection's class channel, then the sigmoid.
    cfg = _fpn_cfg()
    cfg.merge_from_list(["MODEL.ROI_MASK_HEAD.TEST_CHUNK_SIZE", chunk_size])
    heads = build_roi_heads(cfg, 8).eval()
    assert heads.mask.test_chunk_size == chunk_size
    heads.box.post_processor.score_thresh = 0.0
    features, proposals = _features(), _proposals(_targets())
    with torch.no_grad():
        _, detections, _, _ = heads(features, proposals)
        all_classes = heads.mask.predictor(heads.mask.feature_extractor(features, detections))
    labels = torch.cat([d.get_field("labels") for d in detections])
    expected = all_classes[torch.arange(len(labels)), labels][:, None].sigmoid()
    assert len(labels) > 7  # several chunks for chunk size 7
    # Equal up to rounding: for some batch sizes the CPU convolution picks another kernel (with this head's 8
    # channels, batches of 1 and 3); a wrong channel, order or chunk boundary would be off by far more.
    torch.testing.assert_close(torch.cat([d.get_field("mask") for d in detections]), expected, rtol=0, atol=1e-6)


def test_eval_without_detections_gives_empty_masks():
    heads = build_roi_heads(_fpn_cfg(), 8).eval()
    heads.box.post_processor.score_thresh = 1.1  # no class probability reaches it
    with torch.no_grad():
        _, detections, _, _ = heads(_features(), _proposals(_targets()))
    assert [d.get_field("mask").shape for d in detections] == [(0, 1, 28, 28)] * 2


def test_c4_heads_share_the_box_extractor_and_train_on_its_features():
    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.MASK_ON", True, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 8,
                         "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4, "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 4,
                         "MODEL.ROI_MASK_HEAD.RESOLUTION", 4, "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3])
    torch.manual_seed(0)
    heads = build_roi_heads(cfg, 1024).train()
    assert heads.mask.feature_extractor is heads.box.feature_extractor
    targets = _targets(num_images=1)
    features = [torch.randn(1, 1024, 3, 4)]
    _, _, losses, adv = heads(features, _proposals(targets), targets)
    assert adv.mask_logits.shape[1:] == (4, 4)
    assert torch.isfinite(sum(losses.values()))

    heads.eval()
    heads.box.post_processor.score_thresh = 0.0
    with torch.no_grad():
        _, detections, _, _ = heads(features, _proposals(targets))
    assert len(detections[0]) > 0
    assert detections[0].get_field("mask").shape == (len(detections[0]), 1, 4, 4)


def test_rpn_only_builds_no_roi_heads():
    cfg = default_cfg.clone()
    cfg.MODEL.RPN_ONLY = True
    assert not build_roi_heads(cfg, 8)


def test_training_without_targets_is_a_clear_error():
    heads = build_roi_heads(_fpn_cfg(), 8).train()
    with pytest.raises(ValueError, match="targets"):
        heads(_features(), _proposals(_targets()))


class _DroppingExtractor(torch.nn.Module):
    """Stands in for an FPN pooler that lost RoIs (it maps boxes of non-finite size to no level)."""

    def __init__(self, extractor):
        super().__init__()
        self.extractor = extractor

    def forward(self, features, proposals):
        return self.extractor(features, proposals)[:-1]


def test_rois_lost_by_the_feature_extractor_are_a_clear_error():
    heads = build_roi_heads(_fpn_cfg(), 8).eval()
    heads.box.feature_extractor = _DroppingExtractor(heads.box.feature_extractor)
    with pytest.raises(RuntimeError, match="non-finite"):
        with torch.no_grad():
            heads(_features(), _proposals(_targets()))
