"""Batches whose images all belong to one group (e.g. all portrait or all landscape)."""
from torch.utils.data.sampler import BatchSampler, Sampler


class GroupedBatchSampler(BatchSampler):
    """Wrap a sampler so every yielded batch holds indices of a single group.

    Indices come in the sampler's order; each group fills its own buffer, and a batch is emitted when a buffer
    reaches `batch_size`. Grouping by aspect ratio keeps padding small when images are batched.

    Args:
        sampler (Sampler): yields dataset indices.
        group_ids (sequence[int]): group of each dataset index.
        batch_size (int): images per batch.
        drop_uneven (bool): drop the incomplete batches left at the end of an epoch (else they are yielded).
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

    def __iter__(self):
        buffers = {}
        for idx in self.sampler:
            group = self.group_ids[idx]
            buffer = buffers.setdefault(group, [])
            buffer.append(idx)
            if len(buffer) == self.batch_size:
                yield list(buffer)
                buffer.clear()
        if not self.drop_uneven:
            for group in sorted(buffers):
                if buffers[group]:
                    yield list(buffers[group])

    def __len__(self):
        counts = {}
        for idx in self.sampler:
            group = self.group_ids[idx]
            counts[group] = counts.get(group, 0) + 1
        if self.drop_uneven:
            return sum(n // self.batch_size for n in counts.values())
        return sum((n + self.batch_size - 1) // self.batch_size for n in counts.values())
