"""Config: maskrcnn-benchmark YAMLs load, unknown keys are named with a suggestion, catalogs explain bad names."""
import glob
import os
import re

import pytest

from maskrcnn_benchmark.config import UnknownConfigKeyError, cfg, load_config
from maskrcnn_benchmark.config.paths_catalog import DatasetCatalog, ModelCatalog, parse_custom_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A typical maskrcnn-benchmark file, including its older spellings (scalar MIN_SIZE_TRAIN, BACKBONE.OUT_CHANNELS,
# tuples written as YAML strings, an int learning rate).
MB_YAML = """
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  WEIGHT: "catalog://ImageNetPretrained/MSRA/R-50"
  BACKBONE:
    CONV_BODY: "R-50-FPN"
    OUT_CHANNELS: 256
  RPN:
    USE_FPN: True
    ANCHOR_STRIDE: (4, 8, 16, 32, 64)
    PRE_NMS_TOP_N_TRAIN: 2000
    FPN_POST_NMS_TOP_N_TEST: 1000
  ROI_HEADS:
    USE_FPN: True
  ROI_BOX_HEAD:
    POOLER_RESOLUTION: 7
    POOLER_SCALES: (0.25, 0.125, 0.0625, 0.03125)
    POOLER_SAMPLING_RATIO: 2
    FEATURE_EXTRACTOR: "FPN2MLPFeatureExtractor"
    PREDICTOR: "FPNPredictor"
  ROI_MASK_HEAD:
    POOLER_SCALES: (0.25, 0.125, 0.0625, 0.03125)
    FEATURE_EXTRACTOR: "MaskRCNNFPNFeatureExtractor"
    PREDICTOR: "MaskRCNNC4Predictor"
    RESOLUTION: 28
    SHARE_BOX_FEATURE_EXTRACTOR: False
  MASK_ON: True
INPUT:
  MIN_SIZE_TRAIN: 800
DATASETS:
  TRAIN: ("coco_2014_train", "coco_2014_valminusminival")
  TEST: ("coco_2014_minival",)
DATALOADER:
  SIZE_DIVISIBILITY: 32
SOLVER:
  BASE_LR: 1
  WEIGHT_DECAY: 0.0001
  STEPS: (60000, 80000)
  MAX_ITER: 90000
TEST:
  IMS_PER_BATCH: 4
"""


def test_maskrcnn_benchmark_yaml_loads_with_its_values(tmp_path):
    path = tmp_path / "e2e_mask_rcnn_R_50_FPN_1x.yaml"
    path.write_text(MB_YAML)
    c = cfg.clone()
    c.merge_from_file(str(path))
    assert c.MODEL.BACKBONE.CONV_BODY == "R-50-FPN"
    assert c.MODEL.RPN.ANCHOR_STRIDE == (4, 8, 16, 32, 64)
    assert c.MODEL.ROI_BOX_HEAD.POOLER_SCALES == (0.25, 0.125, 0.0625, 0.03125)
    assert c.INPUT.MIN_SIZE_TRAIN == (800,)
    assert c.DATASETS.TRAIN == ("coco_2014_train", "coco_2014_valminusminival")
    assert isinstance(c.SOLVER.BASE_LR, float) and c.SOLVER.BASE_LR == 1.0
    assert c.SOLVER.STEPS == (60000, 80000)
    # the legacy output-channel key is forwarded to the one the backbone reads
    assert c.MODEL.RESNETS.BACKBONE_OUT_CHANNELS == 256
    # untouched keys keep maskrcnn-benchmark's defaults, and the global cfg is not modified
    assert c.MODEL.RPN.FG_IOU_THRESHOLD == 0.7 and c.SOLVER.WARMUP_ITERS == 500
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800,) and cfg.SOLVER.BASE_LR == 0.001


def test_maskrcnn_benchmark_defaults_and_contract_extras():
    assert cfg.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS == (10.0, 10.0, 5.0, 5.0)
    assert cfg.INPUT.PIXEL_MEAN == [102.9801, 115.9465, 122.7717]
    assert cfg.INPUT.TO_BGR255 is True
    assert cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES == 81
    for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD"):
        assert cfg.MODEL[head].POOLER_TYPE == "ROIAlign"
    assert cfg.MODEL.GAN.BOX_WEIGHT == 0.025 and cfg.MODEL.GAN.MASK_WEIGHT == 0.5
    assert cfg.MODEL.GAN.BOX_DISC.POOLER_TYPE == "PrRoIPool" and cfg.MODEL.GAN.MASK_DISC.CHANNELS == 64
    assert cfg.TEST.COCO_MAX_DETS == 100 and cfg.SOLVER.TEST_PERIOD == 0 and cfg.SOLVER.SEED == 0
    assert cfg.DATASETS.CUSTOM == ()


def test_every_default_key_has_a_comment():
    source = open(os.path.join(REPO, "maskrcnn_benchmark", "config", "defaults.py")).read().splitlines()
    uncommented = []
    for i, line in enumerate(source):
        m = re.match(r"^_C\.([A-Z0-9_.]+) = (.*)$", line)
        if not m or m.group(2).startswith("CN()"):
            continue
        previous = source[i - 1].strip() if i > 0 else ""
        if "#" not in m.group(2) and not previous.startswith("#"):
            uncommented.append(m.group(1))
    assert uncommented == []


def test_unknown_key_in_file_names_key_file_and_closest(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("MODEL:\n  RPN:\n    ANCHOR_SIZE: (16, 32)\n")
    c = cfg.clone()
    with pytest.raises(UnknownConfigKeyError) as info:
        c.merge_from_file(str(path))
    message = str(info.value)
    assert "MODEL.RPN.ANCHOR_SIZE'" in message
    assert str(path) in message
    assert "MODEL.RPN.ANCHOR_SIZES" in message


def test_unknown_key_in_options_names_key_and_closest():
    c = cfg.clone()
    with pytest.raises(KeyError) as info:
        c.merge_from_list(["SOLVER.BASELR", 0.1])
    assert "SOLVER.BASELR" in str(info.value) and "SOLVER.BASE_LR" in str(info.value)
    assert "command-line" in str(info.value)
    with pytest.raises(KeyError, match="MODEL.ROI_MASK_HEAD.POOLER_TYPE"):
        c.merge_from_list(["MODEL.ROI_MASK_HEAD.POOLERTYPE", "PrRoIPool"])


def test_unknown_key_check_also_applies_to_clones_and_load_config(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  MAX_ITERS: 10\n")
    with pytest.raises(KeyError, match="SOLVER.MAX_ITER'"):
        load_config(str(path))
    c = load_config(None, ["SOLVER.MAX_ITER", 10])
    assert c.SOLVER.MAX_ITER == 10 and cfg.SOLVER.MAX_ITER == 40000


def test_wrong_type_is_rejected():
    c = cfg.clone()
    with pytest.raises(ValueError, match="SOLVER.MAX_ITER"):
        c.merge_from_list(["SOLVER.MAX_ITER", "'many'"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)))
def test_shipped_configs_load(path):
    c = cfg.clone()
    c.merge_from_file(path)
    name = os.path.basename(path)  # the file name says which model family it configures
    if "retinanet" in name:
        assert c.MODEL.RETINANET_ON and not c.MODEL.MASK_ON
    elif "faster_rcnn" in name or "keypoint" in name:
        assert not c.MODEL.MASK_ON and not c.MODEL.RETINANET_ON
    else:
        assert c.MODEL.MASK_ON and not c.MODEL.RETINANET_ON


def test_custom_dataset_spec_parsing(tmp_path):
    name, ann, img = parse_custom_dataset("cells:data/a:b/train.json:imgs")
    assert name == "cells" and ann == os.path.abspath("data/a:b/train.json") and img == os.path.abspath("imgs")
    with pytest.raises(ValueError, match="NAME:ANN_FILE:IMG_DIR"):
        parse_custom_dataset("cells_train.json")


def test_unknown_dataset_error_lists_known_names():
    with pytest.raises(KeyError) as info:
        DatasetCatalog.get("coco_2077_train")
    message = str(info.value)
    assert "coco_2077_train" in message and "coco_2017_train" in message and "nuclei_dsb2018_train" in message
    assert "DATASETS.CUSTOM" in message


def test_catalog_coco_entries_and_model_urls():
    entry = DatasetCatalog.get("coco_2017_val")
    assert entry["factory"] == "COCODataset"
    assert entry["args"]["ann_file"].endswith(os.path.join("coco", "annotations", "instances_val2017.json"))
    assert entry["args"]["root"].startswith(DatasetCatalog.DATA_DIR)
    assert ModelCatalog.get("ImageNetPretrained/MSRA/R-101").endswith("ImageNetPretrained/MSRA/R-101.pkl")
    assert ModelCatalog.get("torchvision/resnet18").startswith("https://download.pytorch.org/models/resnet18")
    with pytest.raises(KeyError, match="MSRA/R-50"):
        ModelCatalog.get("ImageNetPretrained/MSRA/R-49")


def test_each_element_of_a_list_value_is_type_checked_naming_key_type_and_source(tmp_path):
    from maskrcnn_benchmark.config import ConfigTypeError

    c = cfg.clone()
    with pytest.raises(ConfigTypeError) as info:
        c.merge_from_list(["SOLVER.MAX_ITER", 10, "INPUT.MIN_SIZE_TRAIN", "abc"])
    assert str(info.value) == (
        "Config key 'INPUT.MIN_SIZE_TRAIN' (element 0 of ['abc']) in command-line options (item 4 of the KEY VALUE "
        "list) must be int, got 'abc' (str); write a whole number, without quotes")
    path = tmp_path / "bad.yaml"
    path.write_text("INPUT:\n  MIN_SIZE_TRAIN: (640, 'x')\nSOLVER:\n  BASE_LR: 1\n")
    with pytest.raises(ConfigTypeError, match=r"'INPUT.MIN_SIZE_TRAIN' \(element 1 of \(640, 'x'\)\) in config "
                                              r"file '{}' must be int".format(path)):
        cfg.clone().merge_from_file(str(path))
    with pytest.raises(ConfigTypeError, match="'DATASETS.TRAIN' .* must be str, got 5"):
        cfg.clone().merge_from_list(["DATASETS.TRAIN", "('a', 5)"])
    with pytest.raises(ConfigTypeError, match="'MODEL.MASK_ON' in command-line .* must be bool, got 'yes'"):
        cfg.clone().merge_from_list(["MODEL.MASK_ON", "yes"])
    with pytest.raises(ConfigTypeError, match="'OUTPUT_DIR' .* must be str, got 2024 .*quote it"):
        cfg.clone().merge_from_list(["OUTPUT_DIR", "2024"])
    ok = load_config(None, ["INPUT.MIN_SIZE_TRAIN", 640, "SOLVER.BASE_LR", 1, "OUTPUT_DIR", "'2024'",
                            "MODEL.RPN.ASPECT_RATIOS", "(1, 2)"])
    assert ok.INPUT.MIN_SIZE_TRAIN == (640,) and ok.SOLVER.BASE_LR == 1.0 and ok.OUTPUT_DIR == "2024"
    assert ok.MODEL.RPN.ASPECT_RATIOS == (1.0, 2.0) and all(isinstance(r, float) for r in ok.MODEL.RPN.ASPECT_RATIOS)
