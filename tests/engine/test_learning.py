"""The detector learns: losses fall when it overfits a few synthetic images, and a short run reaches a
non-trivial AP on synthetic images it never saw."""
import json
import os

import pytest
import torch

from maskrcnn_benchmark.modeling.detector import build_detection_model


@pytest.fixture(scope="module")
def synthetic_val_dir(tmp_path_factory):
    """Four held-out images: same generator, another seed than the training fixture."""
    from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco

    out_dir = str(tmp_path_factory.mktemp("synthetic_val") / "val")
    generate_synthetic_coco(out_dir, num_images=4, image_size=128, seed=1)
    return out_dir


def _mean_training_loss(cfg, model):
    """Mean total loss (train mode, seeded RoI sampling) over the images of cfg's first test loader."""
    from maskrcnn_benchmark.data import make_data_loader

    model.train()
    torch.manual_seed(0)
    totals = []
    with torch.no_grad():
        for images, targets, _ in make_data_loader(cfg, is_train=False)[0]:
            totals.append(float(sum(model(images, list(targets)).values())))
    return sum(totals) / len(totals)


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_reaches_non_trivial_ap_on_held_out_images(
        tiny_cfg, synthetic_val_dir, tmp_path):
    from maskrcnn_benchmark.engine import train_net
    val_spec = "synthetic_heldout:{}:{}".format(os.path.join(synthetic_val_dir, "annotations.json"),
                                                os.path.join(synthetic_val_dir, "images"))
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    iterations = 120
    train_net.main([
        "--config-file", str(config_file),
        "DATASETS.CUSTOM", str(tuple(tiny_cfg.DATASETS.CUSTOM) + (val_spec,)),
        "DATASETS.TEST", "('synthetic_heldout',)",
        "SOLVER.MAX_ITER", str(iterations), "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "20",
        "SOLVER.STEPS", "(100,)", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.BOUNDARY_AP", "False",
    ])
    # The same weights the run started from (train_net seeds with SOLVER.SEED before building) and the final ones,
    # scored on the training images (tiny_cfg tests on its training fixture).
    torch.manual_seed(tiny_cfg.SOLVER.SEED)
    initial = build_detection_model(tiny_cfg)
    final = build_detection_model(tiny_cfg)
    final.load_state_dict(torch.load(os.path.join(tiny_cfg.OUTPUT_DIR, "model_final.pth"), weights_only=True)["model"])
    before, after = _mean_training_loss(tiny_cfg, initial), _mean_training_loss(tiny_cfg, final)
    print("mean training loss before {:.3f} after {:.3f}".format(before, after))
    assert after < 0.5 * before, (before, after)

    results = json.load(open(os.path.join(tiny_cfg.OUTPUT_DIR, "inference", "synthetic_heldout",
                                          "coco_results.json")))
    print("held-out AP", results)
    assert results["bbox"]["AP50"] > 0.2, results
    assert results["segm"]["AP50"] > 0.2, results
