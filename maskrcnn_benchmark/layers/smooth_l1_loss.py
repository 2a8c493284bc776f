"""Smooth L1 (Huber-like) loss as maskrcnn-benchmark defines it."""
import torch


def smooth_l1_loss(input, target, beta=1.0 / 9, size_average=True):
    """Smooth L1 loss, elementwise l(d) = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta, d = input - target.

    Args:
        input, target: tensors of the same shape (e.g. [P, 4] box deltas).
        beta: switch point between the quadratic and linear parts (1/9 for RPN and box head).
        size_average: mean over all elements if True, else sum (the heads divide by the sampled count).
    Returns:
        scalar Tensor.
    """
    n = torch.abs(input - target)
    loss = torch.where(n < beta, 0.5 * n ** 2 / beta, n - 0.5 * beta)
    if size_average:
        return loss.mean()
    return loss.sum()
