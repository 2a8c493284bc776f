"""layers.roi_align: torchvision's kernels on several CPU threads give bitwise torchvision's values and gradients."""
import importlib
import multiprocessing

import pytest
import torch
import torchvision

from maskrcnn_benchmark.layers.roi_align import ROIAlign, roi_align

# the module (maskrcnn_benchmark.layers exports the function under the same name)
roi_align_module = importlib.import_module("maskrcnn_benchmark.layers.roi_align")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _inputs(dtype=torch.float32, rois=300, channels=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, 50, 70, generator=g, dtype=dtype)
    xy = torch.rand(rois, 2, generator=g, dtype=dtype) * torch.tensor([250.0, 180.0], dtype=dtype)
    wh = torch.rand(rois, 2, generator=g, dtype=dtype) * 60 + 0.5
    batch = torch.randint(0, 2, (rois, 1), generator=g).to(dtype)
    return x, torch.cat([batch, xy, xy + wh], dim=1)


def _value_and_grad(pool, x, rois, grad_output=None):
    x = x.detach().clone().requires_grad_(True)
    out = pool(x, rois)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grad, = torch.autograd.grad(out, x, grad_output)
    return out, grad, grad_output


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sliced_roi_align_is_bitwise_torchvision(two_threads, aligned, sampling_ratio, dtype):
    x, rois = _inputs(dtype)
    ours, ours_grad, grad_output = _value_and_grad(
        lambda f, r: roi_align(f, r, 7, 0.25, sampling_ratio, aligned), x, rois)
    assert type(ours.grad_fn).__name__ == "_SlicedRoIAlignBackward"  # the threaded path ran
    ref, ref_grad, _ = _value_and_grad(
        lambda f, r: torchvision.ops.roi_align(f, r, (7, 7), 0.25, sampling_ratio, aligned), x, rois, grad_output)
    assert torch.equal(ours, ref)
    assert torch.equal(ours_grad, ref_grad)


def test_sliced_roi_align_takes_channels_last_maps_and_odd_slices(two_threads):
    # channels-last maps (MODEL.CHANNELS_LAST) and RoI / channel counts that do not split evenly
    x, rois = _inputs(rois=301, channels=67)
    x_last = x.contiguous(memory_format=torch.channels_last)
    ours, ours_grad, grad_output = _value_and_grad(lambda f, r: roi_align(f, r, (5, 3), 0.25, 2), x_last, rois)
    ref, ref_grad, _ = _value_and_grad(lambda f, r: torchvision.ops.roi_align(f, r, (5, 3), 0.25, 2), x, rois,
                                       grad_output)
    assert ours.shape == (301, 67, 5, 3)
    assert torch.equal(ours, ref) and torch.equal(ours_grad, ref_grad)


def test_sliced_roi_align_gradcheck(two_threads, monkeypatch):
    monkeypatch.setattr(roi_align_module, "MIN_PARALLEL_ELEMENTS", 0)
    x = torch.randn(1, 3, 8, 9, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.3, 0.7, 6.1, 5.2], [0, 0.2, 2.4, 8.6, 7.9], [0, 3.1, 3.3, 4.9, 4.6]],
                        dtype=torch.float64)
    assert type(roi_align(x, rois, 2, 1.0, 2).grad_fn).__name__ == "_SlicedRoIAlignBackward"
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 1.0, 2), (x,))


def test_one_thread_small_calls_and_autocast_use_torchvision_as_it_is(two_threads):
    x, rois = _inputs()
    x.requires_grad_(True)
    small = roi_align(x, rois[:2], 2, 0.25, 2)  # 2 x 64 x 2 x 2 outputs: not worth two threads
    assert type(small.grad_fn).__name__ != "_SlicedRoIAlignBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(roi_align(x, rois, 7, 0.25, 2).grad_fn).__name__ != "_SlicedRoIAlignBackward"
    torch.set_num_threads(1)
    assert type(roi_align(x, rois, 7, 0.25, 2).grad_fn).__name__ != "_SlicedRoIAlignBackward"


def test_empty_rois_and_module_form(two_threads):
    x, rois = _inputs()
    assert roi_align(x, rois[:0], 7, 0.25, 2).shape == (0, 64, 7, 7)
    module = ROIAlign((7, 7), 0.25, 2)
    assert torch.equal(module(x, rois), torchvision.ops.roi_align(x, rois, (7, 7), 0.25, 2))


def _pool_in_child(queue):
    # One OpenMP thread: libgomp's pool does not survive a fork, whoever calls it (DataLoader workers run with one).
    # The slices still go to two Python threads, which must be the child's own.
    torch.set_num_threads(1)
    x, rois = _inputs(seed=3)
    out = roi_align_module._SlicedRoIAlign.apply(x, rois, (7, 7), 0.25, 2, False, 2)
    queue.put(out.numpy())


def test_forked_child_gets_its_own_threads(two_threads):
    # The parent's pool exists before the fork, as when a DataLoader forks its workers.
    x, rois = _inputs(seed=3)
    expected = roi_align(x, rois, 7, 0.25, 2)
    assert roi_align_module._pool["pid"] is not None
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pool_in_child, args=(queue,))
    child.start()
    try:
        # read before join: the child exits only once its result has gone through the pipe
        result = queue.get(timeout=60)
    except Exception:
        child.kill()
        pytest.fail("roi_align hung or failed in a forked child: it used the parent's thread pool")
    child.join(timeout=10)
    assert child.exitcode == 0
    assert torch.equal(torch.from_numpy(result), expected)
