"""Tiled detection: tiles cover the image, objects cut by seams come out once and whole, duplicates go.

The fake detector sees a scene whose pixel values are object ids: on any crop it returns one detection per id
present (mask = the id's pixels in the crop, box = their bounds, a fixed score per object), so it cuts objects at
crop edges exactly as a real detector would see them cut.
"""
import numpy as np
import pycocotools.mask as mask_util
import pytest

from maskrcnn_benchmark.engine import tiling
from maskrcnn_benchmark.engine.tiling import Detections, detect_tiled, tile_grid, tile_starts


def fake_detector(crop, with_masks=True):
    ids = crop[:, :, 0].astype(np.int64)
    boxes, scores, labels, masks = [], [], [], []
    for obj in np.unique(ids):
        if obj == 0:
            continue
        region = ids == obj
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        boxes.append([cols[0], rows[0], cols[-1], rows[-1]])
        scores.append(0.3 + obj / 100.0)
        labels.append(1 + obj % 2)
        masks.append(tiling.tight_window(0, 0, region))
    if not boxes:
        return Detections.empty(with_masks)
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(labels, np.int64),
                      masks if with_masks else None)


def scene():
    """280 x 300 image of objects (id = value): inside tiles, across seams, at a four-tile corner, larger than
    the overlap across several seams, touching neighbours across a seam, at the image border."""
    height, width = 280, 300
    ids = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]

    def disc(obj, cy, cx, r):
        ids[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = obj

    disc(1, 30, 30, 12)        # inside the first tile
    disc(2, 40, 127, 14)       # across the seam x = 127/128 (tile 0 ends at 128, tile 1 starts at 80)
    disc(3, 124, 124, 15)      # at the corner of four tiles
    ids[170:200, 60:161] = 4   # 101 px wide: larger than the overlap, cut in every tile that sees it
    disc(5, 240, 100, 10)      # two objects touching across the seam
    disc(6, 240, 121, 11)
    disc(7, 270, 290, 9)       # at the image's corner (its border edges are not seams)
    disc(8, 60, 220, 20)
    return np.repeat(ids[:, :, None], 3, axis=2)


def test_tile_starts_cover_the_side_with_the_overlap():
    assert tile_starts(300, 128, 48) == [0, 80, 160, 172]
    assert tile_starts(128, 128, 48) == [0]
    assert tile_starts(50, 128, 48) == [0]
    for length, tile, overlap in ((300, 128, 48), (1000, 256, 64), (257, 256, 0)):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError, match="tile-overlap"):
        tile_starts(300, 128, 128)


def test_tile_grid_covers_every_pixel():
    covered = np.zeros((280, 300), int)
    for x0, y0, x1, y1 in tile_grid(300, 280, 128, 48):
        assert x1 - x0 == 128 and y1 - y0 == 128
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1


@pytest.mark.parametrize("tile,overlap", [(128, 48), (96, 40), (160, 64)])
def test_every_object_comes_out_once_and_whole(tile, overlap):
    image = scene()
    result = detect_tiled(fake_detector, image, tile, overlap)
    ids = image[:, :, 0]
    expected = sorted(int(v) for v in np.unique(ids) if v)
    found = sorted(int(round((s - 0.3) * 100)) for s in result.scores)
    assert found == expected  # none lost, none doubled
    full = tiling.to_tensor_masks(result, *ids.shape).numpy()[:, 0].astype(bool)
    for k, score in enumerate(result.scores):
        obj = int(round((score - 0.3) * 100))
        np.testing.assert_array_equal(full[k], ids == obj, err_msg="object {}".format(obj))
        assert result.labels[k] == 1 + obj % 2
        rows, cols = np.flatnonzero((ids == obj).any(1)), np.flatnonzero((ids == obj).any(0))
        np.testing.assert_allclose(result.boxes[k], [cols[0], rows[0], cols[-1], rows[-1]])
    assert list(result.scores) == sorted(result.scores, reverse=True)


def test_boxes_only_detectors_merge_by_box_overlap():
    image = scene()
    result = detect_tiled(lambda crop: fake_detector(crop, with_masks=False), image, 128, 48)
    found = sorted(int(round((s - 0.3) * 100)) for s in result.scores)
    assert found == list(range(1, 9))
    assert result.masks is None


def test_detections_of_one_tile_are_not_merged_with_each_other():
    # a detector returning every detection twice (its own NMS left them): the tile merge does not second-guess it
    def twice(crop):
        once = fake_detector(crop)
        return tiling.concat([once, once])

    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 1
    result = detect_tiled(twice, image, 128, 48)  # one tile
    assert len(result) == 2


def test_a_cut_piece_without_a_whole_twin_is_kept():
    # the object is only seen cut (the other tile "misses" it): better a piece than nothing
    image = scene()

    def misses_object_2_where_whole(crop):
        # object 2 (x 113..141) is whole in the tile starting at x 80, where its box starts at x 33 of the crop
        found = fake_detector(crop)
        return found.select([k for k in range(len(found))
                             if not (found.scores[k] == np.float32(0.32) and found.boxes[k][0] < 60)])

    result = detect_tiled(misses_object_2_where_whole, image, 128, 48)
    assert sorted(int(round((s - 0.3) * 100)) for s in result.scores) == list(range(1, 9))
    piece = result.select(np.flatnonzero(result.scores == np.float32(0.32)))
    assert piece.boxes[0][2] == 127  # the part the first tile saw


def test_window_rle_equals_pycocotools_encode():
    rng = np.random.default_rng(0)
    height, width = 37, 53
    for top, left, h, w in ((0, 0, 37, 53), (5, 7, 10, 20), (36, 52, 1, 1), (3, 4, 0, 0)):
        region = rng.random((h, w)) > 0.5
        full = np.zeros((height, width), np.uint8)
        full[top:top + h, left:left + w] = region
        rle = tiling.window_to_rle((top, left, region), height, width)
        reference = mask_util.encode(np.asfortranarray(full))
        assert rle["counts"] == reference["counts"].decode("ascii")
        assert list(rle["size"]) == [height, width]
        np.testing.assert_array_equal(mask_util.decode(dict(rle, counts=rle["counts"].encode())), full)


def test_label_map_numbers_detections_in_order_highest_score_on_top():
    a = (0, 0, np.ones((4, 4), bool))
    b = (2, 2, np.ones((4, 4), bool))
    dets = Detections(np.zeros((2, 4), np.float32), np.array([0.9, 0.5], np.float32), np.ones(2, np.int64), [a, b])
    labels = tiling.label_map(dets, 8, 8)
    assert labels.dtype == np.uint16
    assert labels[0, 0] == 1 and labels[5, 5] == 2
    assert labels[3, 3] == 1  # overlap: the higher score (label 1) is drawn last
    assert labels[7, 7] == 0
