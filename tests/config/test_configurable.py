"""One construction contract, two ways in: explicit arguments, or maskrcnn-benchmark's registry call (cfg, ...)."""
import pytest
import torch
from torch import nn

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.modeling.roi_heads.box_head.roi_box_predictors import FastRCNNPredictor, FPNPredictor
from maskrcnn_benchmark.modeling.roi_heads.keypoint_head import keypoint_head  # noqa: F401 -- registers its entries
from maskrcnn_benchmark.modeling.roi_heads.mask_head import mask_head  # noqa: F401 -- registers its entries
from maskrcnn_benchmark.modeling.rpn.rpn import RPNHead
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import to_image_list
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask

# Positional arguments maskrcnn-benchmark passes after cfg, per registry (its rpn.py / make_roi_* call sites).
_MB_ARGS = {
    "RPN_HEADS": (16, 3),
    "ROI_BOX_FEATURE_EXTRACTORS": (16,),
    "ROI_BOX_PREDICTOR": (16,),
    "ROI_MASK_FEATURE_EXTRACTORS": (16,),
    "ROI_MASK_PREDICTOR": (16,),
    "ROI_KEYPOINT_FEATURE_EXTRACTORS": (16,),
    "ROI_KEYPOINT_PREDICTOR": (16,),
}
_C4_IN_CHANNELS = 256  # res5's input is res4's output with RES2_OUT_CHANNELS 64


def _images():
    torch.manual_seed(0)
    return to_image_list([torch.randn(3, 128, 128) * 50, torch.randn(3, 96, 128) * 50], size_divisible=32)


def _targets():
    targets = []
    for (w, h), boxes, labels in [((128, 128), [[10., 12., 60., 70.], [70., 20., 120., 100.]], [1, 2]),
                                  ((128, 96), [[5., 5., 40., 50.]], [3])]:
        target = BoxList(torch.tensor(boxes), (w, h))
        target.add_field("labels", torch.tensor(labels))
        polygons = [[[b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]]] for b in boxes]
        target.add_field("masks", SegmentationMask(polygons, (w, h), mode="poly"))
        targets.append(target)
    return targets


def test_every_registry_of_heads_is_covered():
    registries = {name for name, value in vars(registry).items() if isinstance(value, registry.Registry)}
    assert registries == set(_MB_ARGS) | {"BACKBONES"}  # backbones: entry(cfg), built by test_backbone.py


def _small_cfg():
    config = default_cfg.clone()
    config.merge_from_list([
        "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.WIDTH_PER_GROUP", 16,
        "MODEL.ROI_BOX_HEAD.NUM_CLASSES", 3, "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM", 8,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4, "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", 4,
        "MODEL.ROI_MASK_HEAD.CONV_LAYERS", (4, 4), "MODEL.ROI_KEYPOINT_HEAD.CONV_LAYERS", (4, 4),
    ])
    return config


def _entries():
    for registry_name, mb_args in sorted(_MB_ARGS.items()):
        for name in sorted(getattr(registry, registry_name)):
            yield registry_name, name, mb_args


@pytest.mark.parametrize("registry_name,name,mb_args", list(_entries()))
def test_every_registry_entry_builds_both_ways_with_equal_modules(registry_name, name, mb_args):
    config = _small_cfg()
    if name == "ResNet50Conv5ROIFeatureExtractor":
        mb_args = (_C4_IN_CHANNELS,)
    entry = getattr(registry, registry_name)[name]
    torch.manual_seed(0)
    built_mb_way = entry(config, *mb_args)
    assert isinstance(built_mb_way, nn.Module)
    if not isinstance(entry, type):
        return  # a builder function f(cfg, *args): maskrcnn-benchmark's way is its only way
    torch.manual_seed(0)  # from_config may build sub-modules (poolers, res5), which draw from the RNG
    explicit = entry.from_config(config, *mb_args)
    assert isinstance(explicit, dict)
    built_explicitly = entry(**explicit)
    assert type(built_mb_way) is type(built_explicitly) is entry
    mb_state, explicit_state = built_mb_way.state_dict(), built_explicitly.state_dict()
    assert list(mb_state) == list(explicit_state) and mb_state
    for key in mb_state:
        assert torch.equal(mb_state[key], explicit_state[key]), key


def test_explicit_arguments_and_cfg_give_the_same_predictor():
    config = _small_cfg()
    config.merge_from_list(["MODEL.CLS_AGNOSTIC_BBOX_REG", True])
    torch.manual_seed(0)
    from_cfg = FPNPredictor(config, 16)  # maskrcnn-benchmark: registry.ROI_BOX_PREDICTOR[name](cfg, in_channels)
    torch.manual_seed(0)
    explicit = FPNPredictor(16, 3, cls_agnostic_bbox_reg=True)
    assert from_cfg.cls_score.weight.shape == (3, 16) and from_cfg.bbox_pred.weight.shape == (8, 16)
    assert torch.equal(from_cfg.bbox_pred.weight, explicit.bbox_pred.weight)
    # a subclass inherits both ways, and cfg may be given by keyword
    assert isinstance(FastRCNNPredictor(cfg=config, in_channels=16).avgpool, nn.AdaptiveAvgPool2d)
    head = RPNHead(config, 16, 5)  # maskrcnn-benchmark: registry.RPN_HEADS[name](cfg, in_channels, num_anchors)
    assert head.cls_logits.out_channels == 5 and head.bbox_pred.out_channels == 20


def test_configurable_refuses_a_class_without_from_config_by_name():
    class NoFromConfig(nn.Module):
        @configurable
        def __init__(self, width):
            super().__init__()

    NoFromConfig(3)
    with pytest.raises(TypeError, match="NoFromConfig.*from_config"):
        NoFromConfig(_small_cfg(), 3)

    with pytest.raises(TypeError, match="__init__"):
        configurable(lambda x: x)


class _MBStyleRPNHead(nn.Module):
    """Written for maskrcnn-benchmark: reads the config itself."""

    def __init__(self, cfg, in_channels, num_anchors):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        self.built_with = (cfg.MODEL.RPN.RPN_HEAD, in_channels, num_anchors)

    def forward(self, x):
        hidden = [torch.relu(self.conv(f)) for f in x]
        return [self.cls_logits(h) for h in hidden], [self.bbox_pred(h) for h in hidden]


class _MBStyleBoxFeatureExtractor(nn.Module):
    def __init__(self, cfg, in_channels):
        super().__init__()
        from maskrcnn_benchmark.modeling.poolers import make_pooler

        self.pooler = make_pooler(cfg, "ROI_BOX_HEAD")
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        self.fc = nn.Linear(in_channels * resolution ** 2, 32)
        self.out_channels = 32

    def forward(self, x, proposals):
        return torch.relu(self.fc(self.pooler(x, proposals).flatten(1)))


class _MBStyleBoxPredictor(nn.Module):
    def __init__(self, cfg, in_channels):
        super().__init__()
        num_classes = cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4 * num_classes)

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)


class _MBStyleMaskPredictor(nn.Module):
    def __init__(self, cfg, in_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, 8, 2, 2)
        self.logits = nn.Conv2d(8, cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES, 1)

    def forward(self, x):
        return self.logits(torch.relu(self.up(x)))


class _MBStyleBackbone(nn.Module):
    """A user backbone as maskrcnn-benchmark builds them: maps at strides 4..64 and only ``out_channels``."""

    def __init__(self, out_channels):
        super().__init__()
        self.stem = nn.Conv2d(3, out_channels, 3, stride=4, padding=1)
        self.downsample = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
                                        for _ in range(4))
        self.out_channels = out_channels

    def forward(self, x):
        maps = [self.stem(x)]
        for layer in self.downsample:
            maps.append(layer(maps[-1]))
        return maps


def _build_mb_style_backbone(cfg):
    return _MBStyleBackbone(cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS)


@pytest.fixture
def mb_style_entries():
    """Register maskrcnn-benchmark-style user classes for one test, then remove them."""
    added = [
        (registry.BACKBONES, "USER-FPN", _build_mb_style_backbone),
        (registry.RPN_HEADS, "UserRPNHead", _MBStyleRPNHead),
        (registry.ROI_BOX_FEATURE_EXTRACTORS, "UserBoxFeatureExtractor", _MBStyleBoxFeatureExtractor),
        (registry.ROI_BOX_PREDICTOR, "UserBoxPredictor", _MBStyleBoxPredictor),
        (registry.ROI_MASK_PREDICTOR, "UserMaskPredictor", _MBStyleMaskPredictor),
    ]
    for reg, name, module in added:
        reg.register(name, module)
    yield
    for reg, name, _ in added:
        del reg[name]


def test_user_classes_registered_the_maskrcnn_benchmark_way_are_built_and_run(tiny_cfg, mb_style_entries):
    tiny_cfg.merge_from_list([
        "MODEL.BACKBONE.CONV_BODY", "USER-FPN",
        "MODEL.RPN.RPN_HEAD", "UserRPNHead",
        "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", "UserBoxFeatureExtractor",
        "MODEL.ROI_BOX_HEAD.PREDICTOR", "UserBoxPredictor",
        "MODEL.ROI_MASK_HEAD.PREDICTOR", "UserMaskPredictor",
    ])
    torch.manual_seed(0)
    model = build_detection_model(tiny_cfg).train()
    assert isinstance(model.backbone, _MBStyleBackbone)
    assert isinstance(model.rpn.head, _MBStyleRPNHead)
    assert model.rpn.head.built_with == ("UserRPNHead", 64, 3)  # cfg, backbone channels, anchors per location
    box_head = model.roi_heads.box
    assert isinstance(box_head.feature_extractor, _MBStyleBoxFeatureExtractor)
    assert isinstance(box_head.predictor, _MBStyleBoxPredictor) and box_head.predictor.cls_score.in_features == 32
    assert isinstance(model.roi_heads.mask.predictor, _MBStyleMaskPredictor)

    losses, adv_inputs = model(_images(), _targets(), return_adv_inputs=True)
    assert {"loss_objectness", "loss_classifier", "loss_box_reg", "loss_mask"} <= set(losses)
    # what the discriminators need comes out although the backbone has no feature_strides: from POOLER_SCALES
    assert adv_inputs.feature_strides == [4, 8, 16, 32] and len(adv_inputs.features) == 4
    sum(losses.values()).backward()
    assert model.rpn.head.conv.weight.grad.abs().sum() > 0
    assert box_head.predictor.cls_score.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        detections = model(_images())
    assert len(detections) == 2 and all(d.has_field("scores") for d in detections)


def test_from_config_returns_constructor_arguments_outside_the_registries_too(tiny_cfg):
    """RetinaNet's modules and the export wrapper follow the same contract: ``from_config`` gives the __init__
    arguments, ``cls(cfg, ...)`` builds (maskrcnn-benchmark's RetinaNetModule(cfg, in_channels) signature)."""
    from maskrcnn_benchmark.engine.export import ExportableMaskRCNN
    from maskrcnn_benchmark.modeling.rpn.retinanet.inference import RetinaNetPostProcessor
    from maskrcnn_benchmark.modeling.rpn.retinanet.loss import RetinaNetLossComputation
    from maskrcnn_benchmark.modeling.rpn.retinanet.retinanet import RetinaNetHead, RetinaNetModule

    config = default_cfg.clone()
    config.merge_from_list(["MODEL.RETINANET.NUM_CLASSES", 3, "MODEL.RETINANET.NUM_CONVS", 1])
    for cls, args in ((RetinaNetHead, (8,)), (RetinaNetModule, (8,)), (RetinaNetPostProcessor, ()),
                      (RetinaNetLossComputation, (None,))):
        explicit = cls.from_config(config, *args)
        assert isinstance(explicit, dict), cls.__name__
        assert type(cls(config, *args)) is type(cls(**explicit)) is cls
    head = RetinaNetHead(config, 8)
    assert head.cls_logits.out_channels == 9 * 2  # 9 anchors per location x 2 foreground classes
    config = tiny_cfg
    model = build_detection_model(config)
    export = ExportableMaskRCNN.from_config(config, model)
    assert isinstance(export, dict) and export["model"] is model
    assert torch.equal(ExportableMaskRCNN(config, model).pixel_mean.flatten(), torch.tensor(config.INPUT.PIXEL_MEAN))
