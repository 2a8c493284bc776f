"""Every configuration key of the package, with its default, meaning and unit.

Key names, types and defaults follow maskrcnn-benchmark so that its YAML files load unchanged; keys this package adds
are marked "(added)". Naming convention kept from maskrcnn-benchmark: a key used differently at training and at test
time ends in _TRAIN / _TEST. Sizes are in pixels of the resized network input unless said otherwise.

Do not import `_C` directly: use `from maskrcnn_benchmark.config import cfg` and `cfg.clone()`, whose merge methods
reject unknown keys with a suggestion (see config/__init__.py).
"""
import os

from yacs.config import CfgNode as CN

_C = CN()

# ---------------------------------------------------------------------------- #
# Model: which parts exist
# ---------------------------------------------------------------------------- #
_C.MODEL = CN()
_C.MODEL.RPN_ONLY = False  # True: stop after the RPN and return proposals as detections (no RoI heads)
_C.MODEL.MASK_ON = False  # True: add the mask head (Mask R-CNN)
_C.MODEL.RETINANET_ON = False  # True: RetinaNet (MODEL.RETINANET) replaces the RPN; no RoI heads
_C.MODEL.KEYPOINT_ON = False  # True: add the keypoint head (Keypoint R-CNN)
_C.MODEL.PRROI_POOL_IMPL = "auto"  # PrRoIPool: "compiled" (_C), "torch", "auto" (compiled after a per-device check)
# (added) keep the conv weights of the detector and the discriminators, and so their conv activations, in
# channels-last (NHWC) memory: faster on the CPU (tools/benchmark.py, benchmark_gan.py); the same arithmetic in another
# order, so results differ from False by float rounding only. False: PyTorch's default NCHW layout
_C.MODEL.CHANNELS_LAST = True
_C.MODEL.DEVICE = "cuda"  # torch device string the model and batches are moved to ("cpu", "cuda", "cuda:1")
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"  # detector class name looked up in modeling/detector
_C.MODEL.CLS_AGNOSTIC_BBOX_REG = False  # True: one box regression for all classes instead of one per class
# Initial weights: "" (random init), a file path (.pth / .pkl), a URL, or "catalog://NAME" resolved by ModelCatalog
_C.MODEL.WEIGHT = ""
# (added) box arithmetic of anchors, box coding, clipping, NMS and RoI level assignment: "maskrcnn_benchmark" (a box
# x0..x1 spans x1 - x0 + 1 px, anchors centred on (stride - 1) / 2) or "torchvision" (spans x1 - x0 px, anchors centred
# on cell corners with strides = padded image size // map size, detections under 0.01 px dropped), for its weights
_C.MODEL.BOX_CONVENTION = "maskrcnn_benchmark"

# ---------------------------------------------------------------------------- #
# Input: resizing, augmentation and normalisation (data/transforms)
# ---------------------------------------------------------------------------- #
_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = (800,)  # shorter image side at training, px; one value is drawn at random per image
_C.INPUT.MAX_SIZE_TRAIN = 1333  # cap on the longer image side at training, px (the shorter side shrinks to fit)
_C.INPUT.MIN_SIZE_TEST = 800  # shorter image side at test time, px
_C.INPUT.MAX_SIZE_TEST = 1333  # cap on the longer image side at test time, px
_C.INPUT.PIXEL_MEAN = [102.9801, 115.9465, 122.7717]  # per-channel mean subtracted, in the channel order fed (BGR)
_C.INPUT.PIXEL_STD = [1.0, 1.0, 1.0]  # per-channel divisor applied after subtracting PIXEL_MEAN
_C.INPUT.TO_BGR255 = True  # True: feed BGR in 0-255 (Caffe2/Detectron weights); False: RGB in 0-1
# (added) intensity rule for images of more than 8 bits per channel (data/image_io.py; 8-bit images never change):
# "full_range": value / 65535 of the 16-bit container, same for every image; "percentiles": per image, the
# HIGH_BIT_DEPTH_PERCENTILES (low, high) become the bottom and top of the range, values beyond them are not clipped
_C.INPUT.HIGH_BIT_DEPTH = "full_range"
_C.INPUT.HIGH_BIT_DEPTH_PERCENTILES = (0.0, 100.0)  # (low, high) percentiles, %, for HIGH_BIT_DEPTH "percentiles"
# (added) "maskrcnn_benchmark": PIL bilinear on the uint8 image, rounded sizes; "torchvision": bilinear on the float
# tensor without antialiasing, sides floor(side * scale), as torchvision's GeneralizedRCNNTransform
_C.INPUT.RESIZE_STYLE = "maskrcnn_benchmark"
_C.INPUT.BRIGHTNESS = 0.0  # ColorJitter brightness strength at training (factor drawn in [1-x, 1+x]; 0 = off)
_C.INPUT.CONTRAST = 0.0  # ColorJitter contrast strength at training (factor drawn in [1-x, 1+x]; 0 = off)
_C.INPUT.SATURATION = 0.0  # ColorJitter saturation strength at training (factor drawn in [1-x, 1+x]; 0 = off)
_C.INPUT.HUE = 0.0  # ColorJitter hue shift at training, fraction of the hue circle in [0, 0.5] (0 = off)
_C.INPUT.HORIZONTAL_FLIP_PROB_TRAIN = 0.5  # probability of a left-right flip of a training image
_C.INPUT.VERTICAL_FLIP_PROB_TRAIN = 0.0  # probability of a top-bottom flip of a training image

# ---------------------------------------------------------------------------- #
# Datasets (names resolved by config/paths_catalog.py, or by DATASETS.CUSTOM)
# ---------------------------------------------------------------------------- #
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ()  # names of the training datasets; several are concatenated
_C.DATASETS.TEST = ()  # names of the test datasets; each is evaluated separately
# (added) Your own COCO-format datasets, no code edit needed: a list of "NAME:ANN_FILE:IMG_DIR" strings, e.g.
#   DATASETS.CUSTOM: ("cells_train:/data/cells/train.json:/data/cells/train_img",)
# then use NAME in DATASETS.TRAIN / TEST. ANN_FILE is a COCO instances JSON, IMG_DIR the folder its "file_name"s are
# relative to; relative paths are taken from the current working directory. The first ':' ends NAME and the last
# ':' starts IMG_DIR. A CUSTOM name shadows a catalog entry of the same name.
_C.DATASETS.CUSTOM = ()

# ---------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------- #
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4  # data loading worker processes (0 = load in the main process)
_C.DATALOADER.SIZE_DIVISIBILITY = 0  # pad batched images so H and W are multiples of this, px (FPN: 32; 0 = off)
_C.DATALOADER.ASPECT_RATIO_GROUPING = True  # True: a batch holds only portrait or only landscape images
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True  # (added) drop training images without annotations; False: negatives

# ---------------------------------------------------------------------------- #
# Backbone
# ---------------------------------------------------------------------------- #
_C.MODEL.BACKBONE = CN()
# Body name: R-18-FPN, R-34-FPN, R-50-FPN, R-101-FPN, R-152-FPN, R-50-C4, R-50-C5, R-101-C4, R-101-C5, ...
_C.MODEL.BACKBONE.CONV_BODY = "R-50-C4"
# Number of leading stages (stem first) given no gradient: 0 = train all, 2 = stem and res2 frozen (ImageNet init)
_C.MODEL.BACKBONE.FREEZE_CONV_BODY_AT = 2
# Legacy alias (old maskrcnn-benchmark YAMLs): a value > 0 is copied into MODEL.RESNETS.BACKBONE_OUT_CHANNELS on merge
_C.MODEL.BACKBONE.OUT_CHANNELS = 0
_C.MODEL.BACKBONE.USE_GN = False  # not implemented (True is refused): choose GroupNorm via RESNETS.TRANS_FUNC/STEM_FUNC

# ---------------------------------------------------------------------------- #
# FPN
# ---------------------------------------------------------------------------- #
_C.MODEL.FPN = CN()
_C.MODEL.FPN.USE_GN = False  # True: GroupNorm after the FPN lateral and output convs
_C.MODEL.FPN.USE_RELU = False  # True: ReLU after the FPN lateral and output convs

# ---------------------------------------------------------------------------- #
# GroupNorm (used by every *WithGN / USE_GN module)
# ---------------------------------------------------------------------------- #
_C.MODEL.GROUP_NORM = CN()
_C.MODEL.GROUP_NORM.DIM_PER_GP = -1  # channels per group (-1: use NUM_GROUPS instead)
_C.MODEL.GROUP_NORM.NUM_GROUPS = 32  # number of groups (-1: use DIM_PER_GP instead)
_C.MODEL.GROUP_NORM.EPSILON = 1e-5  # constant added to the variance for numerical stability

# ---------------------------------------------------------------------------- #
# RPN
# ---------------------------------------------------------------------------- #
_C.MODEL.RPN = CN()
_C.MODEL.RPN.USE_FPN = False  # True: one anchor size per FPN level (len(ANCHOR_SIZES) == len(ANCHOR_STRIDE))
_C.MODEL.RPN.ANCHOR_SIZES = (32, 64, 128, 256, 512)  # anchor side lengths, px of the network input
_C.MODEL.RPN.ANCHOR_STRIDE = (16,)  # stride of each feature map the RPN runs on, px (one per FPN level)
_C.MODEL.RPN.ASPECT_RATIOS = (0.5, 1.0, 2.0)  # anchor height/width ratios
_C.MODEL.RPN.STRADDLE_THRESH = 0  # drop anchors reaching more than this many px outside the image (-1 = keep all)
_C.MODEL.RPN.FG_IOU_THRESHOLD = 0.7  # anchor with IoU >= this to a GT box is positive
_C.MODEL.RPN.BG_IOU_THRESHOLD = 0.3  # anchor with max IoU < this is negative
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256  # anchors sampled per image for the RPN losses
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5  # target fraction of positives among those sampled anchors
_C.MODEL.RPN.PRE_NMS_TOP_N_TRAIN = 12000  # proposals kept before NMS at training (per FPN level with FPN)
_C.MODEL.RPN.PRE_NMS_TOP_N_TEST = 6000  # proposals kept before NMS at test (per FPN level with FPN)
_C.MODEL.RPN.POST_NMS_TOP_N_TRAIN = 2000  # proposals kept after NMS at training (per level with FPN)
_C.MODEL.RPN.POST_NMS_TOP_N_TEST = 1000  # proposals kept after NMS at test (per level with FPN)
_C.MODEL.RPN.NMS_THRESH = 0.7  # IoU above which NMS suppresses a lower-scored proposal
_C.MODEL.RPN.MIN_SIZE = 0.0  # proposals with a side smaller than this are dropped, px (0 = keep all)
_C.MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN = 2000  # kept after merging FPN levels, training (see FPN_POST_NMS_PER_BATCH)
_C.MODEL.RPN.FPN_POST_NMS_TOP_N_TEST = 2000  # proposals kept after merging all FPN levels, per image, test
_C.MODEL.RPN.FPN_POST_NMS_PER_BATCH = False  # False: FPN_POST_NMS_TOP_N_TRAIN per image; True: per batch (Detectron)
_C.MODEL.RPN.RPN_HEAD = "SingleConvRPNHead"  # RPN head name in modeling.registry.RPN_HEADS

# ---------------------------------------------------------------------------- #
# RoI heads (shared sampling / post-processing)
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.USE_FPN = False  # True: pool RoIs from the FPN level fitting their size (needs >1 POOLER_SCALES)
_C.MODEL.ROI_HEADS.FG_IOU_THRESHOLD = 0.5  # proposal with IoU >= this to a GT box is foreground
_C.MODEL.ROI_HEADS.BG_IOU_THRESHOLD = 0.5  # proposal with max IoU < this is background
_C.MODEL.ROI_HEADS.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # (wx, wy, ww, wh) scaling of box regression targets
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512  # proposals sampled per image for the box head losses
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25  # target fraction of foreground among those sampled proposals
_C.MODEL.ROI_HEADS.SCORE_THRESH = 0.05  # test: detections scoring below this are dropped (score in [0, 1])
_C.MODEL.ROI_HEADS.NMS = 0.5  # test: per-class NMS IoU threshold on detections
_C.MODEL.ROI_HEADS.DETECTIONS_PER_IMG = 100  # test: maximum detections returned per image

# ---------------------------------------------------------------------------- #
# Box head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"  # name in ROI_BOX_FEATURE_EXTRACTORS
_C.MODEL.ROI_BOX_HEAD.PREDICTOR = "FastRCNNPredictor"  # name in ROI_BOX_PREDICTOR
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14  # side of the pooled RoI feature, cells
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0  # RoIAlign samples per cell side (0 = adaptive)
_C.MODEL.ROI_BOX_HEAD.POOLER_SCALES = (1.0 / 16,)  # 1/stride of each pooled feature map
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlign"  # (added) RoI feature pooling: "ROIAlign" or "PrRoIPool"
_C.MODEL.ROI_BOX_HEAD.NUM_CLASSES = 81  # classes including background (COCO: 80 + 1)
_C.MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM = 1024  # width of the two hidden FC layers of the MLP box head
_C.MODEL.ROI_BOX_HEAD.USE_GN = False  # True: GroupNorm in the conv box head
_C.MODEL.ROI_BOX_HEAD.DILATION = 1  # dilation of the conv box head's convs
_C.MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM = 256  # channels of the conv box head's convs
_C.MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS = 4  # convs in the conv box head

# ---------------------------------------------------------------------------- #
# Mask head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_MASK_HEAD = CN()
_C.MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR = "ResNet50Conv5ROIFeatureExtractor"  # name in ROI_MASK_FEATURE_EXTRACTORS
_C.MODEL.ROI_MASK_HEAD.PREDICTOR = "MaskRCNNC4Predictor"  # name in ROI_MASK_PREDICTOR
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14  # side of the pooled RoI feature, cells
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0  # RoIAlign samples per cell side (0 = adaptive)
_C.MODEL.ROI_MASK_HEAD.POOLER_SCALES = (1.0 / 16,)  # 1/stride of each pooled feature map
_C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlign"  # (added) RoI feature pooling: "ROIAlign" or "PrRoIPool"
_C.MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM = 1024  # not implemented, no FC mask head (another value is refused)
_C.MODEL.ROI_MASK_HEAD.CONV_LAYERS = (256, 256, 256, 256)  # channels of each conv of the FPN mask head
_C.MODEL.ROI_MASK_HEAD.RESOLUTION = 14  # side of the predicted mask, cells (28 with FPN)
_C.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True  # True: reuse the box head's features (C4 models)
_C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS = False  # True: paste masks into the image inside the model
_C.MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD = 0.5  # probability above which a pasted mask pixel is on
_C.MODEL.ROI_MASK_HEAD.DILATION = 1  # dilation of the mask head's convs
_C.MODEL.ROI_MASK_HEAD.USE_GN = False  # True: GroupNorm in the mask head's convs
# (added) at test time the mask predictor runs on this many detections at a time and keeps only each one's class
# channel: bounds the [N, 256, 2R, 2R] deconv output and the [N, classes, 2R, 2R] logits (the inference memory peak)
_C.MODEL.ROI_MASK_HEAD.TEST_CHUNK_SIZE = 32

# ---------------------------------------------------------------------------- #
# Keypoint head
# ---------------------------------------------------------------------------- #
_C.MODEL.ROI_KEYPOINT_HEAD = CN()
_C.MODEL.ROI_KEYPOINT_HEAD.FEATURE_EXTRACTOR = "KeypointRCNNFeatureExtractor"  # name in ROI_KEYPOINT_FEATURE_EXTRACTORS
_C.MODEL.ROI_KEYPOINT_HEAD.PREDICTOR = "KeypointRCNNPredictor"  # name in ROI_KEYPOINT_PREDICTOR
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14  # side of the pooled RoI feature, cells
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0  # RoIAlign samples per cell side (0 = adaptive)
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SCALES = (1.0 / 16,)  # 1/stride of each pooled feature map
_C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlign"  # (added) RoI feature pooling: "ROIAlign" or "PrRoIPool"
_C.MODEL.ROI_KEYPOINT_HEAD.MLP_HEAD_DIM = 1024  # not implemented, no FC keypoint head (another value is refused)
_C.MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS = tuple(512 for _ in range(8))  # channels of each conv of the keypoint head
# side of the keypoint heat map, cells: the predictor's output side (4 x POOLER_RESOLUTION for KeypointRCNNPredictor);
# 14 (default) takes whatever the predictor outputs, another value must equal it
_C.MODEL.ROI_KEYPOINT_HEAD.RESOLUTION = 14
_C.MODEL.ROI_KEYPOINT_HEAD.NUM_CLASSES = 17  # keypoints per instance (COCO person: 17)
_C.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR = True  # True: reuse the box head's features

# ---------------------------------------------------------------------------- #
# ResNet / ResNeXt body (and the C4 head that reuses res5)
# ---------------------------------------------------------------------------- #
_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.NUM_GROUPS = 1  # groups of the 3x3 convs: 1 = ResNet, > 1 = ResNeXt
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64  # channels per group in the first stage's 3x3 conv
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True  # True: stride 2 on the 1x1 conv (MSRA/Caffe2 weights); False: on the 3x3
# Block type: BottleneckWithFixedBatchNorm | BottleneckWithGN | BottleneckWithBatchNorm |
#   BasicBlockWithFixedBatchNorm | BasicBlockWithGN | BasicBlockWithBatchNorm (basic blocks for R-18/34)
_C.MODEL.RESNETS.TRANS_FUNC = "BottleneckWithFixedBatchNorm"
_C.MODEL.RESNETS.STEM_FUNC = "StemWithFixedBatchNorm"  # stem: StemWithFixedBatchNorm | StemWithGN | StemWithBatchNorm
_C.MODEL.RESNETS.RES5_DILATION = 1  # dilation of res5 (2 keeps stride 16 for C5 bodies)
_C.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256 * 4  # channels the backbone outputs (FPN: channels of every P level)
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256  # output channels of res2 for bottleneck bodies (basic blocks: 64)
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64  # output channels of the stem
# res2..res5: True makes the 3x3 conv of every block of that stage deformable (C4 models: the 4th flag acts on
# the RoI head's res5)
_C.MODEL.RESNETS.STAGE_WITH_DCN = (False, False, False, False)
_C.MODEL.RESNETS.WITH_MODULATED_DCN = False  # True: modulated deformable convs (DCNv2, sigmoid mask per sample)
_C.MODEL.RESNETS.DEFORMABLE_GROUPS = 1  # channel groups of a deformable conv with their own offsets (and masks)
# True: in training, the body's trainable blocks keep only their inputs for the backward and are recomputed there
# (activation checkpointing): less memory for one more forward of those blocks, the same gradients and BatchNorm
# statistics (updated once per step).
_C.MODEL.RESNETS.ACTIVATION_CHECKPOINTING = False

# ---------------------------------------------------------------------------- #
# RetinaNet (MODEL.RETINANET_ON; backbone e.g. R-50-FPN-RETINANET giving P3-P7)
# ---------------------------------------------------------------------------- #
_C.MODEL.RETINANET = CN()
_C.MODEL.RETINANET.NUM_CLASSES = 81  # classes including background
_C.MODEL.RETINANET.ANCHOR_SIZES = (32, 64, 128, 256, 512)  # base anchor side per level, px (times the octave scales)
_C.MODEL.RETINANET.ASPECT_RATIOS = (0.5, 1.0, 2.0)  # anchor height/width ratios
_C.MODEL.RETINANET.ANCHOR_STRIDES = (8, 16, 32, 64, 128)  # feature strides per level, px (must be the backbone's)
_C.MODEL.RETINANET.STRADDLE_THRESH = 0  # anchors more than this many px outside the image are ignored; -1 keeps all
_C.MODEL.RETINANET.OCTAVE = 2.0  # anchor sizes of a level are ANCHOR_SIZES * OCTAVE ** (i / SCALES_PER_OCTAVE)
_C.MODEL.RETINANET.SCALES_PER_OCTAVE = 3  # anchor scales per level (i = 0 .. SCALES_PER_OCTAVE - 1)
_C.MODEL.RETINANET.USE_C5 = True  # True: P6 from C5, False: from P5 (backbones *-FPN-RETINANET)
_C.MODEL.RETINANET.NUM_CONVS = 4  # 3x3 conv + ReLU layers in each classification / box tower (before the predictor)
_C.MODEL.RETINANET.BBOX_REG_WEIGHT = 4.0  # box loss = smooth-L1 sum / (positives * this)
_C.MODEL.RETINANET.BBOX_REG_BETA = 0.11  # smooth L1 beta of the box regression loss
_C.MODEL.RETINANET.PRE_NMS_TOP_N = 1000  # test: (anchor, class) candidates kept per level and image before NMS
_C.MODEL.RETINANET.FG_IOU_THRESHOLD = 0.5  # anchor IoU >= this: positive (plus each GT's best anchors)
_C.MODEL.RETINANET.BG_IOU_THRESHOLD = 0.4  # anchor IoU < this: negative; in between: ignored
_C.MODEL.RETINANET.LOSS_ALPHA = 0.25  # focal loss alpha: weight of positives (1 - alpha for negatives)
_C.MODEL.RETINANET.LOSS_GAMMA = 2.0  # focal loss gamma: focusing exponent
_C.MODEL.RETINANET.PRIOR_PROB = 0.01  # initial foreground probability of every class logit (bias init)
_C.MODEL.RETINANET.INFERENCE_TH = 0.05  # test: class score (0-1) a candidate must exceed
_C.MODEL.RETINANET.NMS_TH = 0.4  # test: IoU threshold of the per-class NMS (TEST.DETECTIONS_PER_IMG kept)

# ---------------------------------------------------------------------------- #
# FBNet (CONV_BODY "FBNet", RPN_HEAD "FBNet.rpn_head", FEATURE_EXTRACTOR "FBNet.roi_head(_mask)"; backbone/fbnet.py)
# ---------------------------------------------------------------------------- #
_C.MODEL.FBNET = CN()
_C.MODEL.FBNET.ARCH = "default"  # built-in architecture (backbone/fbnet_modeldef.py), or the name of ARCH_DEF
_C.MODEL.FBNET.ARCH_DEF = ""  # architecture definition as JSON (maskrcnn-benchmark format) when ARCH is not built in
_C.MODEL.FBNET.BN_TYPE = "bn"  # "bn" BatchNorm, "af" frozen BatchNorm, "gn" GroupNorm (MODEL.GROUP_NORM.NUM_GROUPS)
_C.MODEL.FBNET.SCALE_FACTOR = 1.0  # channel width multiplier
_C.MODEL.FBNET.WIDTH_DIVISOR = 1  # channels rounded to multiples of this
_C.MODEL.FBNET.DW_CONV_SKIP_BN = True  # no BN after depthwise convs
_C.MODEL.FBNET.DW_CONV_SKIP_RELU = True  # no ReLU after depthwise convs
_C.MODEL.FBNET.DET_HEAD_LAST_SCALE = 1.0  # last-layer scale of the detection head (> 0 scale, 0 skip, < 0 same)
_C.MODEL.FBNET.DET_HEAD_BLOCKS = []  # blocks of the detection head
_C.MODEL.FBNET.DET_HEAD_STRIDE = 0  # stride override of the detection head (0 = original)
_C.MODEL.FBNET.KPTS_HEAD_LAST_SCALE = 0.0  # refused unless default: no FBNet keypoint head (no arch has one)
_C.MODEL.FBNET.KPTS_HEAD_BLOCKS = []  # refused unless default, as KPTS_HEAD_LAST_SCALE
_C.MODEL.FBNET.KPTS_HEAD_STRIDE = 0  # refused unless default, as KPTS_HEAD_LAST_SCALE
_C.MODEL.FBNET.MASK_HEAD_LAST_SCALE = 0.0  # last-layer scale of the mask head
_C.MODEL.FBNET.MASK_HEAD_BLOCKS = []  # blocks of the mask head
_C.MODEL.FBNET.MASK_HEAD_STRIDE = 0  # stride override of the mask head
_C.MODEL.FBNET.RPN_HEAD_BLOCKS = 0  # RPN head uses the last this many blocks of the "rpn" stages (0 = all)
_C.MODEL.FBNET.RPN_BN_TYPE = ""  # normalisation of the RPN head ("" = BN_TYPE)

# ---------------------------------------------------------------------------- #
# (added) Adversarial heads of Le et al., "Instance Semantic Segmentation Benefits from GANs"
# ---------------------------------------------------------------------------- #
# The defaults follow the paper's method; some values come from the authors' code (github.com/quangle2110/
# GAN_Mask-RCNN), not the paper: w_b = 0.025 and w_m = 0.5, D's widths (64), the max over FPN levels.
# "The authors' variant" is the set of keys where the authors' code differs from the paper; the configs
# configs/paper/<dataset>/*_gan_authors.yaml set all of them: D_LOSS_WEIGHTED, MASK_DISC.EMBED_INPUT,
# MASK_DISC.LAYER_WEIGHTS, D_BATCH, UPDATE_ORDER, MASK_DISC.POOLER_TYPE, FIRST_CONV_NORM, D_INIT,
# DETECTOR_POOLER_FUSION, CLIP_GT_BOXES (the table in docs/adversarial.md#the-authors-code).
_C.MODEL.GAN = CN()
_C.MODEL.GAN.ENABLED = False  # True: train with the box / mask discriminators (engine/adversarial.py)
_C.MODEL.GAN.BOX_WEIGHT = 0.025  # w_b of Eq. (2): weight of the generator's box adversarial loss (value: authors' code)
_C.MODEL.GAN.MASK_WEIGHT = 0.5  # w_m of Eq. (2): weight of the generator's mask adversarial loss (value: authors' code)
# authors' variant: True weights D's losses too, L_D = w_b L_adv^Db + w_m L_adv^Dm (the paper's Eq. (3) has no weights)
_C.MODEL.GAN.D_LOSS_WEIGHTED = False
# True: spectral normalisation on every conv / linear layer of both discriminators, without BatchNorm, which bounds
# D's scale (L_adv^Dm = -L_adv^Gm is otherwise unbounded: D can lower it by growing its weights and BatchNorm scales)
_C.MODEL.GAN.SPECTRAL_NORM = False
_C.MODEL.GAN.ADV_ONLY = False  # True: drop loss_box_reg and loss_mask, keep only the adversarial terms (Table 5)
_C.MODEL.GAN.START_ITER = 0  # first iteration (counted from 1) with D updates and adversarial losses
_C.MODEL.GAN.D_STEPS_PER_G_STEP = 1  # discriminator updates per detector update, all on the iteration's one forward
_C.MODEL.GAN.D_LR_FACTOR = 0.2  # discriminator learning rate = SOLVER.BASE_LR * this
# True: discriminators read detached FPN maps, so L_adv^Gb / L_adv^Gm move the box regression (through PrRoIPool's box
# gradient) and the mask head but not the backbone; otherwise G could lower L_adv^Gm by shrinking the features that
# multiply real and fake masks alike, instead of improving the masks (the authors' code detaches them too)
_C.MODEL.GAN.DETACH_FEATURES = True
# how the discriminators read the FPN levels: "max" = every level, element-wise max (the authors' code);
# "level" = one level per RoI by the FPN assignment
_C.MODEL.GAN.FEATURE_FUSION = "max"
# how D sees real and fake: "joint" = one D call on real and fake together, so D's BatchNorm normalises both halves
# with the same statistics (ours); "separate" = one D call per half, each normalised by its own statistics (the
# authors' code, (a) of the authors'-code table)
_C.MODEL.GAN.D_BATCH = "joint"
# the order of the two updates of an iteration (one detector forward serves both): "d_then_g" = D steps first, then
# G steps against the updated D (Section 4.2); "g_then_d" = both losses from the same D, then G steps, then D (the
# authors' code, (b); needs D_STEPS_PER_G_STEP 1)
_C.MODEL.GAN.UPDATE_ORDER = "d_then_g"
# True: BatchNorm after the first conv (layer) of both discriminators, like every other hidden one; False: the first
# conv has neither BatchNorm nor bias, its output goes straight into LeakyReLU (DCGAN's rule; the authors' code, (d));
# no effect with SPECTRAL_NORM True (no BatchNorm anywhere, every conv keeps its bias)
_C.MODEL.GAN.FIRST_CONV_NORM = True
# initialisation of D's weights: "dcgan" = conv / linear weights N(0, 0.02), BatchNorm scales 1; "he_fan_out" = He
# normal with fan-out (std sqrt(2 / (k * k * out_channels))), BatchNorm scales drawn from N(1, 0.02) (the authors'
# code, (e)); biases and BatchNorm shifts 0 in both
_C.MODEL.GAN.D_INIT = "dcgan"
# the DETECTOR's own RoI poolers (box, mask and keypoint heads), in training and inference, with or without
# MODEL.GAN.ENABLED: "level" = one FPN level per RoI by its size (Mask R-CNN); "max" = every level pooled, element-wise
# maximum (the authors' code replaces the heads' poolers so, (f))
_C.MODEL.GAN.DETECTOR_POOLER_FUSION = "level"
# True: D_b's real boxes (the ground-truth boxes matched to the foreground RoIs) are clipped to the image, like its
# predicted boxes always are (the authors' code, (g)); False: as annotated
_C.MODEL.GAN.CLIP_GT_BOXES = False
_C.MODEL.GAN.BOX_DISC = CN()
_C.MODEL.GAN.BOX_DISC.ENABLED = True  # True: use the box discriminator when MODEL.GAN.ENABLED
_C.MODEL.GAN.BOX_DISC.NUM_CONVS = 5  # conv layers of the box discriminator incl. the scoring one (paper: 3, 4, 5)
_C.MODEL.GAN.BOX_DISC.CHANNELS = 64  # width of its first conv, doubling per layer up to 8x (64: the authors' code)
_C.MODEL.GAN.BOX_DISC.POOLER_TYPE = "PrRoIPool"  # RoI pooling of the box discriminator (must be box-differentiable)
_C.MODEL.GAN.BOX_DISC.POOLER_RESOLUTION = 28  # side of its pooled RoI feature, cells
# what D_b judges: "features" (FPN features pooled at the box, the paper) or "coordinates" (x0, y0, x1, y1 divided
# by the image's width / height, an MLP of NUM_CONVS layers: the abstract's "contextual regions vs coordinates")
_C.MODEL.GAN.BOX_DISC.INPUT = "features"
_C.MODEL.GAN.MASK_DISC = CN()
_C.MODEL.GAN.MASK_DISC.ENABLED = True  # True: use the mask discriminator when MODEL.GAN.ENABLED
_C.MODEL.GAN.MASK_DISC.NUM_CONVS = 5  # conv layers of the mask discriminator, all feeding its embedding (3, 4, 5)
_C.MODEL.GAN.MASK_DISC.CHANNELS = 64  # width of its first conv, doubling per layer (64: the authors' code)
# RoI pooling of D_m's context (the features its masks multiply): "ROIAlign", or "PrRoIPool" (the authors' code, (c))
_C.MODEL.GAN.MASK_DISC.POOLER_TYPE = "ROIAlign"
_C.MODEL.GAN.MASK_DISC.POOLER_RESOLUTION = 28  # pooled RoI side, cells (= ROI_MASK_HEAD.RESOLUTION)
# what D_m's masks multiply: "features" (RoI features, the paper), "mask" (nothing: the masks alone) or "pixels"
# (the RoI's input image pixels): the abstract's "feature space vs pixel space"
_C.MODEL.GAN.MASK_DISC.INPUT = "features"
_C.MODEL.GAN.MASK_DISC.EMBED_INPUT = False  # authors' variant: True puts D_m's raw input first in its embedding
# authors' variant: factor per conv layer on its output in D_m's embedding, one per NUM_CONVS ((1, 2, 2, 2, 4) in
# the authors' code); () = all 1 (the paper)
_C.MODEL.GAN.MASK_DISC.LAYER_WEIGHTS = ()

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CN()
_C.SOLVER.MAX_ITER = 40000  # training iterations (batches)
_C.SOLVER.BASE_LR = 0.001  # SGD learning rate after warm-up
_C.SOLVER.BIAS_LR_FACTOR = 2  # learning rate of bias parameters = BASE_LR * this
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.WEIGHT_DECAY = 0.0005  # L2 weight decay of non-bias parameters
_C.SOLVER.WEIGHT_DECAY_BIAS = 0  # L2 weight decay of bias parameters
_C.SOLVER.GAMMA = 0.1  # learning rate multiplier applied at each of STEPS
_C.SOLVER.STEPS = (30000,)  # iterations at which the learning rate is multiplied by GAMMA
_C.SOLVER.WARMUP_FACTOR = 1.0 / 3  # learning rate multiplier at iteration 0 of the warm-up
_C.SOLVER.WARMUP_ITERS = 500  # warm-up length, iterations
_C.SOLVER.WARMUP_METHOD = "linear"  # warm-up shape: "constant" or "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 2500  # save a checkpoint every this many iterations
_C.SOLVER.CHECKPOINT_KEEP = 0  # (added) keep only the newest N periodic model_<iter>.pth (0 = keep all)
_C.SOLVER.IMS_PER_BATCH = 16  # images per training batch, summed over all processes
_C.SOLVER.TEST_PERIOD = 0  # (added) evaluate on DATASETS.TEST every this many iterations (0 = only at the end)
_C.SOLVER.BEST_CHECKPOINT_METRIC = ""  # (added) e.g. "segm/AP": keep model_best.pth of the TEST_PERIOD evaluations
_C.SOLVER.EARLY_STOP_PATIENCE = 0  # (added) stop after this many evaluations without a better best metric (0 = off)
_C.SOLVER.SEED = 0  # (added) seed of torch / numpy / random (-1 = draw a random seed)
_C.SOLVER.SKIP_NONFINITE_STEPS = 0  # (added) NaN/inf-loss steps that may be skipped per run; 0 = stop at the first

# ---------------------------------------------------------------------------- #
# Test
# ---------------------------------------------------------------------------- #
_C.TEST = CN()
_C.TEST.EXPECTED_RESULTS = []  # [[task, metric, value, std], ...] checked after evaluation (CI)
_C.TEST.EXPECTED_RESULTS_SIGMA_TOL = 4  # tolerance of that check, in standard deviations
_C.TEST.IMS_PER_BATCH = 8  # images per test batch, summed over all processes
_C.TEST.DETECTIONS_PER_IMG = 100  # maximum detections kept per image at test (RetinaNet; COCO eval maxDets)
# (added) maxDets the COCO AP is computed at; evaluation uses max(this, TEST.DETECTIONS_PER_IMG)
_C.TEST.COCO_MAX_DETS = 100
# (added) with MASK_ON, also report Boundary AP (Cheng et al. 2021; band 2% of the image diagonal) next to mask
# AP; on by default since boundary quality is what the adversarial mask head targets; ~1-2 ms per mask on a CPU
_C.TEST.BOUNDARY_AP = True
# (added) library that computes COCO AP (bbox, segm, boundary, keypoints): "faster_coco_eval" (same numbers, faster)
# or "pycocotools" (the official API, with our Boundary IoU code); any other value is refused
_C.TEST.COCO_EVALUATOR = "faster_coco_eval"
# (added) GlaS datasets: detections with at least this score make the label map that the challenge's F1, object
# Dice and object Hausdorff are computed on (the challenge scores one segmentation, not a ranked list)
_C.TEST.GLAS_SCORE_THRESHOLD = 0.5
_C.TEST.BBOX_AUG = CN()  # test-time augmentation (maskrcnn-benchmark's keys); merges boxes and masks
_C.TEST.BBOX_AUG.ENABLED = False  # True: detect on each augmented copy, merge the boxes by NMS, average the masks
_C.TEST.BBOX_AUG.H_FLIP = False  # add a horizontally flipped pass at INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST
_C.TEST.BBOX_AUG.SCALES = ()  # extra shorter-side sizes to test at, px
_C.TEST.BBOX_AUG.MAX_SIZE = 4000  # cap on the longer side at those scales, px
_C.TEST.BBOX_AUG.SCALE_H_FLIP = False  # add a flipped pass at each extra scale
# (added) inference autocast: "float32" (off), "bfloat16" (CPU and CUDA) or "float16" (CUDA only); detections are
# returned in float32 either way
_C.TEST.DTYPE = "float32"

# ---------------------------------------------------------------------------- #
# Misc
# ---------------------------------------------------------------------------- #
_C.DISTRIBUTED = CN()
_C.DISTRIBUTED.TIMEOUT = 1800  # (added) process-group timeout, s: a stalled process makes the others exit after it

_C.OUTPUT_DIR = "."  # folder for checkpoints, logs and evaluation results
# Python file defining DatasetCatalog (and ModelCatalog) classes; point it to your own catalog to add datasets
_C.PATHS_CATALOG = os.path.join(os.path.dirname(__file__), "paths_catalog.py")
_C.DTYPE = "float32"  # training autocast: "float32" (off), "float16" (CUDA, loss scaling) or "bfloat16"
_C.AMP_VERBOSE = False  # apex.amp verbosity: not implemented (apex is not used), True is refused
