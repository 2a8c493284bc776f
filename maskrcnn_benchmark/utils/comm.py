"""Helpers for multi-process (torch.distributed) training and testing.

Every function also works without an initialised process group, where it behaves as a world of one
process, so single-process code needs no special cases.
"""
import datetime
import time

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_SECONDS = 1800  # DISTRIBUTED.TIMEOUT's default: torch's own default for gloo
_STALL_KEY = "maskrcnn_benchmark/collective_timeout/rank{}"


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


def init_distributed_from_env(local_rank=None, use_cuda=None, timeout_seconds=DEFAULT_TIMEOUT_SECONDS):
    """Join the process group that torchrun (or ``torch.distributed.launch``) describes in the environment.

    Reads WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (``env://``). Uses nccl when running on
    GPUs and gloo on CPU.

    Args:
        local_rank: this process's GPU index; defaults to $LOCAL_RANK (0 if unset).
        use_cuda: pick nccl and bind the process to its GPU; defaults to ``torch.cuda.is_available()``.
        timeout_seconds: process-group timeout (DISTRIBUTED.TIMEOUT): a collective that waits longer than this
            for a stalled process fails (gloo raises; NCCL's watchdog aborts the process), see
            :func:`stalled_process_error`.
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
        if timeout_seconds <= 0:
            raise ValueError("DISTRIBUTED.TIMEOUT must be > 0 seconds, got {}".format(timeout_seconds))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                                timeout=datetime.timedelta(seconds=timeout_seconds))
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


class StalledProcessError(RuntimeError):
    """A collective timed out because other processes stopped answering; ``stalled_ranks`` lists them (empty
    when they could not be determined)."""

    def __init__(self, message, stalled_ranks):
        super().__init__(message)
        self.stalled_ranks = list(stalled_ranks)


def is_collective_timeout(error):
    """True for the errors a timed-out (or peer-abandoned) torch.distributed collective raises."""
    if not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return isinstance(error, getattr(dist, "DistBackendError", ())) or any(
        phrase in text for phrase in ("Timed out waiting", "timeout caused pair closure", "Connection closed by peer",
                                      "Connection reset by peer"))


def stalled_process_error(error, timeout_seconds, grace_seconds=None):
    """After ``error`` (a timed-out collective, see is_collective_timeout), find which processes stopped answering
    and return a StalledProcessError naming them, for the caller to raise.

    Every process that sees the timeout reports it in the rendezvous store, then waits ``grace_seconds``
    (default: the timeout, at most 60 s) for the others' reports: the ranks without one are the stalled ones.
    """
    rank, world_size = get_rank(), get_world_size()
    grace = min(float(timeout_seconds), 60.0) if grace_seconds is None else float(grace_seconds)
    stalled, note = None, ""
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(datetime.timedelta(seconds=max(grace, 1.0)))
        store.set(_STALL_KEY.format(rank), "1")
        deadline = time.time() + grace
        while True:
            answered = [r for r in range(world_size) if store.check([_STALL_KEY.format(r)])]
            if len(answered) == world_size or time.time() >= deadline:
                break
            time.sleep(0.2)
        stalled = [r for r in range(world_size) if r not in answered]
        if rank == 0:
            time.sleep(1.0)  # rank 0 hosts the store: let the others read it before this process exits
    except Exception as store_error:  # the store lives in rank 0's process: a stopped rank 0 takes it along
        note = " (the rendezvous store, hosted by rank 0, did not answer either: {})".format(store_error)
        stalled = [0] if rank != 0 else None
    if stalled:
        who = "Process(es) of rank {} stopped answering".format(", ".join(str(r) for r in stalled))
    else:
        who = "Another process stopped answering (which one could not be determined)"
    return StalledProcessError(
        "{}: a collective operation on rank {} waited longer than DISTRIBUTED.TIMEOUT ({} s) and this process "
        "exits{}. Check that process (stopped, swapping, stuck reading data?), then restart the run: it resumes "
        "from last_checkpoint. Underlying error: {}".format(who, rank, timeout_seconds, note, error),
        stalled or [])


def unwrap_model(model):
    """The module inside a DistributedDataParallel (or DataParallel) wrapper; the module itself otherwise."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model
