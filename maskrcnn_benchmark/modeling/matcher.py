"""Assigns each prediction (anchor / proposal) to at most one ground-truth box by IoU."""
import torch


class Matcher(object):
    """Matches predictions to ground truth from a [G, P] IoU matrix.

    Each prediction gets the index of its highest-IoU ground truth if that IoU >= ``high_threshold``;
    BELOW_LOW_THRESHOLD (-1) if < ``low_threshold``; BETWEEN_THRESHOLDS (-2) otherwise.
    With ``allow_low_quality_matches``, every prediction that has the highest IoU with some ground truth (ties
    included) keeps its best match even below the thresholds, so each ground truth that overlaps any prediction
    gets at least one (Faster R-CNN's RPN rule).

    Args:
        high_threshold: IoU >= this is a foreground match.
        low_threshold: IoU < this is background; in between is ignored.
        allow_low_quality_matches: see above.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        if low_threshold > high_threshold:
            raise ValueError("Matcher: low_threshold ({}) must be <= high_threshold ({})".format(
                low_threshold, high_threshold))
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix):
        """
        Args:
            match_quality_matrix: Tensor[G, P] of IoUs between G ground-truth and P predicted boxes.
        Returns:
            long Tensor[P]: matched ground-truth index in [0, G), or -1 / -2.
        """
        if match_quality_matrix.numel() == 0:
            if match_quality_matrix.shape[0] == 0:
                # Images without annotations (DATALOADER.FILTER_EMPTY_ANNOTATIONS False) never get here: the RPN,
                # RetinaNet and box-head losses make all their anchors / proposals background before matching.
                raise ValueError("Matcher: no ground-truth boxes for one of the images. A loss that matches must "
                                 "treat an image without annotations as all background before calling the Matcher "
                                 "(as modeling/rpn/loss.py prepare_targets does), or train with "
                                 "DATALOADER.FILTER_EMPTY_ANNOTATIONS True")
            raise ValueError("Matcher: no proposal boxes available for one of the images during training")

        matched_vals, matches = match_quality_matrix.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None

        below_low_threshold = matched_vals < self.low_threshold
        between_thresholds = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below_low_threshold] = Matcher.BELOW_LOW_THRESHOLD
        matches[between_thresholds] = Matcher.BETWEEN_THRESHOLDS

        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, all_matches, match_quality_matrix)
        return matches

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix):
        """For each ground truth, restore the match of every prediction with its maximal IoU (in place)."""
        highest_quality_foreach_gt, _ = match_quality_matrix.max(dim=1)
        # ties: all predictions reaching a ground truth's best IoU keep their match. A ground truth that overlaps
        # no prediction at all (best IoU 0) is skipped: maskrcnn-benchmark would "tie" it with every
        # non-overlapping prediction and turn them all into foreground.
        is_best = (match_quality_matrix == highest_quality_foreach_gt[:, None]) & (match_quality_matrix > 0)
        gt_pred_pairs = torch.nonzero(is_best)
        pred_inds_to_update = gt_pred_pairs[:, 1]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]
