"""Detection on images larger than the model's input: overlapping tiles at full resolution, merged by mask overlap.

An image is cut into tiles of ``tile`` x ``tile`` pixels whose neighbours share ``overlap`` pixels (the last tile of
a row or column is moved back to end at the image's border, so it may share more). Each tile goes through the
detector as an image of its own (the model's test transform resizes the tile, not the whole image), and the
detections are moved into the image's frame and merged:

- a detection whose mask (box, without masks) touches an edge its tile shares with another tile is *cut*: the
  object may go on beyond the tile. Every object not wider or taller than ``overlap`` lies whole inside some tile,
  so its cut pieces have a whole twin;
- detections are taken whole ones first, higher scores first. One from another tile is a duplicate of a taken
  detection of the same class when, in the region both tiles see, their masks' intersection exceeds
  ``overlap_thresh`` of the smaller of their parts there (intersection over smaller, IoS: a cut piece and its whole
  twin agree there, so IoS ~ 1 while their IoU can be small; two neighbouring objects do not overlap). A duplicate
  is dropped, except that two cut pieces are united (mask union, box union, the higher score): an object larger
  than the overlap is cut in every tile, and its pieces make it up. Detections of the same tile are never merged
  with each other: within a tile the detector's own NMS has already decided.

Masks are kept as windows (top, left, bool array tight around the mask) in the image frame, so a 4000 x 3000 image
with hundreds of detections needs no image-sized array per detection.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

Window = Tuple[int, int, np.ndarray]  # (top, left, bool [h, w]): mask pixels [top:top+h, left:left+w]


@dataclass
class Detections:
    """Detections of one image (or tile) in its pixel frame.

    Attributes:
        boxes (ndarray[N, 4] float32): xyxy boxes.
        scores (ndarray[N] float32)
        labels (ndarray[N] int64): the model's labels (1..C).
        masks (list[Window] | None): per detection its mask window (h or w may be 0 for an empty mask); None for
            a model without masks.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: Optional[List[Window]] = None
    tile_index: np.ndarray = field(default=None)  # int [N]: the tile each detection came from (merging only)
    cut: np.ndarray = field(default=None)  # bool [N]: touches an inner tile edge (merging only)

    def __len__(self):
        return len(self.scores)

    @staticmethod
    def empty(with_masks=True):
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                          [] if with_masks else None)

    def select(self, order):
        """The detections at the indices ``order`` (in that order)."""
        order = np.asarray(order, dtype=np.int64)
        return Detections(self.boxes[order], self.scores[order], self.labels[order],
                          None if self.masks is None else [self.masks[i] for i in order],
                          None if self.tile_index is None else self.tile_index[order],
                          None if self.cut is None else self.cut[order])

    def sorted_by_score(self):
        """Highest score first (stable)."""
        return self.select(np.argsort(-self.scores, kind="stable"))


def tight_window(top, left, region):
    """(top, left, bool array) cropped to the mask's nonzero rows and columns; empty masks give a 0 x 0 window."""
    region = np.asarray(region).astype(bool)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return (top, left, np.zeros((0, 0), bool))
    return (top + int(rows[0]), left + int(cols[0]), region[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def detections_from_boxlist(prediction, mask_threshold=0.5):
    """Detections from a predictor's BoxList (xyxy or not, in its image's size) whose "mask" holds M x M
    probabilities (pasted here, window by window, as the COCO evaluation pastes them) or pasted masks."""
    from maskrcnn_benchmark.modeling.roi_heads.mask_head.inference import paste_masks_in_windows

    prediction = prediction.convert("xyxy")
    width, height = prediction.size
    boxes = prediction.bbox.float().numpy().astype(np.float32)
    scores = prediction.get_field("scores").float().numpy().astype(np.float32)
    labels = prediction.get_field("labels").numpy().astype(np.int64)
    masks = None
    if prediction.has_field("mask"):
        mask = prediction.get_field("mask")
        if list(mask.shape[-2:]) == [height, width]:  # already pasted
            pasted = (mask >= mask_threshold) if mask.is_floating_point() else mask.bool()
            masks = [tight_window(0, 0, m.reshape(height, width).numpy()) for m in pasted]
        else:
            windows = paste_masks_in_windows(mask, prediction.bbox, (height, width), mask_threshold, padding=1)
            masks = [tight_window(0, 0, np.zeros((0, 0), bool)) if w is None else tight_window(w[0], w[1],
                                                                                            w[2].numpy())
                     for w in windows]
    return Detections(boxes, scores, labels, masks)


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of ``tile`` px along a side of ``length`` px, neighbours sharing >= ``overlap`` px;
    the last tile ends at the border. A side no longer than a tile has one tile at 0."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError("Tiles need --tile > 0 and 0 <= --tile-overlap < --tile; got tile {} and overlap {}".format(
            tile, overlap))
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_grid(width, height, tile, overlap):
    """Tiles (x0, y0, x1, y1), x1/y1 exclusive, covering a width x height image, row by row."""
    return [(x0, y0, min(x0 + tile, width), min(y0 + tile, height))
            for y0 in tile_starts(height, tile, overlap) for x0 in tile_starts(width, tile, overlap)]


def shift(detections, dx, dy):
    """The detections moved by (dx, dy) pixels (from a tile's frame into the image's)."""
    boxes = detections.boxes + np.array([dx, dy, dx, dy], np.float32)
    masks = None if detections.masks is None else [(top + dy, left + dx, m) for top, left, m in detections.masks]
    return Detections(boxes, detections.scores.copy(), detections.labels.copy(), masks)


def cut_by_inner_edge(detections, tile_box, width, height, margin=1.0):
    """bool [N]: which detections (in the image frame) touch an edge of ``tile_box`` that is not the image's border:
    the mask has a pixel in the tile's outermost row/column there, or, without masks, the box comes within
    ``margin`` px of it."""
    x0, y0, x1, y1 = tile_box
    inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)  # left, top, right, bottom
    cut = np.zeros(len(detections), bool)
    for i in range(len(detections)):
        if detections.masks is not None:
            top, left, region = detections.masks[i]
            if region.size == 0:
                continue
            bottom, right = top + region.shape[0] - 1, left + region.shape[1] - 1  # inclusive
            touches = (left <= x0, top <= y0, right >= x1 - 1, bottom >= y1 - 1)
        else:
            bx0, by0, bx1, by1 = detections.boxes[i]
            touches = (bx0 <= x0 + margin, by0 <= y0 + margin, bx1 >= x1 - 1 - margin, by1 >= y1 - 1 - margin)
        cut[i] = any(t and e for t, e in zip(touches, inner))
    return cut


def _clip(window, rect):
    """The part of a mask window inside rect (x0, y0, x1, y1; x1/y1 exclusive), as a window."""
    top, left, region = window
    x0, y0, x1, y1 = rect
    t, l_ = max(top, y0), max(left, x0)
    b, r = min(top + region.shape[0], y1), min(left + region.shape[1], x1)
    if b <= t or r <= l_:
        return (t, l_, np.zeros((0, 0), bool))
    return (t, l_, region[t - top:b - top, l_ - left:r - left])


def window_overlap(a, b, rect=None):
    """Intersection (pixels) of two mask windows, inside ``rect`` (x0, y0, x1, y1) when given."""
    if rect is not None:
        a, b = _clip(a, rect), _clip(b, rect)
    (ta, la, ra), (tb, lb, rb) = a, b
    top, left = max(ta, tb), max(la, lb)
    bottom, right = min(ta + ra.shape[0], tb + rb.shape[0]), min(la + ra.shape[1], lb + rb.shape[1])
    if bottom <= top or right <= left:
        return 0
    return int(np.count_nonzero(ra[top - ta:bottom - ta, left - la:right - la]
                                & rb[top - tb:bottom - tb, left - lb:right - lb]))


def window_area(window, rect=None):
    """Mask pixels of a window, inside ``rect`` when given."""
    return int(np.count_nonzero((_clip(window, rect) if rect is not None else window)[2]))


def window_union(a, b):
    """The window of the union of two mask windows."""
    (ta, la, ra), (tb, lb, rb) = a, b
    if ra.size == 0:
        return b
    if rb.size == 0:
        return a
    top, left = min(ta, tb), min(la, lb)
    bottom, right = max(ta + ra.shape[0], tb + rb.shape[0]), max(la + ra.shape[1], lb + rb.shape[1])
    out = np.zeros((bottom - top, right - left), bool)
    out[ta - top:ta - top + ra.shape[0], la - left:la - left + ra.shape[1]] |= ra
    out[tb - top:tb - top + rb.shape[0], lb - left:lb - left + rb.shape[1]] |= rb
    return (top, left, out)


def _box_area(boxes):
    # inclusive pixel convention, as the boxes of the detector: a box of one pixel column has width 1
    return np.clip(boxes[:, 2] - boxes[:, 0] + 1, 0, None) * np.clip(boxes[:, 3] - boxes[:, 1] + 1, 0, None)


def _box_intersections(box, boxes):
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1, 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1, 0, None)
    return w * h


def _box_in(box, rect):
    return np.array([max(box[0], rect[0]), max(box[1], rect[1]), min(box[2], rect[2] - 1), min(box[3], rect[3] - 1)],
                    np.float32)


def shared_overlap(a_mask, b_mask, a_box, b_box, rect):
    """Where both of two tiles see (``rect``, the intersection of the tiles), the intersection of two detections
    over the smaller of their parts there; 0 when either has no part there. Masks when given, else boxes."""
    if a_mask is not None:
        smaller = min(window_area(a_mask, rect), window_area(b_mask, rect))
        return window_overlap(a_mask, b_mask, rect) / smaller if smaller > 0 else 0.0
    a, b = _box_in(a_box, rect), _box_in(b_box, rect)
    smaller = min(_box_area(a[None])[0], _box_area(b[None])[0])
    return _box_intersections(a, b[None])[0] / smaller if smaller > 0 else 0.0


def _rect_intersection(a, b):
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def merge_tile_detections(detections, tile_boxes, overlap_thresh=0.5):
    """Merge the detections of all tiles (image frame, with ``tile_index`` and ``cut``), see the module docstring.

    Two detections of different tiles are compared where both tiles see: the intersection of their masks there
    over the smaller of their parts there (a cut piece and its whole twin, or two pieces of one large object, agree
    there; two neighbouring objects do not).

    Args:
        detections (Detections): of all tiles, with ``tile_index`` (into ``tile_boxes``) and ``cut``.
        tile_boxes (list[(x0, y0, x1, y1)]): the tiles, x1/y1 exclusive.
        overlap_thresh (float): above it two detections of the same class are one object.
    Returns:
        Detections, highest score first.
    """
    n = len(detections)
    if n == 0:
        return Detections.empty(detections.masks is not None)
    order = np.lexsort((-detections.scores, detections.cut))  # whole ones first, then by score
    boxes, labels, tiles = detections.boxes.copy(), detections.labels, detections.tile_index
    masks = None if detections.masks is None else list(detections.masks)
    scores, cut = detections.scores.copy(), detections.cut.copy()
    seen_by = {i: {int(tiles[i])} for i in range(n)}  # tiles a (merged) detection came from
    kept = []
    rank = np.full(n, n, np.int64)  # position in ``kept`` (n: not kept), the order candidates are compared in
    for i in order:
        duplicate_of = None
        # kept detections of the same class whose boxes touch this one's (vectorised: thousands per image)
        near = np.flatnonzero((rank < n) & (labels == labels[i])
                              & (boxes[:, 0] <= boxes[i][2] + 1) & (boxes[i][0] <= boxes[:, 2] + 1)
                              & (boxes[:, 1] <= boxes[i][3] + 1) & (boxes[i][1] <= boxes[:, 3] + 1))
        for k in near[np.argsort(rank[near], kind="stable")]:
            if int(tiles[i]) in seen_by[k]:
                continue
            mask_i, mask_k = (None, None) if masks is None else (masks[i], masks[k])
            # a united detection is compared where the candidate's tile meets any of the tiles it came from
            for tile_k in sorted(seen_by[k]):
                rect = _rect_intersection(tile_boxes[int(tiles[i])], tile_boxes[tile_k])
                if rect[2] > rect[0] and rect[3] > rect[1] and \
                        shared_overlap(mask_i, mask_k, boxes[i], boxes[k], rect) > overlap_thresh:
                    duplicate_of = k
                    break
            if duplicate_of is not None:
                break
        if duplicate_of is None:
            rank[i] = len(kept)
            kept.append(i)
            continue
        k = duplicate_of
        if cut[i] and cut[k]:  # two pieces of an object larger than the overlap: unite them
            boxes[k] = [min(boxes[k][0], boxes[i][0]), min(boxes[k][1], boxes[i][1]),
                        max(boxes[k][2], boxes[i][2]), max(boxes[k][3], boxes[i][3])]
            scores[k] = max(scores[k], scores[i])
            seen_by[k] |= seen_by[i]
            if masks is not None:
                masks[k] = window_union(masks[k], masks[i])
    result = Detections(boxes, scores, labels.copy(), masks, tiles.copy(), cut)
    return result.select(kept).sorted_by_score()


def image_hw(image):
    """(height, width) of an ndarray [H, W, C], a Tensor [C, H, W] (the reader's high-bit images) or a PIL image."""
    if isinstance(image, np.ndarray):
        return image.shape[:2]
    if isinstance(image, torch.Tensor):
        return tuple(image.shape[-2:])
    return image.size[1], image.size[0]


def crop(image, x0, y0, x1, y1):
    """Pixels [y0:y1, x0:x1] of an image of any type :func:`image_hw` takes, in the same type."""
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image[y0:y1, x0:x1])
    if isinstance(image, torch.Tensor):
        return image[:, y0:y1, x0:x1].contiguous()
    return image.crop((x0, y0, x1, y1))


def detect_tiled(predict, image, tile, overlap, overlap_thresh=0.5, progress=False):
    """Detect on overlapping tiles of ``image`` and merge into the image's frame.

    Args:
        predict: callable (tile, of the image's type) -> Detections in the tile's frame.
        image: the whole image: ndarray[H, W, C], or what data.image_io.read_image returns (PIL image, or
            Tensor[3, H, W] of a high-bit file).
        tile, overlap (int): tile side and the overlap of neighbouring tiles, px.
        overlap_thresh (float): IoS above which detections of different tiles are duplicates.
        progress (bool): a progress bar over the tiles (a large slide has hundreds).
    Returns:
        Detections in the image's frame, highest score first.
    """
    height, width = image_hw(image)
    parts = []
    grid = tile_grid(width, height, tile, overlap)
    from tqdm import tqdm

    for index, (x0, y0, x1, y1) in enumerate(tqdm(grid, desc="tiles", unit="tile", leave=False,
                                                  disable=not progress or len(grid) < 2)):
        found = shift(predict(crop(image, x0, y0, x1, y1)), x0, y0)
        found.cut = cut_by_inner_edge(found, (x0, y0, x1, y1), width, height)
        found.tile_index = np.full(len(found), index, np.int64)
        parts.append(found)
    return merge_tile_detections(concat(parts), grid, overlap_thresh)


def concat(parts):
    """One Detections of several (all with masks or all without)."""
    with_masks = bool(parts) and parts[0].masks is not None
    if not parts:
        return Detections.empty()
    joined = Detections(np.concatenate([p.boxes for p in parts]).reshape(-1, 4).astype(np.float32),
                        np.concatenate([p.scores for p in parts]).astype(np.float32),
                        np.concatenate([p.labels for p in parts]).astype(np.int64),
                        [m for p in parts for m in p.masks] if with_masks else None)
    if all(p.tile_index is not None for p in parts):
        joined.tile_index = np.concatenate([p.tile_index for p in parts])
        joined.cut = np.concatenate([p.cut for p in parts])
    return joined


def window_to_rle(window, height, width):
    """COCO compressed RLE ({"size": [H, W], "counts": str}) of a mask window in an H x W image, without building the
    H x W array: the runs are read off the window's column-major pixel indices."""
    import pycocotools.mask as mask_util

    top, left, region = window
    cols, rows = np.nonzero(np.asarray(region, bool).T)  # column-major order: by column, then row
    index = (left + cols).astype(np.int64) * height + (top + rows)
    total = height * width
    if index.size == 0:
        counts = [total]
    else:
        breaks = np.flatnonzero(np.diff(index) != 1)
        starts = np.concatenate([index[:1], index[breaks + 1]])
        ends = np.concatenate([index[breaks], index[-1:]]) + 1
        zeros = starts - np.concatenate([[0], ends[:-1]])
        counts = np.stack([zeros, ends - starts], axis=1).reshape(-1).tolist()
        if ends[-1] < total:
            counts.append(int(total - ends[-1]))
    rle = mask_util.frPyObjects({"counts": [int(c) for c in counts], "size": [height, width]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def window_to_polygons(window):
    """COCO polygons [[x0, y0, x1, y1, ...], ...] (image pixel coordinates) of a mask window's outer contours, for
    tools that import polygons only (Label Studio). An approximation: pixel centres are traced, so rasterising the
    polygons gives back a mask about half a pixel thinner all round. A mask too small for a 3-point contour gets the
    polygon of its pixels' outline box; an empty mask gets []."""
    import cv2

    top, left, region = window
    if region.size == 0 or not region.any():
        return []
    contours, _ = cv2.findContours(np.ascontiguousarray(region, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = [(c.reshape(-1, 2) + [left, top]).astype(float).ravel().tolist() for c in contours if len(c) >= 3]
    if not polygons:
        rows, cols = np.nonzero(region)
        x0, y0, x1, y1 = left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1
        polygons = [[float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]
    return polygons


def label_map(detections, height, width):
    """uint16 [H, W]: 0 background, i at the pixels of the i-th detection (1-based, in the given order, highest
    score first), the highest score drawn last so it is on top where masks overlap."""
    if len(detections) > np.iinfo(np.uint16).max:
        raise ValueError("{} detections do not fit a 16-bit label map (at most 65535); raise --confidence".format(
            len(detections)))
    out = np.zeros((height, width), np.uint16)
    for i in range(len(detections) - 1, -1, -1):
        top, left, region = detections.masks[i]
        if region.size:
            view = out[top:top + region.shape[0], left:left + region.shape[1]]
            view[region] = i + 1
    return out


def to_tensor_masks(detections, height, width):
    """uint8 Tensor[N, 1, H, W] of the detections' masks (for the drawing helpers)."""
    out = torch.zeros((len(detections), 1, height, width), dtype=torch.uint8)
    for i, (top, left, region) in enumerate(detections.masks or []):
        if region.size:
            out[i, 0, top:top + region.shape[0], left:left + region.shape[1]] = torch.from_numpy(
                region.astype(np.uint8))
    return out
