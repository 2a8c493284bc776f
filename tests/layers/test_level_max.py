"""The compiled maximum over FPN levels (csrc/level_max.h; the discriminators' MODEL.GAN.FEATURE_FUSION "max"):
its CPU kernel, and its CUDA kernels run on the CPU (csrc/cuda/level_max_cuda.cu built for the host through
tests/layers/cuda_host_shim.h), against the plain PyTorch reference (a chain of torch.maximum, and
_MaxOverLevels for the gradient): values, the source level of every element (ties, NaN, infinities), the routed
gradients bitwise, gradcheck, the refusal of bad input, and the dispatch of max_over_levels."""
import functools

import pytest
import torch

from maskrcnn_benchmark import _C
from maskrcnn_benchmark.modeling.discriminators import feature_pooling
from maskrcnn_benchmark.modeling.discriminators.feature_pooling import max_over_levels, max_over_levels_torch


def _reference_source(levels):
    """The source level of each element as the reference computes it: the last level at which the chain's running
    maximum changed (`maximum(a, b) != a`, true for NaN)."""
    fused = levels[0]
    source = torch.zeros(fused.shape, dtype=torch.uint8)
    for index, level in enumerate(levels[1:], 1):
        larger = torch.maximum(fused, level)
        source[larger != fused] = index
        fused = larger
    return source


def _levels_with_edge_cases(num_levels, shape, dtype, seed):
    """Random levels with exact ties across levels, +-inf and NaN sprinkled in, and low-precision-like repeats."""
    generator = torch.Generator().manual_seed(seed)
    levels = [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for _ in range(num_levels)]
    flat = [level.view(-1) for level in levels]
    count = flat[0].numel()
    for level in flat[1:]:
        tie = torch.randint(0, count, (count // 7,), generator=generator)
        level[tie] = flat[0][tie]  # ties with level 0
    tie = torch.randint(0, count, (count // 11,), generator=generator)
    flat[-1][tie] = flat[-2][tie]  # ties between the last two levels
    for value, step in ((float("inf"), 13), (float("-inf"), 17), (float("nan"), 19)):
        where = torch.randint(0, count, (count // step,), generator=generator)
        flat[int(torch.randint(0, num_levels, (1,), generator=generator))][where] = value
    return levels


def _assert_same_values(ours, reference):
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    assert torch.equal(torch.isnan(ours), torch.isnan(reference)), "NaN elements differ"
    keep = ~torch.isnan(reference)
    assert torch.equal(ours[keep], reference[keep])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_levels", [2, 4, 5])
def test_cpu_kernel_gives_the_chain_s_maximum_and_source_level(dtype, num_levels):
    levels = _levels_with_edge_cases(num_levels, (6, 5, 7, 9), dtype, seed=num_levels)
    value, source = _C.level_max_forward(levels)
    _assert_same_values(value, functools.reduce(torch.maximum, levels))
    assert source.dtype == torch.uint8
    assert torch.equal(source, _reference_source(levels))
    assert torch.isnan(value).any() and torch.isinf(value).any()  # the edge cases are in there


def test_cpu_kernel_routes_the_gradient_bitwise_as_the_reference_for_any_levels_needing_it():
    levels = [level.requires_grad_() for level in _levels_with_edge_cases(4, (3, 4, 6, 6), torch.float32, seed=1)]
    grad = torch.randn(levels[0].shape)
    reference = torch.autograd.grad(feature_pooling._MaxOverLevels.apply(*levels), levels, grad)
    _, source = _C.level_max_forward([level.detach() for level in levels])
    for needs in ([True] * 4, [False, True, False, True], [True, False, False, False]):
        ours = _C.level_max_backward(grad, source, needs)
        for index, need in enumerate(needs):
            if need:
                assert torch.equal(ours[index], reference[index]), "level {}".format(index)
            else:
                assert ours[index].numel() == 0


def test_compiled_max_over_levels_passes_gradcheck_and_keeps_the_first_level_of_a_tie():
    torch.manual_seed(0)
    levels = [torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    out = max_over_levels(levels)
    assert type(out.grad_fn).__name__ == "_CompiledMaxOverLevelsBackward"
    assert torch.autograd.gradcheck(lambda *x: max_over_levels(list(x)), levels)
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 5.0, 3.0], requires_grad=True)
    c = torch.tensor([0.0, 5.0, 3.0], requires_grad=True)
    max_over_levels([a, b, c]).sum().backward()
    assert torch.equal(a.grad, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(b.grad, torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(c.grad, torch.zeros(3))


def test_compiled_op_reads_any_memory_layout_and_empty_levels():
    torch.manual_seed(1)
    levels = [torch.randn(3, 8, 5, 5) for _ in range(3)]
    reference = functools.reduce(torch.maximum, levels)
    strided = [levels[0].contiguous(memory_format=torch.channels_last), levels[1].transpose(2, 3).contiguous()
               .transpose(2, 3), levels[2]]
    assert torch.equal(_C.level_max_forward(strided)[0], reference)
    value, source = _C.level_max_forward([torch.zeros(0, 8, 5, 5)] * 4)
    assert value.shape == (0, 8, 5, 5) and source.shape == (0, 8, 5, 5)
    assert [g.shape for g in _C.level_max_backward(value, source, [True] * 4)] == [(0, 8, 5, 5)] * 4


def test_compiled_op_refuses_levels_it_cannot_fold_naming_the_level():
    a = torch.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"levels\[2\] has shape \[2, 4\] but levels\[0\] has shape \[2, 3\]"):
        _C.level_max_forward([a, a, torch.zeros(2, 4)])
    with pytest.raises(RuntimeError, match=r"levels\[1\] is Double but levels\[0\] is Float"):
        _C.level_max_forward([a, a.double()])
    with pytest.raises(RuntimeError, match="float32 or float64, got Long"):
        _C.level_max_forward([a.long(), a.long()])
    with pytest.raises(RuntimeError, match="takes 1 to 16 levels, got 17"):
        _C.level_max_forward([a] * 17)
    with pytest.raises(RuntimeError, match="source must be uint8"):
        _C.level_max_backward(a, a, [True])


def test_max_over_levels_uses_the_compiled_op_where_it_applies_and_the_reference_elsewhere():
    float32 = [torch.randn(2, 3, requires_grad=True) for _ in range(4)]
    assert type(max_over_levels(float32).grad_fn).__name__ == "_CompiledMaxOverLevelsBackward"
    half = [level.detach().half().requires_grad_() for level in float32]
    assert type(max_over_levels(half).grad_fn).__name__ == "_MaxOverLevelsBackward"  # no float16 kernel
    assert torch.equal(max_over_levels(half), max_over_levels_torch(half))
    many = [torch.randn(2, 3) for _ in range(17)]
    assert torch.equal(max_over_levels(many), max_over_levels_torch(many))
    assert max_over_levels(float32[:1]) is float32[0]


@pytest.fixture(scope="module")
def cuda_on_host(build_cuda_on_host):
    """The launchers of level_max_cuda.cu (forward, backward), built for the host, on CPU tensors."""
    return build_cuda_on_host("level_max_cuda_on_host", "level_max_cuda.cu", {
        "forward": "maskrcnn_benchmark::level_max_forward_cuda",
        "backward": "maskrcnn_benchmark::level_max_backward_cuda"})


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_kernels_match_the_cpu_kernel_bitwise(cuda_on_host, dtype):
    levels = _levels_with_edge_cases(4, (5, 3, 7, 8), dtype, seed=3)
    assert levels[0].numel() > 3 * 256  # more elements than threads: the grid-stride loop runs
    value, source = cuda_on_host.forward(levels)
    cpu_value, cpu_source = _C.level_max_forward(levels)
    _assert_same_values(value, cpu_value)
    assert torch.equal(source, cpu_source)
    grad = torch.randn(value.shape, dtype=dtype)
    needs = [True, False, True, True]
    for ours, cpu, need in zip(cuda_on_host.backward(grad, source, needs), _C.level_max_backward(grad, source, needs),
                               needs):
        assert torch.equal(ours, cpu) and (ours.numel() > 0) == need
    empty_value, empty_source = cuda_on_host.forward([torch.zeros(0, 3, dtype=dtype)] * 2)
    assert empty_value.shape == (0, 3) and empty_source.dtype == torch.uint8


def test_a_compiled_op_that_disagrees_or_fails_is_replaced_by_plain_pytorch_with_a_warning(monkeypatch):
    levels = [torch.randn(2, 3, requires_grad=True) for _ in range(3)]

    def wrong(levels):
        return levels[0].clone(), torch.zeros(levels[0].shape, dtype=torch.uint8)

    def broken(levels):
        raise RuntimeError("no kernel image is available for execution on the device")

    for replacement, reason in ((wrong, "it disagrees with the torch one by"),
                                (broken, r"it failed \(RuntimeError: no kernel image")):
        monkeypatch.setattr(feature_pooling, "_verified_devices", {})
        monkeypatch.setattr(_C, "level_max_forward", replacement)
        with pytest.warns(UserWarning, match=r"not used on cpu: " + reason):
            fused = max_over_levels(levels)
        assert type(fused.grad_fn).__name__ == "_MaxOverLevelsBackward"
        assert torch.equal(fused, functools.reduce(torch.maximum, levels))
    monkeypatch.undo()
    assert feature_pooling.compare_level_max_implementations("cpu") == 0.0
