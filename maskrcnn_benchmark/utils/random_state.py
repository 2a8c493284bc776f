"""Random number generator states of python, numpy and torch, in a form checkpoints can hold.

Checkpoints are read with ``torch.load(weights_only=True)``, which accepts tensors, numbers, strings and plain
containers only: numpy's key array is therefore stored as a tensor.
"""
import random

import numpy as np
import torch


def get_rng_state():
    """This process's generator states.

    Returns:
        dict with "python" (random.getstate()), "numpy" (dict: key Tensor[624] int64, pos, has_gauss, gauss),
        "torch" (ByteTensor) and "cuda" (list of ByteTensor, one per visible device; empty without CUDA).
    """
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    """Restore the states returned by :func:`get_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise RuntimeError("The checkpoint holds CUDA generator states of {} devices but {} are visible; "
                               "resume with the same number of GPUs per process".format(len(state["cuda"]),
                                                                                      torch.cuda.device_count()))
        torch.cuda.set_rng_state_all(state["cuda"])
