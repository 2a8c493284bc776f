"""layers.deform_conv.DFConv2d: zero-offset start equals the plain conv, offsets move the samples where
torchvision's layout says, gradients reach the offset conv."""
import pytest
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.layers.deform_conv import DFConv2d


def _layer(modulated, **kwargs):
    torch.manual_seed(0)
    return DFConv2d(8, 8, with_modulated_dcn=modulated, **kwargs).double()


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"stride": 2}, {"dilation": 2}, {"groups": 2, "deformable_groups": 2}])
def test_at_init_equals_the_plain_conv_with_the_same_weight(modulated, kwargs):
    layer = _layer(modulated, **kwargs)
    x = torch.randn(2, 8, 11, 13, dtype=torch.float64)
    dilation = kwargs.get("dilation", 1)
    plain = F.conv2d(x, layer.conv.weight, stride=kwargs.get("stride", 1), padding=dilation, dilation=dilation,
                     groups=kwargs.get("groups", 1))
    # DCNv2 starts with masks sigmoid(0) = 0.5 on every sample
    expected = 0.5 * plain if modulated else plain
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("deformable_groups", [1, 2])
def test_offset_and_mask_channels(modulated, deformable_groups):
    layer = _layer(modulated, deformable_groups=deformable_groups)
    taps = 9
    assert layer.offset.out_channels == deformable_groups * (27 if modulated else 18)
    assert layer.offset.weight.abs().sum() == 0 and layer.offset.bias.abs().sum() == 0
    with torch.no_grad():
        bias = layer.offset.bias.view(-1)
        bias[: 2 * taps * deformable_groups] = torch.tensor([1.0, 0.0]).repeat(taps * deformable_groups)
        if modulated:
            bias[2 * taps * deformable_groups:] = 40.0  # sigmoid -> 1
    x = torch.randn(1, 8, 9, 10, dtype=torch.float64)
    # every sample one row lower (dy = +1, dx = 0): tap ky of output row r reads input row r + ky (zero outside)
    padded = F.pad(x, (1, 1, 0, 2))
    expected = F.conv2d(padded, layer.conv.weight, groups=1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("modulated", [False, True])
def test_gradients_reach_the_offset_conv(modulated):
    layer = _layer(modulated)
    x = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0
    assert layer.offset.bias.grad.abs().sum() > 0
    assert layer.conv.weight.grad.abs().sum() > 0


def test_gradcheck_through_offsets():
    torch.manual_seed(1)
    layer = DFConv2d(2, 2, with_modulated_dcn=True).double()
    with torch.no_grad():  # off-grid samples, away from integer positions where bilinear weights kink
        layer.offset.weight.normal_(std=0.05)
        layer.offset.bias.uniform_(0.2, 0.3)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    offset_weight = layer.offset.weight.detach().clone().requires_grad_(True)

    def run(inp, weight):
        return torch.func.functional_call(layer, {"offset.weight": weight}, (inp,))

    assert torch.autograd.gradcheck(run, (x, offset_weight), eps=1e-6, atol=1e-5)


def test_empty_batch():
    layer = _layer(True)
    assert layer(torch.zeros(0, 8, 5, 5, dtype=torch.float64)).shape == (0, 8, 5, 5)


def test_bad_deformable_groups_named():
    with pytest.raises(ValueError, match="DEFORMABLE_GROUPS=3"):
        DFConv2d(8, 8, deformable_groups=3)
