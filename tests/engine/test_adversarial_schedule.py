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


def _tiny_adversarial_setup():
    import os

    from maskrcnn_benchmark.utils.imports import import_file

    step_tests = import_file("adversarial_step_tests", os.path.join(os.path.dirname(__file__),
                                                                    "test_adversarial_step.py"))
    return step_tests._setup()


@pytest.mark.parametrize("start_iter", [0, 10], ids=["adversarial", "before_start_iter"])
def test_skipped_non_finite_step_moves_d_schedule_with_g(start_iter):
    """do_train steps G's scheduler on a skipped step; D's LR must stay D_LR_FACTOR times G's after it."""
    from maskrcnn_benchmark.engine.trainer import NonFiniteLossError

    model, discs, g_optimizer, d_optimizer, images, targets = _tiny_adversarial_setup()
    factor = d_optimizer.param_groups[0]["lr"] / g_optimizer.param_groups[0]["lr"]
    # warm-up over 5 iterations: the LR changes at every iteration, so a schedule one step behind shows
    schedule = lambda opt: WarmupMultiStepLR(opt, milestones=[4], gamma=0.1, warmup_factor=0.1,  # noqa: E731
                                             warmup_iters=5)
    g_scheduler, d_scheduler = schedule(g_optimizer), schedule(d_optimizer)
    step = AdversarialTrainStep(model, discs, g_optimizer, d_optimizer, d_scheduler, start_iter=start_iter)
    skipped = 0
    for iteration in range(1, 7):
        batch = images * float("nan") if iteration in (2, 3) else images
        try:
            step(batch, targets, iteration)
        except NonFiniteLossError:
            skipped += 1
        g_scheduler.step()  # as do_train does, skipped or not
        assert d_optimizer.param_groups[0]["lr"] == pytest.approx(factor * g_optimizer.param_groups[0]["lr"])
    assert skipped == 2
    assert d_scheduler.last_epoch == g_scheduler.last_epoch == 6
