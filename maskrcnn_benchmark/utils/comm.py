"""Helpers for multi-process (torch.distributed) training and testing.

Every function also works without an initialised process group, where it behaves as a world of one
process, so single-process code needs no special cases.
"""
import torch
import torch.distributed as dist


def _is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if _is_distributed() else 1


def get_rank():
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if _is_distributed() else 0


def is_main_process():
    """True on the process that logs, writes checkpoints and evaluates."""
    return get_rank() == 0


def synchronize():
    """Barrier across all processes; a no-op for a single process."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather(data):
    """Gather any picklable object from every process.

    Args:
        data: a picklable object (e.g. a dict image_id -> BoxList).
    Returns:
        list with one entry per rank, in rank order (``[data]`` for a single process).
    """
    world_size = get_world_size()
    if world_size == 1:
        return [data]
    # all_gather_object pickles through the backend (gloo on CPU, nccl on GPU); it handles the
    # unequal byte sizes that hand-rolled tensor padding used to deal with.
    gathered = [None] * world_size
    dist.all_gather_object(gathered, data)
    return gathered


def reduce_dict(input_dict, average=True):
    """Reduce a dict of scalar tensors across processes so rank 0 can log the global value.

    Args:
        input_dict: dict name -> 0-dim Tensor. Processes may hold different names (e.g. a D statistic that a
            process without positive RoIs cannot compute): each name is reduced over the processes that have it.
        average: average (True) or sum (False) the values.
    Returns:
        dict with the names of all processes; on rank 0 it holds the reduced values (other ranks hold partial
        sums, as with ``torch.distributed.reduce``).
    """
    world_size = get_world_size()
    if world_size < 2:
        return input_dict
    with torch.no_grad():
        # Sorted union of the names, so every process stacks the values in the same order.
        names = sorted(set().union(*all_gather(sorted(input_dict.keys()))))
        device = next(iter(input_dict.values())).device if input_dict else torch.device("cpu")
        values = torch.zeros(2, len(names), device=device)
        for i, name in enumerate(names):
            if name in input_dict:
                values[0, i] = input_dict[name].detach().float()
                values[1, i] = 1.0
        dist.reduce(values, dst=0)
        totals, counts = values[0], values[1]
        if dist.get_rank() == 0 and average:
            totals = totals / counts
        return {name: value for name, value in zip(names, totals)}


def any_process_true(flags):
    """Element-wise logical OR of a bool vector across processes, so every rank takes the same branch.

    Args:
        flags (list[bool] or Tensor[K] bool): this process's flags, same length on every process.
    Returns:
        list[bool] of length K, identical on every process.
    """
    flags = torch.as_tensor(flags, dtype=torch.bool).flatten()
    if get_world_size() < 2:
        return flags.tolist()
    # gloo cannot reduce bool tensors; MAX over 0/1 integers is the OR.
    values = flags.to(torch.int32)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values.bool().cpu().tolist()


def init_distributed_from_env(local_rank=None, use_cuda=None):
    """Join the process group that torchrun (or ``torch.distributed.launch``) describes in the environment.

    Reads WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (``env://``). Uses nccl when running on
    GPUs and gloo on CPU.

    Args:
        local_rank: this process's GPU index; defaults to $LOCAL_RANK (0 if unset).
        use_cuda: pick nccl and bind the process to its GPU; defaults to ``torch.cuda.is_available()``.
    Returns:
        (distributed: bool, local_rank: int). With WORLD_SIZE unset or 1 nothing is initialised.
    """
    import os

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if local_rank is None or local_rank < 0:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 1:
        return False, local_rank
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not _is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    synchronize()
    return True, local_rank


def resolve_device(device_name, local_rank=0, distributed=False):
    """The torch.device that MODEL.DEVICE ``device_name`` means on this machine and process.

    "cuda" falls back to the CPU, with a warning, on machines without a GPU (so a GPU config runs unchanged on a
    laptop); under torch.distributed each process takes "cuda:<local_rank>".
    """
    import logging

    device = torch.device(device_name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            logging.getLogger("maskrcnn_benchmark").warning(
                "MODEL.DEVICE is '%s' but CUDA is not available: running on the CPU (set MODEL.DEVICE cpu to "
                "silence this)", device_name)
            return torch.device("cpu")
        if distributed:
            return torch.device("cuda", local_rank)
    return device
