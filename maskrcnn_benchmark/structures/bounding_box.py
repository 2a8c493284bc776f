"""Bounding boxes of one image together with per-box fields (labels, scores, masks, keypoints).

Boxes use maskrcnn-benchmark's pixel convention: a box ``(x0, y0, x1, y1)`` in "xyxy" mode covers the pixels
x0..x1 and y0..y1 *inclusive*, so its width is ``x1 - x0 + 1`` (``TO_REMOVE = 1``). Anchors, box regression
targets and IoUs of pretrained maskrcnn-benchmark models were all computed with that convention, so changing it
would shift every number by a pixel.
"""
import torch

# transpose methods, same values as PIL.Image.FLIP_LEFT_RIGHT / FLIP_TOP_BOTTOM
FLIP_LEFT_RIGHT = 0
FLIP_TOP_BOTTOM = 1

# the +1 of the inclusive pixel convention (width = x1 - x0 + TO_REMOVE)
TO_REMOVE = 1

_MODES = ("xyxy", "xywh")


class BoxList(object):
    """A set of N boxes of one image, plus named per-box fields.

    Args:
        bbox: Tensor[N, 4] (float), or anything ``torch.as_tensor`` accepts; boxes in ``mode``.
        image_size: (width, height) of the image the boxes live in.
        mode: "xyxy" (corners, inclusive) or "xywh" (top-left corner, width, height).

    Fields are added with ``add_field(name, value)``. Tensor fields are indexed along with the boxes; non-tensor
    fields (SegmentationMask, Keypoints) must support indexing and are also resized / flipped / cropped along with
    the boxes by ``resize``, ``transpose`` and ``crop``.
    """

    def __init__(self, bbox, image_size, mode="xyxy"):
        device = bbox.device if isinstance(bbox, torch.Tensor) else torch.device("cpu")
        bbox = torch.as_tensor(bbox, dtype=torch.float32, device=device)
        if bbox.ndimension() != 2:
            raise ValueError("BoxList: bbox should have 2 dimensions [N, 4], got shape {}".format(tuple(bbox.shape)))
        if bbox.size(-1) != 4:
            raise ValueError("BoxList: last dimension of bbox should have a size of 4, got shape {}".format(
                tuple(bbox.shape)))
        if mode not in _MODES:
            raise ValueError("BoxList: mode should be one of {}, got {!r}".format(_MODES, mode))
        self.bbox = bbox
        self.size = tuple(image_size)  # (image_width, image_height)
        self.mode = mode
        self.extra_fields = {}

    # ----------------------------------------------------------------------------------------------- fields
    def add_field(self, field, field_data):
        """Attach ``field_data`` (indexable with the same N entries as the boxes) under the name ``field``."""
        self.extra_fields[field] = field_data

    def get_field(self, field):
        """Return the field ``field``; raises KeyError naming the fields that exist."""
        try:
            return self.extra_fields[field]
        except KeyError:
            raise KeyError("BoxList has no field {!r}; it has {}".format(field, self.fields())) from None

    def has_field(self, field):
        """True if a field named ``field`` was added."""
        return field in self.extra_fields

    def fields(self):
        """Names of the fields, in insertion order."""
        return list(self.extra_fields.keys())

    def _copy_extra_fields(self, bbox):
        for k, v in bbox.extra_fields.items():
            self.extra_fields[k] = v

    # ------------------------------------------------------------------------------------------------ modes
    def convert(self, mode):
        """Return the same boxes in ``mode`` ("xyxy" or "xywh"); fields are shared, not copied."""
        if mode not in _MODES:
            raise ValueError("BoxList.convert: mode should be one of {}, got {!r}".format(_MODES, mode))
        if mode == self.mode:
            return self
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        if mode == "xyxy":
            bbox = torch.cat((xmin, ymin, xmax, ymax), dim=-1)
        else:
            bbox = torch.cat((xmin, ymin, xmax - xmin + TO_REMOVE, ymax - ymin + TO_REMOVE), dim=-1)
        converted = BoxList(bbox, self.size, mode=mode)
        converted._copy_extra_fields(self)
        return converted

    def _split_into_xyxy(self):
        """(xmin, ymin, xmax, ymax), each Tensor[N, 1], whatever the current mode."""
        if self.mode == "xyxy":
            return self.bbox.split(1, dim=-1)
        xmin, ymin, w, h = self.bbox.split(1, dim=-1)
        # a zero-size xywh box maps to a one-pixel xyxy box rather than an inverted one
        return xmin, ymin, xmin + (w - TO_REMOVE).clamp(min=0), ymin + (h - TO_REMOVE).clamp(min=0)

    # ----------------------------------------------------------------------------------------- geometry ops
    def resize(self, size, *args, **kwargs):
        """Scale the boxes from ``self.size`` to ``size`` = (width, height); non-tensor fields are resized too.

        Coordinates are multiplied by new/old (maskrcnn-benchmark does not add the +1 here either).
        """
        ratios = tuple(float(s) / float(s_orig) for s, s_orig in zip(size, self.size))
        if ratios[0] == ratios[1]:
            ratio = ratios[0]
            bbox = BoxList(self.bbox * ratio, size, mode=self.mode)
            for k, v in self.extra_fields.items():
                if not isinstance(v, torch.Tensor):
                    v = v.resize(size, *args, **kwargs)
                bbox.add_field(k, v)
            return bbox

        ratio_width, ratio_height = ratios
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        scaled_box = torch.cat(
            (xmin * ratio_width, ymin * ratio_height, xmax * ratio_width, ymax * ratio_height), dim=-1)
        bbox = BoxList(scaled_box, size, mode="xyxy")
        for k, v in self.extra_fields.items():
            if not isinstance(v, torch.Tensor):
                v = v.resize(size, *args, **kwargs)
            bbox.add_field(k, v)
        return bbox.convert(self.mode)

    def transpose(self, method):
        """Flip the boxes (and non-tensor fields) with FLIP_LEFT_RIGHT or FLIP_TOP_BOTTOM.

        Pixel column i goes to ``width - 1 - i`` (inclusive convention), i.e. x0' = w - x1 - 1, x1' = w - x0 - 1;
        the same for rows. (maskrcnn-benchmark omitted the -1 for FLIP_TOP_BOTTOM only; it is never used in
        its training pipeline, and here both flips are the same mirror.)
        """
        if method not in (FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM):
            raise NotImplementedError(
                "BoxList.transpose: only FLIP_LEFT_RIGHT (0) and FLIP_TOP_BOTTOM (1) are implemented, got {!r}".format(
                    method))
        image_width, image_height = self.size
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        if method == FLIP_LEFT_RIGHT:
            transposed_boxes = torch.cat(
                (image_width - xmax - TO_REMOVE, ymin, image_width - xmin - TO_REMOVE, ymax), dim=-1)
        else:
            transposed_boxes = torch.cat(
                (xmin, image_height - ymax - TO_REMOVE, xmax, image_height - ymin - TO_REMOVE), dim=-1)
        bbox = BoxList(transposed_boxes, self.size, mode="xyxy")
        for k, v in self.extra_fields.items():
            if not isinstance(v, torch.Tensor):
                v = v.transpose(method)
            bbox.add_field(k, v)
        return bbox.convert(self.mode)

    def crop(self, box):
        """Crop to ``box`` = (x0, y0, x1, y1): coordinates shift by (x0, y0) and are clamped to [0, w] x [0, h].

        The new image size is (w, h) = (x1 - x0, y1 - y0) (continuous extent of the crop window, as
        maskrcnn-benchmark). Boxes that end up empty are kept; call ``clip_to_image`` to drop them.
        """
        xmin, ymin, xmax, ymax = self._split_into_xyxy()
        box = [float(b) for b in box]
        w, h = box[2] - box[0], box[3] - box[1]
        cropped_xmin = (xmin - box[0]).clamp(min=0, max=w)
        cropped_ymin = (ymin - box[1]).clamp(min=0, max=h)
        cropped_xmax = (xmax - box[0]).clamp(min=0, max=w)
        cropped_ymax = (ymax - box[1]).clamp(min=0, max=h)
        cropped_box = torch.cat((cropped_xmin, cropped_ymin, cropped_xmax, cropped_ymax), dim=-1)
        bbox = BoxList(cropped_box, (w, h), mode="xyxy")
        for k, v in self.extra_fields.items():
            if not isinstance(v, torch.Tensor):
                v = v.crop(box)
            bbox.add_field(k, v)
        return bbox.convert(self.mode)

    def clip_to_image(self, remove_empty=True):
        """Clamp boxes to the image (x in [0, w - 1], y in [0, h - 1]).

        With ``remove_empty`` the boxes with x1 <= x0 or y1 <= y0 after clamping are dropped. ``self.bbox`` is
        replaced (not modified in place, so autograd through the boxes stays valid) and the result returned.
        """
        xmin, ymin, xmax, ymax = self.convert("xyxy").bbox.unbind(dim=1)
        w, h = self.size
        clipped = torch.stack(
            (xmin.clamp(min=0, max=w - TO_REMOVE), ymin.clamp(min=0, max=h - TO_REMOVE),
             xmax.clamp(min=0, max=w - TO_REMOVE), ymax.clamp(min=0, max=h - TO_REMOVE)), dim=1)
        if self.mode == "xyxy":
            self.bbox = clipped
        else:
            self.bbox = BoxList(clipped, self.size, mode="xyxy").convert(self.mode).bbox
        if remove_empty:
            keep = (clipped[:, 3] > clipped[:, 1]) & (clipped[:, 2] > clipped[:, 0])
            return self[keep]
        return self

    def area(self):
        """Tensor[N]: box areas in pixels with the +1 convention ((x1 - x0 + 1) * (y1 - y0 + 1))."""
        box = self.bbox
        if self.mode == "xyxy":
            return (box[:, 2] - box[:, 0] + TO_REMOVE) * (box[:, 3] - box[:, 1] + TO_REMOVE)
        return box[:, 2] * box[:, 3]

    # ----------------------------------------------------------------------------------------- containers
    def to(self, device):
        """Move boxes and every field that has ``.to`` to ``device``."""
        bbox = BoxList(self.bbox.to(device), self.size, self.mode)
        for k, v in self.extra_fields.items():
            if hasattr(v, "to"):
                v = v.to(device)
            bbox.add_field(k, v)
        return bbox

    def __getitem__(self, item):
        """Select boxes (and the same entries of every field) by int, slice, index tensor or bool mask."""
        if isinstance(item, int):
            item = [item]
        bbox = BoxList(self.bbox[item], self.size, self.mode)
        for k, v in self.extra_fields.items():
            bbox.add_field(k, v[item])
        return bbox

    def __len__(self):
        return self.bbox.shape[0]

    def copy_with_fields(self, fields, skip_missing=False):
        """A new BoxList with the same boxes and only ``fields`` (a name or list of names).

        Missing fields raise KeyError unless ``skip_missing``.
        """
        bbox = BoxList(self.bbox, self.size, self.mode)
        if not isinstance(fields, (list, tuple)):
            fields = [fields]
        for field in fields:
            if self.has_field(field):
                bbox.add_field(field, self.get_field(field))
            elif not skip_missing:
                raise KeyError("BoxList.copy_with_fields: field {!r} not found in {}".format(field, self.fields()))
        return bbox

    def __repr__(self):
        return "{}(num_boxes={}, image_width={}, image_height={}, mode={})".format(
            self.__class__.__name__, len(self), self.size[0], self.size[1], self.mode)
