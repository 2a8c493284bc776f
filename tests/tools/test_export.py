"""tools/export.py: a briefly trained tiny Mask R-CNN (the demo's R-18-FPN + GroupNorm, scaled down) written to ONNX
and TorchScript gives the PyTorch detector's detections on images of two sizes; unexportable configs are refused
by name before any weight is read; a GAN checkpoint exports as its detector weights alone.

Tolerances (float32; onnxruntime and PyTorch sum convolutions in different orders): boxes within 1e-2 px, scores
within 1e-4, labels equal, detection counts equal, pasted masks (threshold 0.5) IoU >= 0.98 per detection.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export tests need the 'export' extra: "
                                  "pip install -r requirements-export.txt")
pytest.importorskip("onnx", reason="ONNX export tests need the 'export' extra: pip install -r requirements-export.txt")

# each test trains or exports a detector (the module fixture trains one for a few iterations): several seconds each
pytestmark = pytest.mark.slow

BOX_TOL_PX, SCORE_TOL, MASK_MIN_IOU = 1e-2, 1e-4, 0.98


@pytest.fixture(scope="module")
def export_tool():
    return import_file("export_under_test", os.path.join(REPO, "tools", "export.py"))


@pytest.fixture(scope="module")
def trained(synthetic_dataset_dir, tmp_path_factory):
    """(config file, GAN checkpoint, the same detector weights without the GAN entries, cfg): the tiny model trained
    3 iterations with the discriminators on (adversarial from iteration 2)."""
    from maskrcnn_benchmark.config import cfg as base_cfg

    tiny_opts = import_file("conftest_for_export", os.path.join(REPO, "tests", "conftest.py")).TINY_OPTS
    tmp = tmp_path_factory.mktemp("export")
    cfg = base_cfg.clone()
    spec = "synthetic_fixture:{}:{}".format(os.path.join(synthetic_dataset_dir, "annotations.json"),
                                            os.path.join(synthetic_dataset_dir, "images"))
    cfg.merge_from_list(tiny_opts + ["DATASETS.CUSTOM", (spec,), "DATASETS.TRAIN", ("synthetic_fixture",),
                                     "DATASETS.TEST", ("synthetic_fixture",), "OUTPUT_DIR", str(tmp / "out"),
                                     "MODEL.GAN.ENABLED", True, "MODEL.GAN.START_ITER", 2, "SOLVER.MAX_ITER", 3,
                                     # no cap hit: the two test images get different numbers of detections
                                     "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 100, "TEST.DETECTIONS_PER_IMG", 100])
    config_file = tmp / "tiny.yaml"
    config_file.write_text(cfg.dump())
    from maskrcnn_benchmark.engine import train_net
    train_net.main(["--config-file", str(config_file), "--skip-test"])
    gan_ckpt = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    saved = torch.load(gan_ckpt, weights_only=True)
    assert {"discriminators", "d_optimizer"} <= set(saved)
    detector_only = str(tmp / "detector_only.pth")
    torch.save({"model": saved["model"]}, detector_only)
    return str(config_file), gan_ckpt, detector_only, cfg


def _test_images(cfg, synthetic_dataset_dir):
    """Two images of different sizes, each as (PIL RGB image, the export input float Tensor[3, H, W] BGR 0-255 at the
    test size): a dataset image, and a dataset image stretched to 2:3 (another size after the test resize)."""
    from maskrcnn_benchmark.data.transforms.transforms import Resize

    folder = os.path.join(synthetic_dataset_dir, "images")
    names = sorted(os.listdir(folder))[:2]
    first = Image.open(os.path.join(folder, names[0])).convert("RGB")
    second = Image.open(os.path.join(folder, names[1])).convert("RGB")
    second = second.resize((second.width * 3 // 2, second.height))
    resize = Resize(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    out = []
    for image in (first, second):
        resized, _ = resize(image)
        bgr = np.ascontiguousarray(np.asarray(resized)[:, :, ::-1])
        out.append((image, torch.from_numpy(bgr).permute(2, 0, 1).float()))
    return out


def _pytorch_detections(cfg, checkpoint, pil_image):
    """The detector as tools/test_net.py runs it: (boxes, scores, labels, masks [N, 1, 28, 28]) as numpy."""
    from maskrcnn_benchmark.data.transforms import build_transforms
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    model = build_detection_model(cfg).eval()
    DetectronCheckpointer(cfg, model).load(checkpoint, use_latest=False, strict=True)
    image, _ = build_transforms(cfg, is_train=False)(pil_image, None)
    with torch.no_grad():
        result = model([image])[0]
    return [result.bbox.numpy(), result.get_field("scores").numpy(), result.get_field("labels").numpy(),
            result.get_field("mask").numpy()]


def _mask_ious(expected, got, image_shape):
    from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import paste_masks_in_image

    pasted = [paste_masks_in_image(torch.from_numpy(masks), torch.from_numpy(boxes), image_shape)[:, 0].bool()
              for boxes, masks in ((expected[0], expected[3]), (got[0], got[3]))]
    inter = (pasted[0] & pasted[1]).flatten(1).sum(1).float()
    union = (pasted[0] | pasted[1]).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def _assert_same_detections(expected, got, image_shape, what):
    assert got[0].shape == expected[0].shape, "{}: {} detections, PyTorch {}".format(what, len(got[0]),
                                                                                     len(expected[0]))
    assert got[2].dtype == np.int64
    np.testing.assert_array_equal(got[2], expected[2], err_msg=what + " labels")
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=BOX_TOL_PX, err_msg=what + " boxes")
    np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=SCORE_TOL, err_msg=what + " scores")
    assert got[3].shape == expected[3].shape
    ious = _mask_ious(expected, got, image_shape)
    assert ious.numel() == 0 or float(ious.min()) >= MASK_MIN_IOU, "{}: pasted mask IoU {:.3f}".format(
        what, float(ious.min()))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_file_gives_the_detectors_detections_at_two_image_sizes(trained, synthetic_dataset_dir,
                                                                         export_tool, tmp_path, fmt):
    config_file, gan_ckpt, _, cfg = trained
    output = str(tmp_path / ("model." + fmt))
    assert export_tool.main(["--config-file", config_file, "--ckpt", gan_ckpt, "--format", fmt,
                             "--output", output]) == 0
    run = export_tool.load_exported(output, fmt)
    counts, sizes = [], []
    for pil_image, export_input in _test_images(cfg, synthetic_dataset_dir):
        expected = _pytorch_detections(cfg, gan_ckpt, pil_image)
        got = run(export_input)
        _assert_same_detections(expected, got, tuple(export_input.shape[1:]), "{} {}".format(
            fmt, tuple(export_input.shape)))
        counts.append(len(expected[0]))
        sizes.append(tuple(export_input.shape))
    # the file was traced at another size; it must have followed both the image size and the detection count
    assert sizes[0] != sizes[1] and counts[0] != counts[1] and min(counts) > 0, (sizes, counts)


def test_torchscript_file_loads_without_this_package(trained, synthetic_dataset_dir, export_tool, tmp_path):
    config_file, gan_ckpt, _, cfg = trained
    output = str(tmp_path / "model.pt")
    export_tool.main(["--config-file", config_file, "--ckpt", gan_ckpt, "--format", "torchscript",
                      "--output", output, "--no-check"])
    (_, export_input), _ = _test_images(cfg, synthetic_dataset_dir)
    torch.save(export_input, str(tmp_path / "image.pt"))
    script = ("import sys, torch, torchvision\n"  # torchvision registers the nms / roi_align ops the file calls
              "m = torch.jit.load(sys.argv[1])\n"
              "out = m(torch.load(sys.argv[2]))\n"
              "assert not any(k.startswith('maskrcnn_benchmark') for k in sys.modules), 'imported the package'\n"
              "torch.save([t.detach() for t in out], sys.argv[3])\n")
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", script, output, str(tmp_path / "image.pt"),
                           str(tmp_path / "out.pt")], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [t.numpy() for t in torch.load(str(tmp_path / "out.pt"), weights_only=True)]
    expected = export_tool.load_exported(output, "torchscript")(export_input)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_gan_checkpoint_exports_as_its_detector_weights(trained, synthetic_dataset_dir, export_tool, tmp_path):
    config_file, gan_ckpt, detector_only, cfg = trained
    outputs = []
    for name, ckpt in (("gan", gan_ckpt), ("detector", detector_only)):
        output = str(tmp_path / (name + ".onnx"))
        export_tool.main(["--config-file", config_file, "--ckpt", ckpt, "--format", "onnx", "--output", output,
                          "--no-check"])
        outputs.append(export_tool.load_exported(output, "onnx"))
    for _, export_input in _test_images(cfg, synthetic_dataset_dir):
        for a, b in zip(outputs[0](export_input), outputs[1](export_input)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("config, key", [
    ("configs/e2e_keypoint_rcnn_R_50_FPN_1x.yaml", "MODEL.KEYPOINT_ON"),
    ("configs/retinanet/retinanet_R-50-FPN_1x.yaml", "MODEL.RETINANET_ON"),
    ("configs/dcn/e2e_mask_rcnn_dconv_R_50_FPN_1x.yaml", "MODEL.RESNETS.STAGE_WITH_DCN"),
    ("configs/fbnet/e2e_mask_rcnn_fbnet.yaml", "MODEL.BACKBONE.CONV_BODY"),
    ("configs/torchvision/maskrcnn_resnet50_fpn.yaml", "MODEL.BOX_CONVENTION"),
])
def test_unexportable_config_is_refused_by_name_before_reading_weights(export_tool, tmp_path, config, key):
    missing_ckpt = str(tmp_path / "does_not_exist.pth")
    with pytest.raises(ValueError) as error:
        export_tool.main(["--config-file", os.path.join(REPO, config), "--ckpt", missing_ckpt, "--format", "onnx",
                          "--output", str(tmp_path / "m.onnx")])
    message = str(error.value)
    assert key in message and config in message
    assert not os.path.exists(str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("opts, key", [
    (["TEST.BBOX_AUG.ENABLED", "True", "TEST.BBOX_AUG.H_FLIP", "True"], "TEST.BBOX_AUG.ENABLED"),
    (["TEST.DTYPE", "bfloat16"], "TEST.DTYPE"),
])
def test_test_settings_the_graph_cannot_hold_are_refused_by_name(export_tool, tmp_path, opts, key):
    config = os.path.join(REPO, "configs/demo/synthetic_R_18_FPN.yaml")
    with pytest.raises(ValueError) as error:
        export_tool.main(["--config-file", config, "--ckpt", str(tmp_path / "does_not_exist.pth"), "--format",
                          "onnx", "--output", str(tmp_path / "m.onnx")] + opts)
    assert key in str(error.value) and not os.path.exists(str(tmp_path / "m.onnx"))


def test_unknown_export_format_is_refused(trained):
    from maskrcnn_benchmark.engine.export import export_model

    with pytest.raises(ValueError, match="'tflite' is unknown"):
        export_model(torch.nn.Identity(), [torch.zeros(3, 8, 8)], "m.tflite", "tflite")


def test_onnxruntime_example_reproduces_test_net_in_the_original_image(trained, synthetic_dataset_dir, export_tool,
                                                                       tmp_path):
    """demo/onnxruntime_example.py (the package's reader and export_input, run, boxes back to the image, numpy
    paste) against the detector's detections mapped to the original image and pasted by the project's Masker; then
    the script as a user runs it, in its own process."""
    from maskrcnn_benchmark.data.transforms import build_transforms
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import Masker
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    config_file, gan_ckpt, _, cfg = trained
    model_file = str(tmp_path / "nuclei.onnx")
    export_tool.main(["--config-file", config_file, "--ckpt", gan_ckpt, "--format", "onnx", "--output", model_file,
                      "--no-check"])
    folder = os.path.join(synthetic_dataset_dir, "images")
    original = Image.open(os.path.join(folder, sorted(os.listdir(folder))[0])).convert("RGB").resize((200, 150))
    image_file = str(tmp_path / "image.png")
    original.save(image_file)
    script = os.path.join(REPO, "demo", "onnxruntime_example.py")
    example = import_file("onnxruntime_example_under_test", script)
    session = onnxruntime.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    boxes, scores, labels, full_masks = example.detect(session, image_file, cfg)

    model = build_detection_model(cfg).eval()
    DetectronCheckpointer(cfg, model).load(gan_ckpt, use_latest=False, strict=True)
    with torch.no_grad():
        result = model([build_transforms(cfg, is_train=False)(original, None)[0]])[0].resize(original.size)
    pasted = Masker(threshold=0.5)(result.get_field("mask"), result)[0][:, 0].numpy().astype(bool)
    assert len(result) > 0 and len(boxes) == len(result)
    np.testing.assert_allclose(boxes, result.bbox.numpy(), rtol=0, atol=BOX_TOL_PX)
    np.testing.assert_allclose(scores, result.get_field("scores").numpy(), rtol=0, atol=SCORE_TOL)
    np.testing.assert_array_equal(labels, result.get_field("labels").numpy())
    assert full_masks.shape == (len(result), 150, 200)
    for example_mask, project_mask in zip(full_masks, pasted):
        union = (example_mask | project_mask).sum()
        assert union == 0 or (example_mask & project_mask).sum() / union >= MASK_MIN_IOU

    overlay = str(tmp_path / "overlay.png")
    proc = subprocess.run([sys.executable, script, "--model", model_file, "--config-file", config_file,
                           "--image", image_file, "--output", overlay], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("{} detections in ".format(len(result)))
    assert Image.open(overlay).size == original.size


def test_onnxruntime_example_names_an_unreadable_image(tmp_path):
    script = os.path.join(REPO, "demo", "onnxruntime_example.py")
    config_file = os.path.join(REPO, "configs", "demo", "nuclei_R_18_FPN.yaml")
    proc = subprocess.run([sys.executable, script, "--model", "unused.onnx", "--config-file", config_file,
                           "--image", str(tmp_path / "none.png")], env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "none.png" in proc.stderr and "not an image" in proc.stderr


# configs/e2e_mask_rcnn_R_50_C4_1x.yaml scaled down (narrow GroupNorm R-50, 4 classes): the C4 path (one map, the
# res5 head shared by the box and mask heads) at random init, where the scores are distinct.
TINY_C4_OPTS = ["MODEL.WEIGHT", "", "MODEL.DEVICE", "cpu", "MODEL.RESNETS.TRANS_FUNC", "BottleneckWithGN",
                "MODEL.RESNETS.STEM_FUNC", "StemWithGN", "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
                "MODEL.RESNETS.STEM_OUT_CHANNELS", 16, "MODEL.RESNETS.WIDTH_PER_GROUP", 4,
                "MODEL.GROUP_NORM.NUM_GROUPS", 4, "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 256,
                "MODEL.RPN.PRE_NMS_TOP_N_TEST", 200, "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
                "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4, "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 213]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("score_thresh", [0.05, 1.0])  # 1.0: no detection at all
def test_c4_mask_rcnn_exports_with_any_number_of_detections(export_tool, tmp_path, fmt, score_thresh):
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.modeling.detector import build_detection_model

    torch.manual_seed(0)
    cfg = load_config(os.path.join(REPO, "configs", "e2e_mask_rcnn_R_50_C4_1x.yaml"),
                      TINY_C4_OPTS + ["MODEL.ROI_HEADS.SCORE_THRESH", score_thresh])
    counts = _export_and_compare(export_tool, cfg, build_detection_model(cfg).eval(), str(tmp_path / ("c4." + fmt)),
                                 fmt, "C4 {}".format(fmt))
    assert all((count > 0) == (score_thresh < 1.0) for count in counts)


def _export_and_compare(export_tool, cfg, model, output, fmt, what):
    """Exports `model` (eval mode) to `output` and checks the file's detections on the tool's example images
    against the model's; returns the number of detections per image."""
    from maskrcnn_benchmark.engine.export import ExportableMaskRCNN, export_model

    images = export_tool.example_images(cfg)
    export_model(ExportableMaskRCNN(cfg, model), images, output, fmt)
    run = export_tool.load_exported(output, fmt)
    counts = []
    for image in images:
        normalised = (image - torch.tensor(cfg.INPUT.PIXEL_MEAN)[:, None, None]) / torch.tensor(
            cfg.INPUT.PIXEL_STD)[:, None, None]
        with torch.no_grad():
            result = model([normalised])[0]
        expected = [result.bbox.numpy(), result.get_field("scores").numpy(), result.get_field("labels").numpy(),
                    result.get_field("mask").numpy()]
        _assert_same_detections(expected, run(image), tuple(image.shape[1:]), what)
        counts.append(len(result))
    return counts


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_detector_pooling_the_maximum_over_fpn_levels_exports(export_tool, tmp_path, fmt):
    """MODEL.GAN.DETECTOR_POOLER_FUSION max (the authors' code) traces: the exported graph pools every level."""
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.modeling.detector import build_detection_model

    torch.manual_seed(0)
    cfg = load_config(os.path.join(REPO, "configs", "demo", "nuclei_R_18_FPN.yaml"),
                      ["MODEL.GAN.DETECTOR_POOLER_FUSION", "max", "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
                       "MODEL.RPN.PRE_NMS_TOP_N_TEST", 200, "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
                       "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50, "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 213])
    model = build_detection_model(cfg).eval()
    assert model.roi_heads.box.feature_extractor.pooler.fusion == "max"
    counts = _export_and_compare(export_tool, cfg, model, str(tmp_path / ("fpn_max." + fmt)), fmt,
                                 "FPN max {}".format(fmt))
    assert all(count > 0 for count in counts)
