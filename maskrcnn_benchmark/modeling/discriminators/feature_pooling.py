"""RoI features for the discriminators: FPN maps pooled at boxes given as a K x 5 tensor.

Two ways to read the FPN levels (MODEL.GAN.FEATURE_FUSION):
  "max":   pool every level at every RoI and keep the element-wise maximum (the authors' code), so each RoI
           sees the strongest response at any scale and the choice of level never switches abruptly when a
           predicted box grows or shrinks;
  "level": the standard FPN assignment (one level per RoI by its size).
Both go through ``modeling.poolers.Pooler`` (the detector's pooler, whose MODEL.GAN.DETECTOR_POOLER_FUSION "max" is
the same maximum).
Two pooling ops (POOLER_TYPE): "PrRoIPool" (Precise RoI Pooling, differentiable w.r.t. the box coordinates,
which the box discriminator needs for L_adv^Gb to reach the box regression) and "ROIAlign" (no gradient
w.r.t. the coordinates).
"""
from torch import nn

from maskrcnn_benchmark.modeling.poolers import Pooler, _check_prroi_impl

POOLER_TYPES = ("ROIAlign", "PrRoIPool")
FUSIONS = ("max", "level")


class RoIFeaturePooler(nn.Module):
    """Pools FPN features at RoIs for a discriminator; has no parameters.

    The pooler scales are derived from the strides the detector reports with its features, so nothing has
    to be configured twice.
    """

    def __init__(self, resolution=28, pooler_type="PrRoIPool", fusion="max", sampling_ratio=2, prroi_impl="auto"):
        """
        Arguments:
            resolution (int): side of the pooled square, cells.
            pooler_type (str): "PrRoIPool" or "ROIAlign".
            fusion (str): "max" (all levels, element-wise max) or "level" (FPN level assignment).
            sampling_ratio (int): ROIAlign samples per cell side (0 = adaptive); unused by PrRoIPool, which
                integrates exactly.
            prroi_impl (str): PrRoIPool's implementation, "compiled", "torch" or "auto" (MODEL.PRROI_POOL_IMPL).
        """
        super(RoIFeaturePooler, self).__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(
                "unknown discriminator pooler type {!r} (MODEL.GAN.BOX_DISC / MASK_DISC.POOLER_TYPE); "
                "use one of {}".format(pooler_type, POOLER_TYPES)
            )
        if fusion not in FUSIONS:
            raise ValueError(
                "unknown MODEL.GAN.FEATURE_FUSION {!r}; use one of {}".format(fusion, FUSIONS)
            )
        self.resolution = resolution
        self.pooler_type = pooler_type
        self.fusion = fusion
        self.sampling_ratio = sampling_ratio
        _check_prroi_impl(prroi_impl)
        self.prroi_impl = prroi_impl
        self._level_poolers = {}  # scales -> Pooler (no parameters or buffers: not part of the state)

    def forward(self, features, feature_strides, rois):
        """
        Arguments:
            features (list[Tensor[N, C, H_l, W_l]]): the FPN maps, finest first.
            feature_strides (list[int]): stride of each map in image pixels (scale = 1 / stride).
            rois (Tensor[K, 5]): (batch_index, x0, y0, x1, y1) in image pixels; K may be 0.
        Returns:
            Tensor[K, C, resolution, resolution]
        """
        if len(features) != len(feature_strides):
            raise ValueError(
                "got {} feature maps but {} feature strides".format(len(features), len(feature_strides))
            )
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError("rois must be K x 5 (batch_index, x0, y0, x1, y1), got {}".format(tuple(rois.shape)))
        # the detector's Pooler does the pooling, with this pooler's fusion: one per set of scales, built at the
        # first call and reused
        scales = tuple(1.0 / stride for stride in feature_strides)
        if scales not in self._level_poolers:
            self._level_poolers[scales] = Pooler(
                output_size=(self.resolution, self.resolution), scales=scales, sampling_ratio=self.sampling_ratio,
                pooler_type=self.pooler_type, prroi_impl=self.prroi_impl, fusion=self.fusion,
            )
        return self._level_poolers[scales].pool_rois(features, rois)
