"""Sigmoid focal loss with maskrcnn-benchmark's integer-label interface, on torchvision's implementation."""
import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss as _tv_sigmoid_focal_loss


def sigmoid_focal_loss(logits, targets, gamma=2.0, alpha=0.25):
    """Summed focal loss of Lin et al. 2017 (Eq. (5)) over C independent sigmoid classifiers.

    For anchor i and class c (1-based), with p = sigmoid(logits[i, c - 1]), y = [targets[i] == c] and
    p_t = p if y else 1 - p, alpha_t = alpha if y else 1 - alpha:
        FL = -alpha_t * (1 - p_t) ** gamma * log(p_t),
    computed by ``torchvision.ops.sigmoid_focal_loss``.

    Args:
        logits: Tensor[M, C], one logit per foreground class (no background column).
        targets: integer Tensor[M]: 0 background, c in [1, C] foreground class c, negative = ignored
            (the anchor contributes nothing, maskrcnn-benchmark's convention for anchors between the IoU thresholds).
        gamma: focusing exponent (MODEL.RETINANET.LOSS_GAMMA).
        alpha: weight of the positive term, 1 - alpha for the negative one (MODEL.RETINANET.LOSS_ALPHA).
    Returns:
        scalar Tensor, the sum over all non-ignored anchors and all classes.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError("sigmoid_focal_loss: expected logits [M, C] and targets [M], got {} and {}".format(
            tuple(logits.shape), tuple(targets.shape)))
    num_classes = logits.shape[1]
    if targets.numel() and int(targets.max()) > num_classes:
        raise ValueError("sigmoid_focal_loss: target label {} exceeds the {} foreground classes of the logits; "
                         "check MODEL.RETINANET.NUM_CLASSES (classes including background) against the dataset"
                         .format(int(targets.max()), num_classes))
    valid = targets >= 0
    logits = logits[valid]
    targets = targets[valid].long()
    one_hot = (targets[:, None] == torch.arange(1, num_classes + 1, device=targets.device)[None, :]).to(logits.dtype)
    return _tv_sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum")


class SigmoidFocalLoss(nn.Module):
    """Module form of ``sigmoid_focal_loss`` (maskrcnn-benchmark's ``layers.SigmoidFocalLoss(gamma, alpha)``)."""

    def __init__(self, gamma, alpha):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits, targets):
        return sigmoid_focal_loss(logits, targets, self.gamma, self.alpha)

    def extra_repr(self):
        return "gamma={}, alpha={}".format(self.gamma, self.alpha)
