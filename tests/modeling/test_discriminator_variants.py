"""The authors' variant (weighted D losses, D_m embedding with its input and layer weights), the ablations of the
abstract's claims (D_m in pixel space, D_b on box coordinates), D's scale measures and the spectral-norm bound."""
import os

import pytest
import torch
from torch import nn
from torchvision.ops import roi_align

from maskrcnn_benchmark.engine.adversarial import AdversarialTrainStep
from maskrcnn_benchmark.modeling.discriminators import MaskDiscriminator, build_discriminators
from maskrcnn_benchmark.modeling.discriminators.adversarial_discriminators import batchnorm_scale
from maskrcnn_benchmark.modeling.discriminators.box_discriminator import BoxCoordinateDiscriminator
from maskrcnn_benchmark.structures.adversarial_inputs import AdversarialInputs
from maskrcnn_benchmark.utils.imports import import_file

HERE = os.path.dirname(os.path.abspath(__file__))


def _step_tests():
    return import_file("adversarial_step_tests_for_variants",
                       os.path.join(HERE, "..", "engine", "test_adversarial_step.py"))


def _gan_cfg(**keys):
    from maskrcnn_benchmark.config import cfg

    c = cfg.clone()
    c.MODEL.GAN.ENABLED = True
    c.MODEL.ROI_MASK_HEAD.RESOLUTION = 28
    c.MODEL.GAN.BOX_DISC.CHANNELS = 8
    c.MODEL.GAN.MASK_DISC.CHANNELS = 8
    c.merge_from_list([str(v) if not isinstance(v, str) else v for kv in keys.items() for v in kv])
    return c


def _adv_inputs(channels=4):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 48) * 50
    features = [torch.randn(2, channels, 16, 12, requires_grad=True)]
    gt = torch.tensor([[0, 2.0, 4.0, 30.0, 40.0], [1, 10.0, 8.0, 40.0, 20.0]])
    pred = (gt + torch.tensor([0, 1.0, -2.0, 3.0, 1.0])).requires_grad_(True)
    logits = torch.randn(2, 28, 28, requires_grad=True)
    targets = (torch.rand(2, 28, 28) > 0.5).float()
    return AdversarialInputs(features=features, feature_strides=[4], box_rois_pred=pred, box_rois_gt=gt,
                             mask_logits=logits, mask_targets=targets, mask_rois=gt, images=images,
                             image_sizes=[(60, 48), (64, 40)])


# ------------------------------------------------------------------------------------------- authors' variant
def test_weighted_d_losses_give_weight_times_the_unweighted_d_gradient():
    step_tests = _step_tests()
    gradients = {}
    for weighted in (False, True):
        model, discs, g_opt, d_opt, images, targets = step_tests._setup()
        grads = {}
        step_tests._after_step(d_opt, lambda grads=grads, discs=discs: grads.update(
            {name: p.grad.clone() for name, p in discs.named_parameters()}))
        step = AdversarialTrainStep(model, discs, g_opt, d_opt, box_weight=0.025, mask_weight=0.5,
                                    weight_d_losses=weighted)
        logged = step.adversarial_iteration(images, targets)
        gradients[weighted] = (grads, logged)
    (plain, plain_logged), (weighted, weighted_logged) = gradients[False], gradients[True]
    for name, grad in plain.items():
        factor = 0.025 if name.startswith("box_disc") else 0.5
        assert name.startswith(("box_disc", "mask_disc"))
        assert grad.abs().sum() > 0, name
        # float32 round-off only: both runs share the seed, inputs and D's initial weights
        scale = factor * grad.abs().max().item()
        torch.testing.assert_close(weighted[name], factor * grad, rtol=1e-4, atol=1e-4 * scale)
    # logged as they enter L_D
    assert weighted_logged["loss_box_disc"].item() == pytest.approx(0.025 * plain_logged["loss_box_disc"].item())
    assert weighted_logged["loss_mask_disc"].item() == pytest.approx(0.5 * plain_logged["loss_mask_disc"].item())


def test_embedding_with_input_and_layer_weights_is_the_input_then_the_weighted_layers():
    torch.manual_seed(0)
    plain = MaskDiscriminator(4, channels=2, num_convs=5)
    torch.manual_seed(0)
    authors = MaskDiscriminator(4, channels=2, num_convs=5, embed_input=True, layer_weights=(1, 2, 2, 2, 4))
    x = torch.randn(3, 4, 28, 28)
    a, p = authors(x), plain(x)
    assert authors.embedding_size == plain.embedding_size + 4 * 28 * 28 == a.shape[1]
    torch.testing.assert_close(a[:, :4 * 28 * 28], x.flatten(1))  # the raw input, weight 1
    sizes = [2 * 2 ** i * s * s for i, s in enumerate((14, 7, 4, 2, 1))]
    layers_a = torch.split(a[:, 4 * 28 * 28:], sizes, dim=1)
    layers_p = torch.split(p, sizes, dim=1)
    for weight, la, lp in zip((1, 2, 2, 2, 4), layers_a, layers_p):
        torch.testing.assert_close(la, weight * lp)


def test_layer_weights_must_match_the_layer_count_naming_the_key():
    with pytest.raises(ValueError, match="MODEL.GAN.MASK_DISC.LAYER_WEIGHTS has 5 weights.*NUM_CONVS"):
        build_discriminators(_gan_cfg(**{"MODEL.GAN.MASK_DISC.NUM_CONVS": 3,
                                         "MODEL.GAN.MASK_DISC.LAYER_WEIGHTS": (1.0, 2.0, 2.0, 2.0, 4.0)}), 4)


# ------------------------------------------------------------------------------- ablations of the abstract's claims
def test_pixel_space_mask_discriminator_inputs():
    adv = _adv_inputs()
    masks_only = build_discriminators(_gan_cfg(**{"MODEL.GAN.MASK_DISC.INPUT": "mask"}), 4)
    real, fake = masks_only.pool_inputs(adv).mask.chunk(2)
    torch.testing.assert_close(real, adv.mask_targets[:, None])
    torch.testing.assert_close(fake, adv.mask_logits.sigmoid()[:, None])
    assert masks_only.mask_disc.blocks[0][0].in_channels == 1 and masks_only.mask_pooler is None

    pixels = build_discriminators(_gan_cfg(**{"MODEL.GAN.MASK_DISC.INPUT": "pixels"}), 4)
    inputs = pixels.pool_inputs(adv)
    roi_pixels = roi_align(adv.images, adv.mask_rois, (28, 28), 1.0, 0)  # default sampling ratio 0
    real, fake = inputs.mask.chunk(2)
    torch.testing.assert_close(real, adv.mask_targets[:, None] * roi_pixels)
    torch.testing.assert_close(fake, adv.mask_logits.sigmoid()[:, None] * roi_pixels)
    assert pixels.mask_disc.blocks[0][0].in_channels == 3
    embeddings = pixels(inputs)["mask"]
    assert embeddings[0].shape == (2, pixels.mask_disc.embedding_size)
    # the features are not used at all: the generator reaches D_m only through its masks
    embeddings[1].sum().backward()
    assert adv.features[0].grad is None and adv.mask_logits.grad.abs().sum() > 0
    # the box side still pools features (only the mask input changed)
    assert inputs.box.shape == (4, 4, 28, 28)  # 2 real, then 2 fake
    with pytest.raises(ValueError, match="MODEL.GAN.MASK_DISC.INPUT 'texture'"):
        build_discriminators(_gan_cfg(**{"MODEL.GAN.MASK_DISC.INPUT": "texture"}), 4)


def test_box_coordinate_discriminator_judges_normalised_boxes_and_reaches_the_prediction():
    adv = _adv_inputs()
    discs = build_discriminators(_gan_cfg(**{"MODEL.GAN.BOX_DISC.INPUT": "coordinates",
                                             "MODEL.GAN.BOX_DISC.NUM_CONVS": 3}), 4)
    assert isinstance(discs.box_disc, BoxCoordinateDiscriminator) and discs.box_pooler is None
    assert sum(isinstance(m, nn.Linear) for m in discs.box_disc.modules()) == 3
    inputs = discs.pool_inputs(adv)
    # image 0 is 48 wide, 60 high; image 1 is 40 wide, 64 high
    expected = torch.tensor([[2 / 48, 4 / 60, 30 / 48, 40 / 60], [10 / 40, 8 / 64, 40 / 40, 20 / 64]])
    real, fake = inputs.box.chunk(2)
    torch.testing.assert_close(real, expected)
    torch.testing.assert_close(fake, (adv.box_rois_pred[:, 1:] / expected.new_tensor(
        [[48, 60, 48, 60], [40, 64, 40, 64]])).detach())
    real, fake = discs(inputs)["box"]
    assert real.shape == fake.shape == (2,)
    fake.sum().backward()  # no box-differentiable pooling needed: the gradient reaches the predicted coordinates
    assert adv.box_rois_pred.grad[:, 1:].abs().sum() > 0
    with pytest.raises(ValueError, match="MODEL.GAN.BOX_DISC.INPUT 'corners'"):
        build_discriminators(_gan_cfg(**{"MODEL.GAN.BOX_DISC.INPUT": "corners"}), 4)


# ------------------------------------------------------------------------------------------ scale and its bound
def test_batchnorm_scale_is_the_mean_absolute_gamma():
    discs = build_discriminators(_gan_cfg(), 4)
    gammas = [m.weight for m in discs.mask_disc.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for index, gamma in enumerate(gammas):
            gamma.fill_(-(index + 1.0))  # sign must not matter
    counts = [g.numel() for g in gammas]
    expected = sum((i + 1.0) * n for i, n in enumerate(counts)) / sum(counts)
    stats = discs.scale_stats()
    assert stats["d_mask_bn_gamma"].item() == pytest.approx(expected)
    assert stats["d_box_bn_gamma"].item() == pytest.approx(1.0)  # DCGAN initialisation
    assert batchnorm_scale(nn.Linear(2, 2)) is None


def _embedding_after_scaling_weights(discs, factor):
    """D_m's embedding of fixed inputs (eval mode) after multiplying every conv weight by `factor`."""
    torch.manual_seed(1)
    x = torch.randn(3, 4, 28, 28)
    with torch.no_grad():
        for module in discs.mask_disc.modules():
            if isinstance(module, nn.Conv2d):
                if hasattr(module, "parametrizations"):
                    module.parametrizations.weight.original.mul_(factor)
                else:
                    module.weight.mul_(factor)
    discs.eval()
    with torch.no_grad():
        return discs.mask_disc(x)


def test_spectral_norm_bounds_d_so_growing_its_weights_does_not_grow_its_output():
    torch.manual_seed(0)
    bounded = build_discriminators(_gan_cfg(**{"MODEL.GAN.SPECTRAL_NORM": True}), 4)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in bounded.modules())
    layers = [m for m in bounded.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert bounded.scale_stats() == {}
    bounded.train()
    with torch.no_grad():
        for _ in range(30):  # power iterations run in training forwards
            bounded.mask_disc(torch.randn(4, 4, 28, 28))
            bounded.box_disc(torch.randn(4, 4, 28, 28))
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
    before = _embedding_after_scaling_weights(bounded, 1.0)
    after = _embedding_after_scaling_weights(bounded, 10.0)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)

    torch.manual_seed(0)
    unbounded = build_discriminators(_gan_cfg(), 4)
    with torch.no_grad():  # BatchNorm running statistics from a few batches
        for _ in range(3):
            unbounded.mask_disc(torch.randn(4, 4, 28, 28))
    before = _embedding_after_scaling_weights(unbounded, 1.0)
    after = _embedding_after_scaling_weights(unbounded, 10.0)
    assert after.norm() > 5 * before.norm()
