"""configs/paper: every file loads with the paper's recipe, builds its detector (and discriminators), and one
baseline and one GAN config train a step on synthetic data with tiny sizes."""
import glob
import json
import math
import os

import pytest
import torch

from maskrcnn_benchmark.config import load_config
from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER = os.path.join(REPO, "configs", "paper")
CONFIGS = sorted(glob.glob(os.path.join(PAPER, "*", "*.yaml")))

# (backbone, MIN_SIZE_TRAIN range, MIN_SIZE_TEST, IMS_PER_BATCH, MAX_ITER, STEPS, NUM_CLASSES) of Section 4
RECIPES = {
    "phone": ("R-101-FPN", (400, 600), 400, 16, 27000, (18000, 24000), 12),
    # the converter's 10 instance classes + background (test_cityscapes_class_count_matches_the_converter)
    "cityscapes": ("R-50-FPN", (800, 1024), 1024, 8, 24000, (18000,), 11),
    "coco": ("R-101-FPN", (800, 800), 800, 8, 180000, (120000, 160000), 81),
    "glas": ("R-50-FPN", (400, 522), 522, 8, 2000, (1500,), 2),
}


def _name(path):
    return os.path.relpath(path, PAPER)


def test_every_dataset_has_a_baseline_and_a_gan_config_and_phone_the_ablations():
    names = {_name(p) for p in CONFIGS}
    for dataset in RECIPES:
        folder = [n for n in names if n.startswith(dataset + "/")]
        assert any(n.endswith("_{}.yaml".format(dataset)) for n in folder), dataset
        assert any(n.endswith("_{}_gan.yaml".format(dataset)) for n in folder), dataset
    phone = {load_config(os.path.join(PAPER, n)).MODEL.GAN.BOX_DISC.NUM_CONVS for n in names if "phone/" in n
             and load_config(os.path.join(PAPER, n)).MODEL.GAN.ENABLED}
    assert phone == {3, 4, 5}
    assert any(load_config(os.path.join(PAPER, n)).MODEL.GAN.ADV_ONLY for n in names if n.startswith("phone/"))


@pytest.mark.parametrize("path", CONFIGS, ids=_name)
def test_config_has_the_paper_recipe_and_builds(path):
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.modeling.discriminators import build_discriminators

    cfg = load_config(path, ["MODEL.DEVICE", "cpu"])
    body, (lo, hi), test_size, ims, max_iter, steps, num_classes = RECIPES[_name(path).split("/")[0]]
    assert cfg.MODEL.BACKBONE.CONV_BODY == body
    assert min(cfg.INPUT.MIN_SIZE_TRAIN) == lo and max(cfg.INPUT.MIN_SIZE_TRAIN) == hi
    assert cfg.INPUT.MIN_SIZE_TEST == test_size
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER, tuple(cfg.SOLVER.STEPS)) == (ims, max_iter, steps)
    assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.GAMMA == 0.1
    assert cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES == num_classes and cfg.MODEL.MASK_ON
    assert cfg.MODEL.WEIGHT.startswith("catalog://ImageNetPretrained/MSRA/R-")
    assert cfg.MODEL.GAN.ENABLED == ("_gan" in os.path.basename(path))
    if cfg.MODEL.GAN.ENABLED:
        assert cfg.MODEL.GAN.MASK_DISC.NUM_CONVS == cfg.MODEL.GAN.BOX_DISC.NUM_CONVS
    cfg.MODEL.WEIGHT = ""
    model = build_detection_model(cfg)
    assert model.roi_heads.box.predictor.cls_score.out_features == num_classes
    if cfg.MODEL.GAN.ENABLED:
        discriminators = build_discriminators(cfg, model.backbone.out_channels)
        assert sum(p.numel() for p in discriminators.parameters()) > 0


@pytest.mark.parametrize("path", [p for p in CONFIGS if _name(p).startswith("cityscapes/")], ids=_name)
def test_cityscapes_class_count_matches_the_converter(path, tmp_path):
    """The classifier has one output per category the converter writes (mapped to labels 1..N by the dataset)
    plus background, so no converted instance (motorcycle and bicycle are the last labels) falls outside it."""
    from maskrcnn_benchmark.data.datasets.cityscapes import CityscapesDataset, convert_cityscapes_split

    converter_tests = import_file("cityscapes_converter_tests",
                                  os.path.join(REPO, "tests", "data", "test_cityscapes_converter.py"))
    root = converter_tests.write_tree(str(tmp_path / "cityscapes"))
    out = str(tmp_path / "val.json")
    convert_cityscapes_split(root, "val", out)
    with open(out) as f:
        categories = json.load(f)["categories"]
    dataset = CityscapesDataset(out, os.path.join(root, "leftImg8bit", "val"), os.path.join(root, "gtFine", "val"))
    assert len(categories) == 10
    assert max(dataset.json_category_id_to_contiguous_id.values()) == len(categories)
    assert load_config(path).MODEL.ROI_BOX_HEAD.NUM_CLASSES == len(categories) + 1


def _differences(a, b, prefix=""):
    """{dotted key: (value in a, value in b)} of two configs."""
    out = {}
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            out.update(_differences(left, right, prefix + key + "."))
        elif left != right:
            out[prefix + key] = (left, right)
    return out


# every item of the authors'-code table (docs/adversarial.md#the-authors-code), each with its key
AUTHORS_VARIANT = {"MODEL.GAN.D_LOSS_WEIGHTED": True, "MODEL.GAN.MASK_DISC.EMBED_INPUT": True,
                   "MODEL.GAN.MASK_DISC.LAYER_WEIGHTS": (1.0, 2.0, 2.0, 2.0, 4.0),
                   "MODEL.GAN.D_BATCH": "separate", "MODEL.GAN.UPDATE_ORDER": "g_then_d",
                   "MODEL.GAN.MASK_DISC.POOLER_TYPE": "PrRoIPool", "MODEL.GAN.FIRST_CONV_NORM": False,
                   "MODEL.GAN.D_INIT": "he_fan_out", "MODEL.GAN.DETECTOR_POOLER_FUSION": "max",
                   "MODEL.GAN.CLIP_GT_BOXES": True}


@pytest.mark.parametrize("dataset", sorted(RECIPES))
def test_every_dataset_has_the_authors_variant_differing_from_the_gan_config_only_there(dataset):
    gan, = [p for p in CONFIGS if _name(p).startswith(dataset + "/") and p.endswith("_{}_gan.yaml".format(dataset))]
    authors = gan.replace("_gan.yaml", "_gan_authors.yaml")
    assert os.path.isfile(authors), authors
    differences = _differences(load_config(gan), load_config(authors))
    assert differences.pop("OUTPUT_DIR")[1].endswith("_gan_authors")
    assert {k: v[1] for k, v in differences.items()} == AUTHORS_VARIANT


def test_the_study_s_authors_variant_sets_the_authors_configs_keys():
    study = import_file("study_for_paper_configs", os.path.join(REPO, "tools", "study.py"))
    config, options = study.VARIANTS["gan_authors"]
    differences = _differences(load_config(config), load_config(config, options))
    assert {k: v[1] for k, v in differences.items()} == AUTHORS_VARIANT


@pytest.mark.parametrize("suffix, key, value", [
    ("mask_pixels", "MODEL.GAN.MASK_DISC.INPUT", "pixels"),
    ("mask_only", "MODEL.GAN.MASK_DISC.INPUT", "mask"),
    ("box_coords", "MODEL.GAN.BOX_DISC.INPUT", "coordinates"),
])
def test_phone_ablations_of_the_abstracts_claims_change_one_key(suffix, key, value):
    gan = os.path.join(PAPER, "phone", "mask_rcnn_R_101_FPN_phone_gan.yaml")
    differences = _differences(load_config(gan), load_config(gan.replace("_gan.yaml", "_gan_" + suffix + ".yaml")))
    differences.pop("OUTPUT_DIR")
    assert differences == {key: ("features", value)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["glas/mask_rcnn_R_50_FPN_glas.yaml", "phone/mask_rcnn_R_101_FPN_phone_gan.yaml",
                                  "glas/mask_rcnn_R_50_FPN_glas_gan_authors.yaml",
                                  "phone/mask_rcnn_R_101_FPN_phone_gan_mask_pixels.yaml",
                                  "phone/mask_rcnn_R_101_FPN_phone_gan_box_coords.yaml"])
def test_one_training_step_on_synthetic_data(name, tiny_cfg, tmp_path):
    """The paper file + tiny sizes / backbone / synthetic data trains one iteration and saves a checkpoint."""
    tiny_opts = import_file("conftest_for_paper_configs", os.path.join(REPO, "tests", "conftest.py")).TINY_OPTS
    from maskrcnn_benchmark.engine import train_net
    opts = list(tiny_opts) + [
        "DATASETS.CUSTOM", tiny_cfg.DATASETS.CUSTOM, "DATASETS.TRAIN", ("synthetic_fixture",),
        "DATASETS.TEST", ("synthetic_fixture",), "SOLVER.MAX_ITER", 1, "OUTPUT_DIR", str(tmp_path / "out"),
    ]
    train_net.main(["--config-file", os.path.join(PAPER, name), "--skip-test"] + [str(o) for o in opts])
    saved = torch.load(str(tmp_path / "out" / "model_final.pth"), weights_only=True)
    assert ("discriminators" in saved) == ("_gan" in name)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    with open(str(tmp_path / "out" / "metrics.json")) as f:
        losses = json.loads(f.readline())["losses"]
    adversarial = {"loss_box_adv", "loss_mask_adv", "loss_box_disc", "loss_mask_disc", "d_mask_bn_gamma",
                   "d_box_bn_gamma"}
    assert (adversarial <= set(losses)) == ("_gan" in name)
    assert all(math.isfinite(v) for v in losses.values())
