"""Optimizer param groups and the warm-up multi-step schedule."""
import pytest
import torch
from torch import nn

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.solver import WarmupMultiStepLR, make_lr_scheduler, make_optimizer


def _cfg(**solver):
    cfg = default_cfg.clone()
    opts = []
    for key, value in solver.items():
        opts += ["SOLVER." + key, value]
    cfg.merge_from_list(opts)
    return cfg


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.fc = nn.Linear(2, 1)


def test_param_groups_bias_lr_factor_and_weight_decay():
    cfg = _cfg(BASE_LR=0.02, BIAS_LR_FACTOR=2, WEIGHT_DECAY=1e-4, WEIGHT_DECAY_BIAS=0, MOMENTUM=0.9)
    net = _Net()
    opt = make_optimizer(cfg, net)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {id(p) for p in groups["weights"]["params"]} == {id(net.conv.weight), id(net.fc.weight)}
    assert {id(p) for p in groups["biases"]["params"]} == {id(net.conv.bias), id(net.fc.bias)}
    assert groups["weights"]["lr"] == pytest.approx(0.02) and groups["weights"]["weight_decay"] == 1e-4
    assert groups["biases"]["lr"] == pytest.approx(0.04) and groups["biases"]["weight_decay"] == 0.0
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)
    # a second model (the discriminators) with its own base LR
    d_opt = make_optimizer(cfg, nn.Linear(2, 2), lr_factor=0.2)
    assert sorted(g["lr"] for g in d_opt.param_groups) == pytest.approx([0.004, 0.008])


def test_optimizer_rejects_model_without_trainable_parameters():
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(_cfg(), nn.Linear(2, 2).requires_grad_(False))


def _lrs(scheduler, optimizer, iterations):
    out = []
    for _ in range(iterations):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_linear_warmup_and_steps():
    cfg = _cfg(BASE_LR=0.1, STEPS=(4, 6), GAMMA=0.1, WARMUP_FACTOR=0.25, WARMUP_ITERS=2, WARMUP_METHOD="linear")
    opt = make_optimizer(cfg, nn.Linear(1, 1, bias=False))
    lrs = _lrs(make_lr_scheduler(cfg, opt), opt, 8)
    assert lrs == pytest.approx([0.025, 0.0625, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_constant_warmup():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupMultiStepLR(opt, [3], gamma=0.5, warmup_factor=0.1, warmup_iters=2, warmup_method="constant")
    assert _lrs(sched, opt, 5) == pytest.approx([0.1, 0.1, 1.0, 0.5, 0.5])


def test_bad_schedules_raise_clear_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"increasing.*\[5, 3\]"):
        WarmupMultiStepLR(opt, [5, 3])
    with pytest.raises(ValueError, match="'cosine'"):
        WarmupMultiStepLR(opt, [3], warmup_method="cosine")
