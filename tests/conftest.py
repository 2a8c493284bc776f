"""Shared fixtures: a small synthetic COCO dataset and a tiny R-18-FPN config that trains on it in seconds."""
import logging
import os

import pytest


@pytest.fixture(autouse=True)
def _package_logger_propagates():
    """Tests that run the tools in-process call setup_logger, which stops the package logger from propagating
    (right for a tool's own process); put it back so later tests' caplog sees the package's warnings."""
    yield
    logger = logging.getLogger("maskrcnn_benchmark")
    logger.propagate = True
    for handler in list(logger.handlers):
        if getattr(handler, "_maskrcnn_benchmark", False):
            logger.removeHandler(handler)
            handler.close()


@pytest.fixture(scope="session")
def synthetic_dataset_dir(tmp_path_factory):
    """Folder with annotations.json and images/ of 8 synthetic 128x128 images (seed 0, 3 categories)."""
    from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco

    out_dir = str(tmp_path_factory.mktemp("synthetic") / "train")
    generate_synthetic_coco(out_dir, num_images=8, image_size=128, seed=0)
    return out_dir


TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.MASK_ON", True,
    "MODEL.WEIGHT", "",
    "MODEL.BACKBONE.CONV_BODY", "R-18-FPN",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT", 0,
    "MODEL.RESNETS.TRANS_FUNC", "BasicBlockWithGN",
    "MODEL.RESNETS.STEM_FUNC", "StemWithGN",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", 64,
    "MODEL.GROUP_NORM.NUM_GROUPS", 16,
    "MODEL.RPN.USE_FPN", True,
    "MODEL.RPN.ANCHOR_STRIDE", (4, 8, 16, 32, 64),
    "MODEL.RPN.ANCHOR_SIZES", (8, 16, 32, 64, 128),
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 64,
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", 200,
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 200,
    "MODEL.RPN.POST_NMS_TOP_N_TRAIN", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 50,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", 100,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 50,
    "MODEL.ROI_HEADS.USE_FPN", True,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 30,
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 4,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES", (0.25, 0.125, 0.0625, 0.03125),
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "FPN2MLPFeatureExtractor",
    "MODEL.ROI_BOX_HEAD.PREDICTOR", "FPNPredictor",
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 64,
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES", (0.25, 0.125, 0.0625, 0.03125),
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR", "MaskRCNNFPNFeatureExtractor",
    "MODEL.ROI_MASK_HEAD.PREDICTOR", "MaskRCNNC4Predictor",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 2,
    "MODEL.ROI_MASK_HEAD.RESOLUTION", 28,
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (64, 64),
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR", False,
    "INPUT.MIN_SIZE_TRAIN", (128,),
    "INPUT.MAX_SIZE_TRAIN", 213,
    "INPUT.MIN_SIZE_TEST", 128,
    "INPUT.MAX_SIZE_TEST", 213,
    "DATALOADER.NUM_WORKERS", 0,
    "DATALOADER.SIZE_DIVISIBILITY", 32,
    "SOLVER.IMS_PER_BATCH", 2,
    "SOLVER.BASE_LR", 0.01,
    "SOLVER.WEIGHT_DECAY", 0.0001,
    "SOLVER.MAX_ITER", 4,
    "SOLVER.STEPS", (1000,),
    "SOLVER.WARMUP_ITERS", 2,
    "SOLVER.CHECKPOINT_PERIOD", 1000,
    "TEST.IMS_PER_BATCH", 2,
    "TEST.DETECTIONS_PER_IMG", 30,
]


@pytest.fixture
def tiny_cfg(synthetic_dataset_dir, tmp_path):
    """Fresh (unfrozen) cfg clone: R-18-FPN + GroupNorm, 128 px, few RoIs, trains/tests on the synthetic fixture
    data (registered as DATASETS.CUSTOM "synthetic_fixture"), output under a per-test tmp dir."""
    from maskrcnn_benchmark.config import cfg

    config = cfg.clone()
    spec = "synthetic_fixture:{}:{}".format(
        os.path.join(synthetic_dataset_dir, "annotations.json"), os.path.join(synthetic_dataset_dir, "images")
    )
    config.merge_from_list(TINY_OPTS + [
        "DATASETS.CUSTOM", (spec,),
        "DATASETS.TRAIN", ("synthetic_fixture",),
        "DATASETS.TEST", ("synthetic_fixture",),
        "OUTPUT_DIR", str(tmp_path / "output"),
    ])
    return config
