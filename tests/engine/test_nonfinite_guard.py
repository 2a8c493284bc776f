"""Divergence guard of train_net/do_train: a NaN loss stops (or is skipped) before any update and never reaches
a checkpoint; last_checkpoint keeps naming the last good one."""
import os

import pytest
import torch

from maskrcnn_benchmark.modeling.detector.generalized_rcnn import GeneralizedRCNN


def _inject_nan(monkeypatch, at_calls):
    """Make loss_mask NaN on the given (1-based) training forward calls of the detector."""
    real_forward = GeneralizedRCNN.forward
    calls = []

    def forward(self, images, targets=None, return_adv_inputs=False):
        output = real_forward(self, images, targets, return_adv_inputs=return_adv_inputs)
        if not self.training:
            return output
        calls.append(1)
        losses = output[0] if return_adv_inputs else output
        if len(calls) in at_calls:
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return output

    monkeypatch.setattr(GeneralizedRCNN, "forward", forward)


def _main(tiny_cfg, tmp_path, opts):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    from maskrcnn_benchmark.engine import train_net
    return train_net.main(["--config-file", config_file, "--skip-test", "SOLVER.CHECKPOINT_PERIOD", "1"] + opts)


def _load(out_dir, name):
    return torch.load(os.path.join(out_dir, name), weights_only=True)


@pytest.mark.slow
def test_nan_in_adversarial_run_stops_naming_term_and_iteration_and_keeps_last_good_checkpoint(
        tiny_cfg, tmp_path, monkeypatch):
    _inject_nan(monkeypatch, {3})
    opts = ["SOLVER.MAX_ITER", "4", "MODEL.GAN.ENABLED", "True", "MODEL.GAN.START_ITER", "2",
            "MODEL.GAN.BOX_DISC.CHANNELS", "8", "MODEL.GAN.MASK_DISC.CHANNELS", "8",
            "MODEL.GAN.BOX_DISC.NUM_CONVS", "3", "MODEL.GAN.MASK_DISC.NUM_CONVS", "3"]
    out = tiny_cfg.OUTPUT_DIR
    with pytest.raises(FloatingPointError) as info:
        _main(tiny_cfg, tmp_path, opts)
    message = str(info.value)
    assert "loss_mask is not finite at iteration 3" in message
    assert os.path.join(out, "model_0000002.pth") in message and "SOLVER.SKIP_NONFINITE_STEPS" in message
    assert sorted(p for p in os.listdir(out) if p.endswith(".pth")) == ["model_0000001.pth", "model_0000002.pth"]
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read() == "model_0000002.pth"
    good = _load(out, "model_0000002.pth")
    assert good["iteration"] == 2
    for entry in ("model", "discriminators"):
        assert all(torch.isfinite(v).all() for v in good[entry].values() if v.is_floating_point()), entry


def test_skipped_nan_steps_update_nothing_are_counted_and_limited(tiny_cfg, tmp_path, monkeypatch, caplog):
    _inject_nan(monkeypatch, {2, 4})
    out = tiny_cfg.OUTPUT_DIR
    with pytest.raises(FloatingPointError, match="loss_mask is not finite at iteration 4") as info:
        _main(tiny_cfg, tmp_path, ["SOLVER.MAX_ITER", "4", "SOLVER.SKIP_NONFINITE_STEPS", "1"])
    assert "now 1, 1 step(s) skipped before" in str(info.value)
    first, skipped, third = (_load(out, "model_000000{}.pth".format(i)) for i in (1, 2, 3))
    # the skipped iteration 2 changed no weight and no momentum, but the LR schedule moved on
    for name, value in first["model"].items():
        assert torch.equal(value, skipped["model"][name]), name
    for index, state in first["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], skipped["optimizer"]["state"][index]["momentum_buffer"])
    assert skipped["scheduler"]["last_epoch"] == 2
    assert (skipped["skipped_nonfinite_steps"], third["skipped_nonfinite_steps"]) == (1, 1)
    assert not all(torch.equal(v, third["model"][k]) for k, v in skipped["model"].items())  # iteration 3 trained
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read() == "model_0000003.pth"
    with open(os.path.join(out, "log.txt")) as f:
        assert "Skipped iteration 2: non-finite loss at iteration 2: loss_mask=nan" in f.read()


def test_checkpointer_refuses_non_finite_weights(tmp_path):
    from maskrcnn_benchmark.utils.checkpoint import Checkpointer

    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(model, save_dir=str(tmp_path))
    checkpointer.save("model_0000001")
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="model 'weight' holds NaN or inf"):
        checkpointer.save("model_0000002")
    assert not (tmp_path / "model_0000002.pth").exists()
    assert checkpointer.get_checkpoint_file().endswith("model_0000001.pth")


def _diverge_rpn_regression(monkeypatch, at_calls):
    """Make the RPN's box regression infinite on the given (1-based) training calls, as a too-high learning
    rate does: the boxes decoded from it are the first non-finite tensor of the forward pass."""
    from maskrcnn_benchmark.modeling.rpn.rpn import RPNHead

    real_forward = RPNHead.forward
    calls = []

    def forward(self, x):
        logits, bbox_reg = real_forward(self, x)
        if self.training:
            calls.append(1)
            if len(calls) in at_calls:
                bbox_reg = [r * float("inf") for r in bbox_reg]
        return logits, bbox_reg

    monkeypatch.setattr(RPNHead, "forward", forward)


def test_non_finite_rpn_boxes_are_named_with_the_iteration_and_the_skip_policy_applies(tiny_cfg, tmp_path,
                                                                                        monkeypatch):
    _diverge_rpn_regression(monkeypatch, {2, 3})
    out = tiny_cfg.OUTPUT_DIR
    with pytest.raises(FloatingPointError) as info:
        _main(tiny_cfg, tmp_path, ["SOLVER.MAX_ITER", "4", "SOLVER.SKIP_NONFINITE_STEPS", "1"])
    message = str(info.value)
    assert message.startswith("the RPN proposals decoded from rpn_box_regression (level 0) is not finite at "
                              "iteration 3")
    assert "values NaN or inf" in message and os.path.join(out, "model_0000002.pth") in message
    with open(os.path.join(out, "log.txt")) as f:
        assert "Skipped iteration 2: non-finite value at iteration 2: the RPN proposals decoded from " \
               "rpn_box_regression (level 0)=" in f.read()
    first, skipped = _load(out, "model_0000001.pth"), _load(out, "model_0000002.pth")
    assert skipped["skipped_nonfinite_steps"] == 1
    for name, value in first["model"].items():
        assert torch.equal(value, skipped["model"][name]), name
