"""The CUDA kernel of Precise RoI Pooling compiles for the GPUs we ship for (sm_80, sm_90).

Runs wherever torch is a CUDA build and nvcc is present, GPU or not (CI has no GPU). It compiles
csrc/cuda/prroi_pool_cuda.cu into a temporary directory and loads the library, so a source that does
not compile, or references a symbol the CUDA build of torch does not export, fails here.
"""
import os

import pytest
import torch

from maskrcnn_benchmark.utils.cuda_toolkit import cuda_home, nvidia_wheel_includes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_SOURCE = os.path.join(REPO, "csrc", "cuda", "prroi_pool_cuda.cu")


@pytest.mark.skipif(torch.version.cuda is None, reason="torch is a CPU-only build: no CUDA headers to compile against")
@pytest.mark.skipif(cuda_home() is None, reason="no CUDA toolkit (nvcc) found in CUDA_HOME, CUDA_PATH, /usr/local/cuda or PATH")
def test_cuda_kernel_compiles_for_sm80_and_sm90(tmp_path, monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    # With no GPU to detect, torch would target every architecture it knows (and the toolkit root must be named).
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    monkeypatch.setenv("CUDA_HOME", cuda_home())
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cuda_home())  # fixed when torch first imported it
    cpp_extension.load(
        name="prroi_pool_cuda_build_check",
        sources=[CUDA_SOURCE],
        extra_include_paths=[os.path.join(REPO, "csrc")] + nvidia_wheel_includes(),
        extra_cuda_cflags=["-O3", "--expt-relaxed-constexpr", "-DWITH_CUDA"],
        build_directory=str(tmp_path),
        is_python_module=False,  # the .cu has no binding; load() still dlopens it, resolving every symbol
    )
    assert (tmp_path / "prroi_pool_cuda_build_check.so").is_file()
    with open(tmp_path / "build.ninja") as build_file:
        build_rules = build_file.read()
    for arch in ("80", "90"):
        assert f"arch=compute_{arch},code=sm_{arch}" in build_rules, f"not compiled for sm_{arch}"
