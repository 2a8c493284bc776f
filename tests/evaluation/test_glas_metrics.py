"""GlaS object-level F1 / Dice / Hausdorff on hand-made label maps with answers worked out from the definitions."""
import numpy as np
import pytest
import torch

from maskrcnn_benchmark.data.datasets.evaluation.glas import glas_metrics, label_map_from_instances
from maskrcnn_benchmark.data.datasets.evaluation.glas.glas_eval import hausdorff_distance


def _two_squares():
    gt = np.zeros((10, 30), np.int64)
    gt[:, 0:10] = 1  # A, 100 px
    gt[:, 20:30] = 2  # B, 100 px, 20 px right of A (column 0 of A is 20 from column 20 of B)
    return gt


def test_perfect_match():
    gt = _two_squares()
    seg = np.where(gt > 0, 3 - gt, 0)  # same objects, different label ids
    m = glas_metrics([gt], [seg])
    assert m["F1"] == 1.0 and m["ObjDice"] == 1.0 and m["ObjHausdorff"] == 0.0


def test_missed_gland():
    gt = _two_squares()
    seg = np.where(gt == 1, 1, 0)
    m = glas_metrics([gt], [seg])
    # TP 1, FP 0, FN 1 -> F1 = 2*1 / (2*1 + 0 + 1)
    assert m["F1"] == pytest.approx(2 / 3)
    # G side: A Dice 1, B Dice 0 (no overlap), weights 1/2 each; S side: A Dice 1
    assert m["ObjDice"] == pytest.approx(0.5 * (0.5 * 1 + 0.5 * 0) + 0.5 * 1)
    # B is paired with its nearest segmented object A: H(A, B) = 20; G side 0.5*0 + 0.5*20; S side 0
    assert m["ObjHausdorff"] == pytest.approx(0.5 * (0.5 * 20) + 0.5 * 0)


def test_split_gland():
    gt = np.ones((10, 20), np.int64)  # one 200 px gland
    seg = np.zeros((10, 20), np.int64)
    seg[:, :12] = 1  # 120 px: covers 60% of the gland -> TP
    seg[:, 12:] = 2  # 80 px: 40% -> FP
    m = glas_metrics([gt], [seg])
    assert m["F1"] == pytest.approx(2 / (2 + 1 + 0))
    dice_left, dice_right = 2 * 120 / (200 + 120), 2 * 80 / (200 + 80)
    assert m["ObjDice"] == pytest.approx(0.5 * dice_left + 0.5 * (0.6 * dice_left + 0.4 * dice_right))
    # H(G, left): column 19 is 8 from column 11; H(G, right): column 0 is 12 from column 12
    assert m["ObjHausdorff"] == pytest.approx(0.5 * 8 + 0.5 * (0.6 * 8 + 0.4 * 12))


def test_merged_glands():
    gt = np.zeros((10, 25), np.int64)
    gt[:, :10] = 1
    gt[:, 15:] = 2
    seg = np.ones((10, 25), np.int64)  # one 250 px object over both
    m = glas_metrics([gt], [seg])
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 1)
    assert m["F1"] == pytest.approx(2 / 3)
    assert m["ObjDice"] == pytest.approx(2 * 100 / (100 + 250))
    assert m["ObjHausdorff"] == pytest.approx(15.0)  # column 24 to A's column 9, column 0 to B's column 15


def test_weights_run_over_the_whole_part():
    gt1 = np.zeros((10, 10), np.int64)
    gt1[:, :] = 1  # 100 px, segmented perfectly
    gt2 = np.zeros((10, 10), np.int64)
    gt2[:5, :] = 1  # 50 px, missed in an image with another (false) object
    seg2 = np.zeros((10, 10), np.int64)
    seg2[8:, :] = 1  # 20 px, no overlap
    m = glas_metrics([gt1, gt2], [gt1, seg2])
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 1)
    assert m["ObjDice"] == pytest.approx(0.5 * (100 / 150) + 0.5 * (100 / 120))
    # gt2 <-> seg2 nearest: row 0 of gt2 is 8 from row 8; row 9 of seg2 is 5 from row 4
    assert m["ObjHausdorff"] == pytest.approx(0.5 * (50 / 150 * 8) + 0.5 * (20 / 120 * 8))


def test_hausdorff_matches_scipy_on_random_blobs():
    from scipy.spatial.distance import directed_hausdorff

    rng = np.random.RandomState(0)
    a = rng.rand(40, 50) > 0.97
    b = rng.rand(40, 50) > 0.97
    pa, pb = np.argwhere(a), np.argwhere(b)
    expected = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff_distance(a, b) == pytest.approx(expected)


def test_label_map_higher_score_wins_and_threshold():
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :, :2] = True
    masks[1, :, 1:3] = True
    masks[2, 3, 3] = True
    label_map = label_map_from_instances(masks, [0.9, 0.6, 0.1], score_threshold=0.5)
    # instance 0 (best) keeps the shared column 1; instance 2 is below the threshold
    assert set(np.unique(label_map)) == {0, 1, 2}
    assert (label_map[:, 1] == label_map[0, 0]).all() and label_map[0, 0] != label_map[0, 2]
    assert label_map[3, 3] == 0


def test_evaluate_dispatch_reports_glas_metrics(tmp_path):
    """evaluate() on a 'gland' dataset prints F1/Dice/Hausdorff beside AP and writes them to coco_results.json."""
    import json

    from maskrcnn_benchmark.data.datasets.evaluation import evaluate
    from maskrcnn_benchmark.structures.bounding_box import BoxList

    class FakeGlaS:
        def __init__(self):
            from pycocotools import mask as mask_utils
            from pycocotools.coco import COCO

            m = np.zeros((32, 32), np.uint8)
            m[4:20, 4:20] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode()
            self.coco = COCO()
            self.coco.dataset = {"images": [{"id": 5, "width": 32, "height": 32, "file_name": "t.bmp"}],
                                 "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "segmentation": rle,
                                                  "area": 256.0, "bbox": [4, 4, 16, 16], "iscrowd": 0}],
                                 "categories": [{"id": 1, "name": "gland"}]}
            self.coco.createIndex()
            self.id_to_img_map = {0: 5}
            self.contiguous_category_id_to_json_id = {1: 1}

        def get_img_info(self, index):
            return self.coco.imgs[5]

        def __len__(self):
            return 1

    pred = BoxList(torch.tensor([[4.0, 4.0, 19.0, 19.0]]), (32, 32))
    pred.add_field("scores", torch.tensor([0.9]))
    pred.add_field("labels", torch.tensor([1]))
    pasted = torch.zeros(1, 1, 32, 32)
    pasted[0, 0, 4:20, 4:20] = 1.0
    pred.add_field("mask", pasted)
    results = evaluate(FakeGlaS(), [pred], str(tmp_path), iou_types=("bbox", "segm"))[0]
    assert results.results["glas"] == {"F1": 1.0, "ObjDice": 1.0, "ObjHausdorff": 0.0}
    assert results.results["segm"]["AP"] == pytest.approx(1.0)
    with open(tmp_path / "coco_results.json") as f:
        saved = json.load(f)
    assert saved["glas"]["F1"] == 1.0 and saved["segm"]["AP"] == pytest.approx(1.0)
    assert (tmp_path / "glas_results.json").is_file()

    # The same 0.9-score detection under TEST.GLAS_SCORE_THRESHOLD 0.95 segments nothing: the gland is missed.
    strict = evaluate(FakeGlaS(), [pred], str(tmp_path), iou_types=("bbox", "segm"), glas_score_threshold=0.95)[0]
    assert strict.results["glas"]["F1"] == 0.0
    assert strict.results["segm"]["AP"] == pytest.approx(1.0)  # AP ranks by score and ignores the threshold
    with open(tmp_path / "glas_results.json") as f:
        assert json.load(f)["score_threshold"] == 0.95


def test_hausdorff_inside_a_ring_matches_distance_transforms():
    from maskrcnn_benchmark.data.datasets.evaluation.glas.glas_eval import _hausdorff_by_distance_transform

    ring = np.zeros((33, 33), bool)
    ring[2:31, 2:31] = True
    ring[4:29, 4:29] = False
    hole = np.zeros_like(ring)
    hole[4:29, 4:29] = True
    # The point of the hole farthest from the ring is its centre (16, 16), 13 px from row 3: an interior pixel,
    # not a boundary one; the ring's corners are only 2*sqrt(2) from the hole.
    assert hausdorff_distance(hole, ring) == pytest.approx(13.0)
    assert hausdorff_distance(hole, ring) == pytest.approx(_hausdorff_by_distance_transform(hole, ring))


def _brute_force_object_hausdorff(gt, seg):
    """H_obj straight from the definition, every pair by distance transforms, no shortcuts."""
    from maskrcnn_benchmark.data.datasets.evaluation.glas.glas_eval import _hausdorff_by_distance_transform as h

    gts = [gt == k for k in np.unique(gt) if k > 0]
    segs = [seg == k for k in np.unique(seg) if k > 0]

    def side(objects, others):
        total, weighted = 0.0, 0.0
        for obj in objects:
            overlaps = [(obj & o).sum() for o in others]
            if max(overlaps) > 0:
                d = h(obj, others[int(np.argmax(overlaps))])
            else:
                d = min(h(obj, o) for o in others)
            weighted += obj.sum() * d
            total += obj.sum()
        return weighted / total

    return 0.5 * (side(gts, segs) + side(segs, gts))


def test_object_hausdorff_matches_brute_force_on_random_scenes():
    rng = np.random.RandomState(4)
    for _ in range(5):
        maps = []
        for count in (6, 8):
            m = np.zeros((60, 80), np.int64)
            for k in range(1, count + 1):
                y, x = rng.randint(0, 50), rng.randint(0, 70)
                h, w = rng.randint(3, 15, 2)
                m[y:y + h, x:x + w] = k
            maps.append(m)
        gt, seg = maps
        assert glas_metrics([gt], [seg])["ObjHausdorff"] == pytest.approx(_brute_force_object_hausdorff(gt, seg))


def test_nothing_segmented_uses_the_documented_conventions():
    gt = _two_squares()
    m = glas_metrics([gt], [np.zeros_like(gt)])
    assert (m["F1"], m["ObjDice"]) == (0.0, 0.0)
    # each ground-truth gland gets the image diagonal; the empty segmented side contributes 0
    assert m["ObjHausdorff"] == pytest.approx(0.5 * np.hypot(10, 30))
