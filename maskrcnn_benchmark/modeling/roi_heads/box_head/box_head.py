"""The box head: RoI features -> class scores and boxes; sampling and losses in training, detections in eval."""
import torch
from torch import nn

from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs

from .inference import make_roi_box_post_processor
from .loss import make_roi_box_loss_evaluator
from .roi_box_feature_extractors import make_roi_box_feature_extractor
from .roi_box_predictors import make_roi_box_predictor


class ROIBoxHead(nn.Module):
    """Fast R-CNN head.

    Args:
        feature_extractor (nn.Module): (features, proposals) -> RoI features, with ``out_channels``.
        predictor (nn.Module): RoI features -> (class_logits, box_regression).
        post_processor (PostProcessor): eval-time detections.
        loss_evaluator (FastRCNNLossComputation): training-time sampling and losses.
    """

    def __init__(self, feature_extractor, predictor, post_processor, loss_evaluator):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.predictor = predictor
        self.post_processor = post_processor
        self.loss_evaluator = loss_evaluator

    def forward(self, features, proposals, targets=None):
        """
        Args:
            features (list[Tensor[N, C, H, W]]): backbone maps.
            proposals (list[BoxList]): RPN proposals per image.
            targets (list[BoxList] | None): GT per image (fields "labels", ...), required in training.
        Returns:
            training: (x RoI features of the sampled RoIs, sampled proposals list[BoxList] with fields "labels",
            "regression_targets", "matched_idxs", {"loss_classifier", "loss_box_reg"}, AdversarialInputs with
            ``box_rois_pred`` and ``box_rois_gt`` (Tensor[P, 5]) of the P foreground RoIs).
            eval: (x, detections list[BoxList] with "scores" and "labels", {}, an empty AdversarialInputs).
        """
        if self.training:
            if targets is None:
                raise ValueError("ROIBoxHead needs targets in training mode; call model.eval() for inference")
            # Sampling only picks which RoIs to train on; no gradient flows through it.
            with torch.no_grad():
                proposals = self.loss_evaluator.subsample(proposals, targets)

        x = self.feature_extractor(features, proposals)
        class_logits, box_regression = self.predictor(x)
        num_rois = sum(len(p) for p in proposals)
        if class_logits.shape[0] != num_rois:
            # The FPN level mapper sends boxes with non-finite size to no level, so the pooler drops them.
            raise RuntimeError(
                "box head: the feature extractor returned {} RoI features for {} proposals; proposals with "
                "non-finite coordinates (training diverged?) are dropped by the FPN pooler - check the losses and "
                "the learning rate".format(class_logits.shape[0], num_rois))

        if not self.training:
            return x, self.post_processor((class_logits, box_regression), proposals), {}, AdversarialInputs()

        loss_classifier, loss_box_reg = self.loss_evaluator(class_logits, box_regression, proposals)
        losses = dict(loss_classifier=loss_classifier, loss_box_reg=loss_box_reg)
        box_rois_pred, box_rois_gt = self.loss_evaluator.adversarial_boxes(box_regression, proposals, targets)
        return x, proposals, losses, AdversarialInputs(box_rois_pred=box_rois_pred, box_rois_gt=box_rois_gt)


def build_roi_box_head(cfg, in_channels):
    """Builds the box head from MODEL.ROI_BOX_HEAD / MODEL.ROI_HEADS for backbone maps of ``in_channels``."""
    feature_extractor = make_roi_box_feature_extractor(cfg, in_channels)
    predictor = make_roi_box_predictor(cfg, feature_extractor.out_channels)
    return ROIBoxHead(feature_extractor, predictor, make_roi_box_post_processor(cfg), make_roi_box_loss_evaluator(cfg))
