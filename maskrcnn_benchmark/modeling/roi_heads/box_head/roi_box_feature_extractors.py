"""RoI feature extractors of the box head: they pool each proposal and turn it into a feature vector/map.

Every extractor takes ``(features, proposals)`` with ``features`` the backbone maps (list of Tensor[N,C,H,W]) and
``proposals`` a list of BoxList (one per image), and returns Tensor[K, out_channels(, h, w)] for the K proposals of
all images, concatenated in image order. Each class takes explicit constructor arguments, or ``(cfg,
in_channels)`` as maskrcnn-benchmark's registry calls it (config/configurable.py).
"""
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.config.configurable import configurable
from maskrcnn_benchmark.modeling import registry
from maskrcnn_benchmark.modeling.make_layers import group_norm, make_fc
from maskrcnn_benchmark.modeling.poolers import make_pooler


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("ResNet50Conv5ROIFeatureExtractor")
class ResNet50Conv5ROIFeatureExtractor(nn.Module):
    """C4 head: RoI pooling on the stride-16 map followed by ResNet stage 5 ("res5").

    Args:
        pooler (nn.Module): maps (features, proposals) to Tensor[K, in_channels, R, R].
        head (nn.Module): the res5 stage, Tensor[K, in_channels, R, R] -> Tensor[K, head.out_channels, R/2, R/2].
    """

    @configurable
    def __init__(self, pooler, head):
        super().__init__()
        self.pooler = pooler
        self.head = head
        self.out_channels = head.out_channels

    @classmethod
    def from_config(cls, cfg, in_channels, head_name="ROI_BOX_HEAD"):
        """Pooler from ``MODEL.<head_name>.POOLER_*``, res5 from ``MODEL.RESNETS`` (in_channels: res4's, implied)."""
        # Imported here so the FPN heads do not depend on the ResNet module being importable.
        from maskrcnn_benchmark.modeling.backbone import resnet

        pooler = make_pooler(cfg, head_name)
        head = resnet.ResNetHead(
            block_module=cfg.MODEL.RESNETS.TRANS_FUNC,
            stages=(resnet.StageSpec(index=4, block_count=3, return_features=False),),
            num_groups=cfg.MODEL.RESNETS.NUM_GROUPS,
            width_per_group=cfg.MODEL.RESNETS.WIDTH_PER_GROUP,
            stride_in_1x1=cfg.MODEL.RESNETS.STRIDE_IN_1X1,
            stride_init=None,
            res2_out_channels=cfg.MODEL.RESNETS.RES2_OUT_CHANNELS,
            dilation=cfg.MODEL.RESNETS.RES5_DILATION,
            **resnet.dcn_settings(cfg),
        )
        return {"pooler": pooler, "head": head}

    def forward(self, x, proposals):
        """x: list[Tensor[N,C,H,W]]; proposals: list[BoxList] -> Tensor[K, out_channels, R/2, R/2]."""
        x = self.pooler(x, proposals)
        return self.head(x)


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FPN2MLPFeatureExtractor")
class FPN2MLPFeatureExtractor(nn.Module):
    """FPN box head: multi-level RoI pooling then two fully connected layers (fc6, fc7) with ReLU.

    Args:
        pooler (nn.Module): (features, proposals) -> Tensor[K, in_channels, resolution, resolution].
        in_channels (int): channels of the pooled features.
        resolution (int): pooler output size.
        representation_size (int): width of fc6/fc7 (MLP_HEAD_DIM).
        use_gn (bool): GroupNorm after each fc.
    """

    @configurable
    def __init__(self, pooler, in_channels, resolution, representation_size, use_gn=False):
        super().__init__()
        self.pooler = pooler
        self.fc6 = make_fc(in_channels * resolution ** 2, representation_size, use_gn)
        self.fc7 = make_fc(representation_size, representation_size, use_gn)
        self.out_channels = representation_size

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_BOX_HEAD.{POOLER_*, MLP_HEAD_DIM, USE_GN}."""
        head = cfg.MODEL.ROI_BOX_HEAD
        return {"pooler": make_pooler(cfg, "ROI_BOX_HEAD"), "in_channels": in_channels,
                "resolution": head.POOLER_RESOLUTION, "representation_size": head.MLP_HEAD_DIM, "use_gn": head.USE_GN}

    def forward(self, x, proposals):
        """x: list[Tensor[N,C,H,W]]; proposals: list[BoxList] -> Tensor[K, representation_size]."""
        x = self.pooler(x, proposals)
        x = x.flatten(start_dim=1)
        # In-place ReLU is safe (fc/conv backward needs their input, not output) and saves a copy.
        x = F.relu(self.fc6(x), inplace=True)
        return F.relu(self.fc7(x), inplace=True)


@registry.ROI_BOX_FEATURE_EXTRACTORS.register("FPNXconv1fcFeatureExtractor")
class FPNXconv1fcFeatureExtractor(nn.Module):
    """FPN box head: multi-level RoI pooling, ``num_stacked_convs`` 3x3 convs (optionally GN), then one fc.

    Args:
        pooler (nn.Module): (features, proposals) -> Tensor[K, in_channels, resolution, resolution].
        in_channels (int): channels of the pooled features.
        resolution (int): pooler output size.
        conv_head_dim (int): channels of every conv.
        num_stacked_convs (int): number of 3x3 convs.
        mlp_head_dim (int): width of the final fc (``out_channels``).
        dilation (int): dilation of the convs.
        use_gn (bool): GroupNorm after each conv (then the convs have no bias).
    """

    @configurable
    def __init__(self, pooler, in_channels, resolution, conv_head_dim, num_stacked_convs, mlp_head_dim,
                 dilation=1, use_gn=False):
        super().__init__()
        self.pooler = pooler
        layers = []
        for _ in range(num_stacked_convs):
            layers.append(nn.Conv2d(in_channels, conv_head_dim, kernel_size=3, stride=1, padding=dilation,
                                    dilation=dilation, bias=not use_gn))
            in_channels = conv_head_dim
            if use_gn:
                layers.append(group_norm(in_channels))
            layers.append(nn.ReLU(inplace=True))
        # The name "xconvs" keeps maskrcnn-benchmark checkpoints loadable.
        self.add_module("xconvs", nn.Sequential(*layers))
        for module in self.xconvs.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        self.fc6 = make_fc(conv_head_dim * resolution ** 2, mlp_head_dim, use_gn=False)
        self.out_channels = mlp_head_dim

    @classmethod
    def from_config(cls, cfg, in_channels):
        """Reads MODEL.ROI_BOX_HEAD.{POOLER_*, CONV_HEAD_DIM, NUM_STACKED_CONVS, MLP_HEAD_DIM, DILATION, USE_GN}."""
        head = cfg.MODEL.ROI_BOX_HEAD
        return {"pooler": make_pooler(cfg, "ROI_BOX_HEAD"), "in_channels": in_channels,
                "resolution": head.POOLER_RESOLUTION, "conv_head_dim": head.CONV_HEAD_DIM,
                "num_stacked_convs": head.NUM_STACKED_CONVS, "mlp_head_dim": head.MLP_HEAD_DIM,
                "dilation": head.DILATION, "use_gn": head.USE_GN}

    def forward(self, x, proposals):
        """x: list[Tensor[N,C,H,W]]; proposals: list[BoxList] -> Tensor[K, mlp_head_dim]."""
        x = self.pooler(x, proposals)
        x = self.xconvs(x)
        return F.relu(self.fc6(x.flatten(start_dim=1)), inplace=True)


def build_from_registry(registry_dict, name, key, cfg, in_channels):
    """Builds registry entry ``name`` (looked up for config key ``key``) as maskrcnn-benchmark does:
    ``entry(cfg, in_channels)``.

    Our classes accept that call through ``@configurable``; a user's class with maskrcnn-benchmark's signature
    ``__init__(self, cfg, in_channels)`` or a builder function ``f(cfg, in_channels)`` is called the same way.
    """
    if name not in registry_dict:
        raise KeyError("{} = {!r} is not registered; choose one of {}".format(key, name, sorted(registry_dict)))
    return registry_dict[name](cfg, in_channels)


def make_roi_box_feature_extractor(cfg, in_channels):
    """Builds the extractor named by MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR for ``in_channels`` input channels."""
    return build_from_registry(registry.ROI_BOX_FEATURE_EXTRACTORS, cfg.MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR,
                               "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR", cfg, in_channels)
