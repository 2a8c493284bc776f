"""Per-process shard of a dataset for distributed training."""
import torch.utils.data.distributed


class DistributedSampler(torch.utils.data.distributed.DistributedSampler):
    """torch's DistributedSampler that also works without an initialised process group (one process, rank 0).

    Args:
        dataset: the dataset to shard.
        num_replicas (int or None): number of processes; default: utils.comm.get_world_size().
        rank (int or None): this process' rank; default: utils.comm.get_rank().
        shuffle (bool): reshuffle every epoch (call set_epoch).
        seed (int): shuffling seed shared by all processes.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0):
        from maskrcnn_benchmark.utils import comm

        if num_replicas is None:
            num_replicas = comm.get_world_size()
        if rank is None:
            rank = comm.get_rank()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
