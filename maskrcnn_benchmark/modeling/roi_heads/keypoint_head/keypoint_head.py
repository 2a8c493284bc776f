"""The keypoint head: per-RoI keypoint heat maps; trained on positive RoIs with visible keypoints."""
import torch
from torch import nn

from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs

from .inference import make_roi_keypoint_post_processor
from .loss import make_roi_keypoint_loss_evaluator
from .roi_keypoint_feature_extractors import make_roi_keypoint_feature_extractor
from .roi_keypoint_predictors import make_roi_keypoint_predictor


class ROIKeypointHead(nn.Module):
    """Keypoint R-CNN branch.

    Args:
        feature_extractor (nn.Module): (features, proposals) -> Tensor[K, C, R, R].
        predictor (nn.Module): Tensor[K, C, R, R] -> heat-map logits Tensor[K, num_keypoints, S, S].
        post_processor (KeypointPostProcessor): eval-time "keypoints" field.
        loss_evaluator (KeypointRCNNLossComputation): training RoI selection and loss.
        share_box_feature_extractor (bool): in training, reuse the box head's RoI features.
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator,
                 share_box_feature_extractor=False):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.predictor = predictor
        self.post_processor = post_processor
        self.loss_evaluator = loss_evaluator
        self.share_box_feature_extractor = share_box_feature_extractor

    def forward(self, features, proposals, targets=None):
        """
        Args:
            features (list[Tensor[N, C, H, W]] | Tensor[K, C, h, w]): backbone maps (or, in training with
                sharing, the box head's features of the sampled RoIs).
            proposals (list[BoxList]): training: the box head's sampled RoIs; eval: detections.
            targets (list[BoxList] | None): GT with field "keypoints", required in training.
        Returns:
            training: (x, proposals, {"loss_kp"}, an empty AdversarialInputs: no discriminator reads keypoints);
            eval: (x, detections with field "keypoints", {}, an empty AdversarialInputs).
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIKeypointHead needs targets in training mode; call model.eval() for inference")
            all_proposals = proposals
            with torch.no_grad():
                proposals, keep_masks = self.loss_evaluator.subsample(proposals, targets)
            if self.share_box_feature_extractor:
                x = features[torch.cat(keep_masks, dim=0)]
            else:
                x = self.feature_extractor(features, proposals)
        else:
            x = self.feature_extractor(features, proposals)
        keypoint_logits = self.predictor(x)
        if not self.training:
            return x, self.post_processor(keypoint_logits, proposals), {}, AdversarialInputs()
        return x, all_proposals, dict(loss_kp=self.loss_evaluator(proposals, keypoint_logits)), AdversarialInputs()


def build_roi_keypoint_head(cfg, in_channels):
    """Builds the keypoint head from MODEL.ROI_KEYPOINT_HEAD for backbone maps of ``in_channels`` channels."""
    feature_extractor = make_roi_keypoint_feature_extractor(cfg, in_channels)
    predictor = make_roi_keypoint_predictor(cfg, feature_extractor.out_channels)
    return ROIKeypointHead(feature_extractor, predictor, make_roi_keypoint_post_processor(cfg),
                           make_roi_keypoint_loss_evaluator(cfg),
                           cfg.MODEL.ROI_KEYPOINT_HEAD.SHARE_BOX_FEATURE_EXTRACTOR)
