"""The CUDA kernels (Precise RoI Pooling) compile for the GPUs we ship for, with PTX for
newer ones.

Runs wherever torch is a CUDA build and nvcc is present, GPU or not (CI has no GPU). It compiles every
csrc/cuda/*.cu into a temporary directory and loads the library, so a source that does
not compile, or references a symbol the CUDA build of torch does not export, fails here. To keep it short it
builds sm_80 and the newest architecture of setup.py's default list (with its PTX), not the whole list.
"""
import glob
import os

import pytest
import torch

from maskrcnn_benchmark.utils.cuda_toolkit import (
    cuda_home,
    default_cuda_arch_list,
    nvcc_architectures,
    nvidia_wheel_includes,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUDA_SOURCES = sorted(glob.glob(os.path.join(REPO, "csrc", "cuda", "*.cu")))


def test_default_arch_list_has_machine_code_for_torchs_gpus_and_ptx_for_the_newest():
    assert default_cuda_arch_list(["sm_75", "sm_80", "sm_90", "sm_100", "sm_120"],
                                  ["7.5", "8.0", "9.0", "10.0", "12.0", "12.1"]) == "7.5;8.0;9.0;10.0;12.0+PTX"
    # an architecture nvcc no longer compiles (or torch does not ship) is left out
    assert default_cuda_arch_list(["sm_50", "sm_80", "sm_90"], ["7.5", "8.0", "8.6"]) == "8.0+PTX"
    assert default_cuda_arch_list([], []) == "8.0;9.0+PTX"


@pytest.mark.slow
@pytest.mark.skipif(torch.version.cuda is None, reason="torch is a CPU-only build: no CUDA headers to compile against")
@pytest.mark.skipif(cuda_home() is None,
                    reason="no CUDA toolkit (nvcc) found in CUDA_HOME, CUDA_PATH, /usr/local/cuda or PATH")
def test_cuda_kernel_compiles_for_sm80_and_the_newest_arch_with_ptx(tmp_path, monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    newest = default_cuda_arch_list(torch.cuda.get_arch_list(), nvcc_architectures()).split(";")[-1]
    assert newest.endswith("+PTX")
    # With no GPU to detect, torch would target every architecture it knows (and the toolkit root must be named).
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;" + newest)
    monkeypatch.setenv("CUDA_HOME", cuda_home())
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cuda_home())  # fixed when torch first imported it
    cpp_extension.load(
        name="prroi_pool_cuda_build_check",
        sources=CUDA_SOURCES,
        extra_include_paths=[os.path.join(REPO, "csrc")] + nvidia_wheel_includes(),
        extra_cuda_cflags=["-O3", "--expt-relaxed-constexpr", "-DWITH_CUDA"],
        build_directory=str(tmp_path),
        is_python_module=False,  # the .cu has no binding; load() still dlopens it, resolving every symbol
    )
    assert (tmp_path / "prroi_pool_cuda_build_check.so").is_file()
    with open(tmp_path / "build.ninja") as build_file:
        build_rules = build_file.read()
    newest_digits = newest[: -len("+PTX")].replace(".", "")
    for arch in ("80", newest_digits):
        assert f"arch=compute_{arch},code=sm_{arch}" in build_rules, f"not compiled for sm_{arch}"
    assert f"arch=compute_{newest_digits},code=compute_{newest_digits}" in build_rules, "no PTX for the newest"
