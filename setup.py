"""Build and install maskrcnn_benchmark with its compiled extension ``maskrcnn_benchmark._C``.

The CPU kernels in ``csrc/cpu`` are always built. The CUDA kernels in ``csrc/cuda`` are built
as well when torch is a CUDA build and a CUDA toolkit (nvcc) is found, or when FORCE_CUDA=1;
FORCE_CUDA=0 builds the CPU kernels only.
"""
import glob
import importlib.util
import os

from setuptools import find_packages, setup


def _load_cuda_toolkit_helpers():
    """maskrcnn_benchmark/utils/cuda_toolkit.py, loaded by path: the package is not importable before it is built."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "maskrcnn_benchmark", "utils", "cuda_toolkit.py")
    spec = importlib.util.spec_from_file_location("_maskrcnn_benchmark_cuda_toolkit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_toolkit = _load_cuda_toolkit_helpers()
_cuda_home = _toolkit.cuda_home
_nvidia_wheel_includes = _toolkit.nvidia_wheel_includes


# torch.utils.cpp_extension fixes its CUDA_HOME when first imported: name the real root before that.
if _cuda_home() is not None:
    os.environ["CUDA_HOME"] = _cuda_home()

import torch  # noqa: E402
import torch.utils.cpp_extension as cpp_extension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _want_cuda():
    forced = os.environ.get("FORCE_CUDA")
    if forced is not None:
        return forced == "1"
    return torch.version.cuda is not None and _cuda_home() is not None


def get_extensions():
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    cxx_flags = ["-O3", "-fopenmp"]
    define_macros = []
    extra_link_args = ["-fopenmp"]
    extension = CppExtension
    extra_compile_args = {"cxx": cxx_flags}
    include_dirs = [os.path.abspath(CSRC)]
    if _want_cuda():
        cuda_home = _cuda_home()
        if cuda_home:
            os.environ["CUDA_HOME"] = cuda_home
            cpp_extension.CUDA_HOME = cuda_home
        # With no GPU to detect, torch would compile for every architecture it knows: take those this torch
        # ships kernels for, with PTX of the newest so that newer GPUs still get a kernel.
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = _toolkit.default_cuda_arch_list(
                torch.cuda.get_arch_list(), _toolkit.nvcc_architectures(cuda_home))
        extension = CUDAExtension
        sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
        define_macros += [("WITH_CUDA", None)]
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        include_dirs += _nvidia_wheel_includes()
    return [
        extension(
            "maskrcnn_benchmark._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]


setup(
    name="maskrcnn_benchmark",
    version="0.1.0",
    description="Mask R-CNN with adversarial box and mask discriminators (Le et al.), on current PyTorch",
    packages=find_packages(exclude=("configs", "tests", "tools")),
    python_requires=">=3.9",
    ext_modules=get_extensions(),
    # tools/export.py --format onnx and its check (requirements-export.txt lists the same)
    extras_require={"export": ["onnx>=1.16", "onnxruntime>=1.18"]},
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
)
