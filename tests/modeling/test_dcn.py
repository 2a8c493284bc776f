"""MODEL.RESNETS.STAGE_WITH_DCN / WITH_MODULATED_DCN / DEFORMABLE_GROUPS build deformable convs where they say,
the shipped configs/dcn files train and test, and checkpoints (maskrcnn-benchmark DCN names, plain ImageNet
weights) load into them."""
import glob
import json
import math
import os

import pytest
import torch

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.layers.deform_conv import DFConv2d
from maskrcnn_benchmark.modeling.backbone import build_backbone
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DCN_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "dcn", "*.yaml")))
# narrow bottleneck ResNet-50 so that building and running it takes milliseconds
NARROW = ["MODEL.RESNETS.WIDTH_PER_GROUP", 4, "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
          "MODEL.RESNETS.RES2_OUT_CHANNELS", 16, "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 16,
          "MODEL.DEVICE", "cpu", "MODEL.GROUP_NORM.NUM_GROUPS", 4]


def _deformable_blocks(model):
    """{(stage name, block index)} whose conv2 is deformable, and the same for all bottleneck blocks."""
    deformable, blocks = set(), set()
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-1].isdigit() and parts[-2].startswith("layer") and hasattr(module, "conv2"):
            blocks.add((parts[-2], int(parts[-1])))
            if isinstance(module.conv2, DFConv2d):
                deformable.add((parts[-2], int(parts[-1])))
    return deformable, blocks


@pytest.mark.parametrize("stages", [(False, True, True, True), (True, False, False, False),
                                    (False, False, True, False)])
@pytest.mark.parametrize("trans_func", ["BottleneckWithFixedBatchNorm", "BottleneckWithGN"])
def test_deformable_convs_in_exactly_the_selected_stages(stages, trans_func):
    cfg = load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-50-FPN", "MODEL.RESNETS.STAGE_WITH_DCN", stages,
                                      "MODEL.RESNETS.TRANS_FUNC", trans_func])
    model = build_backbone(cfg)
    deformable, blocks = _deformable_blocks(model)
    selected = {"layer{}".format(i + 1) for i, on in enumerate(stages) if on}
    assert deformable == {b for b in blocks if b[0] in selected}
    assert len(blocks) == 3 + 4 + 6 + 3
    # only conv2 of those blocks: every DFConv2d of the model is one of them
    assert sum(isinstance(m, DFConv2d) for m in model.modules()) == len(deformable)
    out = model(torch.randn(1, 3, 64, 64))
    assert all(torch.isfinite(o).all() for o in out)


def test_c4_fourth_flag_makes_the_roi_head_res5_deformable():
    cfg = load_config(None, NARROW + ["MODEL.RESNETS.STAGE_WITH_DCN", (False, False, True, True),
                                      "MODEL.RESNETS.WITH_MODULATED_DCN", True, "MODEL.RESNETS.DEFORMABLE_GROUPS", 2])
    model = build_detection_model(cfg)
    deformable, _ = _deformable_blocks(model.backbone)
    assert {s for s, _ in deformable} == {"layer3"}
    head_deformable, head_blocks = _deformable_blocks(model.roi_heads.box.feature_extractor.head)
    assert head_deformable == head_blocks and {s for s, _ in head_blocks} == {"layer4"}
    conv2 = model.roi_heads.box.feature_extractor.head.layer4[0].conv2
    assert conv2.with_modulated_dcn and conv2.offset.out_channels == 2 * 27


def test_modifiers_without_a_deformable_stage_are_refused():
    cfg = load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-50-FPN", "MODEL.RESNETS.WITH_MODULATED_DCN", True])
    with pytest.raises(ValueError, match="WITH_MODULATED_DCN=True.*STAGE_WITH_DCN selects no stage"):
        build_backbone(cfg)


def test_basic_block_bodies_refuse_dcn():
    cfg = load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
                                      "MODEL.RESNETS.STAGE_WITH_DCN", (False, True, False, False)])
    with pytest.raises(ValueError, match="STAGE_WITH_DCN.*basic-block"):
        build_backbone(cfg)


def _fpn_dcn_cfg(modulated):
    return load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-50-FPN", "MODEL.RPN.USE_FPN", True,
                                       "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
                                       "MODEL.RESNETS.STAGE_WITH_DCN", (False, True, True, True),
                                       "MODEL.RESNETS.WITH_MODULATED_DCN", modulated,
                                       "MODEL.BACKBONE.FREEZE_CONV_BODY_AT", 0])


@pytest.mark.parametrize("modulated", [False, True])
def test_maskrcnn_benchmark_dcn_checkpoint_loads(modulated, tmp_path):
    """maskrcnn-benchmark names a deformable conv2 ``conv2.offset.{weight,bias}`` (18 or 27 x C x 3 x 3 per
    offset group) and ``conv2.conv.weight`` (its DFConv2d in layers/misc.py); such a file loads into ours."""
    model = build_backbone(_fpn_dcn_cfg(modulated)).eval()
    channels = {"layer2": 8, "layer3": 16, "layer4": 32}
    blocks = {"layer2": 4, "layer3": 6, "layer4": 3}
    generator = torch.Generator().manual_seed(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    offsets = 27 if modulated else 18
    for stage, count in blocks.items():
        c = channels[stage]
        for block in range(count):
            prefix = "body.{}.{}.conv2.".format(stage, block)
            state[prefix + "offset.weight"] = torch.randn(offsets, c, 3, 3, generator=generator) * 0.01
            state[prefix + "offset.bias"] = torch.randn(offsets, generator=generator)
            state[prefix + "conv.weight"] = torch.randn(c, c, 3, 3, generator=generator)
    torch.save({"model": state}, str(tmp_path / "mb_dcn.pth"))
    fresh = build_backbone(_fpn_dcn_cfg(modulated)).eval()
    DetectronCheckpointer(_fpn_dcn_cfg(modulated), fresh).load(str(tmp_path / "mb_dcn.pth"), use_latest=False)
    for key, value in state.items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert fresh.body.layer3[2].conv2.offset.weight.abs().sum() > 0


def test_plain_imagenet_weights_fill_the_deformable_kernels(tmp_path):
    """A plain body's ``layerN.i.conv2.weight`` goes into the deformable ``conv2.conv.weight``; with the offsets
    still zero, the body computes what the plain body computes."""
    plain_cfg = load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-50-C5"])
    torch.manual_seed(0)
    plain = build_backbone(plain_cfg).eval()
    body_state = {k[len("body."):]: v for k, v in plain.state_dict().items()}
    torch.save(body_state, str(tmp_path / "imagenet.pth"))

    dcn_cfg = load_config(None, NARROW + ["MODEL.BACKBONE.CONV_BODY", "R-50-C5",
                                          "MODEL.RESNETS.STAGE_WITH_DCN", (False, True, True, True)])
    torch.manual_seed(1)
    deformable = build_backbone(dcn_cfg).eval()
    DetectronCheckpointer(dcn_cfg, deformable).load(str(tmp_path / "imagenet.pth"), use_latest=False)
    torch.testing.assert_close(deformable.body.layer4[1].conv2.conv.weight, plain.body.layer4[1].conv2.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deformable(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modulated", [False, True])
def test_training_step_updates_the_offsets(modulated):
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    cfg = _fpn_dcn_cfg(modulated)
    cfg.merge_from_list(["MODEL.ROI_HEADS.USE_FPN", True, "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR",
                         "FPN2MLPFeatureExtractor", "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
                         "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
                         "MODEL.ROI_BOX_HEAD.POOLER_SCALES", (0.25, 0.125, 0.0625, 0.03125),
                         "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 32, "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3])
    torch.manual_seed(0)
    model = build_detection_model(cfg).train()
    target = BoxList(torch.tensor([[8.0, 10.0, 40.0, 50.0]]), (64, 64))
    target.add_field("labels", torch.tensor([1]))
    losses = model([torch.randn(3, 64, 64)], [target])
    sum(losses.values()).backward()
    offset = model.backbone.body.layer3[0].conv2.offset
    assert offset.weight.grad.abs().sum() > 0 and offset.bias.grad.abs().sum() > 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    assert offset.weight.abs().sum() > 0


def _small_opts():
    return ["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", "", "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
            "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 96, "INPUT.MIN_SIZE_TEST", 64,
            "INPUT.MAX_SIZE_TEST", 96, "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 100, "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
            "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 50, "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
            "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 50, "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "MODEL.ROI_HEADS.SCORE_THRESH", 0.0]


@pytest.mark.slow
@pytest.mark.parametrize("path", DCN_CONFIGS, ids=os.path.basename)
def test_shipped_dcn_config_builds_trains_a_step_and_infers(path):
    """configs/dcn/*.yaml (maskrcnn-benchmark's four) with a 64 px input: deformable res3-res5, one SGD step that
    moves the offset convs, then inference returning detections (and masks for the Mask R-CNN files)."""
    from maskrcnn_benchmark.structures.bounding_box import BoxList
    from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

    cfg = load_config(path, _small_opts())
    assert tuple(cfg.MODEL.RESNETS.STAGE_WITH_DCN) == (False, True, True, True)
    assert cfg.MODEL.RESNETS.WITH_MODULATED_DCN == ("mdconv" in path)
    assert cfg.MODEL.MASK_ON == ("mask_rcnn" in path)
    torch.manual_seed(0)
    model = build_detection_model(cfg).train()
    deformable, blocks = _deformable_blocks(model.backbone)
    assert deformable == {b for b in blocks if b[0] != "layer1"}
    assert model.backbone.body.layer2[0].conv2.with_modulated_dcn == ("mdconv" in path)
    target = BoxList(torch.tensor([[8.0, 10.0, 40.0, 50.0]]), (64, 64))
    target.add_field("labels", torch.tensor([1]))
    target.add_field("masks", SegmentationMask([[[8, 10, 40, 10, 40, 50, 8, 50]]], (64, 64), mode="poly"))
    image = torch.rand(3, 64, 64) * 50
    losses = model([image], [target])
    assert ("loss_mask" in losses) == cfg.MODEL.MASK_ON
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    assert model.backbone.body.layer4[2].conv2.offset.weight.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (result,) = model([image])
    assert result.bbox.shape[1] == 4 and result.has_field("scores")
    assert result.has_field("mask") == cfg.MODEL.MASK_ON


@pytest.mark.slow
def test_shipped_mdconv_config_through_train_net(synthetic_dataset_dir, tmp_path):
    """tools/train_net.py with configs/dcn/e2e_mask_rcnn_mdconv_R_50_FPN_1x.yaml on synthetic data: one
    iteration, a checkpoint with maskrcnn-benchmark's DCN names, then the COCO evaluation."""
    path = os.path.join(REPO, "configs", "dcn", "e2e_mask_rcnn_mdconv_R_50_FPN_1x.yaml")
    from maskrcnn_benchmark.engine import train_net
    spec = "synthetic_fixture:{}:{}".format(os.path.join(synthetic_dataset_dir, "annotations.json"),
                                            os.path.join(synthetic_dataset_dir, "images"))
    opts = _small_opts() + [
        "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 1, "SOLVER.MAX_ITER", 1, "SOLVER.BASE_LR", 0.001,
        "TEST.IMS_PER_BATCH", 4, "TEST.BOUNDARY_AP", False, "DATASETS.CUSTOM", (spec,),
        "DATASETS.TRAIN", ("synthetic_fixture",), "DATASETS.TEST", ("synthetic_fixture",),
        "OUTPUT_DIR", str(tmp_path / "out")]
    train_net.main(["--config-file", path] + [str(o) for o in opts])
    saved = torch.load(str(tmp_path / "out" / "model_final.pth"), weights_only=True)["model"]
    offsets = {k: v for k, v in saved.items() if k.endswith("conv2.offset.weight")}
    assert len(offsets) == 4 + 6 + 3 and all(v.shape[0] == 27 for v in offsets.values())
    assert len([k for k in saved if k.endswith("conv2.conv.weight")]) == 4 + 6 + 3
    with open(str(tmp_path / "out" / "metrics.json")) as f:
        records = [json.loads(line) for line in f]
    assert all(math.isfinite(v) for v in records[0]["losses"].values())
    assert [r["iteration"] for r in records if "eval" in r] == [1]
    folder = tmp_path / "out" / "inference" / "synthetic_fixture"
    assert (folder / "predictions.pth").exists() and (folder / "coco_results.json").exists()
