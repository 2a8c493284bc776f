"""Batches whose images all belong to one group (e.g. all portrait or all landscape)."""
from torch.utils.data.sampler import BatchSampler, Sampler


class GroupedBatchSampler(BatchSampler):
    """Wrap a sampler so every yielded batch holds indices of a single group, in maskrcnn-benchmark's batch order.

    The indices the sampler yields are split by group, each group keeping the sampler's order, and each group's
    list is cut into consecutive chunks of ``batch_size`` (its last chunk may be shorter). The batches are then
    yielded in the order of the sampler's position of their first index, so the batch sequence follows the
    sampler's order as closely as grouping allows. Example: sampler order [0, 1, 2, 3, 4, 5], groups
    [a, b, a, a, b, b], batch_size 2 -> [0, 2], [1, 4], [3], [5] ([3] starts at position 3, [5] at 5).
    Grouping by aspect ratio keeps padding small when images are batched.

    Args:
        sampler (Sampler): yields dataset indices.
        group_ids (sequence[int]): group of each dataset index.
        batch_size (int): images per batch.
        drop_uneven (bool): drop every batch shorter than ``batch_size`` (the last chunk of each group);
            otherwise they are yielded at the place their first index gives them.
    """

    def __init__(self, sampler, group_ids, batch_size, drop_uneven=False):
        if not isinstance(sampler, Sampler):
            raise ValueError("sampler should be a torch.utils.data.Sampler, got {}".format(type(sampler).__name__))
        if batch_size <= 0:
            raise ValueError("batch_size must be positive, got {}".format(batch_size))
        self.sampler = sampler
        self.group_ids = [int(g) for g in group_ids]
        self.batch_size = batch_size
        self.drop_uneven = drop_uneven

    def _batches(self, sampled):
        """Cut the sampled indices (in sampler order) into single-group batches ordered by their first index."""
        by_group = {}
        for position, idx in enumerate(sampled):
            by_group.setdefault(self.group_ids[idx], []).append((position, idx))
        chunks = [
            entries[start:start + self.batch_size]
            for entries in by_group.values()
            for start in range(0, len(entries), self.batch_size)
        ]
        if self.drop_uneven:
            chunks = [chunk for chunk in chunks if len(chunk) == self.batch_size]
        # Within a group positions increase, so a chunk's first entry holds its earliest sampler position.
        chunks.sort(key=lambda chunk: chunk[0][0])
        return [[idx for _, idx in chunk] for chunk in chunks]

    def __iter__(self):
        return iter(self._batches(list(self.sampler)))

    def __len__(self):
        # The count per group does not depend on the order, only on which indices the sampler yields.
        counts = {}
        for idx in self.sampler:
            group = self.group_ids[idx]
            counts[group] = counts.get(group, 0) + 1
        if self.drop_uneven:
            return sum(n // self.batch_size for n in counts.values())
        return sum((n + self.batch_size - 1) // self.batch_size for n in counts.values())
