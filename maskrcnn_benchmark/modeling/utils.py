"""Small tensor helpers shared by the heads."""
import torch


def cat(tensors, dim=0):
    """``torch.cat`` that returns a single tensor as is (no copy)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError("cat expects a list or tuple of tensors, got {}".format(type(tensors).__name__))
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)
