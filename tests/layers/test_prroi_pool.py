"""Precise RoI Pooling: the compiled op and the torch implementation against the plain-PyTorch reference,
avg_pool2d, dense roi_align and gradcheck; input checks; the "auto" choice between them."""
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from maskrcnn_benchmark.layers import prroi_pool as prroi_module
from maskrcnn_benchmark.layers.prroi_pool import (
    PrRoIPool2D,
    compare_implementations,
    prroi_pool2d,
    prroi_pool2d_reference,
    prroi_pool2d_torch,
)

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
    assert repr(pool) == "PrRoIPool2D(pooled_height=3, pooled_width=4, spatial_scale=0.5, impl='auto')"
    features = torch.randn(2, 3, 5, 6)
    rois = _rois(BOXES, BOXES).float()
    torch.testing.assert_close(pool(features, rois), prroi_pool2d(features, rois, 3, 4, 0.5))
    with pytest.raises(ValueError, match="pooled_height"):
        PrRoIPool2D(0, 4, 0.5)
    with pytest.raises(ValueError, match="impl 'cuda' is unknown"):
        PrRoIPool2D(3, 4, 0.5, impl="cuda")


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
@pytest.mark.parametrize("impl", ["compiled", "torch"])
def test_bad_rois_get_an_error_naming_them(make_rois, error, message, impl):
    features = torch.randn(2, 3, 5, 6)
    with pytest.raises(error, match=message):
        prroi_pool2d(features, make_rois(), 2, 2, 1.0, impl=impl)


@pytest.mark.parametrize("bad", [[0, 0, 0, 1, 1, 2.5, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 0, float("inf"), 1, 1]])
def test_both_implementations_refuse_bad_rois_with_the_same_message(bad):
    features, rois = torch.randn(2, 3, 5, 6), torch.tensor(bad).view(2, 5)
    messages = []
    for impl in ("compiled", "torch"):
        with pytest.raises(RuntimeError) as caught:
            prroi_pool2d(features, rois, 2, 2, 1.0, impl=impl)
        messages.append(str(caught.value).splitlines()[0])
    assert messages[0] == messages[1] and messages[0].startswith("prroi_pool: rois[1, ")


def test_extension_reports_what_was_built():
    """_C.has_cuda() says whether the CUDA kernels are in the library: check it against the library's contents."""
    from maskrcnn_benchmark import _C

    with open(_C.__file__, "rb") as library:
        binary = library.read()
    has_cuda_kernels = b"prroi_pool_forward_cuda" in binary and b"prroi_pool_backward_cuda" in binary  # symbols
    links_cuda = b"libc10_cuda.so" in binary  # a DT_NEEDED entry of a CUDAExtension build
    assert b"prroi_pool_forward_cpu" in binary, "not the library the test reads: it has no CPU kernel symbol"
    assert _C.has_cuda() is has_cuda_kernels is links_cuda, (
        "{}: has_cuda() is {} but CUDA kernel symbols present: {}, links libc10_cuda: {}".format(
            _C.__file__, _C.has_cuda(), has_cuda_kernels, links_cuda))
    assert _C.with_cuda is _C.has_cuda()
    if torch.version.cuda is None:  # setup.py cannot compile the CUDA kernels against a CPU-only torch
        assert not _C.has_cuda()
    forced = os.environ.get("FORCE_CUDA")
    if forced in ("0", "1"):  # tests run in the environment of the build: FORCE_CUDA decided what was compiled
        assert _C.has_cuda() == (forced == "1"), "built with other FORCE_CUDA than {}: rebuild".format(forced)


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
    empty = torch.zeros(0, 5, dtype=torch.float64, device="cuda")
    assert prroi_pool2d(features, empty, 2, 2, 1.0).shape == (0, 2, 2, 2)


def _random_rois(num_rois, batch_size, height, width, scale, generator, dtype=torch.float64):
    """Boxes of sides log-uniform in [0.05, 30] map cells, centres across and beyond the map, in image units."""
    centre = (torch.rand(num_rois, 2, generator=generator, dtype=dtype) * 1.6 - 0.3) * torch.tensor(
        [width, height], dtype=dtype)
    side = torch.exp(torch.empty(num_rois, 2, dtype=dtype).uniform_(-3, 3.4, generator=generator))
    batch_index = torch.randint(0, batch_size, (num_rois, 1), generator=generator).to(dtype)
    return torch.cat([batch_index, (centre - side / 2) / scale, (centre + side / 2) / scale], dim=1)


@pytest.mark.parametrize("chunk_elements", [1 << 23, 500])  # one chunk; windows split into many chunks
def test_torch_implementation_equals_reference_in_float64(monkeypatch, chunk_elements):
    monkeypatch.setattr(prroi_module, "_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(11)
    features = torch.randn(2, 6, 9, 13, dtype=torch.float64, generator=generator, requires_grad=True)
    rois = torch.cat([_random_rois(30, 2, 9, 13, 0.5, generator), _rois(BOXES, BOXES), _rois(ZERO_SIZE, ZERO_SIZE)])
    rois.requires_grad_()
    ours = prroi_pool2d(features, rois, 3, 4, 0.5, impl="torch")
    reference = prroi_pool2d_reference(features, rois, 3, 4, 0.5)
    torch.testing.assert_close(ours, reference, atol=1e-13, rtol=1e-12)
    _assert_gradients_match(ours, reference, (features, rois), torch.randn_like(ours))


def test_torch_implementation_gradcheck_features_and_boxes():
    torch.manual_seed(12)
    features = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = _rois(BOXES, BOXES)
    batch_index, coordinates = boxes[:, :1], boxes[:, 1:].clone().requires_grad_()

    def pool(features, coordinates):
        return prroi_pool2d_torch(features, torch.cat([batch_index, coordinates], dim=1), 2, 3, 0.5)

    assert torch.autograd.gradcheck(pool, (features, coordinates))


def test_torch_implementation_with_no_rois_and_a_one_pixel_map():
    features = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    empty = prroi_pool2d_torch(features, torch.zeros(0, 5, dtype=torch.float64), 2, 2, 1.0)
    assert empty.shape == (0, 3, 2, 2)
    empty.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    rois = torch.tensor([[1, -0.5, -0.7, 0.6, 0.4], [0, 0.1, 0.1, 0.2, 0.15]], dtype=torch.float64)
    torch.testing.assert_close(prroi_pool2d_torch(features, rois, 2, 3, 1.0),
                               prroi_pool2d_reference(features, rois, 2, 3, 1.0), atol=1e-14, rtol=0)


@pytest.mark.parametrize("impl", ["compiled", "torch"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_features_take_float32_rois_and_give_them_a_float32_gradient(impl, dtype):
    generator = torch.Generator().manual_seed(13)
    features = torch.randn(2, 3, 9, 13, dtype=torch.float64, generator=generator)
    rois = _random_rois(10, 2, 9, 13, 0.5, generator)
    low = features.to(dtype).requires_grad_()
    boxes = rois.float().requires_grad_()
    out = prroi_pool2d(low, boxes, 2, 3, 0.5, impl=impl)
    out.float().sum().backward()
    assert out.dtype == dtype and low.grad.dtype == dtype and boxes.grad.dtype == torch.float32
    exact_features, exact_rois = low.detach().double().requires_grad_(), boxes.detach().double().requires_grad_()
    exact = prroi_pool2d_reference(exact_features, exact_rois, 2, 3, 0.5)
    exact.sum().backward()
    tolerance = 1e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(out.double(), exact, atol=tolerance * 4, rtol=tolerance)
    torch.testing.assert_close(boxes.grad.double(), exact_rois.grad, atol=0.05 * exact_rois.grad.abs().max().item(),
                               rtol=0.05)


def test_autocast_half_features_with_float32_rois():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    rois = torch.tensor([[0, 1.0, 1.5, 6.0, 5.0]], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(torch.randn(1, 3, 8, 8))
        assert features.dtype == torch.bfloat16
        out = prroi_pool2d(features, rois, 2, 2, 1.0)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and rois.grad.dtype == torch.float32 and torch.isfinite(rois.grad).all()


def test_cpu_float32_rois_gradient_matches_float64_to_1e_6():
    generator = torch.Generator().manual_seed(14)
    features = torch.randn(2, 40, 30, 40, generator=generator).double()  # float32 values, held in float64
    rois = _random_rois(120, 2, 30, 40, 0.25, generator).float().double()
    upstream = torch.randn(120, 40, 7, 7, generator=generator).double()
    grads = []
    for dtype in (torch.float64, torch.float32):
        boxes = rois.detach().to(dtype).requires_grad_()
        prroi_pool2d(features.to(dtype), boxes, 7, 7, 0.25, impl="compiled").backward(upstream.to(dtype))
        grads.append(boxes.grad.double()[:, 1:])
    exact, single = grads
    scale = exact.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)  # per box: the coordinates' gradients mix
    assert ((single - exact).abs() / scale).max() < 1e-6


def test_compiled_and_torch_agree_on_the_self_check_input():
    assert compare_implementations("cpu") < 1e-12
    assert compare_implementations("cpu", torch.float32) < 1e-4


@pytest.fixture
def fresh_auto_choice(monkeypatch):
    monkeypatch.setattr(prroi_module.AUTO_CHECK, "verdicts", {})


def test_auto_checks_once_per_device_and_uses_the_compiled_op_when_it_agrees(fresh_auto_choice, monkeypatch):
    calls = []
    real = prroi_module.compare_implementations
    monkeypatch.setattr(prroi_module, "compare_implementations", lambda *a, **k: calls.append(a) or real(*a, **k))
    features, rois = torch.randn(1, 2, 5, 6), torch.tensor([[0, 1.0, 1.0, 4.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            prroi_pool2d(features, rois, 2, 2, 1.0)
    assert len(calls) == 1 and prroi_module.AUTO_CHECK.verdicts == {"cpu": True}


def test_auto_falls_back_to_torch_with_a_warning_when_the_compiled_op_disagrees(fresh_auto_choice, monkeypatch):
    real = prroi_module._prroi_pool2d_compiled

    def off_by_a_bit(features, rois, *args):
        return real(features, rois, *args) * (1 + 1e-3)

    monkeypatch.setattr(prroi_module, "_prroi_pool2d_compiled", off_by_a_bit)
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    rois = _rois(BOXES, BOXES)
    with pytest.warns(UserWarning, match=r"PrRoIPool \(MODEL.PRROI_POOL_IMPL 'auto'\): the compiled op disagrees "
                                         r"with the torch implementation on cpu \(max relative error [0-9.e-]+, "
                                         r"tolerance 1e-09"):
        out = prroi_pool2d(features, rois, 2, 3, 0.5)
    assert prroi_module.AUTO_CHECK.verdicts == {"cpu": False}
    torch.testing.assert_close(out, prroi_pool2d_torch(features, rois, 2, 3, 0.5), atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once: no second check, no second warning
        prroi_pool2d(features, rois, 2, 3, 0.5)


def test_auto_falls_back_to_torch_when_the_compiled_op_fails(fresh_auto_choice, monkeypatch):
    def no_kernel(*args):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(prroi_module, "_prroi_pool2d_compiled", no_kernel)
    with pytest.warns(UserWarning, match="failed its self-check on cpu .*no kernel image"):
        out = prroi_pool2d(torch.randn(1, 2, 5, 6), torch.tensor([[0, 1.0, 1.0, 4.0, 3.0]]), 2, 2, 1.0)
    assert out.shape == (1, 2, 2, 2)
