"""The four adversarial losses (Eqs. (4)-(6) of Le et al.) against values computed by hand."""
import math

import pytest
import torch

from maskrcnn_benchmark.modeling.discriminators.loss import (
    box_adv_discriminator_loss,
    box_adv_generator_loss,
    discriminator_losses,
    mask_adv_discriminator_loss,
    mask_adv_generator_loss,
)

LOG3 = math.log(3.0)  # sigmoid(log 3) = 3/4, sigmoid(-log 3) = 1/4


def test_box_generator_loss_is_mean_negative_log_prob_of_fake():
    # D_b(fake) = 1/2 and 3/4 -> (-log 1/2 - log 3/4) / 2
    fake = torch.tensor([0.0, LOG3])
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert box_adv_generator_loss(fake).item() == pytest.approx(expected, rel=1e-6)


def test_box_discriminator_loss_matches_eq5():
    # pair 1: D(real) = 3/4, D(fake) = 1/2 -> -(log 3/4 + log 1/2)
    # pair 2: D(real) = 1/4, D(fake) = 3/4 -> -(log 1/4 + log 1/4)
    real = torch.tensor([LOG3, -LOG3])
    fake = torch.tensor([0.0, LOG3])
    expected = (-(math.log(0.75) + math.log(0.5)) - 2 * math.log(0.25)) / 2
    assert box_adv_discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_box_losses_stay_finite_for_saturated_logits():
    # a naive log(sigmoid(x)) gives -inf at x = -200 in float32; the loss must be 200
    assert box_adv_generator_loss(torch.tensor([-200.0])).item() == pytest.approx(200.0)
    assert box_adv_discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])).item() == pytest.approx(400.0)


def test_mask_losses_are_elementwise_l1_and_its_negative():
    real = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    fake = torch.tensor([[0.0, 4.0], [1.0, -1.0]])
    # |diff| = 1, 2, 1, 1 -> mean 1.25
    assert mask_adv_generator_loss(real, fake).item() == pytest.approx(1.25)
    assert mask_adv_discriminator_loss(real, fake).item() == pytest.approx(-1.25)


def test_mask_generator_loss_gradient_pulls_fake_towards_real():
    real = torch.tensor([[1.0, 2.0]])
    fake = torch.tensor([[0.0, 4.0]], requires_grad=True)
    mask_adv_generator_loss(real, fake).backward()
    # d mean|real - fake| / d fake = sign(fake - real) / 2
    assert torch.equal(fake.grad, torch.tensor([[-0.5, 0.5]]))


def test_empty_batches_give_zero_loss_that_backpropagates():
    logits = torch.zeros(0, requires_grad=True)
    embedding = torch.zeros(0, 7, requires_grad=True)
    losses = [
        box_adv_generator_loss(logits),
        box_adv_discriminator_loss(logits, logits),
        mask_adv_generator_loss(embedding, embedding),
        mask_adv_discriminator_loss(embedding, embedding),
    ]
    for loss in losses:
        assert loss.item() == 0.0
        loss.backward()


def test_mismatched_real_and_fake_shapes_are_reported():
    expected = ("{}: the real and fake discriminator outputs must have the same shape (one real per fake RoI), "
                "got {} and {}")
    with pytest.raises(ValueError) as error:
        box_adv_discriminator_loss(torch.zeros(2), torch.zeros(3))
    assert str(error.value) == expected.format("box_adv_discriminator_loss", (2,), (3,))
    with pytest.raises(ValueError) as error:
        mask_adv_generator_loss(torch.zeros(2, 4), torch.zeros(2, 5))
    assert str(error.value) == expected.format("mask_adv_generator_loss", (2, 4), (2, 5))


def test_d_statistics_are_logged_from_one_roi_on_and_average_the_embedding_norm_over_rois():
    # one RoI is enough for the statistics (an image with one object); D_m's scale is the mean over RoIs of the
    # L2 norm of each RoI's embedding, not the norm of the whole batch
    _, stats = discriminator_losses({"box": (torch.tensor([2.0]), torch.tensor([-1.0])),
                                     "mask": (torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2))})
    assert stats["d_box_real_prob"].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert stats["d_box_fake_prob"].item() == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    assert stats["d_mask_real_embedding_norm"].item() == pytest.approx(5.0)
    _, stats = discriminator_losses({"mask": (torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.zeros(2, 2))})
    assert stats["d_mask_real_embedding_norm"].item() == pytest.approx((5.0 + 1.0) / 2)
