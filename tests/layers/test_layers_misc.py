"""Layers under maskrcnn-benchmark's names: empty batches, FrozenBatchNorm2d, RoIAlign, smooth L1."""
import pytest
import torch
from torch import nn

from maskrcnn_benchmark.layers import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    FrozenBatchNorm2d,
    PrRoIPool2D,
    ROIAlign,
    interpolate,
    prroi_pool2d,
    roi_align,
    smooth_l1_loss,
)


@pytest.mark.parametrize("layer, out_shape", [
    (Conv2d(3, 4, 3, padding=1), (0, 4, 5, 5)),
    (Conv2d(3, 4, 3, stride=2), (0, 4, 2, 2)),
    (ConvTranspose2d(3, 4, 2, stride=2), (0, 4, 10, 10)),
])
def test_empty_batch_forward_backward(layer, out_shape):
    x = torch.zeros(0, 3, 5, 5, requires_grad=True)
    y = layer(x)
    assert y.shape == out_shape
    (y.sum() + 0.0).backward()
    # gradients reach the parameters (zero-valued) so optimizers and DDP see every parameter used
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() == 0
    assert x.grad is not None and x.grad.shape == x.shape


def test_empty_batch_interpolate_and_batchnorm():
    x = torch.zeros(0, 3, 5, 5, requires_grad=True)
    assert interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).shape == (0, 3, 10, 10)
    assert interpolate(x, size=(7, 7), mode="nearest").shape == (0, 3, 7, 7)
    bn = BatchNorm2d(3).train()
    bn.running_mean.fill_(2.0)
    y = bn(x)
    y.sum().backward()
    assert y.shape == x.shape and bn.weight.grad is not None
    # an empty batch has no statistics: the running ones must not move (nor become NaN)
    assert torch.equal(bn.running_mean, torch.full((3,), 2.0)) and torch.equal(bn.running_var, torch.ones(3))


def test_frozen_batch_norm_equals_eval_batch_norm_and_loads_its_state_dict():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.01, 2.0)
    bn.eval()
    frozen = FrozenBatchNorm2d(5)
    # nn.BatchNorm2d state dicts carry num_batches_tracked; it must be ignored, even with strict=True
    assert "num_batches_tracked" in bn.state_dict()
    frozen.load_state_dict(bn.state_dict(), strict=True)
    x = torch.randn(2, 5, 4, 3)
    assert torch.allclose(frozen(x), bn(x), atol=1e-5)
    # nothing trainable, and the statistics do not change in training mode
    assert list(frozen.parameters()) == []
    frozen.train()
    frozen(x)
    assert torch.equal(frozen.running_mean, bn.running_mean)


def test_frozen_batch_norm_loads_torchvision_and_maskrcnn_benchmark_state_dicts():
    from torchvision.ops.misc import FrozenBatchNorm2d as TVFrozen

    tv = TVFrozen(4)
    with torch.no_grad():
        tv.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        tv.running_var.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0]))
    frozen = FrozenBatchNorm2d(4)
    frozen.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 4, 2, 2)
    assert torch.allclose(frozen(x), tv(x), atol=1e-6)
    # maskrcnn-benchmark (Detectron) checkpoints: weight/bias folded, running stats may be absent -> identity stats
    frozen = FrozenBatchNorm2d(2, eps=0.0)
    missing = frozen.load_state_dict({"weight": torch.tensor([2.0, 3.0]), "bias": torch.tensor([1.0, -1.0])},
                                     strict=False).missing_keys
    assert sorted(missing) == ["running_mean", "running_var"]
    assert torch.allclose(frozen(torch.ones(1, 2, 1, 1)).flatten(), torch.tensor([3.0, 2.0]))


def test_roi_align_aligned_flag_on_a_ramp():
    feature = torch.arange(8.0).repeat(8, 1)[None, None]  # value = x pixel index
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    # aligned=False samples x = 1 and 3 in pixel-index coordinates; aligned=True shifts by -0.5
    assert torch.allclose(ROIAlign((1, 1), 1.0, 2)(feature, rois), torch.tensor(2.0))
    assert torch.allclose(ROIAlign(1, 1.0, 2, aligned=True)(feature, rois), torch.tensor(1.5))
    assert roi_align(feature, rois, 2, 0.5, 2).shape == (1, 1, 2, 2)


def test_smooth_l1_loss_hand_values():
    x = torch.tensor([0.0, 0.05, 1.0, -2.0])
    target = torch.zeros(4)
    beta = 0.1
    per_element = torch.tensor([0.0, 0.5 * 0.05 ** 2 / beta, 1.0 - 0.05, 2.0 - 0.05])
    assert torch.allclose(smooth_l1_loss(x, target, beta=beta, size_average=False), per_element.sum())
    assert torch.allclose(smooth_l1_loss(x, target, beta=beta), per_element.mean())


def test_prroi_pool_is_re_exported():
    assert PrRoIPool2D.__module__ == "maskrcnn_benchmark.layers.prroi_pool"
    assert callable(prroi_pool2d)
