"""torchvision's maskrcnn_resnet50_fpn state dict, through MODEL.WEIGHT and configs/torchvision, gives torchvision's
detections; fine-tuning from it with another class count re-initialises only the class-specific layers.

Tolerance per detection: score 1e-4 absolute, box corners 1e-2 px, pasted mask probabilities 1e-3 absolute, and
binarised (> 0.5) masks differing in at most 1e-4 of their pixels. Both models run in float64 (all detections within
it) and in float32 (see the test's docstring). Measured in float32 on the 192 x 256 image: scores 3e-7, boxes 3e-5
px, mask probabilities 2e-6, 1 flipped pixel of 4.9 M. The image is given as is and, downscaled to 150 x 200, upscaled
by both models to MIN_SIZE_TEST (INPUT.RESIZE_STYLE torchvision).
"""
import os

import numpy as np
import pytest
import torch

from maskrcnn_benchmark.config import load_config

torchvision_detection = pytest.importorskip("torchvision.models.detection")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "torchvision", "maskrcnn_resnet50_fpn.yaml")
HEIGHT, WIDTH = 192, 256  # the short side is MIN_SIZE_TEST (torchvision's min_size)
CLASS_SPECIFIC = {
    "roi_heads.box.predictor.cls_score.weight", "roi_heads.box.predictor.cls_score.bias",
    "roi_heads.box.predictor.bbox_pred.weight", "roi_heads.box.predictor.bbox_pred.bias",
    "roi_heads.mask.predictor.mask_fcn_logits.weight", "roi_heads.mask.predictor.mask_fcn_logits.bias",
}


def _test_image():
    """BGR uint8 [HEIGHT, WIDTH, 3]: coloured discs and rectangles on a flat background."""
    import cv2

    rng = np.random.RandomState(0)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = (40, 90, 140)
    for _ in range(6):
        colour = tuple(int(v) for v in rng.randint(0, 255, 3))
        centre = (int(rng.randint(20, WIDTH - 20)), int(rng.randint(20, HEIGHT - 20)))
        cv2.circle(image, centre, int(rng.randint(15, 60)), colour, -1)
        corner_a = (int(rng.randint(0, WIDTH)), int(rng.randint(0, HEIGHT)))
        corner_b = (int(rng.randint(0, WIDTH)), int(rng.randint(0, HEIGHT)))
        cv2.rectangle(image, corner_a, corner_b, tuple(int(v) for v in rng.randint(0, 255, 3)), -1)
    return image


@pytest.fixture(scope="module")
def torchvision_model_file(tmp_path_factory):
    """torchvision's Mask R-CNN with seeded random weights, made to detect: random BatchNorm statistics (so every
    layer's normalisation matters), objectness logits that vary across anchors, class logits biased towards
    classes 1, 3 and 18 and varying across RoIs, larger box deltas. Returns (model in eval mode, saved file)."""
    torch.manual_seed(0)
    model = torchvision_detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=HEIGHT,
                                                        max_size=1333)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.2, 0.5)
                module.bias.uniform_(-0.1, 0.1)
        model.rpn.head.cls_logits.weight.normal_(std=1.0)
        model.roi_heads.box_predictor.cls_score.weight.mul_(30)
        model.roi_heads.box_predictor.cls_score.bias[[1, 3, 18]] = torch.tensor([4.0, 3.5, 3.0])
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(5)
    model.eval()
    path = str(tmp_path_factory.mktemp("torchvision") / "maskrcnn_resnet50_fpn_random.pth")
    torch.save(model.state_dict(), path)
    return model, path


def _match(reference, ours):
    """Pair each reference detection with the unused one of ours of the same label nearest in box (scores may
    tie to float noise, so their order is not compared). Returns a list of (reference index, our index)."""
    pairs, used = [], set()
    for i in range(len(reference["scores"])):
        same_label = (ours["labels"] == reference["labels"][i]).nonzero().flatten().tolist()
        candidates = [j for j in same_label if j not in used]
        assert candidates, "torchvision's detection {} (label {}) has no counterpart".format(
            i, int(reference["labels"][i]))
        distance = [(ours["boxes"][j] - reference["boxes"][i]).abs().max().item() for j in candidates]
        j = candidates[int(np.argmin(distance))]
        used.add(j)
        pairs.append((i, j))
    return pairs


def _detections(tv_model, path, image, dtype):
    """(torchvision's, ours) detections of the BGR uint8 ``image`` as dicts of boxes, scores, labels and pasted mask
    probabilities [N, 1, H, W], both models run in ``dtype``; ours through COCODemo and the shipped config."""
    from maskrcnn_benchmark.engine.predictor import COCODemo

    rgb = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        reference = tv_model.to(dtype)([rgb.to(dtype)])[0]
    tv_model.float()
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", path, "INPUT.MIN_SIZE_TEST", HEIGHT])
    # probabilities pasted into the image, as torchvision returns them
    demo = COCODemo(cfg, min_image_size=None, show_mask_heatmaps=True)
    demo.model.to(dtype)
    demo.transforms.transforms.append(lambda img, target: (img.to(dtype), target))
    prediction = demo.compute_prediction(image)
    ours = {"boxes": prediction.bbox, "scores": prediction.get_field("scores"),
            "labels": prediction.get_field("labels"), "masks": prediction.get_field("mask")}
    return reference, ours


@pytest.mark.slow
@pytest.mark.parametrize("image_size,dtype", [((HEIGHT, WIDTH), torch.float64), ((150, 200), torch.float64),
                                              ((HEIGHT, WIDTH), torch.float32)],
                         ids=["as_is-float64", "resized-float64", "as_is-float32"])
def test_loaded_torchvision_weights_give_torchvision_detections(torchvision_model_file, image_size, dtype):
    """float64: every detection within the tolerances. float32: rounding differs (e.g. our FrozenBatchNorm2d's fused
    multiply-add against torchvision's BatchNorm, 5e-7), and where boxes tie in score or sit at NMS's IoU threshold
    to within that rounding, top-k and NMS may keep the other box; so 90 of the 100 detections must meet the
    tolerances and every one has a same-label counterpart overlapping it (IoU >= 0.5). Measured in float32: 100/100 on
    the image as is, 94/100 resized (the others: a column of boxes 3 px apart along the image edge)."""
    import cv2
    from torchvision.ops import box_iou

    tv_model, path = torchvision_model_file
    image = _test_image()
    if image_size != (HEIGHT, WIDTH):
        image = cv2.resize(image, image_size[::-1], interpolation=cv2.INTER_AREA)
    # One thread: the float32 figures above are for one; with two, some CPUs' reduction order moves a score
    # across an NMS tie and a low-scoring box of another class takes the 100th place (seen 2026-12-07).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference, ours = _detections(tv_model, path, image, dtype)
    finally:
        torch.set_num_threads(threads)
    assert len(reference["boxes"]) == 100  # non-trivial: DETECTIONS_PER_IMG of them, two classes
    assert len(reference["labels"].unique()) >= 2
    assert (reference["masks"] > 0.5).sum() > 1000  # the masks are not empty
    assert len(ours["boxes"]) == len(reference["boxes"])
    pairs = _match(reference, ours)
    ref_idx = torch.tensor([i for i, _ in pairs])
    our_idx = torch.tensor([j for _, j in pairs])
    ref_masks, our_masks = reference["masks"][ref_idx].float(), ours["masks"][our_idx].float()
    assert our_masks.shape == ref_masks.shape == (100, 1) + image_size
    score_ok = (ours["scores"][our_idx].double() - reference["scores"][ref_idx].double()).abs() <= 1e-4
    box_ok = (ours["boxes"][our_idx].double() - reference["boxes"][ref_idx].double()).abs().amax(1) <= 1e-2
    mask_ok = (our_masks - ref_masks).abs().flatten(1).amax(1) <= 1e-3
    within = score_ok & box_ok & mask_ok
    if dtype == torch.float64:
        assert within.all(), "detections outside the tolerances: {}".format((~within).nonzero().flatten().tolist())
        flipped = ((our_masks > 0.5) != (ref_masks > 0.5)).sum().item()
        assert flipped <= 1e-4 * ref_masks.numel()
    else:
        assert within.sum() >= 90, int(within.sum())
        overlap = box_iou(ours["boxes"][our_idx].double(), reference["boxes"][ref_idx].double()).diagonal()
        assert (overlap >= 0.5).all()


def test_resize_style_torchvision_equals_torchvision_transform():
    from PIL import Image
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from maskrcnn_benchmark.data.transforms import build_transforms

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pixels = (torch.rand(150, 203, 3) * 255).to(torch.uint8)
    image = pixels.permute(2, 0, 1).float() / 255
    reference = GeneralizedRCNNTransform(192, 1333, mean, std).eval()
    batch, _ = reference([image])
    assert batch.image_sizes == [(192, 259)]
    cfg = load_config(CONFIG, ["INPUT.MIN_SIZE_TEST", 192])
    ours, _ = build_transforms(cfg, is_train=False)(Image.fromarray(pixels.numpy()))
    assert ours.shape == (3, 192, 259)
    torch.testing.assert_close(ours, batch.tensors[0, :, :192, :259], rtol=0, atol=0)


def test_converter_names_every_torchvision_entry_and_refuses_unknown_ones(torchvision_model_file):
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.torchvision_model_loading import convert_torchvision_detection_state_dict

    tv_model, _ = torchvision_model_file
    converted = convert_torchvision_detection_state_dict(tv_model.state_dict())
    model = build_detection_model(load_config(CONFIG, ["MODEL.DEVICE", "cpu"]))
    ours = model.state_dict()
    assert set(converted) <= set(ours)
    # everything but the anchors (computed from the config) comes from the file
    assert {k for k in ours if k not in converted} == {"rpn.anchor_generator.cell_anchors.{}".format(i)
                                                         for i in range(5)}
    state = dict(tv_model.state_dict())
    state["roi_heads.keypoint_head.0.0.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="roi_heads.keypoint_head.0.0.weight"):
        convert_torchvision_detection_state_dict(state)


@pytest.mark.slow
def test_fine_tuning_on_other_classes_reinitialises_only_class_layers(torchvision_model_file, synthetic_dataset_dir,
                                                                       tmp_path):
    """tools/train_net.py from the torchvision file on the 3-class synthetic data (NUM_CLASSES 4): the log lists
    exactly the class-specific layers as not loaded; every other tensor is torchvision's."""
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer
    from maskrcnn_benchmark.utils.torchvision_model_loading import convert_torchvision_detection_state_dict

    tv_model, path = torchvision_model_file
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", path, "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4])
    model = build_detection_model(cfg)
    DetectronCheckpointer(cfg, model).load(path, use_latest=False)
    converted = convert_torchvision_detection_state_dict(tv_model.state_dict())
    state = model.state_dict()
    for key, value in converted.items():
        if key in CLASS_SPECIFIC:
            assert state[key].shape[0] in (4, 16), key
        else:
            torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)

    from maskrcnn_benchmark.engine import train_net
    spec = "synthetic_fixture:{}:{}".format(os.path.join(synthetic_dataset_dir, "annotations.json"),
                                            os.path.join(synthetic_dataset_dir, "images"))
    out = tmp_path / "out"
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", path, "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
            "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 96, "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 100,
            "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 100, "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 100,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32, "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 1,
            "SOLVER.MAX_ITER", 1, "SOLVER.BASE_LR", 0.001, "DATASETS.CUSTOM", (spec,),
            "DATASETS.TRAIN", ("synthetic_fixture",), "DATASETS.TEST", ("synthetic_fixture",), "OUTPUT_DIR", str(out)]
    train_net.main(["--config-file", CONFIG, "--skip-test"] + [str(o) for o in opts])
    log = open(str(out / "log.txt")).read()
    # decided by category name (COCO's vs the synthetic set's), before any shape comparison; nothing else mismatches
    assert "Class-specific layers re-initialised ({}): checkpoint categories ['person', 'bicycle', ".format(
        ", ".join(sorted({key.rsplit(".", 1)[0] for key in CLASS_SPECIFIC}))) in log
    assert "(90 in all)] vs training set ['disc', 'square', 'blob']: ['disc', 'square', 'blob'] not in the " \
           "checkpoint" in log
    assert "Shape mismatch, NOT loaded" not in log
    saved = torch.load(str(out / "model_final.pth"), weights_only=True)["model"]
    assert saved["roi_heads.box.predictor.cls_score.weight"].shape == (4, 1024)
    assert saved["roi_heads.mask.predictor.mask_fcn_logits.weight"].shape[0] == 4
    # frozen by FREEZE_CONV_BODY_AT 2 (torchvision's trainable_backbone_layers=3): still torchvision's after a step
    torch.testing.assert_close(saved["backbone.body.layer1.0.conv2.weight"],
                               tv_model.state_dict()["backbone.body.layer1.0.conv2.weight"], rtol=0, atol=0)


def test_coco_weights_carry_their_category_names_so_labels_are_scored_by_name(torchvision_model_file):
    from maskrcnn_benchmark.data.categories import match_categories
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    _, path = torchvision_model_file
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", ""])
    extra = DetectronCheckpointer(cfg, build_detection_model(cfg)).load(path, use_latest=False, strict=True)
    categories = extra["categories"]
    assert len(categories) == 90 and categories[0] == {"id": 1, "name": "person"}
    assert categories[2] == {"id": 3, "name": "car"} and sum(c["name"] == "N/A" for c in categories) == 10
    # a COCO-format test set with ids 1 (person) and 3 (car) numbers them 1 and 2: torchvision's 3 is its 2
    label_map = match_categories(categories, [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}], "coco_val")
    assert label_map == {1: 1, 3: 2}
