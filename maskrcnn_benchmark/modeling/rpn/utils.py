"""Reshaping helpers that line RPN head outputs up with the anchor order (y, x, anchor)."""
import torch


def permute_and_flatten(layer, N, A, C, H, W):
    """Tensor[N, A*C, H, W] (channels anchor-major) -> Tensor[N, H*W*A, C]."""
    layer = layer.view(N, A, C, H, W).permute(0, 3, 4, 1, 2)
    return layer.reshape(N, -1, C)


def concat_box_prediction_layers(box_cls, box_regression):
    """Flatten and concatenate per-level predictions over levels.

    Args:
        box_cls: list over levels of Tensor[N, A*C, H_l, W_l] (C = 1 for the RPN).
        box_regression: list over levels of Tensor[N, A*4, H_l, W_l].
    Returns:
        (Tensor[N*M, C], Tensor[N*M, 4]) with M = sum_l H_l*W_l*A, image-major then level then
        location then anchor (the order of the per-image concatenated anchors).
    """
    box_cls_flattened = []
    box_regression_flattened = []
    for box_cls_per_level, box_regression_per_level in zip(box_cls, box_regression):
        N, AxC, H, W = box_cls_per_level.shape
        A = box_regression_per_level.shape[1] // 4
        C = AxC // A
        box_cls_flattened.append(permute_and_flatten(box_cls_per_level, N, A, C, H, W))
        box_regression_flattened.append(permute_and_flatten(box_regression_per_level, N, A, 4, H, W))
    C = box_cls_flattened[0].shape[2]
    box_cls = torch.cat(box_cls_flattened, dim=1).reshape(-1, C)
    box_regression = torch.cat(box_regression_flattened, dim=1).reshape(-1, 4)
    return box_cls, box_regression
