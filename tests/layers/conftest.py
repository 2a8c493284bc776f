"""Builds a CUDA source of csrc/cuda for the host: the .cu file itself (not a copy) is compiled with the host
compiler through cuda_host_shim.h, which runs every launch as host threads, so its kernels can be tested on the
CPU against the CPU kernels and the PyTorch references."""
import os
import shutil

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

HARNESS = """
#include <torch/extension.h>
#include "cuda_host_shim.h"
#include "{source}"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {{
{bindings}
  m.def("kernel_assert_failures", [] {{ return prroi_host::kernel_assert_failures.load(); }});
}}
"""


@pytest.fixture(scope="session")
def build_cuda_on_host(tmp_path_factory):
    """build(name, source, bindings) -> the module of csrc/cuda/<source> built for the host, with the pybind11
    ``m.def`` lines ``bindings`` (a dict {python name: C++ function}). The grid of the grid-stride kernels is
    capped at 3 blocks (PRROI_MAX_BLOCKS), so threads also take the stride loop. Needs only g++ and torch's
    headers."""

    def build(name, source, bindings):
        if shutil.which("g++") is None and shutil.which("c++") is None:
            pytest.skip("no C++ compiler (g++) to build the CUDA source for the host")
        from torch.utils import cpp_extension

        build_dir = tmp_path_factory.mktemp(name)
        harness = build_dir / "harness.cpp"
        harness.write_text(HARNESS.format(
            source=os.path.join(REPO, "csrc", "cuda", source),
            bindings="\n".join('  m.def("{}", &{});'.format(py, cpp) for py, cpp in bindings.items())))
        return cpp_extension.load(
            name=name,
            sources=[str(harness)],
            extra_include_paths=[HERE, os.path.join(REPO, "csrc")],
            extra_cflags=["-O1", "-DPRROI_MAX_BLOCKS=3"],
            extra_ldflags=["-lpthread"],
            build_directory=str(build_dir),
        )

    return build
