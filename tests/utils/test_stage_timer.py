"""StageTimer: each stage gets the time of its own modules, the backward pass and the optimizer; the rest is
"other"; hooks are removed."""
import time

import torch
from torch import nn

from maskrcnn_benchmark.utils.stage_timer import StageTimer, format_stage_table


class _Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.linear = nn.Linear(2, 2)

    def forward(self, x):
        time.sleep(self.seconds)
        return self.linear(x)


def test_stage_times_add_up_and_follow_the_modules():
    first, second = _Sleep(0.02), _Sleep(0.04)
    optimizer = torch.optim.SGD(list(first.parameters()) + list(second.parameters()), lr=0.1)
    timer = StageTimer()
    timer.add_modules("first", [first])
    timer.add_modules("second", [second, None])
    timer.add_optimizer(optimizer)
    for _ in range(3):
        with timer.iteration():
            loss = second(first(torch.ones(1, 2))).sum() + second(torch.ones(1, 2)).sum()  # second runs twice
            loss.backward()
            optimizer.step()
            time.sleep(0.01)  # not in any stage: "other"
    medians = timer.medians()
    assert list(medians) == ["first", "second", "optimizer", "backward", "other", "total"]
    # lower bounds only: the sleeps are the least each stage takes, a loaded machine adds to them
    assert medians["first"] >= 0.02 and medians["second"] >= 0.08  # both calls of second counted
    assert medians["other"] >= 0.01 and medians["backward"] > 0 and medians["optimizer"] > 0
    for i in range(3):  # each iteration's stages and "other" add up to its total
        parts = sum(timer.samples[k][i] for k in medians if k != "total")
        assert abs(parts - timer.samples["total"][i]) < 1e-9
    assert torch.Tensor.backward.__name__ == "backward"  # restored after the iteration
    timer.remove()
    with timer.iteration():
        first(torch.ones(1, 2))
    assert timer.samples["first"][-1] == 0.0  # no hook left
    table = format_stage_table({"model": medians}, "title")
    assert table.splitlines()[0] == "title" and "second" in table and table.splitlines()[-1].startswith("total")
