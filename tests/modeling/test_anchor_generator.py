import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.modeling.rpn.anchor_generator import AnchorGenerator, generate_anchors, make_anchor_generator
from maskrcnn_benchmark.structures.image_list import ImageList


def test_cell_anchors_match_detectron_values():
    # Faster R-CNN's classic anchors for stride 16, sizes 128/256/512, ratios 0.5/1/2.
    expected = torch.tensor([
        [-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
        [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
        [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359],
    ], dtype=torch.float32)
    assert torch.equal(generate_anchors(16, (128, 256, 512), (0.5, 1.0, 2.0)), expected)


def test_fpn_anchors_for_known_config():
    cfg = default_cfg.clone()
    cfg.MODEL.RPN.USE_FPN = True
    cfg.MODEL.RPN.ANCHOR_STRIDE = (4, 8, 16, 32, 64)
    generator = make_anchor_generator(cfg)
    assert generator.num_anchors_per_location() == [3] * 5
    # stride 4, size 32: base box 4x4 -> ratio 0.5 gives w = round(sqrt(32)) = 6, h = 3, times 8.
    assert torch.equal(list(generator.cell_anchors)[0],
                       torch.tensor([[-22., -10., 25., 13.], [-14., -14., 17., 17.], [-10., -22., 13., 25.]]))
    images = ImageList(torch.zeros(1, 3, 16, 24), [(16, 24)])
    features = [torch.zeros(1, 1, 4, 6), torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2),
                torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)]
    anchors = generator(images, features)
    assert len(anchors) == 1 and [len(a) for a in anchors[0]] == [72, 18, 6, 3, 3]
    level0 = anchors[0][0].bbox
    # Order is (y, x, anchor): the 4th anchor is the first cell anchor shifted by one stride in x.
    assert torch.equal(level0[3], torch.tensor([-22. + 4, -10., 25. + 4, 13.]))
    assert torch.equal(level0[6 * 3], torch.tensor([-22., -10. + 4, 25., 13. + 4]))


def test_visibility_respects_straddle_thresh():
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (32, 64)])
    features = [torch.zeros(2, 1, 4, 4)]
    generator = AnchorGenerator(sizes=(16,), aspect_ratios=(1.0,), anchor_strides=(16,), straddle_thresh=0)
    anchors = generator(images, features)
    # cell anchor [0, 0, 15, 15]: all 16 inside 64x64; in the 64 wide x 32 high image only rows y < 32.
    assert anchors[0][0].get_field("visibility").all()
    assert anchors[1][0].get_field("visibility").sum() == 8
    assert anchors[1][0].size == (64, 32)
    keep_all = AnchorGenerator((64,), (1.0,), (16,), straddle_thresh=-1)(images, features)
    assert keep_all[1][0].get_field("visibility").all()


def test_mismatched_strides_and_maps_give_clear_error():
    generator = AnchorGenerator((32,), (1.0,), (16,))
    images = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    with pytest.raises(ValueError, match="ANCHOR_STRIDE"):
        generator(images, [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)])
    cfg = default_cfg.clone()
    cfg.MODEL.RPN.USE_FPN = True  # 5 sizes but the default single stride
    with pytest.raises(ValueError, match="ANCHOR_STRIDE"):
        make_anchor_generator(cfg)


def test_cell_anchors_in_state_dict():
    keys = AnchorGenerator((32, 64), (1.0,), (4, 8)).state_dict().keys()
    assert set(keys) == {"cell_anchors.0", "cell_anchors.1"}
