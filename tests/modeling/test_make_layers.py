import pytest
import torch
from torch import nn

from maskrcnn_benchmark.modeling.make_layers import (
    conv_with_kaiming_uniform,
    get_group_gn,
    group_norm,
    make_conv3x3,
    make_fc,
)


def test_group_norm_groups_from_either_setting():
    assert group_norm(64).num_groups == 32
    assert group_norm(64, num_groups=-1, dim_per_gp=16).num_groups == 4
    assert group_norm(64, divisor=2).num_channels == 32 and group_norm(64, divisor=2).num_groups == 16
    with pytest.raises(ValueError, match="NUM_GROUPS"):
        get_group_gn(48, dim_per_gp=-1, num_groups=32)
    with pytest.raises(ValueError, match="DIM_PER_GP"):
        get_group_gn(64, dim_per_gp=16, num_groups=32)


def test_conv_with_kaiming_uniform_variants_keep_size():
    x = torch.randn(2, 8, 10, 10)
    plain = conv_with_kaiming_uniform()(8, 16, 3)
    assert isinstance(plain, nn.Conv2d) and plain.bias is not None and torch.all(plain.bias == 0)
    assert plain(x).shape == (2, 16, 10, 10)
    gn_relu = conv_with_kaiming_uniform(use_gn=True, use_relu=True, group_norm_kwargs={"num_groups": 4})(8, 16, 3)
    assert gn_relu[0].bias is None and gn_relu[1].num_groups == 4
    assert (gn_relu(x) >= 0).all()
    assert conv_with_kaiming_uniform()(8, 16, 3, stride=2)(x).shape == (2, 16, 5, 5)


def test_make_conv3x3_and_make_fc():
    x = torch.randn(2, 8, 10, 10)
    assert make_conv3x3(8, 16, dilation=2)(x).shape == (2, 16, 10, 10)
    assert isinstance(make_conv3x3(8, 32, use_gn=True, use_relu=True)[1], nn.GroupNorm)
    fc = make_fc(12, 5)
    assert fc(torch.randn(3, 12)).shape == (3, 5) and torch.all(fc.bias == 0)
    fc_gn = make_fc(12, 64, use_gn=True)
    assert fc_gn[0].bias is None and fc_gn(torch.randn(3, 12)).shape == (3, 64)
