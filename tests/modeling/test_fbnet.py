"""FBNet: blocks, architecture definitions, the backbone and RPN / RoI heads built from MODEL.FBNET, and the shipped
configs/fbnet files (build, one training step, inference on a tiny input)."""
import glob
import json
import os

import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.layers import FrozenBatchNorm2d
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.backbone import fbnet_builder
from maskrcnn_benchmark.modeling.backbone.fbnet import FBNetBoxHead, FBNetMaskHead, FBNetRPNHead, build_fbnet_backbone
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import to_image_list
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FBNET_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "fbnet", "*.yaml")))


def _fbnet_cfg(**fbnet):
    cfg = default_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = "FBNet"
    cfg.MODEL.FBNET.WIDTH_DIVISOR = 8
    for key, value in fbnet.items():
        cfg.MODEL.FBNET[key] = value
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 6
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 6
    return cfg


@pytest.mark.parametrize("op_type", fbnet_builder.BLOCK_TYPES)
def test_every_block_type_maps_shapes_including_empty_batches(op_type):
    torch.manual_seed(0)
    for stride, out_side in ((1, 7), (2, 4)):
        if op_type == "ir_k1" and stride != 1:
            with pytest.raises(ValueError, match="ir_k1"):
                fbnet_builder.make_block(op_type, 16, 32, 4, stride)
            continue
        block = fbnet_builder.make_block(op_type, 16, 32, 4, stride).eval()
        assert block.output_depth == 32
        assert block(torch.rand(2, 16, 7, 7)).shape == (2, 32, out_side, out_side)
        assert block(torch.rand(0, 16, 7, 7)).shape == (0, 32, out_side, out_side)
    if op_type in fbnet_builder.IR_BLOCK_TYPES:  # negative stride: nearest upsampling before the depthwise conv
        block = fbnet_builder.make_block(op_type, 16, 32, 4, -2).eval()
        assert block(torch.rand(2, 16, 7, 7)).shape == (2, 32, 14, 14)


def test_primitives_is_maskrcnn_benchmarks_table_of_block_builders():
    # maskrcnn-benchmark's block names (a sample across the families) are all in the table
    assert {"skip", "basic_block", "shift_5x5", "ir_k3", "ir_k5_e6", "ir_k3_s4", "ir_k5_s2_se", "ir_k33_e3",
            "ir_k7_sep_e6", "shuffle"} <= set(fbnet_builder.PRIMITIVES)
    assert sorted(fbnet_builder.PRIMITIVES) == fbnet_builder.BLOCK_TYPES
    for op_type, build in fbnet_builder.PRIMITIVES.items():
        torch.manual_seed(0)
        block = build(16, 24, 3, 1, norm="bn").eval()
        torch.manual_seed(0)
        reference = fbnet_builder.make_block(op_type, 16, 24, 3, 1, norm="bn").eval()
        x = torch.rand(1, 16, 6, 6)
        assert block.output_depth == 24
        assert torch.equal(block(x), reference(x)), op_type


def test_unknown_block_type_is_refused_by_name():
    with pytest.raises(ValueError, match="ir_k9"):
        fbnet_builder.make_block("ir_k9", 16, 16, 1, 1)


def test_divisible_width_follows_maskrcnn_benchmark_rounding():
    assert fbnet_builder.divisible_width(24, 8, 8) == 24
    assert fbnet_builder.divisible_width(20, 8, 8) == 24  # 2.5 rounds half away from zero
    assert fbnet_builder.divisible_width(19, 8, 8) == 16
    assert fbnet_builder.divisible_width(3, 8, 8) == 64  # rounds to 0 -> min_val * divisor
    assert fbnet_builder.divisible_width(30, 1, 1) == 30


def test_inverted_residual_block_structure_and_residual():
    block = fbnet_builder.IRFBlock(16, 16, 6, 1, kernel=5, width_divisor=8, dw_skip_bn=True, dw_skip_relu=True)
    assert block.pw.conv.out_channels == 96 and block.dw.conv.groups == 96 and block.dw.conv.kernel_size == (5, 5)
    assert not hasattr(block.dw, "bn") and not hasattr(block.dw, "relu")
    assert block.use_res_connect
    torch.nn.init.zeros_(block.pwl.conv.weight)  # the residual branch then adds 0 (BN of zeros in eval: beta = 0)
    x = torch.randn(2, 16, 5, 5)
    assert torch.allclose(block.eval()(x), x)

    with_bn = fbnet_builder.IRFBlock(16, 24, 6, 2, dw_skip_bn=False, dw_skip_relu=False, norm="af")
    assert isinstance(with_bn.dw.bn, FrozenBatchNorm2d) and hasattr(with_bn.dw, "relu")
    assert not with_bn.use_res_connect
    cascade = fbnet_builder.make_block("ir_k33_e3", 16, 16, 6, 1)
    assert cascade.pw.conv.out_channels == 48 and list(dict(cascade.dw.named_children())) == ["dw1", "dw2"]
    se = fbnet_builder.make_block("ir_k5_s4_se", 16, 32, 6, 1)
    assert se.pw.conv.groups == 4 and se.pw.conv.out_channels == 64 and len(se.se4.op) == 5


def test_channel_shuffle_and_shift_reference():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert fbnet_builder.ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    shift = fbnet_builder.Shift(27, 5, 1, 2)
    assert shift.kernel.sum().item() == 27 and shift.kernel[:, 0, 2, 2].sum().item() == 3  # centre: 1 + remainder 2
    image = torch.randn(1, 27, 6, 6)
    out = shift(image)
    # channel 0 reads position (0, 0) of the 5x5 window: output (y, x) = input (y - 2, x - 2)
    assert torch.equal(out[0, 0, 2:, 2:], image[0, 0, :4, :4])
    assert torch.equal(out[0, 12], image[0, 12])  # a centre channel is copied


def test_default_arch_trunk_widths_strides_and_names():
    backbone = build_fbnet_backbone(_fbnet_cfg())
    assert backbone.out_channels == 96 and backbone.feature_strides == [16]
    names = [name for name, _ in backbone.body.stages.named_children()]
    expected = ["xif0_0", "xif1_0", "xif1_1", "xif2_0", "xif2_1", "xif2_2"] + ["xif3_{}".format(i) for i in range(7)]
    assert names == expected
    widths = [block.output_depth for block in backbone.body.stages]
    assert widths == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96]
    assert backbone.body.first.conv.out_channels == 32 and backbone.body.first.conv.stride == (2, 2)
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert len(features) == 1 and features[0].shape == (1, 96, 4, 6)
    wide = build_fbnet_backbone(_fbnet_cfg(SCALE_FACTOR=0.5))
    assert wide.out_channels == 48 and wide.body.first.conv.out_channels == 16


def test_arch_def_json_and_refusals_name_the_keys():
    tiny = {"block_op_type": [["ir_k3"], ["skip", "ir_k5_e1"], ["ir_k3"]],
            "block_cfg": {"first": [8, 2], "stages": [[[1, 8, 1, 1]], [[3, 16, 2, 2]], [[3, 16, 1, 1]]],
                          "last": [0, 0.0], "backbone": [0, 1], "rpn": [2], "bbox": [2]}}
    cfg = _fbnet_cfg(ARCH="tiny", ARCH_DEF=json.dumps(tiny))
    backbone = build_fbnet_backbone(cfg)
    assert backbone.out_channels == 16 and backbone.feature_strides == [4]
    assert isinstance(backbone.body.stages.xif1_0, fbnet_builder.Identity)

    with pytest.raises(ValueError, match="MODEL.FBNET.ARCH_DEF"):
        build_fbnet_backbone(_fbnet_cfg(ARCH="default", ARCH_DEF=json.dumps(tiny)))
    with pytest.raises(ValueError, match="MODEL.FBNET.ARCH 'fbnet_c'"):
        build_fbnet_backbone(_fbnet_cfg(ARCH="fbnet_c"))
    with pytest.raises(ValueError, match="not valid JSON"):
        build_fbnet_backbone(_fbnet_cfg(ARCH="x", ARCH_DEF="{stages"))
    with pytest.raises(ValueError, match="MODEL.FBNET.BN_TYPE"):
        build_fbnet_backbone(_fbnet_cfg(BN_TYPE="sync_bn"))
    with_stride = dict(tiny, rpn_stride=8)
    with pytest.raises(ValueError, match="MODEL.RPN.ANCHOR_STRIDE"):
        build_fbnet_backbone(_fbnet_cfg(ARCH="t2", ARCH_DEF=json.dumps(with_stride)))
    # mobilenet_v2 has no RPN stages: its RPN head is refused, naming the missing part
    with pytest.raises(ValueError, match="'rpn'"):
        FBNetRPNHead(_fbnet_cfg(ARCH="mobilenet_v2"), 96, 15)


def test_rpn_head_blocks_and_norm_override():
    head = FBNetRPNHead(_fbnet_cfg(), 96, 15)
    assert [n for n, _ in head[0].head.named_children()] == ["xif5_0", "xif5_1", "xif5_2"]
    logits, deltas = head([torch.randn(2, 96, 4, 5)])
    assert logits[0].shape == (2, 15, 4, 5) and deltas[0].shape == (2, 60, 4, 5)
    last_only = FBNetRPNHead(_fbnet_cfg(RPN_HEAD_BLOCKS=1, RPN_BN_TYPE="af"), 96, 15)
    assert [n for n, _ in last_only[0].head.named_children()] == ["xif5_2"]
    assert isinstance(last_only[0].head.xif5_2.pw.bn, FrozenBatchNorm2d)
    with pytest.raises(ValueError, match="RPN_HEAD_BLOCKS"):
        FBNetRPNHead(_fbnet_cfg(RPN_HEAD_BLOCKS=4), 96, 15)


def _proposals():
    boxes = BoxList(torch.tensor([[0., 0., 31., 31.], [8., 8., 40., 60.], [10., 2., 20., 12.]]), (64, 64))
    return [boxes]


def test_roi_heads_resolution_width_and_last_layer_options():
    features = [torch.randn(1, 96, 4, 4)]
    box = FBNetBoxHead(_fbnet_cfg(), 96)
    assert box(features, _proposals()).shape == (3, 240, 3, 3)  # pooled 6x6, first block stride 2
    assert len(box.head.last) == 0  # "last" [0, 0.0] with DET_HEAD_LAST_SCALE 1.0: no closing conv
    same = FBNetBoxHead(_fbnet_cfg(DET_HEAD_LAST_SCALE=-1.0), 96)
    assert same.head.last.conv.out_channels == 240 and same.out_channels == 240
    first_block = FBNetBoxHead(_fbnet_cfg(DET_HEAD_BLOCKS=[0], DET_HEAD_STRIDE=1), 96)
    assert first_block(features, _proposals()).shape == (3, 160, 6, 6)
    mask = FBNetMaskHead(_fbnet_cfg(), 96)
    assert mask(features, _proposals()).shape == (3, 80, 12, 12)  # last block upsamples x2
    dsmask = FBNetMaskHead(_fbnet_cfg(ARCH="xirb16d_dsmask"), 128)
    assert dsmask([torch.randn(1, 128, 4, 4)], _proposals()).shape == (3, 64, 12, 12)  # 6 -> 3 -> 6 -> 12
    with pytest.raises(ValueError, match="DET_HEAD_STRIDE"):
        FBNetBoxHead(_fbnet_cfg(DET_HEAD_STRIDE=3), 96)


def test_registered_under_maskrcnn_benchmark_names():
    assert registry.BACKBONES["FBNet"] is build_fbnet_backbone
    assert registry.RPN_HEADS["FBNet.rpn_head"] is FBNetRPNHead
    assert registry.ROI_BOX_FEATURE_EXTRACTORS["FBNet.roi_head"] is FBNetBoxHead
    assert registry.ROI_MASK_FEATURE_EXTRACTORS["FBNet.roi_head_mask"] is FBNetMaskHead
    assert "FBNet.roi_head_keypoints" not in registry.ROI_KEYPOINT_FEATURE_EXTRACTORS  # no arch has keypoint stages


def _tiny_batch():
    torch.manual_seed(0)
    images = to_image_list([torch.randn(3, 64, 64) * 50, torch.randn(3, 48, 64) * 50], size_divisible=32)
    targets = []
    for (w, h), boxes, labels in (((64, 64), [[4., 6., 30., 40.], [30., 20., 60., 60.]], [1, 3]),
                                  ((64, 48), [[10., 10., 25., 20.]], [2])):
        target = BoxList(torch.tensor(boxes), (w, h))
        target.add_field("labels", torch.tensor(labels))
        polygons = [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in boxes]
        target.add_field("masks", SegmentationMask(polygons, (w, h), mode="poly"))
        targets.append(target)
    return images, targets


# fewer proposals and sampled RoIs than the COCO configs, so a step on CPU takes seconds
_SMALL = ["MODEL.DEVICE", "cpu", "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 300, "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 64,
          "MODEL.RPN.PRE_NMS_TOP_N_TEST", 300, "MODEL.RPN.POST_NMS_TOP_N_TEST", 32,
          "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
          "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 5]


def test_fbnet_configs_are_shipped():
    names = {os.path.basename(p) for p in FBNET_CONFIGS}
    assert {"e2e_faster_rcnn_fbnet.yaml", "e2e_mask_rcnn_fbnet.yaml", "e2e_mask_rcnn_fbnet_xirb16d_dsmask.yaml",
            "e2e_faster_rcnn_fbnet_chamv1a_600.yaml"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("config_file", FBNET_CONFIGS, ids=os.path.basename)
def test_shipped_fbnet_config_builds_trains_one_step_and_infers(config_file):
    cfg = load_config(config_file, _SMALL)
    torch.manual_seed(0)
    model = build_detection_model(cfg).train()
    assert model.backbone.feature_strides == [16]
    assert isinstance(model.rpn.head, FBNetRPNHead)
    assert isinstance(model.roi_heads.box.feature_extractor, FBNetBoxHead)
    if cfg.MODEL.MASK_ON:
        assert isinstance(model.roi_heads.mask.feature_extractor, FBNetMaskHead)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    images, targets = _tiny_batch()
    losses = model(images, targets)
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert set(losses) == (expected | {"loss_mask"} if cfg.MODEL.MASK_ON else expected)
    assert all(torch.isfinite(v) for v in losses.values())
    before = model.backbone.body.first.conv.weight.detach().clone()
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.backbone.body.first.conv.weight)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert [len(d) for d in detections] == [5, 5]  # score threshold 0: DETECTIONS_PER_IMG each
    if cfg.MODEL.MASK_ON:
        resolution = cfg.MODEL.ROI_MASK_HEAD.RESOLUTION  # masks are pasted into the image by the evaluator
        assert detections[1].get_field("mask").shape == (5, 1, resolution, resolution)
