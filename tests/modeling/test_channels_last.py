"""MODEL.CHANNELS_LAST: the detector's convs run in NHWC, with the NCHW model's losses, gradients and detections up to
float rounding."""
import copy

import pytest
import torch

from maskrcnn_benchmark.modeling.detector import build_detection_model

from .test_detector import _images, _targets

# (stem, block, floor of the relative gradient error): trainable BatchNorm's backward subtracts batch means, which
# cancels digits: on this random net even NCHW float32 weight gradients are up to 4e-3 off float64, NHWC's up to 2e-2.
NORMS = [("StemWithGN", "BasicBlockWithGN", 1e-3), ("StemWithFixedBatchNorm", "BasicBlockWithFixedBatchNorm", 1e-3),
         ("StemWithBatchNorm", "BasicBlockWithBatchNorm", 5e-2)]


def _models(cfg, stem, block):
    """The same detector (same weights) in NCHW float32, NHWC float32 (MODEL.CHANNELS_LAST) and NCHW float64, the
    reference both are measured against: NHWC sums in another order, so it may differ from NCHW by rounding."""
    cfg.merge_from_list(["MODEL.RESNETS.STEM_FUNC", stem, "MODEL.RESNETS.TRANS_FUNC", block])
    models = {}
    for channels_last in (False, True):
        cfg.MODEL.CHANNELS_LAST = channels_last
        torch.manual_seed(0)
        models[channels_last] = build_detection_model(cfg)
    models[True].load_state_dict(models[False].state_dict())
    reference = copy.deepcopy(models[False]).double()
    return {"nchw": models[False], "nhwc": models[True], "float64": reference}


def _assert_rounding_only(name, nchw, nhwc, reference, floor=1e-3):
    """NHWC's relative error against float64 is of the size of NCHW's, or below ``floor``: float32 rounding through a
    deep net, and PyTorch's NHWC BatchNorm computes batch statistics less precisely (features about 1e-5 off against
    NCHW's 2e-6, which a loss can amplify tenfold); a layout bug gives errors of order 1."""
    reference = reference.double()
    norm = reference.norm().item() or 1.0
    nchw_error = (nchw.double() - reference).norm().item() / norm
    nhwc_error = (nhwc.double() - reference).norm().item() / norm
    assert nhwc_error <= max(3 * nchw_error, floor), (name, nhwc_error, nchw_error)


def test_channels_last_is_the_default_and_puts_every_conv_weight_in_nhwc(tiny_cfg):
    assert tiny_cfg.MODEL.CHANNELS_LAST is True
    model = build_detection_model(tiny_cfg)
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    features = model.backbone(_images().tensors)
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in features)
    tiny_cfg.MODEL.CHANNELS_LAST = False
    model = build_detection_model(tiny_cfg)
    assert all(p.is_contiguous() for p in model.parameters())


def _double_images():
    images = _images()
    images.tensors = images.tensors.double()
    return images


@pytest.mark.parametrize("stem, block, gradient_floor", NORMS)
def test_training_losses_and_gradients_match_nchw(tiny_cfg, stem, block, gradient_floor):
    results = {}
    for name, model in _models(tiny_cfg, stem, block).items():
        model.train()
        torch.manual_seed(1)  # the samplers draw the same RoIs
        losses = model(_double_images() if name == "float64" else _images(), _targets())
        sum(losses.values()).backward()
        results[name] = (losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    (losses_a, grads_a), (losses_b, grads_b), (losses_ref, grads_ref) = (
        results["nchw"], results["nhwc"], results["float64"])
    assert set(losses_a) == set(losses_b) == set(losses_ref)
    for key in losses_a:
        _assert_rounding_only(key, losses_a[key].detach(), losses_b[key].detach(), losses_ref[key].detach())
    assert set(grads_a) == set(grads_b) == set(grads_ref)
    for name in grads_a:
        _assert_rounding_only(name, grads_a[name], grads_b[name], grads_ref[name], gradient_floor)


@pytest.mark.parametrize("stem, block, _", NORMS[:2])
def test_detections_match_nchw(tiny_cfg, stem, block, _):
    models = _models(tiny_cfg, stem, block)
    with torch.no_grad():
        a, b, ref = (models[name].eval()(_double_images() if name == "float64" else _images())
                     for name in ("nchw", "nhwc", "float64"))
    for ra, rb, rr in zip(a, b, ref):
        assert len(ra) == len(rb) == len(rr) > 0
        assert torch.equal(rb.get_field("labels"), ra.get_field("labels"))
        _assert_rounding_only("boxes", ra.bbox, rb.bbox, rr.bbox)
        for field in ("scores", "mask"):
            _assert_rounding_only(field, ra.get_field(field), rb.get_field(field), rr.get_field(field))
