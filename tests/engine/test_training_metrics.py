"""Periodic evaluation results reach metrics.json and TensorBoard; train_net flattens COCO results into them;
the data order of a resumed run follows from the iteration."""
import json
import sys
import types
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.data.sampler import BatchSampler, RandomSampler

from maskrcnn_benchmark.data.samplers import IterationBasedBatchSampler
from maskrcnn_benchmark.engine.trainer import do_train
from maskrcnn_benchmark.utils.checkpoint import Checkpointer


class _Batch:
    def __init__(self, tensor):
        self.tensor = tensor

    def to(self, device):
        return self


class _Loader:
    def __init__(self, max_iter):
        self.max_iter = max_iter

    def __len__(self):
        return self.max_iter

    def __iter__(self):
        for i in range(self.max_iter):
            yield _Batch(torch.full((2, 3), float(i))), [_Batch(torch.zeros(2))], (i,)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, images, targets):
        return {"loss_classifier": self.linear(images.tensor).pow(2).mean()}


def test_periodic_evaluation_metrics_go_to_metrics_json_and_tensorboard(tmp_path, monkeypatch):
    scalars = []

    class RecordingWriter:
        def __init__(self, log_dir):
            pass

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=RecordingWriter))
    model = _Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 100)
    do_train(model, _Loader(4), optimizer, scheduler, Checkpointer(model, save_dir=str(tmp_path)),
             torch.device("cpu"), 0, {"iteration": 0}, test_period=2,
             test_fn=lambda it: {"data/bbox/AP": 0.25 * it}, output_dir=str(tmp_path), log_period=1)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert evals == [{"iteration": 2, "eval": {"data/bbox/AP": 0.5}}]
    assert [r["iteration"] for r in records if "losses" in r] == [1, 2, 3, 4]
    assert ("eval/data/bbox/AP", 0.5, 2) in scalars
    assert ("train/loss", records[0]["loss"], 1) in scalars


def test_train_net_flattens_coco_results_per_dataset():
    from maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval import COCOResults
    from maskrcnn_benchmark.engine import train_net
    results = COCOResults("bbox", "segm")
    results.results["bbox"] = OrderedDict([("AP", 0.5), ("AP50", 0.75)])
    metrics = train_net.evaluation_metrics([(results, {}, {}), None], ["val_a", "val_b"])
    assert metrics["val_a/bbox/AP"] == 0.5 and metrics["val_a/bbox/AP50"] == 0.75
    assert not any(k.startswith("val_b") for k in metrics)  # non-main processes return None


def test_resumed_sampler_repeats_the_uninterrupted_batch_order():
    batches = BatchSampler(RandomSampler(range(7)), batch_size=2, drop_last=False)  # 4 batches per epoch
    full = list(IterationBasedBatchSampler(batches, num_iterations=11, seed=5))
    for start in (0, 3, 4, 9):
        resumed = list(IterationBasedBatchSampler(batches, num_iterations=11, start_iter=start, seed=5))
        assert resumed == full[start:], start
    torch.manual_seed(123)  # the global generator plays no part
    assert list(IterationBasedBatchSampler(batches, num_iterations=11, seed=5)) == full
    assert full[:4] != full[4:8]  # but each epoch is shuffled anew
