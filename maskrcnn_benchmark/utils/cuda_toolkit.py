"""Where the CUDA toolkit and the CUDA headers shipped with torch live, for building ``maskrcnn_benchmark._C``.

Used by setup.py (loaded by file path, before the package is installed) and by the CUDA build test, so both
compile against the same toolkit. Imports nothing but the standard library.
"""
import glob
import os
import shutil


def cuda_home():
    """The toolkit root: the folder whose bin holds nvcc and whose lib64 holds cudart, or None.

    An nvcc found on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc), whose parent folder is not the
    toolkit root, so candidates are checked for cudart rather than derived from PATH alone.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for candidate in candidates:
        if (
            candidate
            and os.path.isfile(os.path.join(candidate, "bin", "nvcc"))
            and glob.glob(os.path.join(candidate, "lib64", "libcudart.so*"))
        ):
            return candidate
    return None


def nvidia_wheel_includes():
    """Header folders (cusparse, cublas, ...) that ATen/cuda/CUDAContext.h needs, from torch's nvidia wheels.

    A minimal toolkit lacks them; CUDA builds of torch install them under site-packages/nvidia/*/include.
    """
    try:
        import nvidia  # noqa: F401 -- namespace package installed with CUDA builds of torch
    except ImportError:
        return []
    found = []
    for root in nvidia.__path__:
        found += sorted(glob.glob(os.path.join(root, "cu*", "include")))
        found += sorted(glob.glob(os.path.join(root, "*", "include")))
    return [path for path in dict.fromkeys(found) if os.path.isdir(path)]
