"""Detector builders selected by MODEL.META_ARCHITECTURE."""
import torch

from maskrcnn_benchmark.config import check_implemented_keys
from maskrcnn_benchmark.modeling.backbone import build_backbone
from maskrcnn_benchmark.modeling.rpn.rpn import build_rpn

from .generalized_rcnn import GeneralizedRCNN


def _check_retinanet_strides(cfg, backbone):
    """RetinaNet places its anchors with MODEL.RETINANET.ANCHOR_STRIDES: they must be the backbone's map strides."""
    strides = tuple(getattr(backbone, "feature_strides", ()))
    if strides and strides != tuple(cfg.MODEL.RETINANET.ANCHOR_STRIDES):
        raise ValueError(
            "MODEL.RETINANET.ANCHOR_STRIDES {} do not match the strides {} of the maps of MODEL.BACKBONE.CONV_BODY "
            "'{}'; RetinaNet needs a P3-P7 backbone such as 'R-50-FPN-RETINANET' (strides 8-128)".format(
                tuple(cfg.MODEL.RETINANET.ANCHOR_STRIDES), strides, cfg.MODEL.BACKBONE.CONV_BODY))


def build_generalized_rcnn(cfg):
    """GeneralizedRCNN from cfg: backbone (MODEL.BACKBONE/RESNETS/FPN), RPN (MODEL.RPN) and, unless
    MODEL.RPN_ONLY, the RoI heads (MODEL.ROI_*). With MODEL.RETINANET_ON the RetinaNet module (MODEL.RETINANET)
    takes the RPN's place and there are no RoI heads."""
    backbone = build_backbone(cfg)
    if not hasattr(backbone, "feature_strides"):
        # A backbone registered maskrcnn-benchmark's way has only out_channels; the strides of the maps the RoI
        # heads pool from (which the discriminators need) are those the pooler scales say.
        backbone.feature_strides = [int(round(1.0 / scale)) for scale in cfg.MODEL.ROI_BOX_HEAD.POOLER_SCALES]
    if cfg.MODEL.RETINANET_ON:
        _check_retinanet_strides(cfg, backbone)
    rpn = build_rpn(cfg, backbone.out_channels)
    roi_heads = None
    if not cfg.MODEL.RPN_ONLY:
        from maskrcnn_benchmark.modeling.roi_heads.roi_heads import build_roi_heads

        roi_heads = build_roi_heads(cfg, backbone.out_channels)
    return GeneralizedRCNN(
        backbone, rpn, roi_heads,
        size_divisible=cfg.DATALOADER.SIZE_DIVISIBILITY,
        num_roi_feature_maps=len(cfg.MODEL.ROI_BOX_HEAD.POOLER_SCALES),
    )


_DETECTION_META_ARCHITECTURES = {"GeneralizedRCNN": build_generalized_rcnn}


def build_detection_model(cfg):
    """Build the detector named by MODEL.META_ARCHITECTURE; refuses a config that sets an unimplemented key."""
    check_implemented_keys(cfg)
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in _DETECTION_META_ARCHITECTURES:
        raise KeyError("MODEL.META_ARCHITECTURE='{}' is unknown; known: {}".format(
            name, ", ".join(sorted(_DETECTION_META_ARCHITECTURES))))
    model = _DETECTION_META_ARCHITECTURES[name](cfg)
    if cfg.MODEL.CHANNELS_LAST:
        # 4-D weights in NHWC make every conv, and what follows it, run in NHWC (oneDNN's fast layout on the CPU)
        model.to(memory_format=torch.channels_last)
    return model
