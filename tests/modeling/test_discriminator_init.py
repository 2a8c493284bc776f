"""MODEL.GAN.FIRST_CONV_NORM and MODEL.GAN.D_INIT: the layers of D_b, D_m and the coordinate D, and how their weights
are drawn, for our default and for the authors' code (gan_mrcnn.py: convblock1 without BatchNorm, He fan-out init)."""
import math
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from maskrcnn_benchmark.modeling.discriminators import build_discriminators
from maskrcnn_benchmark.modeling.discriminators.adversarial_discriminators import batchnorm_scale
from maskrcnn_benchmark.utils.imports import import_file

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _gan_cfg(**keys):
    """The default config with both discriminators on and narrow (test_discriminator_variants.py's helper)."""
    return import_file("discriminator_variant_tests_for_{}".format(__name__),
                       os.path.join(os.path.dirname(__file__), "test_discriminator_variants.py"))._gan_cfg(**keys)


def _coordinate_cfg(**keys):
    return _gan_cfg(**{"MODEL.GAN.BOX_DISC.INPUT": "coordinates", "MODEL.GAN.MASK_DISC.ENABLED": False, **keys})


def _batchnorm_keys(prefix):
    return [prefix + name for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


# What a checkpoint of the discriminators holds with the defaults (5 convs each): the layers and their indices
# written by the code before FIRST_CONV_NORM existed. Checkpoints stay loadable as long as these do not move.
DEFAULT_BOX_KEYS = sum((["box_disc.layers.{}.weight".format(3 * i)] + _batchnorm_keys(
    "box_disc.layers.{}.".format(3 * i + 1)) for i in range(4)), []) + ["box_disc.layers.12.weight",
                                                                         "box_disc.layers.12.bias"]
DEFAULT_MASK_KEYS = sum((["mask_disc.blocks.{}.0.weight".format(i)] + _batchnorm_keys(
    "mask_disc.blocks.{}.1.".format(i)) for i in range(5)), [])
# the coordinate D's Linear / BatchNorm1d / LeakyReLU triples sit at the same indices as D_b's convs
DEFAULT_COORDINATE_KEYS = DEFAULT_BOX_KEYS


# --------------------------------------------------------------------------------------------- FIRST_CONV_NORM
def test_default_discriminators_keep_the_checkpoint_keys_of_the_code_before_first_conv_norm():
    assert sorted(build_discriminators(_gan_cfg(), 4).state_dict()) == sorted(DEFAULT_BOX_KEYS + DEFAULT_MASK_KEYS)
    assert sorted(build_discriminators(_coordinate_cfg(), 4).state_dict()) == sorted(DEFAULT_COORDINATE_KEYS)


def test_first_conv_norm_false_drops_only_the_first_batchnorm_and_keeps_every_other_key():
    discs = build_discriminators(_gan_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": False}), 4)
    coordinates = build_discriminators(_coordinate_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": False}), 4)
    assert sorted(discs.state_dict()) == sorted(
        [k for k in DEFAULT_BOX_KEYS if not k.startswith("box_disc.layers.1.")]
        + [k for k in DEFAULT_MASK_KEYS if not k.startswith("mask_disc.blocks.0.1.")])
    assert sorted(coordinates.state_dict()) == sorted(
        [k for k in DEFAULT_COORDINATE_KEYS if not k.startswith("box_disc.layers.1.")])
    for first_block in (discs.box_disc.layers[:3], discs.mask_disc.blocks[0], coordinates.box_disc.layers[:3]):
        layer, norm, activation = first_block
        assert isinstance(norm, nn.Identity) and layer.bias is None
        assert isinstance(activation, nn.LeakyReLU) and activation.negative_slope == 0.2
    # every later hidden layer keeps its BatchNorm
    assert sum(isinstance(m, BATCH_NORMS) for m in discs.box_disc.modules()) == 3
    assert sum(isinstance(m, BATCH_NORMS) for m in discs.mask_disc.modules()) == 4
    assert sum(isinstance(m, BATCH_NORMS) for m in coordinates.box_disc.modules()) == 3


@pytest.mark.parametrize("first_conv_norm", [True, False])
def test_first_block_output_is_leaky_relu_of_the_conv_alone_only_without_first_conv_norm(first_conv_norm):
    # train mode, where BatchNorm would normalise the batch: the authors' convblock1 is conv -> LeakyReLU(0.2)
    torch.manual_seed(0)
    discs = build_discriminators(_gan_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": first_conv_norm}), 4).train()
    coordinates = build_discriminators(_coordinate_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": first_conv_norm}), 4).train()
    x, boxes = torch.randn(3, 4, 28, 28), torch.rand(5, 4)
    with torch.no_grad():
        box_conv, mask_conv = discs.box_disc.layers[0], discs.mask_disc.blocks[0][0]
        linear = coordinates.box_disc.layers[0]
        found = [discs.box_disc.layers[:3](x), discs.mask_disc(x)[:, :8 * 14 * 14].reshape(3, 8, 14, 14),
                 coordinates.box_disc.layers[:3](boxes)]
        by_hand = [F.leaky_relu(F.conv2d(x, box_conv.weight, None, 2, 1), 0.2),
                   F.leaky_relu(F.conv2d(x, mask_conv.weight, None, 2, 1), 0.2),
                   F.leaky_relu(boxes @ linear.weight.T, 0.2)]
    for ours, reference in zip(found, by_hand):
        if first_conv_norm:  # normalised per channel: not the raw conv's scale
            assert (ours - reference).abs().max() > 0.1
        else:
            torch.testing.assert_close(ours, reference)


def test_first_conv_norm_changes_nothing_under_spectral_norm():
    # without any BatchNorm there is none to drop: the same layers (every conv keeps its bias), the same weights
    built = {}
    for first_conv_norm in (True, False):
        torch.manual_seed(0)
        built[first_conv_norm] = build_discriminators(
            _gan_cfg(**{"MODEL.GAN.SPECTRAL_NORM": True, "MODEL.GAN.FIRST_CONV_NORM": first_conv_norm}), 4)
    with_norm, without = built[True].state_dict(), built[False].state_dict()
    assert list(with_norm) == list(without)
    assert all(torch.equal(with_norm[k], without[k]) for k in with_norm)
    assert built[False].box_disc.layers[0].bias is not None and built[False].mask_disc.blocks[0][0].bias is not None


def test_scale_stats_average_the_batchnorms_left_without_the_first():
    discs = build_discriminators(_gan_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": False}), 4)
    for disc in (discs.box_disc, discs.mask_disc):
        with torch.no_grad():
            for index, norm in enumerate(m for m in disc.modules() if isinstance(m, nn.BatchNorm2d)):
                norm.weight.fill_(index + 1.0)
    # D_b: BatchNorms of 16, 32, 64 channels (the first, of 8, dropped); D_m: 16, 32, 64, 128
    stats = discs.scale_stats()
    assert stats["d_box_bn_gamma"].item() == pytest.approx((1 * 16 + 2 * 32 + 3 * 64) / (16 + 32 + 64))
    assert stats["d_mask_bn_gamma"].item() == pytest.approx((1 * 16 + 2 * 32 + 3 * 64 + 4 * 128) / (16 + 32 + 64 + 128))
    # a D_b whose only hidden conv is the first has no BatchNorm left: nothing to report, no error
    shallow = build_discriminators(_gan_cfg(**{"MODEL.GAN.FIRST_CONV_NORM": False, "MODEL.GAN.BOX_DISC.NUM_CONVS": 2}),
                                   4)
    assert batchnorm_scale(shallow.box_disc) is None and set(shallow.scale_stats()) == {"d_mask_bn_gamma"}


# ------------------------------------------------------------------------------------------------------ D_INIT
def _big_discriminators(init, seed, **keys):
    """D_b and D_m wide enough that every conv has thousands of weights, or the coordinate D."""
    torch.manual_seed(seed)
    c = _gan_cfg(**{"MODEL.GAN.D_INIT": init, "MODEL.GAN.BOX_DISC.CHANNELS": 32, "MODEL.GAN.BOX_DISC.NUM_CONVS": 3,
                    "MODEL.GAN.MASK_DISC.CHANNELS": 16, **keys})
    return build_discriminators(c, 16)


def _expected_std(init, weight):
    if init == "dcgan":
        return 0.02
    # the authors': n = k_h * k_w * out_channels, std sqrt(2 / n); a Linear is a 1 x 1 conv
    kernel = weight.shape[2] * weight.shape[3] if weight.dim() == 4 else 1
    return math.sqrt(2.0 / (kernel * weight.shape[0]))


def _pooled_layer_weights(init, num_seeds, **keys):
    """{parameter name: its values over `num_seeds` seeded builds}, for every conv and linear weight."""
    pooled = {}
    for seed in range(num_seeds):
        discs = _big_discriminators(init, seed, **keys)
        for name, module in discs.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                pooled.setdefault(name, []).append(module.weight.detach().flatten())
    return {name: torch.cat(values) for name, values in pooled.items()}


@pytest.mark.parametrize("init", ["dcgan", "he_fan_out"])
@pytest.mark.parametrize("box_input,num_seeds", [("features", 2), ("coordinates", 128)])
def test_d_init_draws_every_layer_s_weights_with_its_rule(init, box_input, num_seeds):
    # the coordinate D's first and last Linear have 8 x 4 and 1 x 16 weights: many seeds pool enough of them
    keys = {"MODEL.GAN.BOX_DISC.INPUT": box_input}
    if box_input == "coordinates":
        keys.update({"MODEL.GAN.MASK_DISC.ENABLED": False, "MODEL.GAN.BOX_DISC.CHANNELS": 8})
    weights = _pooled_layer_weights(init, num_seeds, **keys)
    shapes = {name: module.weight.shape for name, module in _big_discriminators(init, 0, **keys).named_modules()
              if isinstance(module, (nn.Conv2d, nn.Linear))}
    assert set(weights) == set(shapes)
    expected_layers = 3 if box_input == "coordinates" else 3 + 5
    assert len(weights) == expected_layers
    for name, values in weights.items():
        assert values.numel() >= 2000, name  # enough for a 5% tolerance on the std (its error is ~1/sqrt(2n))
        expected = _expected_std(init, torch.empty(shapes[name]))
        assert values.std().item() == pytest.approx(expected, rel=0.05), name
        assert values.mean().abs().item() < 0.1 * expected, name
        # the two rules are far apart on every layer: a build that ignored D_INIT would fail above
        assert abs(_expected_std("he_fan_out", torch.empty(shapes[name])) / 0.02 - 1) > 0.5, name


@pytest.mark.parametrize("init", ["dcgan", "he_fan_out"])
def test_d_init_sets_batchnorm_scales_and_zeroes_biases_and_shifts(init):
    scales, zeros = [], []
    for seed in range(3):
        for keys in ({}, {"MODEL.GAN.BOX_DISC.INPUT": "coordinates"}, {"MODEL.GAN.SPECTRAL_NORM": True}):
            discs = _big_discriminators(init, seed, **keys)
            for module in discs.modules():
                if isinstance(module, BATCH_NORMS):
                    scales.append(module.weight.detach())
                    zeros.append(module.bias.detach())
                elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                    zeros.append(module.bias.detach())
    scales, zeros = torch.cat(scales), torch.cat(zeros)
    assert scales.numel() > 3000 and zeros.numel() > scales.numel()
    assert torch.equal(zeros, torch.zeros_like(zeros))
    if init == "dcgan":
        assert torch.equal(scales, torch.ones_like(scales))
    else:  # the authors' N(1, 0.02)
        assert not torch.equal(scales, torch.ones_like(scales))
        assert scales.mean().item() == pytest.approx(1.0, abs=0.002)
        assert scales.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("init", ["dcgan", "he_fan_out"])
def test_d_init_is_reproducible_from_the_seed(init):
    first, again, other = (_big_discriminators(init, seed).state_dict() for seed in (3, 3, 4))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["box_disc.layers.0.weight"], other["box_disc.layers.0.weight"])
    if init == "he_fan_out":
        assert not torch.equal(first["mask_disc.blocks.1.1.weight"], other["mask_disc.blocks.1.1.weight"])


def test_unknown_d_init_is_refused_naming_the_key_and_the_choices():
    for keys in ({}, {"MODEL.GAN.BOX_DISC.INPUT": "coordinates"}, {"MODEL.GAN.BOX_DISC.ENABLED": False}):
        with pytest.raises(ValueError) as error:
            build_discriminators(_gan_cfg(**{"MODEL.GAN.D_INIT": "xavier", **keys}), 4)
        assert str(error.value) == "unknown MODEL.GAN.D_INIT 'xavier'; use one of ('dcgan', 'he_fan_out')"
