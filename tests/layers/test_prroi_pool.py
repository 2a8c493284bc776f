"""Precise RoI Pooling: the compiled op against its plain-PyTorch reference, avg_pool2d, dense roi_align and gradcheck."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from maskrcnn_benchmark.layers.prroi_pool import PrRoIPool2D, prroi_pool2d, prroi_pool2d_reference

# (batch_index, x0, y0, x1, y1) in image coordinates for a map of 5 x 6 (H x W) at spatial_scale 0.5 or 1.
BOXES = {
    "inside": [0, 1.3, 0.7, 4.2, 3.9],
    "across_border": [1, -2.5, -1.5, 4.0, 9.5],
    "wholly_outside": [0, 8.0, 9.0, 12.0, 15.0],
    "sub_pixel": [1, 2.2, 2.4, 2.5, 2.6],
    "inverted": [0, 3.0, 2.0, 1.0, 1.0],
    "on_nodes": [1, 1.0, 1.0, 4.0, 3.0],
}
ZERO_SIZE = {
    "zero_width": [1, 2.0, 1.0, 2.0, 4.0],
    "zero_height": [0, 1.0, 2.5, 4.0, 2.5],
    "point": [0, 3.0, 3.0, 3.0, 3.0],
}


def _rois(names, table, dtype=torch.float64):
    return torch.tensor([table[name] for name in names], dtype=dtype)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
def test_forward_matches_reference_float32(spatial_scale):
    torch.manual_seed(0)
    features = torch.randn(2, 4, 5, 6)
    rois = torch.cat([_rois(BOXES, BOXES), _rois(ZERO_SIZE, ZERO_SIZE)]).float()
    ours = prroi_pool2d(features, rois, 3, 4, spatial_scale)
    reference = prroi_pool2d_reference(features.double(), rois.double(), 3, 4, spatial_scale)
    assert ours.shape == (len(rois), 4, 3, 4) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=0)


def test_forward_matches_reference_float64_with_realistic_map():
    torch.manual_seed(1)
    features = torch.rand(1, 3, 40, 50, dtype=torch.float64) * 10  # positive maps stress the summed-area table
    rois = torch.tensor([[0, 10.3, 20.1, 180.7, 150.2], [0, 100.0, 100.0, 101.0, 100.5], [0, -40, -30, 60, 70]],
                        dtype=torch.float64)
    ours = prroi_pool2d(features, rois, 7, 7, 0.25)
    torch.testing.assert_close(ours, prroi_pool2d_reference(features, rois, 7, 7, 0.25), atol=1e-8, rtol=1e-8)


def test_unit_bins_on_integer_aligned_rois_equal_avg_pool():
    torch.manual_seed(2)
    features = torch.randn(2, 3, 6, 8)
    expected = F.avg_pool2d(features, kernel_size=2, stride=1)  # [2, 3, 5, 7]
    whole = prroi_pool2d(features, torch.tensor([[1, 0.0, 0.0, 7.0, 5.0]]), 5, 7, 1.0)
    torch.testing.assert_close(whole[0], expected[1], atol=1e-5, rtol=0)
    # the same RoI in image coordinates of a stride-2 map, offset inside the map
    window = prroi_pool2d(features, torch.tensor([[0, 4.0, 2.0, 10.0, 8.0]]), 3, 3, 0.5)
    torch.testing.assert_close(window[0], expected[0, :, 1:4, 2:5], atol=1e-5, rtol=0)


def test_dense_roi_align_converges_to_it():
    torch.manual_seed(3)
    features = torch.randn(1, 2, 12, 14, dtype=torch.float64)
    rois = torch.tensor([[0, 1.3, 2.2, 11.6, 9.1], [0, 0.0, 0.0, 13.0, 11.0], [0, 4.4, 3.3, 7.9, 6.2]],
                        dtype=torch.float64)
    exact = prroi_pool2d(features, rois, 3, 3, 1.0)
    errors = [
        (roi_align(features, rois, (3, 3), 1.0, sampling_ratio=ratio, aligned=False) - exact).abs().max().item()
        for ratio in (4, 16, 64)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def _gradcheck_boxes(features, rois, pooled_h, pooled_w, spatial_scale, constant_rois=None):
    """gradcheck over features and the four box coordinates jointly (the batch index column is not a variable)."""
    batch_index = rois[:, :1]
    boxes = rois[:, 1:].clone().requires_grad_()

    def pool(features, boxes):
        all_rois = torch.cat([batch_index, boxes], dim=1)
        if constant_rois is not None:
            all_rois = torch.cat([all_rois, constant_rois])
        return prroi_pool2d(features, all_rois, pooled_h, pooled_w, spatial_scale)

    assert torch.autograd.gradcheck(pool, (features, boxes))


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
def test_gradcheck_features_and_rois_jointly(spatial_scale):
    torch.manual_seed(4)
    features = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # Zero-size boxes: their output is 0 by definition and jumps to the line mean for any positive size, so
    # finite differences in their coordinates are meaningless; they take part as constants (features gradient).
    _gradcheck_boxes(features, _rois(BOXES, BOXES), 2, 3, spatial_scale, constant_rois=_rois(ZERO_SIZE, ZERO_SIZE))


def _assert_gradients_match(ours, reference, inputs, upstream):
    """Gradients of `ours` and `reference` to `inputs` for the same upstream gradient agree to 1e-10; returns ours."""
    ours_grads = torch.autograd.grad(ours, inputs, upstream, retain_graph=True)
    reference_grads = torch.autograd.grad(reference, inputs, upstream, retain_graph=True)
    for mine, theirs in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, theirs, atol=1e-10, rtol=1e-10)
    return ours_grads


def test_gradients_match_reference_autograd():
    torch.manual_seed(5)
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = _rois(BOXES, BOXES).requires_grad_()
    ours = prroi_pool2d(features, rois, 3, 2, 0.5)
    reference = prroi_pool2d_reference(features, rois, 3, 2, 0.5)
    ours_grads = _assert_gradients_match(ours, reference, (features, rois), torch.randn_like(ours))
    assert torch.all(ours_grads[1][:, 0] == 0)  # the batch index gets no gradient


def test_channel_blocks_and_strided_upstream_gradients_match_reference():
    # 21 channels span two blocks of the CPU kernel, the second partly filled; the upstream gradient of a sum is
    # one value expanded (all strides 0) and a transposed one has strides out of order, neither copied.
    torch.manual_seed(10)
    features = torch.randn(2, 21, 7, 9, dtype=torch.float64, requires_grad=True)
    rois = _rois(BOXES, BOXES).requires_grad_()
    reference = prroi_pool2d_reference(features, rois, 3, 4, 0.5)
    ours = prroi_pool2d(features, rois, 3, 4, 0.5)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=1e-12)
    transposed = torch.randn(len(rois), 21, 4, 3, dtype=torch.float64).transpose(2, 3)
    for upstream in (torch.ones(()).expand_as(ours), transposed):
        _assert_gradients_match(ours, reference, (features, rois), upstream)


def test_zero_size_inverted_and_far_boxes_give_zero_and_finite_gradients():
    torch.manual_seed(6)
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.cat([_rois(ZERO_SIZE, ZERO_SIZE), _rois(["inverted"], BOXES),
                      torch.tensor([[1, 1e8, -1e8, 2e8, -5e7]], dtype=torch.float64)]).requires_grad_()
    out = prroi_pool2d(features, rois, 2, 2, 1.0)
    assert torch.equal(out, torch.zeros_like(out))
    grad_features, grad_rois = torch.autograd.grad(out.sum(), (features, rois))
    assert torch.equal(grad_features, torch.zeros_like(features))
    assert torch.equal(grad_rois, torch.zeros_like(rois))


def test_empty_rois_give_empty_output_and_zero_gradient():
    features = torch.randn(2, 3, 5, 6, requires_grad=True)
    rois = torch.zeros(0, 5, requires_grad=True)
    out = prroi_pool2d(features, rois, 7, 7, 0.25)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert rois.grad.shape == (0, 5)


def test_non_contiguous_inputs_match_contiguous():
    torch.manual_seed(7)
    features = torch.randn(2, 3, 6, 5).transpose(2, 3)  # [2, 3, 5, 6], not contiguous
    wide = torch.randn(len(BOXES), 7)
    wide[:, 1:6] = _rois(BOXES, BOXES).float()
    rois = wide[:, 1:6]  # rows with a stride of 7
    assert not features.is_contiguous() and not rois.is_contiguous()
    torch.testing.assert_close(prroi_pool2d(features, rois, 2, 3, 0.5),
                               prroi_pool2d(features.contiguous(), rois.contiguous(), 2, 3, 0.5))


def test_module_matches_functional_and_has_repr():
    torch.manual_seed(8)
    pool = PrRoIPool2D(3, 4, 0.5)
    assert repr(pool) == "PrRoIPool2D(pooled_height=3, pooled_width=4, spatial_scale=0.5)"
    features = torch.randn(2, 3, 5, 6)
    rois = _rois(BOXES, BOXES).float()
    torch.testing.assert_close(pool(features, rois), prroi_pool2d(features, rois, 3, 4, 0.5))
    with pytest.raises(ValueError, match="pooled_height"):
        PrRoIPool2D(0, 4, 0.5)


@pytest.mark.parametrize(
    "make_rois, error, message",
    [
        (lambda: torch.tensor([[2.0, 0, 0, 1, 1]]), RuntimeError, r"rois\[0, 0\] = 2 is not a batch index"),
        (lambda: torch.tensor([[0.0, 0, 0, 1, 1], [-1.0, 0, 0, 1, 1]]), RuntimeError, r"rois\[1, 0\] = -1"),
        (lambda: torch.tensor([[0.5, 0, 0, 1, 1]]), RuntimeError, r"rois\[0, 0\] = 0.5"),
        (lambda: torch.zeros(3, 4), ValueError, r"rois must be a Tensor\[K, 5\]"),
        (lambda: torch.zeros(3, 5, dtype=torch.float64), TypeError, "rois dtype torch.float64 differs"),
        (lambda: torch.zeros(3, 5, device="meta"), ValueError, "rois are on meta"),
        (lambda: torch.tensor([[0.0, 0, float("nan"), 1, 1]]), RuntimeError, r"rois\[0, 2\] = nan is not finite"),
        (lambda: torch.tensor([[0.0, 0, 0, float("inf"), 1]]), RuntimeError, r"rois\[0, 3\] = inf is not finite"),
    ],
)
def test_bad_rois_get_an_error_naming_them(make_rois, error, message):
    features = torch.randn(2, 3, 5, 6)
    with pytest.raises(error, match=message):
        prroi_pool2d(features, make_rois(), 2, 2, 1.0)


def test_extension_reports_what_was_built():
    from maskrcnn_benchmark import _C

    assert isinstance(_C.has_cuda(), bool) and _C.has_cuda() == _C.with_cuda


requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU to run the CUDA kernel on")


@requires_gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_cuda_matches_cpu(dtype, tolerance):
    from maskrcnn_benchmark import _C

    assert _C.has_cuda(), "a GPU is present but maskrcnn_benchmark._C was built without CUDA"
    torch.manual_seed(9)
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    rois = torch.cat([_rois(BOXES, BOXES), _rois(ZERO_SIZE, ZERO_SIZE)])
    upstream = torch.randn(len(rois), 3, 3, 4, dtype=torch.float64)
    results = []
    for device, kind in (("cpu", torch.float64), ("cuda", dtype)):
        f = features.to(device, kind).requires_grad_()
        r = rois.to(device, kind).requires_grad_()
        out = prroi_pool2d(f, r, 3, 4, 0.5)
        out.backward(upstream.to(device, kind))
        results.append([t.detach().double().cpu() for t in (out, f.grad, r.grad)])
    for cpu_value, cuda_value in zip(*results):
        scale = max(cpu_value.abs().max().item(), 1.0)
        torch.testing.assert_close(cuda_value, cpu_value, atol=tolerance * scale, rtol=tolerance)


@requires_gpu
def test_cuda_gradcheck_and_empty_rois():
    features = torch.randn(2, 2, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    _gradcheck_boxes(features, _rois(BOXES, BOXES).cuda(), 2, 3, 0.5)
    assert prroi_pool2d(features, torch.zeros(0, 5, dtype=torch.float64, device="cuda"), 2, 2, 1.0).shape == (0, 2, 2, 2)
