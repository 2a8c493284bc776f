"""TEST.BBOX_AUG (test-time augmentation) and TEST.DTYPE (inference autocast) on a tiny random model."""
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.engine.bbox_aug import BBoxAugDetector, augmentations, mirror_detections
from maskrcnn_benchmark.engine.mixed_precision import build_inference_precision
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.structures.bounding_box import BoxList

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _model(cfg):
    torch.manual_seed(0)
    model = build_detection_model(cfg).eval()
    return model


def _picture(width=96, height=80):
    rng = np.random.default_rng(0)
    array = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    array[20:50, 10:40] = 200  # something to detect, off-centre so the mirror differs
    array[50:70, 60:90] = 120
    return Image.fromarray(array)


@pytest.fixture
def aug_cfg(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH", 0.0, "TEST.BBOX_AUG.ENABLED", True])
    return tiny_cfg


def test_passes_follow_the_keys_plain_pass_first(aug_cfg):
    aug_cfg.merge_from_list(["TEST.BBOX_AUG.H_FLIP", True, "TEST.BBOX_AUG.SCALES", (64, 96),
                             "TEST.BBOX_AUG.MAX_SIZE", 200, "TEST.BBOX_AUG.SCALE_H_FLIP", True])
    plain = (aug_cfg.INPUT.MIN_SIZE_TEST, aug_cfg.INPUT.MAX_SIZE_TEST)
    assert augmentations(aug_cfg) == [plain + (False,), plain + (True,), (64, 200, False), (64, 200, True),
                                      (96, 200, False), (96, 200, True)]


def test_mirroring_twice_is_the_identity():
    boxes = BoxList(torch.tensor([[3.0, 4.0, 20.0, 9.0], [0.0, 0.0, 49.0, 29.0]]), (50, 30))
    boxes.add_field("mask", torch.rand(2, 1, 28, 28))
    once = mirror_detections(boxes)
    assert once.bbox.tolist() == [[29.0, 4.0, 46.0, 9.0], [0.0, 0.0, 49.0, 29.0]]  # x -> 49 - x
    assert torch.equal(once.get_field("mask")[0, 0, :, 0], boxes.get_field("mask")[0, 0, :, -1])
    twice = mirror_detections(once)
    assert torch.equal(twice.bbox, boxes.bbox) and torch.equal(twice.get_field("mask"), boxes.get_field("mask"))


def test_without_extra_passes_augmentation_equals_the_plain_model(aug_cfg):
    model = _model(aug_cfg)
    image = _picture()
    merged = BBoxAugDetector(model, aug_cfg, "cpu")([image])[0]
    from maskrcnn_benchmark.engine.bbox_aug import test_transform
    from maskrcnn_benchmark.structures.image_list import to_image_list

    tensor = test_transform(aug_cfg, aug_cfg.INPUT.MIN_SIZE_TEST, aug_cfg.INPUT.MAX_SIZE_TEST)(image)[0]
    with torch.no_grad():
        plain = model(to_image_list([tensor], aug_cfg.DATALOADER.SIZE_DIVISIBILITY))[0].resize(image.size)
    assert len(plain) > 0
    order = plain.get_field("scores").argsort(descending=True)
    plain = plain[order]
    torch.testing.assert_close(merged.bbox, plain.bbox)
    torch.testing.assert_close(merged.get_field("scores"), plain.get_field("scores"))
    torch.testing.assert_close(merged.get_field("mask"), plain.get_field("mask"), atol=1e-5, rtol=0)


def test_h_flip_on_a_mirrored_image_gives_the_mirrored_result(aug_cfg):
    # passes {image, mirror} of the mirrored image are the passes of the image, mirrored: merged boxes and the
    # averaged masks are the mirror images of the unmirrored run's
    aug_cfg.merge_from_list(["TEST.BBOX_AUG.H_FLIP", True])
    detector = BBoxAugDetector(_model(aug_cfg), aug_cfg, "cpu")
    image = _picture()
    direct = detector([image])[0]
    of_mirror = detector([ImageOps.mirror(image)])[0]
    assert len(direct) > 0 and len(direct) == len(of_mirror)
    expected = mirror_detections(direct)
    torch.testing.assert_close(of_mirror.get_field("scores"), expected.get_field("scores"))
    torch.testing.assert_close(of_mirror.bbox, expected.bbox, atol=1e-3, rtol=0)
    torch.testing.assert_close(of_mirror.get_field("mask"), expected.get_field("mask"), atol=1e-5, rtol=0)


def test_augmentation_keys_without_enabled_are_refused(tiny_cfg):
    from maskrcnn_benchmark.engine.predictor import COCODemo

    tiny_cfg.merge_from_list(["TEST.BBOX_AUG.H_FLIP", True])
    with pytest.raises(ValueError, match="TEST.BBOX_AUG.ENABLED"):
        COCODemo(tiny_cfg, min_image_size=None)


def test_keypoint_models_refuse_augmentation(aug_cfg):
    aug_cfg.MODEL.KEYPOINT_ON = True
    with pytest.raises(ValueError, match="MODEL.KEYPOINT_ON"):
        BBoxAugDetector(torch.nn.Module(), aug_cfg, "cpu")


def test_predictor_uses_augmentation(aug_cfg, tmp_path):
    from maskrcnn_benchmark.engine.predictor import COCODemo

    aug_cfg.merge_from_list(["TEST.BBOX_AUG.H_FLIP", True])
    model = _model(aug_cfg)
    path = str(tmp_path / "m.pth")
    torch.save({"model": model.state_dict()}, path)
    demo = COCODemo(aug_cfg, confidence_threshold=0.0, min_image_size=None, weight=path)
    image = np.ascontiguousarray(np.asarray(_picture())[:, :, ::-1])
    got = demo.predict_raw(image)
    expected = BBoxAugDetector(model, aug_cfg, "cpu")([_picture()])[0]
    torch.testing.assert_close(got.bbox, expected.bbox)
    pasted = demo.compute_prediction(image)
    assert pasted.get_field("mask").shape[-2:] == (80, 96)


@pytest.mark.slow
def test_maskrcnn_benchmarks_test_time_aug_config_builds_and_runs():
    # the shipped file with its own keys; only the sizes shrunk (its 18 passes at up to 1200 px would take minutes)
    cfg = load_config(os.path.join(REPO, "configs", "test_time_aug", "e2e_mask_rcnn_R_50_FPN_1x.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHT", "", "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
        "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100, "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
        "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50, "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 10,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        "TEST.BBOX_AUG.SCALES", (48, 96), "TEST.BBOX_AUG.MAX_SIZE", 160])
    assert cfg.TEST.BBOX_AUG.ENABLED and cfg.TEST.BBOX_AUG.H_FLIP and cfg.TEST.BBOX_AUG.SCALE_H_FLIP
    assert len(augmentations(cfg)) == 6
    result = BBoxAugDetector(_model(cfg), cfg, "cpu")([_picture()])[0]
    assert result.size == (96, 80) and len(result) <= 10
    assert result.get_field("mask").shape[1:] == (1, 28, 28)
    assert torch.isfinite(result.bbox).all()


def test_inference_dtype_float16_is_refused_on_cpu_by_name(tiny_cfg):
    tiny_cfg.TEST.DTYPE = "float16"
    with pytest.raises(ValueError, match="TEST.DTYPE 'float16' needs a CUDA device"):
        build_inference_precision(tiny_cfg, "cpu")
    tiny_cfg.TEST.DTYPE = "half"
    with pytest.raises(ValueError, match="TEST.DTYPE must be one of"):
        build_inference_precision(tiny_cfg, "cpu")


def test_bfloat16_predictor_returns_float32_detections_close_to_float32(tiny_cfg, tmp_path):
    from maskrcnn_benchmark.engine.predictor import COCODemo

    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH", 0.0])
    model = _model(tiny_cfg)
    path = str(tmp_path / "m.pth")
    torch.save({"model": model.state_dict()}, path)
    image = np.ascontiguousarray(np.asarray(_picture())[:, :, ::-1])
    full = COCODemo(tiny_cfg, min_image_size=None, weight=path).predict_raw(image)
    tiny_cfg.TEST.DTYPE = "bfloat16"
    demo = COCODemo(tiny_cfg, min_image_size=None, weight=path)
    assert demo.precision.enabled and demo.precision.dtype == torch.bfloat16
    half = demo.predict_raw(image)
    assert half.bbox.dtype == torch.float32 and half.get_field("scores").dtype == torch.float32
    assert half.get_field("mask").dtype == torch.float32
    # the top detection survives: bfloat16 keeps ~3 significant digits
    top = full.get_field("scores").argmax()
    ious = box_iou_one(full.bbox[top], half.bbox)
    assert ious.max() > 0.8


def box_iou_one(box, boxes):
    from torchvision.ops import box_iou

    return box_iou(box[None], boxes)[0]


@pytest.mark.slow
@pytest.mark.parametrize("opts", [["TEST.BBOX_AUG.ENABLED", True, "TEST.BBOX_AUG.H_FLIP", True,
                                   "TEST.BBOX_AUG.SCALES", (96,), "TEST.BBOX_AUG.MAX_SIZE", 200],
                                  ["TEST.DTYPE", "bfloat16"]])
def test_test_net_evaluates_with_augmentation_and_bfloat16(tiny_cfg, opts):
    # tools/test_net.py's run_test: the loader yields originals for the augmentation, detections come back in
    # float32 in the original image size and are scored
    from maskrcnn_benchmark.engine.inference import run_test

    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH", 0.0, "TEST.BOUNDARY_AP", False] + opts)
    model = _model(tiny_cfg)
    (result,) = run_test(tiny_cfg, model, distributed=False)
    predictions = torch.load(os.path.join(tiny_cfg.OUTPUT_DIR, "inference", "synthetic_fixture", "predictions.pth"),
                             weights_only=False)
    assert predictions and all(p.bbox.dtype == torch.float32 for p in predictions)
    assert "segm" in result[0].results


def test_retinanet_detections_are_merged_too(tiny_cfg):
    tiny_cfg.merge_from_list([
        "MODEL.MASK_ON", False, "MODEL.RETINANET_ON", True, "MODEL.RPN_ONLY", True,
        "MODEL.BACKBONE.CONV_BODY", "R-18-FPN-RETINANET", "MODEL.RETINANET.NUM_CLASSES", 4,
        "MODEL.RETINANET.ANCHOR_SIZES", (8, 16, 32, 64, 128), "MODEL.RETINANET.NUM_CONVS", 1,
        "MODEL.RETINANET.INFERENCE_TH", 0.0,
        "TEST.BBOX_AUG.ENABLED", True, "TEST.BBOX_AUG.H_FLIP", True, "TEST.DETECTIONS_PER_IMG", 7])
    detector = BBoxAugDetector(_model(tiny_cfg), tiny_cfg, "cpu")
    image = _picture()
    direct = detector([image])[0]
    assert 0 < len(direct) <= 7 and direct.size == image.size and not direct.has_field("mask")
    of_mirror = detector([ImageOps.mirror(image)])[0]
    torch.testing.assert_close(of_mirror.bbox, mirror_detections(direct).bbox, atol=1e-3, rtol=0)


def test_a_slightly_inverted_box_reaches_a_larger_pass_with_no_negative_size():
    # the box head can return x1 < x0 by a fraction of a pixel; scaled 3x it would be inverted by more than the
    # pooler's +1 pixel and its level a square root of a negative number
    boxes = BoxList(torch.tensor([[50.0, 10.0, 49.5, 30.0], [5.0, 5.0, 20.0, 20.0]]), (96, 80), mode="xyxy")
    for hflip in (False, True):
        scaled = BBoxAugDetector._to_pass(None, boxes, (288, 240), hflip).bbox
        assert (scaled[:, 2:] >= scaled[:, :2]).all()
        expected = boxes.transpose(0).resize((288, 240)).bbox[1] if hflip else boxes.bbox[1] * 3
        torch.testing.assert_close(scaled[1], expected)  # a valid box is only scaled (and mirrored)
