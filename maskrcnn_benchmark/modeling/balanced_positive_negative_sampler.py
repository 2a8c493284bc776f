"""Samples a fixed-size, class-balanced minibatch of anchors / proposals per image."""
import torch


class BalancedPositiveNegativeSampler(object):
    """Picks up to ``batch_size_per_image`` elements per image, at most ``positive_fraction`` of them positive.

    Negatives fill the rest of the batch; if there are too few of either, fewer are returned.

    Args:
        batch_size_per_image: number of elements to sample per image (RPN 256, box head 512).
        positive_fraction: maximal fraction of positives (RPN 0.5, box head 0.25).
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError("BalancedPositiveNegativeSampler: positive_fraction should be in [0, 1], got {}".format(
                positive_fraction))
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs):
        """
        Args:
            matched_idxs: list (per image) of long Tensor[P_i] labels: >= 1 positive, 0 negative, -1 ignore.
        Returns:
            (pos_idx, neg_idx): two lists (per image) of bool Tensor[P_i] masks of the sampled positives /
            negatives.
        """
        pos_idx = []
        neg_idx = []
        for matched_idxs_per_image in matched_idxs:
            positive = torch.nonzero(matched_idxs_per_image >= 1).squeeze(1)
            negative = torch.nonzero(matched_idxs_per_image == 0).squeeze(1)

            num_pos = int(self.batch_size_per_image * self.positive_fraction)
            num_pos = min(positive.numel(), num_pos)
            num_neg = self.batch_size_per_image - num_pos
            num_neg = min(negative.numel(), num_neg)

            perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
            perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]

            pos_mask = torch.zeros_like(matched_idxs_per_image, dtype=torch.bool)
            neg_mask = torch.zeros_like(matched_idxs_per_image, dtype=torch.bool)
            pos_mask[positive[perm1]] = True
            neg_mask[negative[perm2]] = True
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx
