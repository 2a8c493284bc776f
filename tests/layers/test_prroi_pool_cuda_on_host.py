"""The CUDA kernels of Precise RoI Pooling, run on the CPU: csrc/cuda/prroi_pool_cuda.cu itself (not a copy) is
compiled with the host compiler through tests/layers/cuda_host_shim.h (tests/layers/conftest.py), which runs
every launch as host threads (256 per block, real barriers, atomicAdd as compare-and-swap), and compared with the
CPU kernel and the plain PyTorch reference: forward, features gradient and RoI gradient, on random and edge-case boxes.

The grid of the grid-stride kernels is capped at 3 blocks here (PRROI_MAX_BLOCKS), so threads also take the
stride loop. An index broken anywhere in the kernels (thread index to (roi, channel, bin), the bin maths, the
feature-gradient scatter, the RoI-gradient reduction) fails these tests. Needs only g++ and torch's headers.
"""
import pytest
import torch

from maskrcnn_benchmark.layers.prroi_pool import prroi_pool2d, prroi_pool2d_reference

pytestmark = pytest.mark.slow  # long: see docs/contributing.md, "The quick test loop"


@pytest.fixture(scope="module")
def cuda_on_host(build_cuda_on_host):
    """The launchers of prroi_pool_cuda.cu (forward, backward), built for the host, on CPU tensors."""
    return build_cuda_on_host("prroi_pool_cuda_on_host", "prroi_pool_cuda.cu", {
        "forward": "maskrcnn_benchmark::prroi_pool_forward_cuda",
        "backward": "maskrcnn_benchmark::prroi_pool_backward_cuda"})


def _random_rois(num_rois, batch_size, height, width, generator):
    """Boxes in image coordinates (spatial scale 0.5) of every kind: inside, across and beyond the border,
    smaller than a bin, on the nodes, inverted and zero-sized."""
    image_w, image_h = 2 * width, 2 * height
    centre = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64) * torch.tensor(
        [image_w * 1.6, image_h * 1.6], dtype=torch.float64) - torch.tensor([image_w * 0.3, image_h * 0.3])
    size = torch.exp(torch.empty(num_rois, 2, dtype=torch.float64).uniform_(-3, 3.5, generator=generator))
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    boxes[: num_rois // 8, :] = boxes[: num_rois // 8, :].round()  # on nodes
    boxes[num_rois // 8: num_rois // 6, 2:] = boxes[num_rois // 8: num_rois // 6, :2] - 1.0  # inverted
    boxes[num_rois // 6: num_rois // 5, 2] = boxes[num_rois // 6: num_rois // 5, 0]  # zero width
    batch_index = torch.randint(0, batch_size, (num_rois, 1), generator=generator).double()
    return torch.cat([batch_index, boxes], dim=1)


def _all_three(cuda_on_host, features, rois, pooled_h, pooled_w, scale, upstream):
    """(output, grad_features, grad_rois) of the host-built CUDA kernels, the CPU kernel and the reference."""
    results = {}
    host = cuda_on_host.forward(features, rois, pooled_h, pooled_w, scale)
    results["cuda_on_host"] = (host,) + tuple(
        cuda_on_host.backward(upstream.to(features.dtype), features, rois, pooled_h, pooled_w, scale, True, True))
    for name, op in (("cpu", prroi_pool2d), ("reference", prroi_pool2d_reference)):
        f = features.detach().double().requires_grad_()
        r = rois.detach().double().requires_grad_()
        out = op(f, r, pooled_h, pooled_w, scale)
        grads = torch.autograd.grad(out, (f, r), upstream.double(), allow_unused=True)
        results[name] = (out.detach(),) + tuple(g if g is not None else torch.zeros_like(t)
                                                for g, t in zip(grads, (f, r)))
    return results


def _assert_agree(results, atol, rtol=1e-9):
    for what, index in (("forward", 0), ("features gradient", 1), ("rois gradient", 2)):
        ours = results["cuda_on_host"][index].double()
        for other in ("cpu", "reference"):
            torch.testing.assert_close(ours, results[other][index], atol=atol, rtol=rtol,
                                       msg=lambda m: f"{what}: CUDA kernels (on host) vs {other}: {m}")


@pytest.mark.parametrize("channels, pooled", [(5, (3, 4)), (2, (7, 7)), (17, (1, 2))])
def test_cuda_kernels_match_cpu_and_reference_on_random_boxes(cuda_on_host, channels, pooled):
    generator = torch.Generator().manual_seed(channels)
    features = torch.randn(2, channels, 7, 9, generator=generator, dtype=torch.float64)
    rois = _random_rois(40, 2, 7, 9, generator)
    upstream = torch.randn(len(rois), channels, *pooled, generator=generator, dtype=torch.float64)
    assert len(rois) * channels * pooled[0] * pooled[1] > 3 * 256  # more bins than threads: the stride loop runs
    _assert_agree(_all_three(cuda_on_host, features, rois, *pooled, 0.5, upstream), atol=1e-11)


def test_cuda_kernels_on_a_one_pixel_map_and_boxes_far_outside(cuda_on_host):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(3, 4, 1, 1, generator=generator, dtype=torch.float64)
    rois = torch.tensor([[0, -0.5, -0.7, 0.6, 0.4], [2, -3.0, -3.0, 4.0, 2.0], [1, 0.1, 0.1, 0.2, 0.15],
                         [1, 5.0, 5.0, 9.0, 9.0], [2, -1e7, -1e7, 1e7, 1e7], [0, 0.0, 0.0, 0.0, 0.0]],
                        dtype=torch.float64)
    upstream = torch.randn(len(rois), 4, 2, 3, generator=generator, dtype=torch.float64)
    results = _all_three(cuda_on_host, features, rois, 2, 3, 1.0, upstream)
    _assert_agree(results, atol=1e-11)
    assert results["cuda_on_host"][0][1].abs().sum() > 0 and torch.all(results["cuda_on_host"][0][3] == 0)


def test_cuda_kernels_with_no_rois(cuda_on_host):
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    rois = torch.zeros(0, 5, dtype=torch.float64)
    out = cuda_on_host.forward(features, rois, 2, 2, 1.0)
    grad_features, grad_rois = cuda_on_host.backward(out, features, rois, 2, 2, 1.0, True, True)
    assert out.shape == (0, 3, 2, 2) and grad_rois.shape == (0, 5)
    assert torch.equal(grad_features, torch.zeros_like(features))


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-5), (torch.float16, 2e-2), (torch.bfloat16, 1.5e-1)])
def test_cuda_kernels_in_low_precision_take_float32_rois(cuda_on_host, dtype, atol):
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(2, 3, 6, 8, generator=generator, dtype=torch.float64)
    rois = _random_rois(12, 2, 6, 8, generator)
    upstream = torch.randn(len(rois), 3, 2, 2, generator=generator, dtype=torch.float64)
    out = cuda_on_host.forward(features.to(dtype), rois.float(), 2, 2, 0.5)
    grad_features, grad_rois = cuda_on_host.backward(upstream.to(dtype), features.to(dtype), rois.float(), 2, 2,
                                                     0.5, True, True)
    assert out.dtype == dtype and grad_features.dtype == dtype and grad_rois.dtype == torch.float32
    expected = _all_three(cuda_on_host, features, rois, 2, 2, 0.5, upstream)["reference"]
    scale = [max(t.abs().max().item(), 1.0) for t in expected]
    for index, ours in enumerate((out, grad_features, grad_rois)):
        torch.testing.assert_close(ours.double(), expected[index], atol=atol * scale[index], rtol=atol)


def test_device_assert_is_the_last_resort_for_rois_that_bypass_the_host_check(cuda_on_host):
    features = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 1.0, 4.0, 3.0], [2, 1.0, 1.0, 4.0, 3.0], [0.5, 1.0, 1.0, 4.0, 3.0],
                         [1, 1.0, float("nan"), 4.0, 3.0]], dtype=torch.float64)
    before = cuda_on_host.kernel_assert_failures()
    out = cuda_on_host.forward(features, rois, 2, 2, 1.0)  # the launcher itself does not check: the kernel must
    assert cuda_on_host.kernel_assert_failures() > before
    assert out[0].abs().sum() > 0 and torch.all(out[1:] == 0)  # invalid RoIs are not read from
