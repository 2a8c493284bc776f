"""utils.comm in a single process and in a real two-process gloo group."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from maskrcnn_benchmark.utils import comm


def test_single_process_is_a_world_of_one():
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.is_main_process()
    comm.synchronize()
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    losses = {"loss_mask": torch.tensor(2.0)}
    assert comm.reduce_dict(losses) is losses


def test_resolve_device_falls_back_to_cpu_and_names_the_config_value(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="maskrcnn_benchmark"):
        assert comm.resolve_device("cuda") == torch.device("cpu")
    assert "MODEL.DEVICE is 'cuda'" in caplog.text
    assert comm.resolve_device("cpu", local_rank=1, distributed=True) == torch.device("cpu")
    # With GPUs, each torchrun process takes its own: "cuda" -> cuda:<local_rank>.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert comm.resolve_device("cuda", local_rank=1, distributed=True) == torch.device("cuda", 1)
    assert comm.resolve_device("cuda:0") == torch.device("cuda", 0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    distributed, local_rank = comm.init_distributed_from_env(use_cuda=False)
    try:
        assert distributed and local_rank == rank
        assert dist.get_backend() == "gloo"
        gathered = comm.all_gather({rank: "x" * (rank * 1000 + 1)})  # unequal pickled sizes
        reduced = comm.reduce_dict({"loss_b": torch.tensor(float(rank + 1)), "loss_a": torch.tensor(10.0 * rank)})
        # a statistic only rank 1 has (e.g. D's probability when rank 0 has no positive RoI)
        partial = comm.reduce_dict({"loss_a": torch.tensor(2.0), **({"d_prob": torch.tensor(0.25)} if rank else {})})
        flags = comm.any_process_true([rank == 1, False])
        comm.synchronize()
        torch.save({"gathered": gathered, "reduced": reduced, "partial": partial, "flags": flags,
                    "rank": comm.get_rank(),
                    "main": comm.is_main_process()}, os.path.join(result_dir, "rank{}.pth".format(rank)))
    finally:
        dist.destroy_process_group()


def test_all_gather_and_reduce_dict_across_two_processes(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(str(tmp_path / "rank0.pth"), weights_only=True)
    r1 = torch.load(str(tmp_path / "rank1.pth"), weights_only=True)
    expected = [{0: "x"}, {1: "x" * 1001}]
    assert r0["gathered"] == expected and r1["gathered"] == expected
    assert r0["main"] and not r1["main"] and r1["rank"] == 1
    # Rank 0 holds the averages; keys are matched by name, not by insertion order.
    assert r0["reduced"]["loss_b"].item() == pytest.approx(1.5)
    assert r0["reduced"]["loss_a"].item() == pytest.approx(5.0)
    # names missing on a process are averaged over the processes that have them
    assert r0["partial"]["d_prob"].item() == pytest.approx(0.25) and r0["partial"]["loss_a"].item() == 2.0
    assert r0["flags"] == r1["flags"] == [True, False]  # every process takes the same branch


def _stall_worker(rank, world_size, port, result_dir):
    import time

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    comm.init_distributed_from_env(use_cuda=False, timeout_seconds=2)
    comm.synchronize()
    if rank == 1:  # stalls (stopped, not dead) while the others wait in a collective
        time.sleep(10)
        os._exit(0)
    started = time.time()
    try:
        comm.all_gather({"rank": rank})
        message = "no timeout"
    except RuntimeError as e:
        assert comm.is_collective_timeout(e), e
        error = comm.stalled_process_error(e, 2, grace_seconds=3)
        message = "{}|{}".format(error.stalled_ranks, error)
    with open(os.path.join(result_dir, "rank{}.txt".format(rank)), "w") as f:
        f.write("{:.1f}|{}".format(time.time() - started, message))
    os._exit(0)


@pytest.mark.slow
def test_a_stalled_rank_makes_the_others_exit_naming_it(tmp_path):
    mp.spawn(_stall_worker, args=(3, _free_port(), str(tmp_path)), nprocs=3, join=True)
    for rank in (0, 2):
        waited, stalled, message = (tmp_path / "rank{}.txt".format(rank)).read_text().split("|", 2)
        assert stalled == "[1]"
        assert message.startswith("Process(es) of rank 1 stopped answering: a collective operation on rank {} waited "
                                  "longer than DISTRIBUTED.TIMEOUT (2 s)".format(rank))
        assert float(waited) < 9  # the timeout and the grace period, not the stalled rank's 10 s
