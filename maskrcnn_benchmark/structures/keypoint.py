"""Keypoints of the instances of one image, and the heat-map targets of the keypoint head."""
import torch

from .bounding_box import FLIP_LEFT_RIGHT, TO_REMOVE


class Keypoints(object):
    """Keypoints of N instances with K points each.

    Args:
        keypoints: Tensor[N, K, 3] (x, y, visibility) in pixels, or a list of N flat [x0, y0, v0, ...] lists.
        size: (width, height) of the image.
        mode: unused, kept for maskrcnn-benchmark compatibility.

    Subclasses set ``FLIP_MAP`` (Tensor[K] of the keypoint index each index becomes after a left-right flip).
    """

    FLIP_MAP = None
    NAMES = []

    def __init__(self, keypoints, size, mode=None):
        device = keypoints.device if isinstance(keypoints, torch.Tensor) else torch.device("cpu")
        keypoints = torch.as_tensor(keypoints, dtype=torch.float32, device=device)
        num_instances = keypoints.shape[0]
        if num_instances:
            keypoints = keypoints.view(num_instances, -1, 3)
        else:
            keypoints = keypoints.reshape(0, max(len(self.NAMES), 1), 3)
        self.keypoints = keypoints
        self.size = tuple(size)
        self.mode = mode
        self.extra_fields = {}

    def crop(self, box):
        """Shift by (x0, y0); keypoints that fall outside [0, w) x [0, h) become invisible (all zero)."""
        x0, y0, x1, y1 = [float(b) for b in box]
        w, h = x1 - x0, y1 - y0
        kps = self.keypoints.clone()
        kps[..., 0] -= x0
        kps[..., 1] -= y0
        outside = (kps[..., 0] < 0) | (kps[..., 1] < 0) | (kps[..., 0] >= w) | (kps[..., 1] >= h)
        kps[outside] = 0
        return self._new(kps, (w, h))

    def resize(self, size, *args, **kwargs):
        """Scale x and y by new/old size; visibility is kept."""
        ratios = tuple(float(s) / float(s_orig) for s, s_orig in zip(size, self.size))
        ratio_w, ratio_h = ratios
        resized = self.keypoints.clone()
        resized[..., 0] *= ratio_w
        resized[..., 1] *= ratio_h
        return self._new(resized, size)

    def transpose(self, method):
        """Left-right flip: x -> w - x - 1 and left / right keypoints swap (``FLIP_MAP``); invisible stay zero."""
        if method != FLIP_LEFT_RIGHT:
            raise NotImplementedError("Keypoints.transpose: only FLIP_LEFT_RIGHT is implemented, got {!r}".format(
                method))
        if self.FLIP_MAP is None:
            raise NotImplementedError("{} has no FLIP_MAP; use a subclass such as PersonKeypoints".format(
                type(self).__name__))
        flipped = self.keypoints[:, self.FLIP_MAP].clone()
        width = self.size[0]
        flipped[..., 0] = width - flipped[..., 0] - TO_REMOVE
        flipped[flipped[..., 2] == 0] = 0
        return self._new(flipped, self.size)

    def _new(self, keypoints, size):
        out = type(self)(keypoints, size, self.mode)
        for k, v in self.extra_fields.items():
            out.add_field(k, v)
        return out

    def to(self, *args, **kwargs):
        """Same as ``Tensor.to`` on the keypoints and tensor fields."""
        out = type(self)(self.keypoints.to(*args, **kwargs), self.size, self.mode)
        for k, v in self.extra_fields.items():
            out.add_field(k, v.to(*args, **kwargs) if hasattr(v, "to") else v)
        return out

    def __getitem__(self, item):
        if isinstance(item, int):
            item = [item]
        out = type(self)(self.keypoints[item], self.size, self.mode)
        for k, v in self.extra_fields.items():
            out.add_field(k, v[item])
        return out

    def add_field(self, field, field_data):
        """Attach per-instance data (indexed along with the keypoints)."""
        self.extra_fields[field] = field_data

    def get_field(self, field):
        """The field ``field`` (KeyError if absent)."""
        return self.extra_fields[field]

    def __len__(self):
        return self.keypoints.shape[0]

    def __repr__(self):
        return "{}(num_instances={}, image_width={}, image_height={})".format(
            type(self).__name__, len(self), self.size[0], self.size[1])


def _create_flip_indices(names, flip_map):
    full_flip_map = dict(flip_map)
    full_flip_map.update({v: k for k, v in flip_map.items()})
    flipped_names = [full_flip_map.get(name, name) for name in names]
    return torch.tensor([names.index(name) for name in flipped_names], dtype=torch.long)


class PersonKeypoints(Keypoints):
    """The 17 COCO person keypoints."""

    NAMES = [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ]
    FLIP_NAMES = {
        "left_eye": "right_eye",
        "left_ear": "right_ear",
        "left_shoulder": "right_shoulder",
        "left_elbow": "right_elbow",
        "left_wrist": "right_wrist",
        "left_hip": "right_hip",
        "left_knee": "right_knee",
        "left_ankle": "right_ankle",
    }
    # pairs drawn as a skeleton by visualisation code
    CONNECTIONS = [
        ("left_ear", "left_eye"), ("right_ear", "right_eye"), ("left_eye", "nose"), ("nose", "right_eye"),
        ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "right_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ]


PersonKeypoints.FLIP_MAP = _create_flip_indices(PersonKeypoints.NAMES, PersonKeypoints.FLIP_NAMES)


def kp_connections(keypoints):
    """Skeleton edges as index pairs into ``keypoints`` (a list of names)."""
    return [[keypoints.index(a), keypoints.index(b)] for a, b in PersonKeypoints.CONNECTIONS]


PersonKeypoints.CONNECTIONS_INDICES = kp_connections(PersonKeypoints.NAMES)


def keypoints_to_heat_map(keypoints, rois, heatmap_size):
    """Discretise keypoints into the RoIs' heat maps (targets of the keypoint head's softmax over M*M cells).

    Args:
        keypoints: Tensor[R, K, 3] (x, y, visibility) in image pixels, one row per RoI.
        rois: Tensor[R, 4] xyxy boxes.
        heatmap_size: M.
    Returns:
        (heatmaps, valid): long Tensor[R, K] flat cell index y * M + x (0 where invalid) and long Tensor[R, K],
        1 where the keypoint is visible and inside its RoI. A keypoint exactly on the RoI's right / bottom edge
        goes to the last cell.
    """
    if rois.numel() == 0:
        return rois.new_zeros((0,), dtype=torch.long), rois.new_zeros((0,), dtype=torch.long)
    offset_x = rois[:, 0][:, None]
    offset_y = rois[:, 1][:, None]
    scale_x = (heatmap_size / (rois[:, 2] - rois[:, 0]))[:, None]
    scale_y = (heatmap_size / (rois[:, 3] - rois[:, 1]))[:, None]

    x = keypoints[..., 0]
    y = keypoints[..., 1]
    x_boundary = x == rois[:, 2][:, None]
    y_boundary = y == rois[:, 3][:, None]

    x = ((x - offset_x) * scale_x).floor().long()
    y = ((y - offset_y) * scale_y).floor().long()
    x[x_boundary] = heatmap_size - 1
    y[y_boundary] = heatmap_size - 1

    valid_loc = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)
    visible = keypoints[..., 2] > 0
    valid = (valid_loc & visible).long()
    heatmaps = (y * heatmap_size + x) * valid
    return heatmaps, valid
