"""MODEL.RESNETS.ACTIVATION_CHECKPOINTING: the body's trainable blocks keep only their inputs for the backward and are
recomputed there; the losses, gradients and BatchNorm statistics are those of the plain model."""
import pytest
import torch

from maskrcnn_benchmark.modeling.detector import build_detection_model

from .test_detector import _images, _targets

NORMS = [("StemWithGN", "BasicBlockWithGN"), ("StemWithFixedBatchNorm", "BasicBlockWithFixedBatchNorm"),
         ("StemWithBatchNorm", "BasicBlockWithBatchNorm")]


def _plain_and_checkpointed(cfg, stem, block):
    cfg.merge_from_list(["MODEL.RESNETS.STEM_FUNC", stem, "MODEL.RESNETS.TRANS_FUNC", block])
    models = []
    for checkpointing in (False, True):
        cfg.MODEL.RESNETS.ACTIVATION_CHECKPOINTING = checkpointing
        torch.manual_seed(0)
        models.append(build_detection_model(cfg).train())
    return models


def _saved_for_backward_mb(module, x):
    """MB of the distinct tensors autograd keeps from module(x) for the backward."""
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = module(x)
    return sum(saved.values()) / 2 ** 20, outputs


@pytest.mark.parametrize("stem, block", NORMS)
def test_checkpointed_body_trains_with_the_plain_body_s_losses_gradients_and_statistics(tiny_cfg, stem, block):
    tiny_cfg.merge_from_list(["MODEL.BACKBONE.FREEZE_CONV_BODY_AT", 0])  # every stage trains
    results = []
    for model in _plain_and_checkpointed(tiny_cfg, stem, block):
        torch.manual_seed(1)  # the samplers draw the same RoIs
        losses = model(_images(), _targets())
        sum(losses.values()).backward()
        results.append((losses, {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                        dict(model.named_buffers())))
    (plain_losses, plain_grads, plain_buffers), (losses, grads, buffers) = results
    assert set(losses) == set(plain_losses)
    for key in losses:
        assert torch.equal(losses[key], plain_losses[key]), key
    body_grads = [n for n in grads if n.startswith("backbone.body.layer")]
    assert set(grads) == set(plain_grads) and body_grads
    for name in grads:  # the recomputed forward is the same arithmetic: bitwise the same gradients
        assert torch.equal(grads[name], plain_grads[name]), name
    # BatchNorm's running statistics moved once, as without checkpointing, not again in the recomputation
    assert set(buffers) == set(plain_buffers)
    for name in buffers:
        assert torch.equal(buffers[name], plain_buffers[name]), name


def test_checkpointed_body_keeps_less_for_the_backward_and_is_plain_in_eval(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.BACKBONE.FREEZE_CONV_BODY_AT", 2])  # res2 frozen: nothing to keep there
    plain, checkpointed = (model.backbone.body for model in _plain_and_checkpointed(tiny_cfg, *NORMS[1]))
    x = torch.randn(2, 3, 128, 160)
    plain_mb, plain_out = _saved_for_backward_mb(plain, x)
    checkpointed_mb, out = _saved_for_backward_mb(checkpointed, x)
    # the block inputs of res3-res5 instead of every conv input and activation of those blocks
    assert checkpointed_mb < 0.5 * plain_mb, (checkpointed_mb, plain_mb)
    assert all(torch.equal(a, b) for a, b in zip(out, plain_out))
    checkpointed.eval()
    assert _saved_for_backward_mb(checkpointed, x)[0] == pytest.approx(plain_mb)


def test_a_backbone_without_a_resnet_body_refuses_the_key_naming_it():
    from maskrcnn_benchmark.modeling.backbone import build_backbone

    from .test_fbnet import _fbnet_cfg

    cfg = _fbnet_cfg()
    cfg.MODEL.RESNETS.ACTIVATION_CHECKPOINTING = True
    with pytest.raises(ValueError, match="MODEL.RESNETS.ACTIVATION_CHECKPOINTING .* MODEL.BACKBONE.CONV_BODY='FBNet'"):
        build_backbone(cfg)
    cfg.MODEL.RESNETS.ACTIVATION_CHECKPOINTING = False
    build_backbone(cfg)
