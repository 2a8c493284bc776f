"""Backbone builders registered under MODEL.BACKBONE.CONV_BODY names.

Every builder returns ``nn.Sequential(body[, fpn])`` with two attributes the rest of the model
derives its settings from:
  ``out_channels``: channels of every returned feature map;
  ``feature_strides``: list[int], the stride (in input pixels) of each returned map.
"""
from collections import OrderedDict

from torch import nn

from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.make_layers import conv_with_kaiming_uniform, group_norm_config

from . import fpn as fpn_module
from . import resnet


def _wrap(modules, out_channels, feature_strides):
    model = nn.Sequential(OrderedDict(modules))
    model.out_channels = out_channels
    model.feature_strides = list(feature_strides)
    return model


@registry.BACKBONES.register("R-50-C4")
@registry.BACKBONES.register("R-50-C5")
@registry.BACKBONES.register("R-101-C4")
@registry.BACKBONES.register("R-101-C5")
def build_resnet_backbone(cfg):
    """Single-map ResNet body (res4 for C4, res5 for C5); out_channels derived from the body."""
    body = resnet.build_resnet_body(cfg)
    return _wrap([("body", body)], body.out_channels_per_stage[-1], body.strides)


@registry.BACKBONES.register("R-18-FPN")
@registry.BACKBONES.register("R-34-FPN")
@registry.BACKBONES.register("R-50-FPN")
@registry.BACKBONES.register("R-101-FPN")
@registry.BACKBONES.register("R-152-FPN")
def build_resnet_fpn_backbone(cfg):
    """ResNet + FPN giving P2-P6 (strides 4-64) with MODEL.RESNETS.BACKBONE_OUT_CHANNELS channels.

    The FPN's input channels are read off the body (64..512 for basic blocks, 256..2048 for
    bottlenecks with the default RES2_OUT_CHANNELS).
    """
    body = resnet.build_resnet_body(cfg)
    out_channels = cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
    fpn = fpn_module.FPN(
        in_channels_list=body.out_channels_per_stage,
        out_channels=out_channels,
        conv_block=conv_with_kaiming_uniform(
            cfg.MODEL.FPN.USE_GN, cfg.MODEL.FPN.USE_RELU, group_norm_config(cfg)),
        top_blocks=fpn_module.LastLevelMaxPool(),
    )
    return _wrap([("body", body), ("fpn", fpn)], out_channels, body.strides + [body.strides[-1] * 2])


@registry.BACKBONES.register("R-18-FPN-RETINANET")
@registry.BACKBONES.register("R-34-FPN-RETINANET")
@registry.BACKBONES.register("R-50-FPN-RETINANET")
@registry.BACKBONES.register("R-101-FPN-RETINANET")
def build_resnet_fpn_p3p7_backbone(cfg):
    """ResNet + FPN giving P3-P7 (strides 8-128), P6/P7 by strided convs (RetinaNet style);
    P6 is computed from C5 when MODEL.RETINANET.USE_C5, else from P5."""
    body = resnet.build_resnet_body(cfg)
    out_channels = cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS
    in_channels_list = [0] + body.out_channels_per_stage[1:]
    p6_in_channels = in_channels_list[-1] if cfg.MODEL.RETINANET.USE_C5 else out_channels
    fpn = fpn_module.FPN(
        in_channels_list=in_channels_list,
        out_channels=out_channels,
        conv_block=conv_with_kaiming_uniform(
            cfg.MODEL.FPN.USE_GN, cfg.MODEL.FPN.USE_RELU, group_norm_config(cfg)),
        top_blocks=fpn_module.LastLevelP6P7(p6_in_channels, out_channels),
    )
    c5_stride = body.strides[-1]
    return _wrap([("body", body), ("fpn", fpn)], out_channels, body.strides[1:] + [c5_stride * 2, c5_stride * 4])


def build_backbone(cfg):
    """Build the backbone named by ``cfg.MODEL.BACKBONE.CONV_BODY`` (see registry.BACKBONES)."""
    backbone = registry.BACKBONES[cfg.MODEL.BACKBONE.CONV_BODY](cfg)
    if cfg.MODEL.RESNETS.ACTIVATION_CHECKPOINTING and not any(
            isinstance(m, resnet.ResNet) and m.activation_checkpointing for m in backbone.modules()):
        # FBNet and backbones registered by users do not read the key: refused rather than silently ignored
        raise ValueError("MODEL.RESNETS.ACTIVATION_CHECKPOINTING checkpoints the blocks of a ResNet body, and the "
                         "backbone MODEL.BACKBONE.CONV_BODY={!r} has none that reads it; set it False".format(
                             cfg.MODEL.BACKBONE.CONV_BODY))
    return backbone
