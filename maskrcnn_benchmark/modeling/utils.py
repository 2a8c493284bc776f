"""Small tensor helpers shared by the heads."""
import torch


def cat(tensors, dim=0):
    """``torch.cat`` that returns a single tensor as is (no copy)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError("cat expects a list or tuple of tensors, got {}".format(type(tensors).__name__))
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


class NonFiniteTensorError(FloatingPointError):
    """A tensor the model computed holds NaN or inf, found where it first appears (e.g. the boxes decoded from
    the RPN's box regression) instead of later in an op that cannot say why.

    Attributes: ``name`` (str) what the tensor is; ``count``, ``total`` (int) its non-finite and all elements.
    The training loop turns it into a non-finite step with the iteration (SOLVER.SKIP_NONFINITE_STEPS).
    """

    def __init__(self, name, count, total):
        self.name, self.count, self.total = name, count, total
        super().__init__("{} of {} values of {} are NaN or inf".format(count, total, name))


def check_finite(tensor, name):
    """Raise NonFiniteTensorError naming ``name`` when ``tensor`` holds NaN or inf; return ``tensor``."""
    finite = torch.isfinite(tensor.detach())
    if not bool(finite.all()):
        raise NonFiniteTensorError(name, int((~finite).sum()), finite.numel())
    return tensor
