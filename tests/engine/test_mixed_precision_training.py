"""DTYPE: bfloat16 autocast trains the tiny GAN config on the CPU; float16 asks for CUDA; scalers are saved."""
import json
import os

import pytest
import torch

from maskrcnn_benchmark.engine.mixed_precision import MixedPrecision, backward_and_step
from maskrcnn_benchmark.modeling.detector.generalized_rcnn import GeneralizedRCNN


def test_bfloat16_autocast_trains_the_gan_on_cpu_with_finite_losses(tiny_cfg, tmp_path, monkeypatch):
    forward_dtypes = []
    real_forward = GeneralizedRCNN.forward

    def recording_forward(self, images, targets=None, return_adv_inputs=False):
        output = real_forward(self, images, targets, return_adv_inputs=return_adv_inputs)
        if self.training and return_adv_inputs:
            forward_dtypes.append(output[1].features[0].dtype)
        return output

    monkeypatch.setattr(GeneralizedRCNN, "forward", recording_forward)
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    from maskrcnn_benchmark.engine import train_net
    # the box discriminator pools with PrRoIPool (CPU kernel: float32/float64 only) on bfloat16 features
    train_net.main(["--config-file", config_file, "--skip-test", "DTYPE", "bfloat16", "SOLVER.MAX_ITER", "3",
                    "MODEL.GAN.ENABLED", "True", "MODEL.GAN.START_ITER", "1",
                    "MODEL.GAN.BOX_DISC.POOLER_TYPE", "PrRoIPool",
                    "MODEL.GAN.BOX_DISC.CHANNELS", "8", "MODEL.GAN.MASK_DISC.CHANNELS", "8",
                    "MODEL.GAN.BOX_DISC.NUM_CONVS", "3", "MODEL.GAN.MASK_DISC.NUM_CONVS", "3"])
    assert forward_dtypes == [torch.bfloat16] * 3  # the forward really ran in bfloat16
    with open(os.path.join(tiny_cfg.OUTPUT_DIR, "metrics.json")) as f:
        record = json.loads(f.readlines()[-1])
    for name in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_box_adv", "loss_mask_adv", "loss_box_disc",
                 "loss_mask_disc", "d_box_real_prob"):
        assert name in record["losses"] and record["losses"][name] == record["losses"][name], name  # not NaN
        assert abs(record["losses"][name]) < 1e3, name
    final = torch.load(os.path.join(tiny_cfg.OUTPUT_DIR, "model_final.pth"), weights_only=True)
    assert all(v.dtype == torch.float32 for v in final["model"].values() if v.is_floating_point())  # fp32 masters
    assert final["grad_scaler"] == {} and final["d_grad_scaler"] == {}  # bfloat16 needs no loss scaling


def test_float16_needs_cuda_and_unknown_dtype_is_named():
    with pytest.raises(ValueError, match="needs a CUDA device.*bfloat16"):
        MixedPrecision("float16", "cpu")
    with pytest.raises(ValueError, match="DTYPE must be one of.*'half'"):
        MixedPrecision("half", "cpu")
    assert not MixedPrecision("bfloat16", "cpu").grad_scaler().is_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 loss scaling needs CUDA")
def test_float16_scaler_skips_overflowing_step_and_its_state_is_checkpointed(tmp_path):
    from maskrcnn_benchmark.utils.checkpoint import Checkpointer

    precision = MixedPrecision("float16", "cuda")
    model = torch.nn.Linear(4, 1).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = precision.grad_scaler()
    before = model.weight.detach().clone()
    with precision.autocast():
        loss = model(torch.full((2, 4), 1e4, device="cuda")).float().sum() * 1e30
    backward_and_step(loss, optimizer, scaler)  # inf gradients: the scaler skips the step and halves the scale
    assert torch.equal(model.weight, before) and scaler.get_scale() < 65536.0
    Checkpointer(model, optimizer, save_dir=str(tmp_path), extra={"grad_scaler": scaler}).save("m")
    restored = precision.grad_scaler()
    Checkpointer(model, optimizer, save_dir=str(tmp_path), extra={"grad_scaler": restored}).load()
    assert restored.get_scale() == scaler.get_scale()
