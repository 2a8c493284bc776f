"""BoxCoder against hand-computed deltas, round trip, clipping and differentiability."""
import math

import torch

from maskrcnn_benchmark.modeling.box_coder import BoxCoder


def test_encode_hand_value_with_plus_one_widths():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10x10, centre (5, 5)
    gt = torch.tensor([[5.0, 0.0, 14.0, 19.0]])  # 10x20, centre (10, 10)
    deltas = coder.encode(gt, proposals)
    assert torch.allclose(deltas, torch.tensor([[5.0, 5.0, 0.0, 5.0 * math.log(2.0)]]))
    assert torch.allclose(coder.decode(deltas, proposals), gt)


def test_round_trip_random_boxes_multiple_classes():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    proposals = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 50 + 1], dim=1)
    xy = torch.rand(50, 2, generator=g) * 100
    gt = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 50 + 1], dim=1)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        deltas = coder.encode(gt, proposals)
        assert torch.allclose(coder.decode(deltas, proposals), gt, atol=1e-3)
        # C groups of deltas decode independently: [N, 4 * C]
        decoded = coder.decode(torch.cat([deltas, torch.zeros_like(deltas)], dim=1), proposals)
        assert decoded.shape == (50, 8)
        assert torch.allclose(decoded[:, :4], gt, atol=1e-3)
        assert torch.allclose(decoded[:, 4:], proposals, atol=1e-4)


def test_decode_clips_large_log_scales():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    box = torch.tensor([[0.0, 0.0, 15.0, 15.0]])  # 16 wide: the clip caps the width at 1000
    decoded = coder.decode(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), box)
    width = decoded[0, 2] - decoded[0, 0] + 1
    assert torch.allclose(width, torch.tensor(1000.0))


def test_decode_is_differentiable_in_the_deltas():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    deltas = torch.zeros(3, 8, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [3.0, 4.0, 20.0, 7.0], [1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: coder.decode(d, boxes), (deltas,))
