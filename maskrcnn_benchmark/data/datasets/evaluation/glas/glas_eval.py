"""The GlaS challenge's object-level metrics: detection F1, object Dice and object Hausdorff distance.

Definitions from Sirinukunwattana et al., "Gland segmentation in colon histology images: The GlaS challenge
contest", Medical Image Analysis 35 (2017) 489-502 (arXiv:1603.00275), Section 2.4 "Evaluation", and the
challenge's evaluation page (https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/evaluation):

* Detection. "The ground truth for each segmented object is the object in the manual annotation that has maximum
  overlap with that segmented object. A segmented glandular object that intersects with at least 50% of its ground
  truth object is considered as true positive, otherwise false positive. A ground truth glandular object that has
  no corresponding segmented object or has less than 50% of its area overlapped by its corresponding segmented
  object is considered as false negative." F1 = 2 P R / (P + R), P = TP / (TP + FP), R = TP / (TP + FN).
* Object Dice. Dice(G, S) = 2 |G n S| / (|G| + |S|) and
  Dice_obj(G, S) = 1/2 [ sum_i gamma_i Dice(G_i, S*(G_i)) + sum_j sigma_j Dice(G*(S_j), S_j) ]
  with gamma_i = |G_i| / sum_p |G_p|, sigma_j = |S_j| / sum_q |S_q|, S*(G_i) the segmented object that maximally
  overlaps G_i and G*(S_j) the ground-truth object that maximally overlaps S_j (Dice 0 when there is none).
* Object Hausdorff. H(G, S) = max{ sup_{x in G} inf_{y in S} ||x - y||, sup_{y in S} inf_{x in G} ||x - y|| } and
  H_obj(G, S) = 1/2 [ sum_i gamma_i H(G_i, S*(G_i)) + sum_j sigma_j H(G*(S_j), S_j) ], where an object that
  overlaps nothing on the other side is paired with the object nearest to it in Hausdorff distance.

As on the challenge page, the sums and the weights gamma / sigma run over all objects of a test part
(G~ and S~: every image's objects), while matching happens inside each image; TP/FP/FN are summed over the part.
Conventions for cases the definitions leave open (documented so numbers can be compared):
  - F1 is 2 TP / (2 TP + FP + FN), which equals 2PR/(P+R) and is 1 when there is nothing to detect and nothing was
    detected; when two segmented objects both cover >= 50% of the same ground truth only the first counts as TP.
  - An object whose image has no object at all on the other side gets the image diagonal as Hausdorff distance
    (the largest distance inside the image) and Dice 0.
  - A side with no objects in the whole part contributes 0 to the Dice and Hausdorff sums (the other side's
    unmatched objects already carry the penalty); with no objects anywhere Dice_obj = 1 and H_obj = 0.
Objects are label maps: HxW integer arrays, 0 background, each k > 0 one object (a label may have several
connected components, as in the GlaS annotations).
"""
import numpy as np
from scipy import ndimage


def _relabel(label_map):
    """(contiguous map 0..n, original ids [n], areas [n]) of an HxW label map."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError("A label map must be 2-D (H, W), got shape {}".format(label_map.shape))
    ids, inverse = np.unique(label_map, return_inverse=True)
    inverse = inverse.reshape(label_map.shape)
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:  # no background pixel: shift so that 0 stays background
        inverse = inverse + 1
    areas = np.bincount(inverse.ravel(), minlength=ids.size + 1)[1:]
    return inverse, ids, areas


def overlap_matrix(gt_map, seg_map, num_gt, num_seg):
    """Pixel counts of every (ground-truth, segmented) pair: int64 [num_gt + 1, num_seg + 1], row/col 0 background."""
    pair_index = gt_map.ravel().astype(np.int64) * (num_seg + 1) + seg_map.ravel()
    return np.bincount(pair_index, minlength=(num_gt + 1) * (num_seg + 1)).reshape(num_gt + 1, num_seg + 1)


_CROSS = ndimage.generate_binary_structure(2, 1)


def _boundary(mask):
    """Pixels of `mask` with a 4-neighbour outside it: the nearest pixel of `mask` to any outside point is one."""
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _object_points(label_map, num_objects):
    """Per object k = 1..num_objects of a contiguous label map: (pixel coords [P, 2], boundary coords [Q, 2])."""
    points = []
    for k, window in enumerate(ndimage.find_objects(label_map, max_label=num_objects), start=1):
        mask = label_map[window] == k
        offset = np.array([window[0].start, window[1].start])
        boundary = _boundary(mask)  # crop edges count as outside: the crop is the object's tight box
        points.append((np.argwhere(mask) + offset, np.argwhere(boundary) + offset))
    return points


def _directed(points_a, label_map_b, label_b, boundary_b):
    """sup over pixels of A of the distance to B, given B as label `label_b` of `label_map_b` and its boundary."""
    from scipy.spatial.distance import directed_hausdorff

    outside = points_a[label_map_b[points_a[:, 0], points_a[:, 1]] != label_b]
    if outside.size == 0:
        return 0.0
    return directed_hausdorff(outside, boundary_b, seed=0)[0]


def hausdorff_distance(mask_a, mask_b):
    """Hausdorff distance (pixels, Euclidean) between two non-empty boolean masks of the same HxW shape.

    Exact on the full pixel sets: a pixel inside the other mask is at distance 0, and for a pixel outside it the
    nearest pixel of the other mask lies on that mask's 4-connected boundary, so each directed distance is
    scipy's directed_hausdorff from the pixels of A outside B to the boundary of B (early-break search).
    """
    mask_a, mask_b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    (points_a, boundary_a), = _object_points(mask_a.astype(np.int32), 1)
    (points_b, boundary_b), = _object_points(mask_b.astype(np.int32), 1)
    return float(max(_directed(points_a, mask_b.astype(np.int32), 1, boundary_b),
                     _directed(points_b, mask_a.astype(np.int32), 1, boundary_a)))


def _hausdorff_by_distance_transform(mask_a, mask_b):
    """Reference implementation with distance transforms on the crop holding both masks (used by the tests)."""
    rows = np.flatnonzero(mask_a.any(axis=1) | mask_b.any(axis=1))
    cols = np.flatnonzero(mask_a.any(axis=0) | mask_b.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a, b = mask_a[window], mask_b[window]
    return float(max(ndimage.distance_transform_edt(~b)[a].max(), ndimage.distance_transform_edt(~a)[b].max()))


def image_object_terms(gt_label_map, seg_label_map):
    """Per-object terms of one image, to be summed over a test part by :func:`aggregate_glas_metrics`.

    Args:
        gt_label_map, seg_label_map: int arrays [H, W] (0 background, k > 0 one object).
    Returns:
        dict with "tp", "fp", "fn" (ints), "gt_areas" / "seg_areas" (float [nG] / [nS]), "gt_dice" / "seg_dice"
        (Dice of each object with its partner, [nG] / [nS]) and "gt_hausdorff" / "seg_hausdorff" ([nG] / [nS]).
    """
    gt_label_map = np.asarray(gt_label_map)
    seg_label_map = np.asarray(seg_label_map)
    if gt_label_map.shape != seg_label_map.shape:
        raise ValueError("Ground-truth label map {} and segmentation {} differ in shape".format(
            gt_label_map.shape, seg_label_map.shape))
    gt_map, _, gt_areas = _relabel(gt_label_map)
    seg_map, _, seg_areas = _relabel(seg_label_map)
    num_gt, num_seg = gt_areas.size, seg_areas.size
    overlap = overlap_matrix(gt_map, seg_map, num_gt, num_seg)[1:, 1:]  # [nG, nS], background dropped

    # Detection: each segmented object's ground truth is its maximum-overlap object.
    tp = 0
    matched_gt = np.zeros(num_gt, dtype=bool)
    for j in range(num_seg):
        if num_gt == 0 or overlap[:, j].max() == 0:
            continue
        i = int(overlap[:, j].argmax())
        if overlap[i, j] >= 0.5 * gt_areas[i] and not matched_gt[i]:
            matched_gt[i] = True
            tp += 1
    fp = num_seg - tp
    fn = num_gt - tp

    # Partners by maximum overlap (-1: overlaps nothing).
    gt_partner = np.where(overlap.max(axis=1, initial=0) > 0, overlap.argmax(axis=1) if num_seg else -1, -1)
    seg_partner = np.where(overlap.max(axis=0, initial=0) > 0, overlap.argmax(axis=0) if num_gt else -1, -1)

    def dice(i, j):
        return 2.0 * overlap[i, j] / float(gt_areas[i] + seg_areas[j])

    gt_dice = np.array([dice(i, j) if j >= 0 else 0.0 for i, j in enumerate(gt_partner)], dtype=np.float64)
    seg_dice = np.array([dice(i, j) if i >= 0 else 0.0 for j, i in enumerate(seg_partner)], dtype=np.float64)

    gt_points = _object_points(gt_map, num_gt)
    seg_points = _object_points(seg_map, num_seg)
    gt_extent = np.array([np.r_[p.min(axis=0), p.max(axis=0)] for p, _ in gt_points]).reshape(-1, 4)
    seg_extent = np.array([np.r_[p.min(axis=0), p.max(axis=0)] for p, _ in seg_points]).reshape(-1, 4)
    # H(A, B) >= |top_A - top_B| (and likewise bottom, left, right): A's extreme pixel is that far from all of B.
    # Used to skip exact distances when searching for an unmatched object's nearest partner.
    lower_bound = np.abs(gt_extent[:, None, :] - seg_extent[None, :, :]).max(axis=2)  # [nG, nS]
    diagonal = float(np.hypot(*gt_label_map.shape))
    cache = {}

    def pair_hausdorff(i, j):
        if (i, j) not in cache:
            cache[(i, j)] = float(max(_directed(gt_points[i][0], seg_map, j + 1, seg_points[j][1]),
                                      _directed(seg_points[j][0], gt_map, i + 1, gt_points[i][1])))
        return cache[(i, j)]

    def nearest(bounds, distance):
        best = np.inf
        for k in np.argsort(bounds, kind="stable"):
            if bounds[k] >= best:
                break
            best = min(best, distance(k))
        return best

    def gt_hausdorff(i):
        if num_seg == 0:
            return diagonal
        j = gt_partner[i]
        if j >= 0:
            return pair_hausdorff(i, j)
        return nearest(lower_bound[i], lambda k: pair_hausdorff(i, k))  # nearest segmented object

    def seg_hausdorff(j):
        if num_gt == 0:
            return diagonal
        i = seg_partner[j]
        if i >= 0:
            return pair_hausdorff(i, j)
        return nearest(lower_bound[:, j], lambda k: pair_hausdorff(k, j))  # nearest ground-truth object

    return {
        "tp": int(tp), "fp": int(fp), "fn": int(fn),
        "gt_areas": gt_areas.astype(np.float64), "seg_areas": seg_areas.astype(np.float64),
        "gt_dice": gt_dice, "seg_dice": seg_dice,
        "gt_hausdorff": np.array([gt_hausdorff(i) for i in range(num_gt)], dtype=np.float64),
        "seg_hausdorff": np.array([seg_hausdorff(j) for j in range(num_seg)], dtype=np.float64),
    }


def _weighted_side(values, areas):
    total = areas.sum()
    return float((values * areas).sum() / total) if total > 0 else 0.0


def aggregate_glas_metrics(per_image_terms):
    """Combine :func:`image_object_terms` of the images of a test part into the challenge's three numbers.

    Returns:
        dict {"F1", "ObjDice", "ObjHausdorff", "TP", "FP", "FN", "num_gt", "num_seg"}.
    """
    per_image_terms = list(per_image_terms)
    tp = sum(t["tp"] for t in per_image_terms)
    fp = sum(t["fp"] for t in per_image_terms)
    fn = sum(t["fn"] for t in per_image_terms)

    def cat(key):
        parts = [t[key] for t in per_image_terms]
        return np.concatenate(parts) if parts else np.zeros(0)

    gt_areas, seg_areas = cat("gt_areas"), cat("seg_areas")
    denominator = 2 * tp + fp + fn
    f1 = 2.0 * tp / denominator if denominator > 0 else 1.0
    if gt_areas.size == 0 and seg_areas.size == 0:
        obj_dice, obj_hausdorff = 1.0, 0.0
    else:
        obj_dice = 0.5 * (_weighted_side(cat("gt_dice"), gt_areas) + _weighted_side(cat("seg_dice"), seg_areas))
        obj_hausdorff = 0.5 * (_weighted_side(cat("gt_hausdorff"), gt_areas)
                               + _weighted_side(cat("seg_hausdorff"), seg_areas))
    return {"F1": f1, "ObjDice": obj_dice, "ObjHausdorff": obj_hausdorff, "TP": int(tp), "FP": int(fp),
            "FN": int(fn), "num_gt": int(gt_areas.size), "num_seg": int(seg_areas.size)}


def glas_metrics(gt_label_maps, seg_label_maps):
    """F1, object Dice and object Hausdorff of a test part given as lists of HxW label maps (same order)."""
    if len(gt_label_maps) != len(seg_label_maps):
        raise ValueError("{} ground-truth label maps but {} segmentations".format(
            len(gt_label_maps), len(seg_label_maps)))
    return aggregate_glas_metrics(image_object_terms(g, s) for g, s in zip(gt_label_maps, seg_label_maps))


def label_map_from_instances(masks, scores, score_threshold=0.5):
    """Turn overlapping instance masks into the disjoint segmentation the GlaS metrics score.

    Args:
        masks: bool/uint8 array [N, H, W] (already pasted into the image).
        scores: float array [N].
        score_threshold: instances scoring below it are dropped.
    Returns:
        int32 [H, W] label map; where instances overlap, the higher-scoring one keeps the pixel.
    """
    masks = np.asarray(masks).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_map = np.zeros(masks.shape[1:], dtype=np.int32)
    order = np.argsort(scores, kind="stable")  # ascending: later (higher) scores paint over earlier ones
    label = 0
    for k in order:
        if scores[k] < score_threshold:
            continue
        label += 1
        label_map[masks[k]] = label
    return label_map
