"""Baseline iterations before MODEL.GAN.START_ITER: D's schedule keeps pace with G's without PyTorch's
"lr_scheduler.step() before optimizer.step()" warning, and D is not touched."""
import warnings

import pytest
import torch
from torch import nn

from maskrcnn_benchmark.engine.adversarial import AdversarialTrainStep
from maskrcnn_benchmark.solver.lr_scheduler import WarmupMultiStepLR


class _Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, images, targets):
        return {"loss_classifier": self.linear(images).pow(2).mean()}


def _schedule(optimizer):
    return WarmupMultiStepLR(optimizer, milestones=[3], gamma=0.1, warmup_factor=0.5, warmup_iters=2)


def test_baseline_iterations_advance_d_schedule_silently_in_step_with_g():
    detector, discriminator = _Detector(), nn.Linear(2, 1)
    g_optimizer = torch.optim.SGD(detector.parameters(), lr=0.1)
    d_optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.02)
    g_scheduler, d_scheduler = _schedule(g_optimizer), _schedule(d_optimizer)
    step = AdversarialTrainStep(detector, discriminator, g_optimizer, d_optimizer, d_scheduler, start_iter=10)
    d_before = [p.detach().clone() for p in discriminator.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any scheduler warning fails the test
        for iteration in range(1, 5):
            logged = step(torch.randn(4, 3), None, iteration)
            g_scheduler.step()
            # D's LR is D's base LR times exactly G's schedule factor at every iteration
            assert logged["d_lr"].item() == pytest.approx(0.02 / 0.1 * g_optimizer.param_groups[0]["lr"])
    assert d_scheduler.last_epoch == g_scheduler.last_epoch == 4
    assert d_scheduler.get_last_lr() == [pytest.approx(0.002)]  # past the milestone at 3
    assert all(torch.equal(a, b) for a, b in zip(d_before, discriminator.parameters()))
    assert set(logged) == {"loss_classifier", "d_lr"}
