"""Mask head: registry entries build from the default config, M x M targets of a hand-made polygon, the loss,
the label-channel pick of the post-processor and the Masker against a per-box reference paste."""
import pytest
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker, MaskPostProcessor
from maskrcnn_benchmark.modeling.roi_heads.mask_head.loss import (
    MaskRCNNLossComputation,
    maskrcnn_loss,
    project_masks_on_boxes,
)
from maskrcnn_benchmark.modeling.roi_heads.mask_head.roi_mask_feature_extractors import make_roi_mask_feature_extractor
from maskrcnn_benchmark.modeling.roi_heads.mask_head.roi_mask_predictors import make_roi_mask_predictor
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

_IN_CHANNELS = {"ResNet50Conv5ROIFeatureExtractor": 1024}


@pytest.mark.parametrize("name", sorted(registry.ROI_MASK_FEATURE_EXTRACTORS))
def test_every_mask_feature_extractor_builds_from_default_config(name):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR = name
    in_channels = _IN_CHANNELS.get(name, 8)
    extractor = make_roi_mask_feature_extractor(cfg, in_channels).eval()
    features = [torch.randn(1, in_channels, 6, 8)]
    resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
    for num_rois in (2, 0):
        proposals = [BoxList(torch.tensor([[4.0, 8.0, 60.0, 70.0]]).repeat(num_rois, 1), (128, 96))]
        with torch.no_grad():
            out = extractor(features, proposals)
        if name == "ResNet50Conv5ROIFeatureExtractor":
            assert tuple(out.shape) == (num_rois, 2048, resolution // 2, resolution // 2)
        elif name == "FBNet.roi_head_mask":  # default arch: last block upsamples x2 to 80 channels
            assert tuple(out.shape) == (num_rois, 80, 2 * resolution, 2 * resolution)
        else:
            assert tuple(out.shape) == (num_rois, cfg.MODEL.ROI_MASK_HEAD.CONV_LAYERS[-1], resolution, resolution)
        assert extractor.out_channels == out.shape[1]


@pytest.mark.parametrize("name", sorted(registry.ROI_MASK_PREDICTOR))
def test_every_mask_predictor_output_shapes(name):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_MASK_HEAD.PREDICTOR = name
    predictor = make_roi_mask_predictor(cfg, 16)
    upsample = 2 if name == "MaskRCNNC4Predictor" else 1
    for num_rois in (3, 0):
        out = predictor(torch.randn(num_rois, 16, 14, 14))
        assert tuple(out.shape) == (num_rois, 81, 14 * upsample, 14 * upsample)


def _square_mask(mode):
    # a square covering pixels 4..11 (continuous [4, 12)) of a 16 x 16 image
    masks = SegmentationMask([[[4.0, 4.0, 12.0, 4.0, 12.0, 12.0, 4.0, 12.0]]], (16, 16), mode="poly")
    return masks if mode == "poly" else masks.convert("mask")


class _RasterOnlyMasks:
    """Masks offering only get_mask_tensor / indexing, to exercise the roi_align fallback of the targets."""

    def __init__(self, masks):
        self.masks = masks

    def get_mask_tensor(self):
        return self.masks.get_mask_tensor()

    def __getitem__(self, item):
        return _RasterOnlyMasks(self.masks[item])

    def __len__(self):
        return len(self.masks)


@pytest.mark.parametrize("kind", ["poly", "mask", "raster_only"])
def test_mask_targets_of_hand_made_square(kind):
    masks = _square_mask("mask" if kind == "mask" else "poly")
    if kind == "raster_only":
        masks = _RasterOnlyMasks(masks)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0],   # the square fills the middle half of each side
                          [4.0, 4.0, 12.0, 12.0],   # the box is the square
                          [8.0, 8.0, 16.0, 16.0]])  # the square fills the top-left quarter
    targets = project_masks_on_boxes(masks, boxes, torch.zeros(3, dtype=torch.long), 4)
    expected = torch.zeros(3, 4, 4)
    expected[0, 1:3, 1:3] = 1
    expected[1] = 1
    expected[2, :2, :2] = 1
    assert torch.equal(targets, expected)


def test_mask_targets_pick_the_matched_instance():
    masks = SegmentationMask([[[0.0, 0.0, 8.0, 0.0, 8.0, 8.0, 0.0, 8.0]],
                              [[8.0, 8.0, 16.0, 8.0, 16.0, 16.0, 8.0, 16.0]]], (16, 16))
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(2, 1)
    targets = project_masks_on_boxes(masks, boxes, torch.tensor([1, 0]), 2)
    assert targets.tolist() == [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]]


def test_mask_loss_is_bce_of_the_gt_class_channel():
    proposals = BoxList(torch.tensor([[4.0, 4.0, 12.0, 12.0]]), (16, 16))
    proposals.add_field("labels", torch.tensor([2]))
    proposals.add_field("matched_idxs", torch.tensor([0]))
    target = BoxList(torch.tensor([[4.0, 4.0, 11.0, 11.0]]), (16, 16))
    target.add_field("masks", _square_mask("poly"))
    mask_logits = torch.full((1, 3, 4, 4), 100.0)  # wrong channels are very wrong
    mask_logits[0, 2] = 2.0
    logits, targets = MaskRCNNLossComputation(4).gt_class_logits_and_targets([proposals], mask_logits, [target])
    assert torch.equal(targets, torch.ones(1, 4, 4))
    loss = maskrcnn_loss(logits, targets)
    assert loss.item() == pytest.approx(-F.logsigmoid(torch.tensor(2.0)).item(), rel=1e-6)

    with pytest.raises(ValueError, match="RESOLUTION"):
        MaskRCNNLossComputation(28).gt_class_logits_and_targets([proposals], mask_logits, [target])


def test_mask_loss_without_positives_is_zero_and_keeps_the_graph():
    mask_logits = torch.randn(0, 3, 28, 28, requires_grad=True)
    weight = torch.ones(1, requires_grad=True)
    loss = maskrcnn_loss((mask_logits * weight)[:, 0], torch.zeros(0, 28, 28))
    loss.backward()
    assert loss.item() == 0 and weight.grad is not None and weight.grad.item() == 0


def test_mask_post_processor_picks_the_label_channel():
    boxes = BoxList(torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 6.0, 6.0]]), (10, 10))
    boxes.add_field("labels", torch.tensor([2, 1]))
    boxes.add_field("scores", torch.tensor([0.9, 0.8]))
    logits = torch.arange(3.0)[None, :, None, None].repeat(2, 1, 4, 4)  # channel c holds the value c
    result = MaskPostProcessor()(logits, [boxes])[0]
    mask = result.get_field("mask")
    assert tuple(mask.shape) == (2, 1, 4, 4)
    assert torch.allclose(mask[0], torch.sigmoid(torch.tensor(2.0)).expand(1, 4, 4))
    assert torch.allclose(mask[1], torch.sigmoid(torch.tensor(1.0)).expand(1, 4, 4))
    assert torch.equal(result.get_field("scores"), boxes.get_field("scores"))


def _reference_paste(mask, box, im_h, im_w, threshold, padding):
    """maskrcnn-benchmark's per-box paste, written plainly."""
    size = mask.shape[-1]
    padded = F.pad(mask, (padding,) * 4)
    scale = (size + 2.0 * padding) / size
    half_w, half_h = (box[2] - box[0]) * 0.5 * scale, (box[3] - box[1]) * 0.5 * scale
    cx, cy = (box[2] + box[0]) * 0.5, (box[3] + box[1]) * 0.5
    x0, y0, x1, y1 = [int(v) for v in torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h])]
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    resized = F.interpolate(padded[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    resized = resized > threshold
    out = torch.zeros(im_h, im_w, dtype=torch.uint8)
    xa, xb, ya, yb = max(x0, 0), min(x1 + 1, im_w), max(y0, 0), min(y1 + 1, im_h)
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = resized[ya - y0:yb - y0, xa - x0:xb - x0].to(torch.uint8)
    return out


def test_masker_pastes_a_constant_mask_inside_its_box_only():
    boxes = BoxList(torch.tensor([[10.0, 20.0, 29.0, 39.0]]), (64, 48))
    pasted = Masker(threshold=0.5, padding=1)(torch.ones(1, 1, 28, 28), boxes)[0]
    assert tuple(pasted.shape) == (1, 1, 48, 64) and pasted.dtype == torch.uint8
    ys, xs = torch.nonzero(pasted[0, 0], as_tuple=True)
    # the padding ring fades out within one pixel of the box edge
    assert 10 <= xs.min() <= 11 and 28 <= xs.max() <= 29
    assert 20 <= ys.min() <= 21 and 38 <= ys.max() <= 39
    assert pasted[0, 0, 21:39, 11:29].all()
    assert torch.equal(pasted[0, 0], _reference_paste(torch.ones(28, 28), boxes.bbox[0], 48, 64, 0.5, 1))


def test_masker_matches_per_box_reference_paste():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 1, 28, 28, generator=generator)
    boxes = torch.tensor([[3.0, 5.0, 40.0, 30.0], [-10.0, -4.0, 20.0, 12.0], [50.0, 30.0, 90.0, 70.0],
                          [7.3, 9.8, 8.1, 10.2], [0.0, 0.0, 63.0, 47.0], [30.5, 2.2, 47.9, 44.4]])
    pasted = Masker(threshold=0.5, padding=1)(masks, BoxList(boxes, (64, 48)))[0]
    for i in range(len(boxes)):
        expected = _reference_paste(masks[i, 0], boxes[i], 48, 64, 0.5, 1)
        assert torch.equal(pasted[i, 0], expected), "box {}".format(i)

    probabilities = Masker(threshold=-1, padding=1)(masks, BoxList(boxes, (64, 48)))[0]
    assert probabilities.dtype == torch.float32 and float(probabilities.max()) <= 1.0
    assert torch.equal((probabilities > 0.5).to(torch.uint8), pasted)
    assert Masker()(torch.zeros(0, 1, 28, 28), BoxList(torch.zeros(0, 4), (64, 48)))[0].shape == (0, 1, 48, 64)


def test_mask_targets_of_no_boxes_are_an_empty_float_batch():
    targets = project_masks_on_boxes(_square_mask("poly"), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 4)
    assert targets.shape == (0, 4, 4) and targets.dtype == torch.float32


def test_mask_loss_targets_follow_each_roi_s_matched_instance_and_the_resolution_message():
    masks = SegmentationMask([[[0.0, 0.0, 8.0, 0.0, 8.0, 8.0, 0.0, 8.0]],
                              [[8.0, 8.0, 16.0, 8.0, 16.0, 16.0, 8.0, 16.0]]], (16, 16))
    proposals = BoxList(torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(2, 1), (16, 16))
    proposals.add_field("labels", torch.tensor([1, 1]))
    proposals.add_field("matched_idxs", torch.tensor([1, 0]))
    target = BoxList(torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]]), (16, 16))
    target.add_field("masks", masks)
    _, targets = MaskRCNNLossComputation(2).gt_class_logits_and_targets([proposals], torch.zeros(2, 2, 2, 2),
                                                                        [target])
    assert targets.tolist() == [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]]
    with pytest.raises(ValueError) as error:
        MaskRCNNLossComputation(28).gt_class_logits_and_targets([proposals], torch.zeros(2, 2, 2, 2), [target])
    assert str(error.value) == (
        "mask predictor outputs 2x2 masks but MODEL.ROI_MASK_HEAD.RESOLUTION is 28; set RESOLUTION to the "
        "predictor's output size (2 x POOLER_RESOLUTION for the deconv predictor)")
