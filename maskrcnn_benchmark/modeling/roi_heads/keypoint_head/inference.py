"""Keypoint post-processing: heat-map logits -> keypoint coordinates and scores per detection."""
import math

from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.structures.bounding_box import BoxList


def heatmaps_to_keypoints(maps, rois):
    """Argmax of each heat map resized (bicubic) to its RoI's size, in image coordinates.

    Args:
        maps (Tensor[N, K, S, S]): heat-map logits. rois (Tensor[N, 4]): xyxy.
    Returns:
        (Tensor[N, K, 3] keypoints (x, y, 1), Tensor[N, K] the logit at the argmax).
    """
    num_rois, num_keypoints = maps.shape[:2]
    keypoints = maps.new_zeros((num_rois, num_keypoints, 3))
    scores = maps.new_zeros((num_rois, num_keypoints))
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    # Each RoI has its own output size, so this loops over the (at most DETECTIONS_PER_IMG) detections.
    for i in range(num_rois):
        out_w, out_h = int(math.ceil(float(widths[i]))), int(math.ceil(float(heights[i])))
        roi_map = F.interpolate(maps[i:i + 1], size=(out_h, out_w), mode="bicubic", align_corners=False)[0]
        flat = roi_map.reshape(num_keypoints, -1)
        best = flat.argmax(dim=1)
        x_int, y_int = best % out_w, best // out_w
        keypoints[i, :, 0] = (x_int.float() + 0.5) * (widths[i] / out_w) + rois[i, 0]
        keypoints[i, :, 1] = (y_int.float() + 0.5) * (heights[i] / out_h) + rois[i, 1]
        keypoints[i, :, 2] = 1
        scores[i] = flat.gather(1, best[:, None])[:, 0]
    return keypoints, scores


class Keypointer:
    """Turns heat maps into keypoints: ``__call__(maps Tensor[N,K,S,S], boxes BoxList or [BoxList])`` ->
    (Tensor[N, K, 3], Tensor[N, K])."""

    def __call__(self, maps, boxes):
        if isinstance(boxes, (list, tuple)):
            if len(boxes) != 1:
                raise ValueError("Keypointer handles one image at a time, got {} BoxLists".format(len(boxes)))
            boxes = boxes[0]
        return heatmaps_to_keypoints(maps, boxes.convert("xyxy").bbox)


class KeypointPostProcessor(nn.Module):
    """Adds field "keypoints" (PersonKeypoints [N, K, 3], with field "logits" [N, K]) to each detection.

    Args:
        keypointer (Keypointer | None): converts heat maps to keypoints; None stores the raw heat maps instead.
    """

    def __init__(self, keypointer=None):
        super().__init__()
        self.keypointer = keypointer

    def forward(self, x, boxes):
        """x Tensor[K, num_keypoints, S, S] for the detections ``boxes`` (list[BoxList]) -> list[BoxList]."""
        from maskrcnn_benchmark.structures.keypoint import PersonKeypoints

        results = []
        for maps, box in zip(x.split([len(b) for b in boxes], dim=0), boxes):
            bbox = BoxList(box.bbox, box.size, mode="xyxy")
            for field in box.fields():
                bbox.add_field(field, box.get_field(field))
            if self.keypointer is None:
                bbox.add_field("keypoints", maps)
            else:
                keypoints, scores = self.keypointer(maps, box)
                keypoints = PersonKeypoints(keypoints, box.size)
                keypoints.add_field("logits", scores)
                bbox.add_field("keypoints", keypoints)
            results.append(bbox)
        return results


def make_roi_keypoint_post_processor(cfg):
    """The keypoint post-processor reads no config."""
    return KeypointPostProcessor(Keypointer())
