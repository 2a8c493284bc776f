"""Pooler: FPN level assignment, per-level RoIAlign / PrRoIPool, and errors naming the bad input."""
import pytest
import torch

from maskrcnn_benchmark.modeling.poolers import LevelMapper, Pooler
from maskrcnn_benchmark.structures.bounding_box import BoxList


def _box_of_side(side, x0=0.0):
    # +1 convention: a box [x0, x0 + side - 1] is `side` px wide.
    return [x0, x0, x0 + side - 1, x0 + side - 1]


def test_level_mapper_assigns_canonical_levels():
    mapper = LevelMapper(2, 5)
    sides = [16, 111, 112, 223, 224, 447, 448, 1000]
    boxes = BoxList(torch.tensor([_box_of_side(s) for s in sides], dtype=torch.float32), (2000, 2000))
    # level = floor(4 + log2(side / 224)) clamped to [2, 5], minus k_min
    assert mapper([boxes]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_pooler_levels_derived_from_scales():
    pooler = Pooler((2, 2), (1 / 4, 1 / 8, 1 / 16, 1 / 32), sampling_ratio=2)
    assert (pooler.map_levels.k_min, pooler.map_levels.k_max) == (2, 5)
    with pytest.raises(ValueError, match="powers"):
        Pooler((2, 2), (1 / 3, 1 / 6), sampling_ratio=2)


def test_pooler_routes_each_box_to_its_level_and_keeps_order():
    # Each level's map is constant = its level index, so the pooled value reveals the level used.
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    features = [torch.full((2, 1, 256 // int(1 / s), 256 // int(1 / s)), float(i)) for i, s in enumerate(scales)]
    pooler = Pooler((2, 2), scales, sampling_ratio=2)
    boxes = [
        BoxList(torch.tensor([_box_of_side(200, 10), _box_of_side(20, 5)], dtype=torch.float32), (256, 256)),
        BoxList(torch.tensor([_box_of_side(60, 3), _box_of_side(120, 1), _box_of_side(250, 2)],
                             dtype=torch.float32), (256, 256)),
    ]
    out = pooler(features, boxes)
    assert out.shape == (5, 1, 2, 2)
    assert out[:, 0, 0, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 2.0]


def test_pooler_uses_the_right_image_of_the_batch():
    features = [torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])]
    pooler = Pooler((1, 1), (1.0,), sampling_ratio=1)
    boxes = [BoxList(torch.tensor([[1., 1., 4., 4.]]), (8, 8)), BoxList(torch.tensor([[1., 1., 4., 4.]] * 2), (8, 8))]
    assert pooler(features, boxes).flatten().tolist() == [0.0, 1.0, 1.0]


def test_roialign_gives_no_gradient_to_rois():
    features = [torch.randn(1, 2, 16, 16, requires_grad=True)]
    bbox = torch.tensor([[2.3, 3.1, 10.7, 12.2]], requires_grad=True)
    out = Pooler((3, 3), (1.0,), sampling_ratio=2, pooler_type="ROIAlign")(features, [BoxList(bbox, (16, 16))])
    out.sum().backward()
    assert features[0].grad is not None and features[0].grad.abs().sum() > 0
    assert bbox.grad is None or bbox.grad.abs().sum() == 0


def test_prroipool_gives_gradient_to_rois_on_every_level():
    # No skip: PrRoIPool's "auto" implementation runs without the compiled extension too, so any error is a bug.
    scales = (1 / 4, 1 / 8)
    features = [torch.randn(1, 2, 16, 16), torch.randn(1, 2, 8, 8)]
    bbox = torch.tensor([_box_of_side(20, 3.3), _box_of_side(40, 10.2)], requires_grad=True)  # levels 2 and 3
    pooler = Pooler((3, 3), scales, sampling_ratio=0, pooler_type="PrRoIPool")
    out = pooler(features, [BoxList(bbox, (64, 64))])
    (out * torch.randn_like(out)).sum().backward()
    assert bbox.grad is not None
    assert (bbox.grad.abs().sum(dim=1) > 0).all()


def test_unknown_pooler_type_is_named():
    with pytest.raises(ValueError, match="RoIMagic"):
        Pooler((2, 2), (1.0,), 0, pooler_type="RoIMagic")


def test_make_pooler_reads_head_keys():
    from maskrcnn_benchmark.config import cfg as default_cfg
    from maskrcnn_benchmark.modeling.poolers import make_pooler

    cfg = default_cfg.clone()
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 9
    cfg.MODEL.ROI_MASK_HEAD.POOLER_SCALES = (0.25, 0.125)
    cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 3
    pooler = make_pooler(cfg, "ROI_MASK_HEAD")
    assert pooler.output_size == (9, 9) and pooler.scales == (0.25, 0.125) and pooler.pooler_type == "ROIAlign"
    assert pooler.poolers[1].sampling_ratio == 3
    with pytest.raises(KeyError, match="ROI_MAGIC_HEAD"):
        make_pooler(cfg, "ROI_MAGIC_HEAD")


def test_non_finite_boxes_are_reported_not_dropped():
    pooler = Pooler((7, 7), (1 / 4, 1 / 8), sampling_ratio=2)
    features = [torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 8, 8)]
    boxes = BoxList(torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, float("nan"), 5.0]]), (64, 64))
    with pytest.raises(FloatingPointError, match="1 of 2 boxes .* non-finite"):
        pooler(features, [boxes])


def test_prroi_pool_impl_key_reaches_every_level_and_unknown_values_are_refused_by_name():
    from maskrcnn_benchmark.config import cfg as default_cfg
    from maskrcnn_benchmark.modeling.discriminators.feature_pooling import RoIFeaturePooler
    from maskrcnn_benchmark.modeling.poolers import make_pooler

    cfg = default_cfg.clone()
    cfg.merge_from_list(["MODEL.ROI_MASK_HEAD.POOLER_TYPE", "PrRoIPool", "MODEL.PRROI_POOL_IMPL", "torch"])
    pooler = make_pooler(cfg, "ROI_MASK_HEAD")
    assert [p.impl for p in pooler.poolers] == ["torch"] * len(pooler.poolers)
    with pytest.raises(ValueError, match="MODEL.PRROI_POOL_IMPL 'cuda' is unknown"):
        Pooler((2, 2), (0.25,), 0, "ROIAlign", prroi_impl="cuda")  # refused even where PrRoIPool is not used
    with pytest.raises(ValueError, match="MODEL.PRROI_POOL_IMPL 'fast' is unknown"):
        RoIFeaturePooler(7, "PrRoIPool", "max", 2, prroi_impl="fast")


def test_torch_prroi_pool_impl_pools_like_the_compiled_one():
    torch.manual_seed(0)
    features = [torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.randn(1, 3, 8, 8, dtype=torch.float64)]
    boxes = [BoxList(torch.tensor([[2.0, 3.0, 20.0, 30.0], [1.0, 1.0, 60.0, 50.0]], dtype=torch.float64), (64, 64))]
    pooled = [Pooler((3, 3), (0.25, 0.125), 0, "PrRoIPool", prroi_impl=impl)(features, boxes)
              for impl in ("compiled", "torch")]
    torch.testing.assert_close(pooled[0], pooled[1], atol=1e-12, rtol=0)


def test_traced_pooler_follows_the_level_of_each_roi_and_empty_levels():
    """The trace-safe path (export) gives pool_rois's values, also for RoIs on levels that were empty when traced."""
    torch.manual_seed(0)
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    features = [torch.randn(1, 3, 256 // int(1 / s), 256 // int(1 / s)) for s in scales]
    pooler = Pooler((2, 2), scales, sampling_ratio=2)

    def rois(sides):
        return torch.tensor([[0.0] + _box_of_side(s, 3.0 + i) for i, s in enumerate(sides)])

    traced = torch.jit.trace(lambda x, r: pooler.pool_rois(x, r), (features, rois([20, 30])),
                             check_trace=False)  # level 0 only
    for sides in ([20, 30], [200, 20, 60, 120], [250]):  # all levels, in mixed order; the coarsest only
        expected = pooler(features, rois(sides))
        assert torch.allclose(traced(features, rois(sides)), expected, atol=1e-6), sides
    # a tensor of RoIs is taken as it is, a list of BoxLists converted
    boxes = BoxList(rois([200, 20])[:, 1:], (256, 256))
    assert torch.equal(pooler(features, [boxes]), pooler(features, rois([200, 20])))


def _random_fpn(seed=0, channels=3, size=256, scales=(1 / 4, 1 / 8, 1 / 16, 1 / 32)):
    torch.manual_seed(seed)
    return [torch.randn(2, channels, size // int(1 / s), size // int(1 / s)) for s in scales], scales


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "PrRoIPool"])
def test_max_fusion_pools_every_roi_from_every_level_and_keeps_the_elementwise_maximum(pooler_type):
    """DETECTOR_POOLER_FUSION "max" (the authors' AdaptivePooler): each RoI's feature is the element-wise maximum of
    its features pooled at every level, whatever its size; "level" pools it from one level only."""
    from maskrcnn_benchmark.modeling.poolers import _make_level_pooler

    features, scales = _random_fpn()
    rois = torch.tensor([[0.0] + _box_of_side(20, 5.0), [1.0] + _box_of_side(200, 10.0),
                         [0.0] + _box_of_side(90, 30.0)])
    fused = Pooler((3, 3), scales, 2, pooler_type=pooler_type, fusion="max")(features, rois)
    per_level = torch.stack([_make_level_pooler(pooler_type, (3, 3), s, 2)(f, rois) for f, s in zip(features, scales)])
    assert torch.equal(fused, per_level.max(dim=0).values)
    by_level = Pooler((3, 3), scales, 2, pooler_type=pooler_type)(features, rois)
    assert not torch.allclose(fused, by_level)  # random maps: the maximum of 4 levels is above the assigned one
    assert (fused >= by_level - 1e-6).all()


def test_max_fusion_gives_the_box_gradient_of_the_maximal_level_and_traces():
    features, scales = _random_fpn(seed=1)
    pooler = Pooler((2, 2), scales, 2, pooler_type="PrRoIPool", fusion="max")
    rois = torch.tensor([[0.0, 3.3, 4.1, 60.2, 50.7]], requires_grad=True)
    pooler(features, rois).sum().backward()
    assert rois.grad[0, 1:].abs().sum() > 0
    with torch.no_grad():
        traced = torch.jit.trace(lambda x, r: pooler.pool_rois(x, r), (features, rois.detach()), check_trace=False)
        other = torch.tensor([[1.0] + _box_of_side(200, 2.0), [0.0] + _box_of_side(16, 9.0)])
        assert torch.equal(traced(features, other), pooler(features, other))


def test_detector_pooler_fusion_key_reaches_every_head_pooler_and_unknown_values_are_refused_by_name():
    from maskrcnn_benchmark.config import cfg as default_cfg
    from maskrcnn_benchmark.modeling.poolers import make_pooler

    cfg = default_cfg.clone()
    assert all(make_pooler(cfg, head).fusion == "level" for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD"))
    cfg.MODEL.GAN.DETECTOR_POOLER_FUSION = "max"
    for head in ("ROI_BOX_HEAD", "ROI_MASK_HEAD", "ROI_KEYPOINT_HEAD"):
        assert make_pooler(cfg, head).fusion == "max", head
    cfg.MODEL.GAN.DETECTOR_POOLER_FUSION = "mean"
    with pytest.raises(ValueError, match="'mean'.*MODEL.GAN.DETECTOR_POOLER_FUSION"):
        make_pooler(cfg, "ROI_BOX_HEAD")
