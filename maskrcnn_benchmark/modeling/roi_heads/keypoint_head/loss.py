"""Keypoint R-CNN heat-map targets and loss."""
import torch
from torch.nn import functional as F

from maskrcnn_benchmark.structures.keypoint import keypoints_to_heat_map

# Default of MODEL.ROI_KEYPOINT_HEAD.RESOLUTION: means "the predictor's output size" (maskrcnn-benchmark's default
# 14 never matches its own predictor, whose output is 4 x POOLER_RESOLUTION).
_DEFAULT_RESOLUTION = 14


def keypoint_rcnn_loss(keypoint_logits, heatmaps, valid):
    """Cross-entropy over the S*S heat-map cells of every visible keypoint (one-hot target cell).

    loss_kp = mean_{(i, k) valid} CE(softmax over cells of keypoint_logits[i, k], heatmaps[i, k])

    Args:
        keypoint_logits (Tensor[P, K, S, S]), heatmaps (int64 Tensor[P, K], target cell y * S + x),
        valid (Tensor[P, K], nonzero where the keypoint is visible and inside the RoI).
    Returns:
        scalar Tensor; ``0 * sum(keypoint_logits)`` (graph kept) when nothing is valid.
    """
    num_rois, num_keypoints, height, width = keypoint_logits.shape
    valid = valid.reshape(-1) > 0
    if not bool(valid.any()):
        return keypoint_logits.sum() * 0
    logits = keypoint_logits.reshape(num_rois * num_keypoints, height * width)
    return F.cross_entropy(logits[valid], heatmaps.reshape(-1)[valid])


def _within_box(points, boxes):
    """points Tensor[P, K, 2], boxes Tensor[P, 4] -> bool Tensor[P, K], True where the point lies in its box."""
    x_ok = (points[..., 0] >= boxes[:, 0, None]) & (points[..., 0] <= boxes[:, 2, None])
    y_ok = (points[..., 1] >= boxes[:, 1, None]) & (points[..., 1] <= boxes[:, 3, None])
    return x_ok & y_ok


def _keypoint_tensor(keypoints):
    """Tensor[G, K, 3] of a PersonKeypoints field (or of a plain tensor)."""
    return keypoints.keypoints if hasattr(keypoints, "keypoints") else keypoints


class KeypointRCNNLossComputation:
    """Selects the RoIs the keypoint head trains on and computes their heat-map loss.

    Args:
        heat_map_size (int or None): expected side of the predictor's heat maps (MODEL.ROI_KEYPOINT_HEAD.RESOLUTION);
            a predictor output of another size is refused. None: take the predictor's size.
    """

    def __init__(self, heat_map_size=None):
        self.heat_map_size = heat_map_size

    def subsample(self, proposals, targets):
        """Keeps the foreground sampled RoIs whose matched instance has a visible keypoint inside the RoI.

        Args:
            proposals (list[BoxList]): the box head's sampled RoIs (fields "labels", "matched_idxs").
            targets (list[BoxList]): GT with field "keypoints" (PersonKeypoints, [G, K, 3]).
        Returns:
            (list[BoxList] kept RoIs with field "keypoint_targets" Tensor[P_i, K, 3],
             list[bool Tensor[K_i]] which sampled RoIs of each image were kept).
        """
        kept, keep_masks = [], []
        for proposals_per_image, targets_per_image in zip(proposals, targets):
            labels = proposals_per_image.get_field("labels")
            keep = labels > 0
            keypoints = None
            if len(targets_per_image) > 0:
                gt = _keypoint_tensor(targets_per_image.get_field("keypoints"))
                keypoints = gt[proposals_per_image.get_field("matched_idxs").clamp(min=0)]
                visible = (keypoints[..., 2] > 0) & _within_box(keypoints[..., :2], proposals_per_image.bbox)
                keep = keep & visible.any(dim=1)
            inds = torch.nonzero(keep).squeeze(1)
            kept_per_image = proposals_per_image[inds]
            if keypoints is not None:
                kept_per_image.add_field("keypoint_targets", keypoints[inds])
            else:
                kept_per_image.add_field("keypoint_targets", proposals_per_image.bbox.new_zeros((0, 0, 3)))
            kept.append(kept_per_image)
            keep_masks.append(keep)
        return kept, keep_masks

    def __call__(self, proposals, keypoint_logits):
        """keypoint_logits Tensor[P, K, S, S] for the kept ``proposals`` (from ``subsample``) -> loss_kp."""
        heatmaps, valid = [], []
        size = keypoint_logits.shape[-1]
        if self.heat_map_size is not None and size != self.heat_map_size:
            raise ValueError("keypoint predictor outputs {}x{} heat maps but MODEL.ROI_KEYPOINT_HEAD.RESOLUTION is {}; "
                             "set it to {} (or to the default 14, which takes the predictor's size)".format(
                                 size, size, self.heat_map_size, size))
        for proposals_per_image in proposals:
            if len(proposals_per_image) == 0:
                continue
            heatmaps_per_image, valid_per_image = keypoints_to_heat_map(
                proposals_per_image.get_field("keypoint_targets"), proposals_per_image.bbox, size)
            heatmaps.append(heatmaps_per_image.reshape(-1))
            valid.append(valid_per_image.reshape(-1))
        if not heatmaps:
            return keypoint_logits.sum() * 0
        return keypoint_rcnn_loss(keypoint_logits, torch.cat(heatmaps), torch.cat(valid))


def make_roi_keypoint_loss_evaluator(cfg):
    """The heat-map size is the predictor's output size; MODEL.ROI_KEYPOINT_HEAD.RESOLUTION, when set to anything
    but its default 14, must equal it (maskrcnn-benchmark's keypoint configs set 56 = 4 x POOLER_RESOLUTION)."""
    resolution = cfg.MODEL.ROI_KEYPOINT_HEAD.RESOLUTION
    return KeypointRCNNLossComputation(heat_map_size=None if resolution == _DEFAULT_RESOLUTION else resolution)
