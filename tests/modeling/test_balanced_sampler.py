"""Sampled counts and positive fraction of the balanced sampler."""
import torch

from maskrcnn_benchmark.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler


def _labels(num_pos, num_neg, num_ignore):
    labels = torch.cat([torch.randint(1, 5, (num_pos,)), torch.zeros(num_neg, dtype=torch.long),
                        -torch.ones(num_ignore, dtype=torch.long)])
    return labels[torch.randperm(labels.numel())]


def test_counts_fraction_and_ignored_never_sampled():
    torch.manual_seed(0)
    sampler = BalancedPositiveNegativeSampler(batch_size_per_image=20, positive_fraction=0.25)
    images = [_labels(10, 100, 30), _labels(2, 100, 5), _labels(50, 3, 0)]
    pos, neg = sampler(images)
    counts = [(int(p.sum()), int(n.sum())) for p, n in zip(pos, neg)]
    # enough of both: 5 + 15; too few positives: negatives fill up; too few negatives: batch not full
    assert counts == [(5, 15), (2, 18), (5, 3)]
    for labels, p, n in zip(images, pos, neg):
        assert p.dtype == torch.bool and p.shape == labels.shape
        assert (labels[p] >= 1).all() and (labels[n] == 0).all()
        assert not (p & n).any()


def test_sampling_is_random_over_candidates():
    torch.manual_seed(0)
    sampler = BalancedPositiveNegativeSampler(4, 0.5)
    labels = torch.cat([torch.ones(50, dtype=torch.long), torch.zeros(50, dtype=torch.long)])
    seen = torch.zeros(100, dtype=torch.bool)
    for _ in range(150):
        pos, neg = sampler([labels])
        seen |= pos[0] | neg[0]
    # every candidate is drawn at some point, not just the first ones
    assert seen.sum() > 95  # expected 100 * (1 - (48 / 50) ** 150) = 99.8
