"""MODEL.BOX_CONVENTION "torchvision": each piece computes what torchvision's detection code computes
(anchors, box coding, FPN level assignment, box post-processing); an unknown value is refused by name."""
import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TVImageList
from torchvision.ops import poolers as tv_poolers

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.modeling.box_coder import BoxCoder
from maskrcnn_benchmark.modeling.poolers import LevelMapper
from maskrcnn_benchmark.modeling.roi_heads.box_head.inference import PostProcessor
from maskrcnn_benchmark.modeling.rpn.anchor_generator import AnchorGenerator
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import ImageList


def _random_boxes(n, generator, size=200.0):
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_anchors_equal_torchvision_including_odd_coarse_maps():
    sizes, ratios = (32, 64, 128, 256, 512), (0.5, 1.0, 2.0)
    ours = AnchorGenerator(sizes, ratios, (4, 8, 16, 32, 64), straddle_thresh=-1, style="torchvision")
    reference = TVAnchorGenerator(tuple((s,) for s in sizes), (ratios,) * 5)
    # a padded 224 x 160 batch: P5 is 7 x 5 and P6 4 x 3, whose strides torchvision takes as 224 // 4 = 56 and
    # 160 // 3 = 53
    tensors = torch.zeros(1, 3, 224, 160)
    grids = [(56, 40), (28, 20), (14, 10), (7, 5), (4, 3)]
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    expected = reference(TVImageList(tensors, [(210, 150)]), features)[0]
    got = torch.cat([b.bbox for b in ours(ImageList(tensors, [(210, 150)]), features)[0]])
    assert torch.equal(got, expected)


def test_box_coder_equals_torchvision():
    generator = torch.Generator().manual_seed(0)
    proposals, targets = _random_boxes(50, generator), _random_boxes(50, generator)
    ours = BoxCoder((10.0, 10.0, 5.0, 5.0), to_remove=0)
    reference = tv_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    codes = reference.encode_single(targets, proposals)
    torch.testing.assert_close(ours.encode(targets, proposals), codes)
    deltas = torch.randn(50, 8, generator=generator)
    expected = reference.decode_single(deltas, proposals).reshape(50, 8)
    torch.testing.assert_close(ours.decode(deltas, proposals), expected)
    # the +1 convention gives other boxes: the setting is not a no-op
    assert not torch.allclose(BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(deltas, proposals),
                              ours.decode(deltas, proposals))


def test_level_mapper_equals_torchvision():
    generator = torch.Generator().manual_seed(0)
    boxes = _random_boxes(400, generator, size=900.0)
    # sizes straddling each level boundary (224 * 2^k) by less than a pixel, where the two conventions differ
    for side in (112.0, 224.0, 448.0):
        for delta in (-0.3, 0.0, 0.3):
            boxes = torch.cat([boxes, torch.tensor([[5.0, 5.0, 5.0 + side + delta, 5.0 + side + delta]])])
    expected = tv_poolers.initLevelMapper(2, 5)([boxes])
    got = LevelMapper(2, 5, to_remove=0)([BoxList(boxes, (1000, 1000))])
    assert torch.equal(got, expected)


def test_box_post_processor_drops_tiny_boxes_and_clips_at_the_image_edge():
    # one RoI, two classes: class 1 decodes to a box beyond the right edge, class 2 to a 0.005 px wide box
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0), to_remove=0)
    processor = PostProcessor(score_thresh=0.05, nms=0.5, detections_per_img=100, box_coder=coder, min_size=1e-2)
    rois = BoxList(torch.tensor([[40.0, 10.0, 60.0, 30.0]]), (50, 40))
    deltas = torch.zeros(1, 12)
    deltas[0, 10] = torch.log(torch.tensor(0.005 / 20.0))  # class 2: width 20 -> 0.005
    logits = torch.tensor([[0.0, 3.0, 3.0]])
    (result,) = processor((logits, deltas), [rois])
    assert result.get_field("labels").tolist() == [1]
    assert result.bbox.tolist() == [[40.0, 10.0, 50.0, 30.0]]  # clipped to x = w = 50, not w - 1


def test_unknown_box_convention_is_refused_by_name():
    from maskrcnn_benchmark.modeling.detector import build_detection_model

    cfg = load_config(None, ["MODEL.DEVICE", "cpu", "MODEL.BOX_CONVENTION", "detectron2"])
    with pytest.raises(ValueError, match="MODEL.BOX_CONVENTION='detectron2'"):
        build_detection_model(cfg)
