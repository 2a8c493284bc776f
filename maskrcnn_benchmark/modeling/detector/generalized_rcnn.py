"""GeneralizedRCNN: backbone -> RPN -> RoI heads, the Faster/Mask/Keypoint R-CNN meta-architecture."""
from torch import nn

from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.structures.image_list import to_image_list


class GeneralizedRCNN(nn.Module):
    """Backbone, region proposal network and (optionally) RoI heads.

    Args:
        backbone: module with ``out_channels`` and ``feature_strides``; Tensor[N,3,H,W] -> list of maps.
        rpn: RPNModule.
        roi_heads: CombinedROIHeads, or None for an RPN-only model.
        size_divisible: padding multiple used when ``forward`` gets a list of image tensors
            (DATALOADER.SIZE_DIVISIBILITY); ImageList inputs are used as they are.
        num_roi_feature_maps: how many of the backbone maps the RoI heads pool from (the first ones;
            len(ROI_BOX_HEAD.POOLER_SCALES)); these maps and their strides are what
            ``return_adv_inputs`` hands to the discriminators.
    """

    def __init__(self, backbone, rpn, roi_heads=None, size_divisible=0, num_roi_feature_maps=None):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        # build_roi_heads may return an empty container when no head is enabled (as maskrcnn-benchmark).
        self.roi_heads = roi_heads if roi_heads else None
        self.size_divisible = size_divisible
        strides = list(getattr(backbone, "feature_strides", []))
        if num_roi_feature_maps is not None:
            strides = strides[:num_roi_feature_maps]
        self.roi_feature_strides = strides

    def forward(self, images, targets=None, return_adv_inputs=False):
        """
        Args:
            images: ImageList, or list[Tensor[3, H_i, W_i]] (BGR 0-255 minus PIXEL_MEAN).
            targets: list[BoxList] with fields "labels" (and "masks"/"keypoints"), required in training.
            return_adv_inputs: in training, also return the tensors the discriminators need.
        Returns:
            training: the loss dict {loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg,
                loss_mask, (loss_kp)} (name -> Tensor[]), as maskrcnn-benchmark's detector returns it; with
                ``return_adv_inputs`` the pair (losses, AdversarialInputs): the RoI heads' fields plus the
                ``features`` the RoI heads pool from (not detached), their ``feature_strides``, the padded
                ``images`` and the ``image_sizes``.
            eval: list[BoxList] per image (in the input image size) with "scores", "labels", "mask", ...;
                for an RPN-only model the proposals with "objectness".
        """
        if self.training and targets is None:
            raise ValueError(
                "GeneralizedRCNN: targets (list[BoxList], one per image) are required in training mode; "
                "call model.eval() for inference"
            )
        images = to_image_list(images, self.size_divisible)
        if self.training and len(targets) != len(images.image_sizes):
            raise ValueError("GeneralizedRCNN: got {} targets for {} images; give one BoxList per image".format(
                len(targets), len(images.image_sizes)))
        features = self.backbone(images.tensors)
        proposals, proposal_losses = self.rpn(images, features, targets)
        if self.roi_heads is not None:
            _, result, losses, head_adv_inputs = self.roi_heads(features, proposals, targets)
        else:
            result, losses, head_adv_inputs = proposals, {}, AdversarialInputs()
        if not self.training:
            return result
        losses = dict(losses, **proposal_losses)
        if not return_adv_inputs:
            return losses
        num_maps = len(self.roi_feature_strides)
        adv_inputs = head_adv_inputs.merged(AdversarialInputs(
            features=list(features[:num_maps]), feature_strides=list(self.roi_feature_strides),
            # for the ablations of D in pixel space and on box coordinates (MODEL.GAN.*_DISC.INPUT)
            images=images.tensors, image_sizes=list(images.image_sizes)))
        return losses, adv_inputs
