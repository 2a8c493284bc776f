"""A rerun of a run that stopped after its last periodic checkpoint (at SOLVER.MAX_ITER) and before
model_final.pth writes model_final.pth from that state and runs the final test."""
import json
import os

import pytest
import torch

pytestmark = pytest.mark.slow  # long: see docs/contributing.md, "The quick test loop"


def test_rerun_of_an_unfinalised_run_writes_model_final_and_tests_it(tiny_cfg, tmp_path):
    config_file = str(tmp_path / "tiny.yaml")
    with open(config_file, "w") as f:
        f.write(tiny_cfg.dump())
    from maskrcnn_benchmark.engine import train_net
    out = tiny_cfg.OUTPUT_DIR
    opts = ["SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "2"]
    train_net.main(["--config-file", config_file, "--skip-test"] + opts)
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    # the state of a run killed between model_0000002.pth and model_final.pth
    os.remove(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000002.pth")

    train_net.main(["--config-file", config_file] + opts)
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read() == "model_final.pth"
    rewritten = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert rewritten["iteration"] == 2
    for name, value in final["model"].items():
        assert torch.equal(value, rewritten["model"][name]), name
    with open(os.path.join(out, "inference", "synthetic_fixture", "coco_results.json")) as f:
        assert "segm" in json.load(f)
