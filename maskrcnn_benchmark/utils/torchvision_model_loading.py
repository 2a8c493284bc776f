"""Map torchvision checkpoints onto maskrcnn-benchmark's names: its ImageNet ResNets (``resnet50-*.pth``) and its
detection models (``maskrcnn_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` state dicts, e.g.
``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``)."""
import logging
import re
from collections import OrderedDict

# torchvision's stem lives at the top level of its ResNet; ours is ``body.stem``. The residual stages
# (layer1..layer4, with conv/bn/downsample.{0,1} inside each block) already share names.
_STEM_RENAMES = (
    (re.compile(r"^conv1\."), "stem.conv1."),
    (re.compile(r"^bn1\."), "stem.bn1."),
)


def is_torchvision_resnet_state_dict(state_dict):
    """True when the keys look like torchvision's ``ResNet.state_dict()`` (top-level conv1/bn1/layer1...)."""
    keys = set(state_dict.keys())
    return "conv1.weight" in keys and any(k.startswith("layer1.0.") for k in keys)


def convert_torchvision_resnet_state_dict(state_dict, logger=None):
    """Rename a torchvision ResNet state dict to maskrcnn-benchmark backbone names.

    ``conv1``/``bn1`` become ``stem.conv1``/``stem.bn1``; ``layerN.*`` are kept (they are then matched by suffix
    against ``backbone.body.layerN.*`` or a C4 box head's ``layer4``); the classifier ``fc.*`` and the
    ``num_batches_tracked`` counters, which FrozenBatchNorm2d does not have, are dropped. BatchNorm weight,
    bias, running_mean and running_var keep their names and land in the FrozenBatchNorm2d buffers.

    Args:
        state_dict: dict name -> Tensor as saved by torchvision.
    Returns:
        OrderedDict name -> Tensor with the new names.
    """
    logger = logger or logging.getLogger(__name__)
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        new_key = key
        for pattern, replacement in _STEM_RENAMES:
            new_key = pattern.sub(replacement, new_key)
        converted[new_key] = value
        if new_key != key:
            logger.debug("torchvision ResNet: %s -> %s", key, new_key)
    return converted


# torchvision detection name -> ours. Both the current layout (Conv2dNormActivation: ``conv.0.0``, ``inner_blocks.0.0``,
# ``mask_head.0.0``) and the one before torchvision 0.13 (``conv``, ``inner_blocks.0``, ``mask_fcn1``) are accepted.
_DETECTION_RENAMES = (
    (re.compile(r"^backbone\.body\.conv1\."), lambda m: "backbone.body.stem.conv1."),
    (re.compile(r"^backbone\.body\.bn1\."), lambda m: "backbone.body.stem.bn1."),
    (re.compile(r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?"),
     lambda m: "backbone.fpn.fpn_inner{}.".format(int(m.group(1)) + 1)),
    (re.compile(r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?"),
     lambda m: "backbone.fpn.fpn_layer{}.".format(int(m.group(1)) + 1)),
    (re.compile(r"^rpn\.head\.conv\.(?:0\.0\.)?"), lambda m: "rpn.head.conv."),
    (re.compile(r"^roi_heads\.box_head\."), lambda m: "roi_heads.box.feature_extractor."),
    (re.compile(r"^roi_heads\.box_predictor\."), lambda m: "roi_heads.box.predictor."),
    (re.compile(r"^roi_heads\.mask_head\.(\d+)\.0\."),
     lambda m: "roi_heads.mask.feature_extractor.mask_fcn{}.".format(int(m.group(1)) + 1)),
    (re.compile(r"^roi_heads\.mask_head\.(mask_fcn\d+)\."), lambda m: "roi_heads.mask.feature_extractor.{}.".format(
        m.group(1))),
    (re.compile(r"^roi_heads\.mask_predictor\."), lambda m: "roi_heads.mask.predictor."),
)
# names that keep their key: the residual stages and the RPN's two 1x1 convs
_DETECTION_KEPT = re.compile(r"^(backbone\.body\.layer\d\.|rpn\.head\.(cls_logits|bbox_pred)\.)")


def is_torchvision_detection_state_dict(state_dict):
    """True when the keys look like a torchvision ``MaskRCNN`` / ``FasterRCNN`` ``state_dict()`` with an FPN
    ResNet backbone (``backbone.body.conv1``, ``backbone.fpn.inner_blocks``, ``roi_heads.box_predictor``)."""
    keys = set(state_dict.keys())
    return ("backbone.body.conv1.weight" in keys and any(k.startswith("backbone.fpn.inner_blocks.") for k in keys)
            and any(k.startswith("roi_heads.box_predictor.") for k in keys))


def torchvision_coco_categories(state_dict):
    """The categories of torchvision's COCO detection weights, in our checkpoints' format, or None.

    torchvision's COCO models predict 91 classes whose label k is COCO category id k (with "N/A" for the ids COCO
    does not use). Stored with the loaded weights, they let ``tools/test_net.py`` score those labels on a COCO-format
    test set by category name (see data/categories.py) instead of by position.

    Returns:
        list of {"id": k, "name": name} for labels 1..90 when ``state_dict``'s class score has 91 outputs, else None.
    """
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    names = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # shipped with torchvision, no download
    cls_score = state_dict.get("roi_heads.box_predictor.cls_score.weight")
    if cls_score is None or cls_score.shape[0] != len(names):
        return None
    return [{"id": label, "name": name} for label, name in enumerate(names) if label > 0]


def convert_torchvision_detection_state_dict(state_dict, logger=None):
    """Rename a torchvision ``maskrcnn_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` state dict to this package's names.

    backbone.body.{conv1,bn1} -> backbone.body.stem.{conv1,bn1}; backbone.fpn.{inner,layer}_blocks.i ->
    backbone.fpn.fpn_{inner,layer}{i+1}; rpn.head.conv -> rpn.head.conv; roi_heads.box_head / box_predictor ->
    roi_heads.box.feature_extractor / predictor; roi_heads.mask_head.i ->
    roi_heads.mask.feature_extractor.mask_fcn{i+1};
    roi_heads.mask_predictor -> roi_heads.mask.predictor. BatchNorm ``num_batches_tracked`` counters are dropped
    (a torchvision model built without pretrained weights has nn.BatchNorm2d, whose statistics load into our
    FrozenBatchNorm2d). The model must be built with a config matching torchvision's
    (configs/torchvision/maskrcnn_resnet50_fpn.yaml: MODEL.BOX_CONVENTION "torchvision", STRIDE_IN_1X1 False, ...).

    Raises:
        KeyError naming the keys this function has no rule for (e.g. a keypoint head or another backbone).
    """
    logger = logger or logging.getLogger(__name__)
    converted = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        new_key = None
        for pattern, replacement in _DETECTION_RENAMES:
            match = pattern.match(key)
            if match:
                new_key = replacement(match) + key[match.end():]
                break
        if new_key is None and _DETECTION_KEPT.match(key):
            new_key = key
        if new_key is None:
            unknown.append(key)
            continue
        converted[new_key] = value
        logger.debug("torchvision detection: %s -> %s", key, new_key)
    if unknown:
        raise KeyError("torchvision detection state dict has entries without a rule for this package's model "
                       "(supported: ResNet-FPN Faster/Mask R-CNN): {}".format(", ".join(unknown[:10])))
    return converted
