"""Instance segmentation masks of one image, as polygons ("poly") or binary masks ("mask").

Coordinates of polygons are continuous (COCO): pixel (i, j) covers [i, i + 1) x [j, j + 1). Polygons are
rasterised with pycocotools (``frPyObjects`` + ``decode``), the same rasteriser COCO evaluation uses.

Geometry (shared by both modes, so that converting before or after an operation gives the same mask):
  - crop(box): the window [x0, x1) x [y0, y1) becomes the new image of size (x1 - x0, y1 - y0); polygons are
    shifted by (-x0, -y0), binary masks sliced (zero-padded where the window leaves the image).
  - resize(size): polygons are scaled by new/old; binary masks are resampled at the new pixel centres
    ("nearest-exact"), which is where pycocotools tests the scaled polygon.
  - transpose(FLIP_LEFT_RIGHT): x -> w - x for polygons (pixel column i -> w - 1 - i, the mirror BoxList uses);
    maskrcnn-benchmark used w - x - 1 for polygons, which put flipped polygon masks one pixel left of their boxes.

The mask head's training targets come from ``SegmentationMask.crop_and_resize(boxes, mask_size, indices)``,
which rasterises each instance directly inside its RoI at M x M (maskrcnn-benchmark's crop -> resize -> convert
semantics for polygons, in one pycocotools call per image).
"""
import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.nn.functional as F

from .bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM

_TRANSPOSE_METHODS = (FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM)


def _check_transpose_method(method):
    if method not in _TRANSPOSE_METHODS:
        raise NotImplementedError(
            "SegmentationMask.transpose: only FLIP_LEFT_RIGHT (0) and FLIP_TOP_BOTTOM (1) are implemented, got "
            "{!r}".format(method))


def _crop_window(box):
    """(x0, y0, x1, y1) floats and the crop size (w, h), at least one pixel each."""
    x0, y0, x1, y1 = [float(b) for b in box]
    if x1 < x0 or y1 < y0:
        raise ValueError("SegmentationMask.crop: box {} has x1 < x0 or y1 < y0".format([x0, y0, x1, y1]))
    return (x0, y0, x1, y1), (max(x1 - x0, 1.0), max(y1 - y0, 1.0))


def _int_size(size):
    """Integer (w, h) of a (possibly float) image size, as pycocotools and tensors need."""
    return int(size[0]), int(size[1])


def _rasterize(polygons, height, width):
    """Rasterise a flat list of polygons (each a float64 array [x0, y0, x1, y1, ...]).

    Returns np.uint8 array [P, height, width], one mask per polygon (pycocotools, one call for all of them).
    """
    if len(polygons) == 0:
        return np.zeros((0, height, width), dtype=np.uint8)
    rles = mask_utils.frPyObjects(polygons, height, width)
    decoded = mask_utils.decode(rles)  # [h, w, P], Fortran order
    return np.ascontiguousarray(decoded.transpose(2, 0, 1))


def _union_per_owner(per_polygon, owners, num_instances, dtype=np.uint8):
    """Masks [P, h, w] of polygons owned by instance ``owners[p]`` -> np array [N, h, w] of their unions.

    ``owners`` must be sorted (each instance's polygons contiguous), as the callers build them. NumPy rather than
    torch: these are small arrays, and torch's intra-op threads cost far more than the work on a busy CPU.
    """
    height, width = per_polygon.shape[1:]
    out = np.zeros((num_instances, height, width), dtype=dtype)
    if per_polygon.shape[0] == 0:
        return out
    owners = np.asarray(owners, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    # maximum over an instance's polygons = union of their pixels
    out[owners[starts]] = np.maximum.reduceat(per_polygon, starts, axis=0)
    return out


class PolygonInstance(object):
    """The polygons (one or more parts) of one object instance.

    Args:
        polygons: list of flat coordinate lists / arrays / tensors [x0, y0, x1, y1, ...] in pixels.
        size: (width, height) of the image.
        instance_index: used in error messages only.
    """

    def __init__(self, polygons, size, instance_index=None):
        if isinstance(polygons, PolygonInstance):
            polygons = polygons.polygons
        if not isinstance(polygons, (list, tuple)):
            raise ValueError("SegmentationMask: instance {} should be a list of polygons (flat [x0, y0, x1, y1, ...] "
                             "lists), got {}".format(instance_index, type(polygons).__name__))
        valid = []
        for j, p in enumerate(polygons):
            p = torch.as_tensor(p, dtype=torch.float32).reshape(-1)
            if p.numel() % 2 != 0:
                raise ValueError("SegmentationMask: instance {}, polygon {} has an odd number of coordinates ({}); "
                                 "polygons are flat [x0, y0, x1, y1, ...] lists".format(instance_index, j, p.numel()))
            if p.numel() < 6:
                raise ValueError("SegmentationMask: instance {}, polygon {} has {} point(s); a polygon needs at "
                                 "least 3 points (6 coordinates). Remove this annotation (COCODataset filters them) "
                                 "or store the instance as a binary mask".format(instance_index, j, p.numel() // 2))
            valid.append(p)
        self.polygons = valid
        self.size = tuple(size)

    def transpose(self, method):
        """Mirror x -> w - x (FLIP_LEFT_RIGHT) or y -> h - y (FLIP_TOP_BOTTOM)."""
        _check_transpose_method(method)
        width, height = self.size
        dim, idx = (width, 0) if method == FLIP_LEFT_RIGHT else (height, 1)
        flipped = []
        for poly in self.polygons:
            p = poly.clone()
            p[idx::2] = dim - poly[idx::2]
            flipped.append(p)
        return PolygonInstance(flipped, self.size)

    def crop(self, box):
        """Shift by (-x0, -y0); the size becomes (max(x1 - x0, 1), max(y1 - y0, 1)). Nothing is clipped."""
        (x0, y0, _, _), size = _crop_window(box)
        cropped = []
        for poly in self.polygons:
            p = poly.clone()
            p[0::2] = p[0::2] - x0
            p[1::2] = p[1::2] - y0
            cropped.append(p)
        return PolygonInstance(cropped, size)

    def resize(self, size):
        """Scale x by new_w / w and y by new_h / h."""
        ratios = tuple(float(s) / float(s_orig) for s, s_orig in zip(size, self.size))
        if ratios[0] == ratios[1]:
            return PolygonInstance([p * ratios[0] for p in self.polygons], size)
        ratio_w, ratio_h = ratios
        scaled = []
        for poly in self.polygons:
            p = poly.clone()
            p[0::2] *= ratio_w
            p[1::2] *= ratio_h
            scaled.append(p)
        return PolygonInstance(scaled, size)

    def convert_to_binarymask(self):
        """uint8 Tensor[H, W] of the union of the polygons."""
        width, height = _int_size(self.size)
        per_polygon = _rasterize([p.double().numpy() for p in self.polygons], height, width)
        return torch.from_numpy(per_polygon.max(axis=0)) if len(per_polygon) else torch.zeros(
            (height, width), dtype=torch.uint8)

    def area(self):
        """Area of the polygons in pixels (shoelace formula, parts summed)."""
        total = 0.0
        for p in self.polygons:
            x, y = p[0::2].double(), p[1::2].double()
            total += 0.5 * abs(float((x * y.roll(-1) - x.roll(-1) * y).sum()))
        return total

    def __len__(self):
        return len(self.polygons)

    def __repr__(self):
        return "PolygonInstance(num_polygons={}, image_width={}, image_height={})".format(
            len(self.polygons), self.size[0], self.size[1])


def _normalize_index(item, length):
    """int / slice / list / bool or long tensor -> list of int indices into a container of ``length``."""
    if isinstance(item, (int, np.integer)):
        item = int(item)
        if not -length <= item < length:
            raise IndexError("SegmentationMask index {} out of range for {} instances".format(item, length))
        return [item % length]
    if isinstance(item, slice):
        return list(range(length))[item]
    if isinstance(item, torch.Tensor):
        if item.dtype in (torch.bool, torch.uint8):
            if item.numel() != length:
                raise IndexError("SegmentationMask: boolean index of length {} for {} instances".format(
                    item.numel(), length))
            return item.bool().nonzero().reshape(-1).tolist()
        return item.reshape(-1).tolist()
    return [int(i) for i in item]


class PolygonList(object):
    """Polygons of N instances of one image.

    Args:
        polygons: list (one entry per instance) of lists of flat polygons, or of PolygonInstance.
        size: (width, height).
    """

    def __init__(self, polygons, size):
        if isinstance(polygons, PolygonList):
            polygons = polygons.polygons
        if not isinstance(polygons, (list, tuple)):
            raise ValueError("SegmentationMask(mode='poly') expects a list of instances, each a list of polygons; "
                             "got {}".format(type(polygons).__name__))
        self.size = tuple(size)
        self.polygons = [p if isinstance(p, PolygonInstance) and p.size == self.size
                         else PolygonInstance(p, self.size, instance_index=i) for i, p in enumerate(polygons)]

    def transpose(self, method):
        """Flip every instance (see PolygonInstance.transpose)."""
        _check_transpose_method(method)
        return PolygonList([p.transpose(method) for p in self.polygons], self.size)

    def crop(self, box):
        """Crop every instance to ``box`` (see PolygonInstance.crop)."""
        _, size = _crop_window(box)
        return PolygonList([p.crop(box) for p in self.polygons], size)

    def resize(self, size):
        """Rescale every instance to ``size`` = (width, height)."""
        return PolygonList([p.resize(size) for p in self.polygons], size)

    def to(self, *args, **kwargs):
        """No-op: polygons stay on the CPU, where pycocotools rasterises them."""
        return self

    def convert_to_binarymask(self):
        """BinaryMaskList of the N instances (one pycocotools call for all polygons of the image)."""
        width, height = _int_size(self.size)
        flat, owners = [], []
        for i, instance in enumerate(self.polygons):
            for p in instance.polygons:
                flat.append(p.double().numpy())
                owners.append(i)
        masks = _union_per_owner(_rasterize(flat, height, width), owners, len(self.polygons))
        return BinaryMaskList(torch.from_numpy(masks), self.size)

    def crop_and_resize(self, boxes, mask_size, indices=None):
        """Rasterise instance ``indices[k]`` inside box ``boxes[k]`` at ``mask_size`` x ``mask_size``.

        Same result as ``self[indices[k]].crop(boxes[k]).resize((M, M)).convert_to_binarymask()`` for every k,
        i.e. polygons are mapped by p' = (p - (x0, y0)) * M / (max(x1 - x0, 1), max(y1 - y0, 1)).

        Args:
            boxes: Tensor[K, 4] xyxy in this image's pixel coordinates.
            mask_size: M.
            indices: Tensor[K] / list of instance indices, or None for indices = arange(K).
        Returns:
            float32 Tensor[K, M, M] of 0 / 1, on ``boxes.device``.
        """
        M = int(mask_size)
        boxes_cpu = boxes.detach().to("cpu", torch.float64).numpy()
        num_boxes = boxes_cpu.shape[0]
        if indices is None:
            indices = list(range(num_boxes))
        elif isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if len(indices) != num_boxes:
            raise ValueError("crop_and_resize: got {} boxes but {} indices".format(num_boxes, len(indices)))
        if num_boxes == 0:
            return torch.zeros((0, M, M), dtype=torch.float32, device=boxes.device)

        # per instance, all its polygons as one float64 array (concatenated) plus split points, built once
        flat_cache = {}
        flat, owners = [], []
        for k, (inst, box) in enumerate(zip(indices, boxes_cpu)):
            if inst not in flat_cache:
                polys = [p.double().numpy() for p in self.polygons[inst].polygons]
                coords = np.concatenate(polys).reshape(-1, 2) if polys else None
                flat_cache[inst] = (coords, np.cumsum([len(p) // 2 for p in polys])[:-1])
            coords, splits = flat_cache[inst]
            if coords is None:  # an instance without polygons has an empty target
                continue
            x0, y0, x1, y1 = box
            scale = np.array([M / max(x1 - x0, 1.0), M / max(y1 - y0, 1.0)])
            mapped = (coords - np.array([x0, y0])) * scale
            for part in np.split(mapped, splits):
                flat.append(part.reshape(-1))
                owners.append(k)
        masks = _union_per_owner(_rasterize(flat, M, M), owners, num_boxes, dtype=np.float32)
        return torch.from_numpy(masks).to(boxes.device)

    def __getitem__(self, item):
        return PolygonList([self.polygons[i] for i in _normalize_index(item, len(self.polygons))], self.size)

    def __iter__(self):
        return iter(self.polygons)

    def __len__(self):
        return len(self.polygons)

    def __repr__(self):
        return "PolygonList(num_instances={}, image_width={}, image_height={})".format(
            len(self.polygons), self.size[0], self.size[1])


class BinaryMaskList(object):
    """Binary masks of N instances of one image.

    Args:
        masks: Tensor[N, H, W] (or [H, W] for one instance), a list of Tensor[H, W] / np.ndarray, a list of
            COCO RLE dicts, or a BinaryMaskList. Nonzero = foreground.
        size: (width, height); must match (W, H) of the masks.
    """

    def __init__(self, masks, size):
        width, height = _int_size(size)
        if isinstance(masks, BinaryMaskList):
            masks = masks.masks
        if isinstance(masks, (list, tuple)):
            if len(masks) == 0:
                masks = torch.zeros((0, height, width), dtype=torch.uint8)
            elif isinstance(masks[0], dict):
                decoded = mask_utils.decode(list(masks))  # [h, w, N]
                masks = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))
            else:
                masks = torch.stack([torch.as_tensor(m) for m in masks], dim=0)
        elif isinstance(masks, np.ndarray):
            masks = torch.from_numpy(masks)
        if not isinstance(masks, torch.Tensor):
            raise ValueError("SegmentationMask(mode='mask') expects Tensor[N, H, W], a list of [H, W] masks or COCO "
                             "RLE dicts; got {}".format(type(masks).__name__))
        if masks.dim() == 2:
            masks = masks[None]
        if masks.dim() != 3:
            raise ValueError("SegmentationMask(mode='mask'): masks should be [N, H, W], got shape {}".format(
                tuple(masks.shape)))
        if tuple(masks.shape[1:]) != (height, width):
            raise ValueError("SegmentationMask(mode='mask'): masks have (H, W) = {} but the image size (w, h) is {}; "
                             "pass size=(W, H) of the masks".format(tuple(masks.shape[1:]), tuple(size)))
        self.masks = masks if masks.dtype == torch.uint8 else (masks != 0).to(torch.uint8)
        self.size = (width, height)

    def transpose(self, method):
        """Flip the pixel columns (FLIP_LEFT_RIGHT) or rows (FLIP_TOP_BOTTOM)."""
        _check_transpose_method(method)
        dim = 2 if method == FLIP_LEFT_RIGHT else 1
        return BinaryMaskList(self.masks.flip(dim), self.size)

    def crop(self, box):
        """Window [round(x0), round(x1)) x [round(y0), round(y1)); parts outside the image are zero."""
        x0, y0, x1, y1 = [int(round(float(b))) for b in box]
        if x1 < x0 or y1 < y0:
            raise ValueError("SegmentationMask.crop: box {} has x1 < x0 or y1 < y0".format(list(box)))
        w, h = max(x1 - x0, 1), max(y1 - y0, 1)
        width, height = self.size
        out = self.masks.new_zeros((self.masks.shape[0], h, w))
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + w, width), min(y0 + h, height)
        if sx1 > sx0 and sy1 > sy0:
            out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = self.masks[:, sy0:sy1, sx0:sx1]
        return BinaryMaskList(out, (w, h))

    def resize(self, size):
        """Resample to ``size`` = (width, height) at the new pixel centres (see the module docstring)."""
        width, height = _int_size(size)
        if self.masks.shape[0] == 0:
            return BinaryMaskList(self.masks.new_zeros((0, height, width)), (width, height))
        # new pixel centre (j + 0.5) samples the old image at (j + 0.5) / scale, i.e. "nearest-exact": the same
        # pixel-centre rule pycocotools applies to a scaled polygon, so both modes resize identically
        resized = F.interpolate(self.masks[None].float(), size=(height, width), mode="nearest-exact")[0]
        return BinaryMaskList(resized.to(torch.uint8), (width, height))

    def to(self, *args, **kwargs):
        """Same as ``Tensor.to`` on the masks."""
        return BinaryMaskList(self.masks.to(*args, **kwargs), self.size)

    def convert_to_binarymask(self):
        """Already binary: returns self."""
        return self

    def convert_to_polygon(self):
        """PolygonList of the outer contours of each mask (OpenCV); holes are filled (COCO polygons have none).

        Contours are traced on the mask upsampled 2x, so each polygon runs a quarter pixel inside the true pixel
        outline: it contains every foreground pixel centre and no background one, and rasterising it gives back
        the same mask (up to holes).
        """
        import cv2

        instances = []
        for mask in self.masks.cpu().numpy():
            upsampled = np.ascontiguousarray(np.repeat(np.repeat((mask != 0).astype(np.uint8), 2, 0), 2, 1))
            contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            polys = []
            for c in contours:
                c = c.reshape(-1, 2).astype(np.float64)
                if len(c) < 3:
                    # a 1x1 upsampled blob (cannot happen at 2x) or a straight run: widen to a quad
                    c = np.array([[c[:, 0].min(), c[:, 1].min()], [c[:, 0].max() + 0.5, c[:, 1].min()],
                                  [c[:, 0].max() + 0.5, c[:, 1].max() + 0.5], [c[:, 0].min(), c[:, 1].max() + 0.5]])
                polys.append(((c + 0.5) / 2.0).reshape(-1))
            instances.append(polys)
        return PolygonList(instances, self.size)

    def crop_and_resize(self, boxes, mask_size, indices=None):
        """Binary mask of instance ``indices[k]`` sampled inside box ``boxes[k]`` at M x M.

        Cell (i, j) takes the pixel under its centre, (x0 + (j + 0.5) * w / M, y0 + (i + 0.5) * h / M) with
        w = max(x1 - x0, 1): the pixel-centre rule pycocotools applies to polygons, so a mask and the polygons
        it came from give identical targets. Outside the image is background.

        Args:
            boxes: Tensor[K, 4] xyxy in pixels. mask_size: M. indices: Tensor[K] or None for arange(K).
        Returns:
            float32 Tensor[K, M, M] of 0 / 1, on ``boxes.device``.
        """
        M = int(mask_size)
        device = boxes.device
        num_boxes = boxes.shape[0]
        indices = np.arange(num_boxes) if indices is None else torch.as_tensor(indices).cpu().numpy().astype(np.int64)
        if indices.shape[0] != num_boxes:
            raise ValueError("crop_and_resize: got {} boxes but {} indices".format(num_boxes, indices.shape[0]))
        if num_boxes == 0:
            return torch.zeros((0, M, M), dtype=torch.float32, device=device)
        # The sampling grid is tiny ([K, M]): NumPy, since torch's intra-op threads cost more than the work.
        width, height = self.size
        boxes_np = boxes.detach().to("cpu", torch.float64).numpy()
        centres = (np.arange(M, dtype=np.float64) + 0.5) / M
        box_w = np.maximum(boxes_np[:, 2] - boxes_np[:, 0], 1.0)
        box_h = np.maximum(boxes_np[:, 3] - boxes_np[:, 1], 1.0)
        xs = np.floor(boxes_np[:, 0, None] + centres[None] * box_w[:, None])  # [K, M] pixel column of each cell
        ys = np.floor(boxes_np[:, 1, None] + centres[None] * box_h[:, None])  # [K, M] pixel row of each cell
        valid = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
        rows = np.clip(ys, 0, height - 1).astype(np.int64)[:, :, None]
        cols = np.clip(xs, 0, width - 1).astype(np.int64)[:, None, :]
        if self.masks.device.type == "cpu":
            sampled = self.masks.numpy()[indices[:, None, None], rows, cols] != 0
            return torch.from_numpy((sampled & valid).astype(np.float32)).to(device)
        gather = [torch.from_numpy(a).to(self.masks.device) for a in (indices[:, None, None], rows, cols, valid)]
        sampled = self.masks[gather[0], gather[1], gather[2]] != 0
        return (sampled & gather[3]).float().to(device)

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            item = [int(item)]
        if isinstance(item, torch.Tensor) and item.dtype == torch.uint8:
            item = item.bool()
        if isinstance(item, torch.Tensor):
            item = item.to(self.masks.device)
        return BinaryMaskList(self.masks[item], self.size)

    def __iter__(self):
        return iter(self.masks)

    def __len__(self):
        return self.masks.shape[0]

    def __repr__(self):
        return "BinaryMaskList(num_instances={}, image_width={}, image_height={})".format(
            len(self), self.size[0], self.size[1])


class SegmentationMask(object):
    """Masks of the N instances of one image, stored as polygons or binary masks.

    Args:
        instances: mode "poly": list (per instance) of lists of flat polygons [x0, y0, x1, y1, ...] in pixels
            (each with >= 3 points); mode "mask": Tensor[N, H, W], a list of [H, W] masks or COCO RLE dicts.
            A PolygonList / BinaryMaskList is also accepted.
        size: (width, height) of the image.
        mode: "poly" or "mask".
    """

    def __init__(self, instances, size, mode="poly"):
        if isinstance(size, torch.Tensor):
            size = size.tolist()
        if len(size) != 2:
            raise ValueError("SegmentationMask: size should be (width, height), got {!r}".format(size))
        self.size = tuple(size)
        if mode == "poly" or isinstance(instances, PolygonList):
            self.instances = PolygonList(instances, self.size)
            mode = "poly"
        elif mode == "mask" or isinstance(instances, BinaryMaskList):
            self.instances = BinaryMaskList(instances, self.size)
            mode = "mask"
        else:
            raise ValueError("SegmentationMask: mode should be 'poly' or 'mask', got {!r}".format(mode))
        self.mode = mode

    @classmethod
    def _wrap(cls, instances, size, mode):
        obj = cls.__new__(cls)
        obj.instances, obj.size, obj.mode = instances, tuple(size), mode
        return obj

    def transpose(self, method):
        """Flip with FLIP_LEFT_RIGHT or FLIP_TOP_BOTTOM (pixel column i -> w - 1 - i)."""
        return self._wrap(self.instances.transpose(method), self.size, self.mode)

    def crop(self, box):
        """Crop to the window [x0, x1) x [y0, y1); the new size is (x1 - x0, y1 - y0) (at least 1)."""
        cropped = self.instances.crop(box)
        return self._wrap(cropped, cropped.size, self.mode)

    def resize(self, size, *args, **kwargs):
        """Rescale to ``size`` = (width, height)."""
        return self._wrap(self.instances.resize(size), tuple(size), self.mode)

    def to(self, *args, **kwargs):
        """Move binary masks like ``Tensor.to``; polygons stay on the CPU."""
        return self._wrap(self.instances.to(*args, **kwargs), self.size, self.mode)

    def convert(self, mode):
        """The same masks in ``mode`` ("poly" or "mask"); mask -> poly traces contours with OpenCV."""
        if mode == self.mode:
            return self
        if mode == "mask":
            return self._wrap(self.instances.convert_to_binarymask(), self.size, "mask")
        if mode == "poly":
            return self._wrap(self.instances.convert_to_polygon(), self.size, "poly")
        raise ValueError("SegmentationMask.convert: mode should be 'poly' or 'mask', got {!r}".format(mode))

    def get_mask_tensor(self):
        """uint8 Tensor[N, H, W] of 0 / 1 (squeezed to [H, W] when N == 1, as maskrcnn-benchmark)."""
        masks = self.instances.convert_to_binarymask().masks
        return masks.squeeze(0)

    def crop_and_resize(self, boxes, mask_size, indices=None):
        """Mask-head targets: instance ``indices[k]`` cropped to ``boxes[k]`` and resized to M x M.

        Polygons are rasterised directly at M x M inside each box (exactly maskrcnn-benchmark's
        crop -> resize -> convert("mask") of ``project_masks_on_boxes``, but one pycocotools call per image);
        binary masks take the pixel under each cell's centre (the same rule, so both modes agree).

        Args:
            boxes: Tensor[K, 4] xyxy boxes in this image's pixel coordinates (e.g. positive proposals).
            mask_size: M (28 for the standard mask head).
            indices: Tensor[K] (long) index of the instance for each box (e.g. matched GT index), or None to
                pair box k with instance k.
        Returns:
            float32 Tensor[K, M, M] of 0 / 1 on ``boxes.device`` (no gradient).
        """
        return self.instances.crop_and_resize(boxes, mask_size, indices)

    @staticmethod
    def cat(masks):
        """Concatenate the instances of SegmentationMasks of the same image size (converted to the first's mode)."""
        size, mode = masks[0].size, masks[0].mode
        if any(m.size != size for m in masks):
            raise ValueError("SegmentationMask.cat: sizes differ: {}".format([m.size for m in masks]))
        masks = [m.convert(mode) for m in masks]
        if mode == "poly":
            return SegmentationMask([p for m in masks for p in m.instances.polygons], size, "poly")
        return SegmentationMask(torch.cat([m.instances.masks for m in masks], dim=0), size, "mask")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, item):
        return self._wrap(self.instances[item], self.size, self.mode)

    def __len__(self):
        return len(self.instances)

    def __repr__(self):
        return "SegmentationMask(num_instances={}, image_width={}, image_height={}, mode={})".format(
            len(self), self.size[0], self.size[1], self.mode)
