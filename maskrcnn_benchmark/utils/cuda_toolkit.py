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


def nvcc_architectures(home=None):
    """Compute capabilities nvcc of the toolkit at `home` (default: cuda_home()) compiles for, e.g. ["7.5", "8.0",
    ..., "12.1"] from `nvcc --list-gpu-arch`; [] when nvcc is missing or too old to list them."""
    import re
    import subprocess

    home = home or cuda_home()
    if home is None:
        return []
    try:
        listed = subprocess.run([os.path.join(home, "bin", "nvcc"), "--list-gpu-arch"], capture_output=True,
                                text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = {(int(m.group(1)) // 10, int(m.group(1)) % 10) for m in re.finditer(r"compute_(\d+)\b", listed)}
    return [f"{major}.{minor}" for major, minor in sorted(found)]


def default_cuda_arch_list(torch_arches, nvcc_arches):
    """TORCH_CUDA_ARCH_LIST for a build with no GPU to detect.

    Machine code for every architecture that both this torch (``torch.cuda.get_arch_list()``, e.g. ["sm_80",
    "sm_90"]) and nvcc (:func:`nvcc_architectures`) support, plus PTX of the newest of them, which the driver
    compiles at load time for GPUs newer than the list (without it they fail with "no kernel image is available").
    Falls back to "8.0;9.0+PTX" when either list is empty.
    """
    from_torch = set()
    for arch in torch_arches:
        digits = arch.split("_")[-1]
        if arch.startswith("sm_") and digits.isdigit():
            from_torch.add((int(digits) // 10, int(digits) % 10))
    from_nvcc = {tuple(int(part) for part in arch.split(".")) for arch in nvcc_arches}
    common = sorted(from_torch & from_nvcc)
    if not common:
        return "8.0;9.0+PTX"
    names = [f"{major}.{minor}" for major, minor in common]
    return ";".join(names[:-1] + [names[-1] + "+PTX"])
