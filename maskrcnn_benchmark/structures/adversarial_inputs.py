"""What the detector hands the discriminators: one typed record filled by the RoI heads and the detector."""
import dataclasses
from typing import List, Optional, Tuple

import torch
from torch import Tensor


@dataclasses.dataclass
class AdversarialInputs:
    """The tensors the box and mask discriminators read, as the detector produced them (still attached to its
    graph: the generator's adversarial losses flow back through them).

    The box head fills the ``box_*`` fields, the mask head the ``mask_*`` fields and the detector the rest
    (``GeneralizedRCNN.forward(..., return_adv_inputs=True)``); a field a head did not fill is None (e.g. no
    mask head). P is the number of foreground sampled RoIs of the batch, M the number the mask head trained on
    (the positive ones, the same RoIs in the same order), S the mask resolution (MODEL.ROI_MASK_HEAD.RESOLUTION).
    RoIs are rows (batch_index, x0, y0, x1, y1) in input-image pixels.

    Fields:
        box_rois_pred: Tensor[P, 5], the box head's decoded predictions for its GT class at the P foreground
            RoIs (attached to the box regression: the fake boxes of D_b).
        box_rois_gt: Tensor[P, 5], the ground-truth boxes those RoIs were matched to (D_b's real boxes).
        mask_logits: Tensor[M, S, S], the mask head's logits of the GT class (D_m's fake masks are their
            sigmoid).
        mask_targets: Tensor[M, S, S], the 0/1 ground-truth masks cropped to the RoIs (D_m's real masks).
        mask_rois: Tensor[M, 5], the RoIs the masks live in (where D_m pools its context).
        features: list[Tensor[N, C, H_l, W_l]], the backbone maps the RoI heads pool from, finest first (not
            detached).
        feature_strides: list[int], the stride of each of ``features`` in image pixels.
        images: Tensor[N, 3, H, W], the padded input batch (MODEL.GAN.MASK_DISC.INPUT "pixels").
        image_sizes: list[(height, width)], each image's size before padding (MODEL.GAN.BOX_DISC.INPUT
            "coordinates").
    """

    box_rois_pred: Optional[Tensor] = None
    box_rois_gt: Optional[Tensor] = None
    mask_logits: Optional[Tensor] = None
    mask_targets: Optional[Tensor] = None
    mask_rois: Optional[Tensor] = None
    features: Optional[List[Tensor]] = None
    feature_strides: Optional[List[int]] = None
    images: Optional[Tensor] = None
    image_sizes: Optional[List[Tuple[int, int]]] = None

    def merged(self, other):
        """A new record with this one's fields, replaced by every field ``other`` has filled (not None)."""
        filled = {field.name: getattr(other, field.name) for field in dataclasses.fields(other)
                  if getattr(other, field.name) is not None}
        return dataclasses.replace(self, **filled)

    def float(self):
        """A new record whose floating-point tensors are float32 (differentiable casts: the graph is kept);
        the discriminators read their inputs in float32 whatever autocast region the detector ran in."""
        def cast(value):
            if torch.is_tensor(value) and value.is_floating_point():
                return value.float()
            if isinstance(value, list) and value and torch.is_tensor(value[0]):
                return [cast(item) for item in value]
            return value

        return dataclasses.replace(self, **{field.name: cast(getattr(self, field.name))
                                            for field in dataclasses.fields(self)})

    def require(self, name, needed_for):
        """The field ``name``, or a ValueError saying what needs it when the detector did not fill it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError("{} needs the detector's adversarial input {!r}, which is not filled (is its head "
                             "enabled, and was the detector called with return_adv_inputs=True?)".format(
                                 needed_for, name))
        return value
