"""Small layer factories shared by the backbone, the FPN and the RoI heads.

Conv initialisation follows maskrcnn-benchmark (kaiming-uniform with a=1, zero bias) so that
models trained here and there start from the same distribution.
"""
from torch import nn


def get_group_gn(dim, dim_per_gp=-1, num_groups=32):
    """Number of GroupNorm groups for ``dim`` channels: fixed ``num_groups`` or ``dim // dim_per_gp``.

    Exactly one of ``dim_per_gp`` / ``num_groups`` must be positive (as MODEL.GROUP_NORM).
    """
    if (dim_per_gp > 0) == (num_groups > 0):
        raise ValueError(
            "GroupNorm: set exactly one of MODEL.GROUP_NORM.DIM_PER_GP ({}) and "
            "MODEL.GROUP_NORM.NUM_GROUPS ({}) to a positive value, the other to -1".format(dim_per_gp, num_groups)
        )
    if dim_per_gp > 0:
        if dim % dim_per_gp != 0:
            raise ValueError("GroupNorm: {} channels are not divisible by DIM_PER_GP={}".format(dim, dim_per_gp))
        return dim // dim_per_gp
    if dim % num_groups != 0:
        raise ValueError("GroupNorm: {} channels are not divisible by NUM_GROUPS={}".format(dim, num_groups))
    return num_groups


def group_norm(out_channels, affine=True, divisor=1, dim_per_gp=-1, num_groups=32, eps=1e-5):
    """GroupNorm over ``out_channels`` channels.

    The defaults equal maskrcnn-benchmark's MODEL.GROUP_NORM defaults (DIM_PER_GP -1,
    NUM_GROUPS 32, EPSILON 1e-5); ``divisor`` divides both group settings (used by narrow layers).
    """
    out_channels = out_channels // divisor
    dim_per_gp = dim_per_gp // divisor if dim_per_gp > 0 else dim_per_gp
    num_groups = num_groups // divisor if num_groups > 0 else num_groups
    return nn.GroupNorm(get_group_gn(out_channels, dim_per_gp, num_groups), out_channels, eps, affine)


def make_conv3x3(in_channels, out_channels, dilation=1, stride=1, use_gn=False, use_relu=False, kaiming_init=True):
    """3x3 conv (padding = dilation, so stride 1 keeps H, W) optionally followed by GroupNorm and ReLU.

    Returns an ``nn.Conv2d`` when neither GN nor ReLU is requested, otherwise an ``nn.Sequential``
    (state-dict keys then gain ``.0`` / ``.1`` suffixes, as in maskrcnn-benchmark).
    """
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation, dilation=dilation,
        bias=not use_gn,
    )
    if kaiming_init:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    else:
        nn.init.normal_(conv.weight, std=0.01)
    if not use_gn:
        nn.init.constant_(conv.bias, 0)
    module = [conv]
    if use_gn:
        module.append(group_norm(out_channels))
    if use_relu:
        module.append(nn.ReLU(inplace=True))
    return nn.Sequential(*module) if len(module) > 1 else conv


def make_fc(dim_in, hidden_dim, use_gn=False):
    """Fully connected layer (kaiming-uniform a=1), or Linear without bias + GroupNorm when ``use_gn``.

    Input Tensor[K, dim_in] -> Tensor[K, hidden_dim].
    """
    if use_gn:
        fc = nn.Linear(dim_in, hidden_dim, bias=False)
        nn.init.kaiming_uniform_(fc.weight, a=1)
        return nn.Sequential(fc, group_norm(hidden_dim))
    fc = nn.Linear(dim_in, hidden_dim)
    nn.init.kaiming_uniform_(fc.weight, a=1)
    nn.init.constant_(fc.bias, 0)
    return fc


def group_norm_config(cfg):
    """MODEL.GROUP_NORM as keyword arguments of ``group_norm`` (dim_per_gp, num_groups, eps)."""
    return dict(dim_per_gp=cfg.MODEL.GROUP_NORM.DIM_PER_GP, num_groups=cfg.MODEL.GROUP_NORM.NUM_GROUPS,
                eps=cfg.MODEL.GROUP_NORM.EPSILON)


def conv_with_kaiming_uniform(use_gn=False, use_relu=False, group_norm_kwargs=None):
    """Factory ``make_conv(in_channels, out_channels, kernel_size, stride=1, dilation=1)``.

    Padding is ``dilation * (kernel_size - 1) // 2`` (keeps size at stride 1). The conv has a bias
    unless followed by GroupNorm (configured by ``group_norm_kwargs``, see ``group_norm_config``);
    ReLU is appended when ``use_relu``.
    """
    group_norm_kwargs = group_norm_kwargs or {}

    def make_conv(in_channels, out_channels, kernel_size, stride=1, dilation=1):
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride,
            padding=dilation * (kernel_size - 1) // 2, dilation=dilation, bias=not use_gn,
        )
        nn.init.kaiming_uniform_(conv.weight, a=1)
        if not use_gn:
            nn.init.constant_(conv.bias, 0)
        module = [conv]
        if use_gn:
            module.append(group_norm(out_channels, **group_norm_kwargs))
        if use_relu:
            module.append(nn.ReLU(inplace=True))
        return nn.Sequential(*module) if len(module) > 1 else conv

    return make_conv
