"""Samplers: aspect-ratio grouping, iteration-based length with resume, distributed sharding."""
import torch
from torch.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler

from maskrcnn_benchmark.data.build import make_batch_data_sampler
from maskrcnn_benchmark.data.samplers import DistributedSampler, GroupedBatchSampler, IterationBasedBatchSampler


class _SizedDataset(torch.utils.data.Dataset):
    def __init__(self, sizes):
        self.sizes = sizes  # (width, height)

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, idx):
        return idx

    def get_img_info(self, idx):
        return {"width": self.sizes[idx][0], "height": self.sizes[idx][1]}


def test_grouped_batches_never_mix_groups_and_cover_every_index():
    group_ids = [0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1]
    torch.manual_seed(0)
    sampler = GroupedBatchSampler(RandomSampler(range(len(group_ids))), group_ids, batch_size=3)
    batches = list(sampler)
    assert all(len({group_ids[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(group_ids)))
    assert all(len(batch) <= 3 for batch in batches)
    assert len(sampler) == len(batches) == 4  # groups of 5 and 6 -> 2 + 2 batches
    dropped = GroupedBatchSampler(SequentialSampler(range(len(group_ids))), group_ids, 3, drop_uneven=True)
    assert all(len(b) == 3 for b in dropped) and len(dropped) == 3


class _ListSampler(torch.utils.data.Sampler):
    """Yields a fixed list of indices (a sampler order chosen by the test)."""

    def __init__(self, order):
        self.order = list(order)

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def test_grouped_batches_follow_the_position_of_their_first_index():
    # groups a=0, b=1; batch_size 2. Group a: 0, 3, 4 -> [0, 3] (starts at position 0), [4] (4);
    # group b: 1, 2 -> [1, 2] (position 1). maskrcnn-benchmark's order: by first position, so [0, 3] comes before
    # [1, 2] although [1, 2] is complete earlier.
    sampler = GroupedBatchSampler(_ListSampler(range(5)), [0, 1, 1, 0, 0], batch_size=2)
    assert list(sampler) == [[0, 3], [1, 2], [4]]
    assert len(sampler) == 3
    # An uneven batch takes the place of its first index, not the end of the epoch.
    sampler = GroupedBatchSampler(_ListSampler(range(7)), [0, 0, 0, 1, 1, 1, 1], batch_size=2)
    assert list(sampler) == [[0, 1], [2], [3, 4], [5, 6]]


def test_grouped_batches_in_a_shuffled_order_and_drop_uneven():
    # order [5, 0, 3, 1, 4, 2], groups by index [0, 0, 1, 1, 0, 1]:
    # group 1 in order: 5 (pos 0), 3 (pos 2), 2 (pos 5) -> [5, 3] @0, [2] @5
    # group 0 in order: 0 (pos 1), 1 (pos 3), 4 (pos 4) -> [0, 1] @1, [4] @4
    order, group_ids = [5, 0, 3, 1, 4, 2], [0, 0, 1, 1, 0, 1]
    sampler = GroupedBatchSampler(_ListSampler(order), group_ids, batch_size=2)
    assert list(sampler) == [[5, 3], [0, 1], [4], [2]]
    dropped = GroupedBatchSampler(_ListSampler(order), group_ids, batch_size=2, drop_uneven=True)
    assert list(dropped) == [[5, 3], [0, 1]]
    assert len(dropped) == 2
    # A sampler that yields only part of the dataset (a distributed shard): only those indices are batched.
    shard = GroupedBatchSampler(_ListSampler([4, 2, 0]), group_ids, batch_size=2)
    assert list(shard) == [[4, 0], [2]]
    assert len(shard) == 2


def test_aspect_ratio_grouping_from_image_sizes():
    sizes = [(40, 30), (30, 40), (40, 30), (30, 40), (50, 20), (20, 50), (40, 30), (30, 40)]
    dataset = _SizedDataset(sizes)
    batch_sampler = make_batch_data_sampler(dataset, SequentialSampler(dataset), [1], images_per_batch=2)
    for batch in batch_sampler:
        portrait = {sizes[i][1] > sizes[i][0] for i in batch}
        assert len(portrait) == 1
    ungrouped = make_batch_data_sampler(dataset, SequentialSampler(dataset), [], images_per_batch=2)
    assert [0, 1] in list(ungrouped)  # without grouping, a landscape and a portrait image share a batch


def test_iteration_based_sampler_yields_requested_batches_across_epochs():
    batches = BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False)  # 3 batches per epoch
    sampler = IterationBasedBatchSampler(batches, num_iterations=7)
    out = list(sampler)
    assert len(out) == 7 and len(sampler) == 7
    assert out[:4] == [[0, 1], [2, 3], [4], [0, 1]]


def test_iteration_based_sampler_resumes_from_start_iter():
    batches = BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False)
    resumed = list(IterationBasedBatchSampler(batches, num_iterations=7, start_iter=5))
    assert len(resumed) == 2
    assert list(IterationBasedBatchSampler(batches, num_iterations=7, start_iter=7)) == []


def test_iteration_based_sampler_sets_epoch_of_distributed_sampler():
    dataset = list(range(8))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    batches = BatchSampler(sampler, batch_size=8, drop_last=False)
    epochs = list(IterationBasedBatchSampler(batches, num_iterations=3))
    assert all(sorted(e) == dataset for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled each epoch


def test_distributed_sampler_shards_without_overlap():
    dataset = list(range(10))
    shards = [list(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == dataset
    assert len(list(DistributedSampler(dataset))) == 10  # no process group: one replica
