"""The RoI heads (box, mask, keypoint) run in sequence on the RPN proposals."""
from torch import nn

from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs

from .box_head.box_head import build_roi_box_head
from .keypoint_head.keypoint_head import build_roi_keypoint_head
from .mask_head.mask_head import build_roi_mask_head


class CombinedROIHeads(nn.ModuleDict):
    """Box head, then optionally the mask and keypoint heads on the box head's output.

    Args:
        heads (list[tuple[str, nn.Module]]): ("box", ...), optionally ("mask", ...), ("keypoint", ...).
        mask_share_box_features (bool): the mask head reuses the box head's feature extractor (and, in training,
            its RoI features) - MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR.
        keypoint_share_box_features (bool): the same for the keypoint head.
    """

    def __init__(self, heads, mask_share_box_features=False, keypoint_share_box_features=False):
        super().__init__(heads)
        if "box" not in self:
            raise ValueError("CombinedROIHeads needs a 'box' head; the mask and keypoint heads run on its output")
        self.mask_share_box_features = mask_share_box_features and "mask" in self
        self.keypoint_share_box_features = keypoint_share_box_features and "keypoint" in self
        if self.mask_share_box_features:
            self.mask.feature_extractor = self.box.feature_extractor
        if self.keypoint_share_box_features:
            self.keypoint.feature_extractor = self.box.feature_extractor

    def forward(self, features, proposals, targets=None):
        """
        Args:
            features (list[Tensor[N, C, H, W]]): backbone maps.
            proposals (list[BoxList]): RPN proposals per image.
            targets (list[BoxList] | None): GT per image (fields "labels", "masks", "keypoints"), training only.
        Returns:
            (x, detections, losses, adv_inputs). In training ``detections`` are the sampled proposals and
            ``adv_inputs`` (AdversarialInputs) holds what the heads give the discriminators: the box head's
            ``box_rois_pred``, ``box_rois_gt`` and the mask head's ``mask_logits``, ``mask_targets``,
            ``mask_rois``. In eval ``detections`` are the final ones (list[BoxList]) and ``adv_inputs`` is empty.
            Every head here returns (x, detections, losses, AdversarialInputs); a custom head may return
            maskrcnn-benchmark's (x, detections, losses), and then gives the discriminators nothing.
        """
        losses, adv_inputs = {}, AdversarialInputs()
        x, detections, adv_inputs = self._run_head("box", features, proposals, targets, losses, adv_inputs)
        if "mask" in self:
            # In training the shared C4 extractor's output for the sampled RoIs is reused instead of recomputed.
            mask_features = x if self.training and self.mask_share_box_features else features
            x, detections, adv_inputs = self._run_head("mask", mask_features, detections, targets, losses,
                                                       adv_inputs)
        if "keypoint" in self:
            keypoint_features = x if self.training and self.keypoint_share_box_features else features
            x, detections, adv_inputs = self._run_head("keypoint", keypoint_features, detections, targets, losses,
                                                       adv_inputs)
        return x, detections, losses, adv_inputs

    def _run_head(self, name, features, proposals, targets, losses, adv_inputs):
        # adds the head's losses to the caller's dict; returns (x, detections, adv_inputs with the head's fields)
        outputs = self[name](features, proposals, targets)
        losses.update(outputs[2])
        if len(outputs) > 3:
            if not isinstance(outputs[3], AdversarialInputs):
                raise TypeError("the {} head returned a {} as its fourth item; a head returns (x, detections, "
                                "losses) or (x, detections, losses, AdversarialInputs)".format(
                                    name, type(outputs[3]).__name__))
            adv_inputs = adv_inputs.merged(outputs[3])
        return outputs[0], outputs[1], adv_inputs


def build_roi_heads(cfg, in_channels):
    """RoI heads for backbone maps of ``in_channels`` channels, or [] when MODEL.RPN_ONLY / MODEL.RETINANET_ON
    (an empty, falsy value, as maskrcnn-benchmark's detector expects). Reads MODEL.{RPN_ONLY, RETINANET_ON,
    MASK_ON, KEYPOINT_ON} and the heads' SHARE_BOX_FEATURE_EXTRACTOR."""
    if cfg.MODEL.get("RETINANET_ON", False) or cfg.MODEL.RPN_ONLY:
        return []
    heads = [("box", build_roi_box_head(cfg, in_channels))]
    if cfg.MODEL.MASK_ON:
        heads.append(("mask", build_roi_mask_head(cfg, in_channels)))
    if cfg.MODEL.KEYPOINT_ON:
        heads.append(("keypoint", build_roi_keypoint_head(cfg, in_channels)))
    return CombinedROIHeads(heads,
                            mask_share_box_features=cfg.MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR,
                            keypoint_share_box_features=cfg.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR)
