"""engine.export.export_input: the exported graph, fed what export_input prepares from a file, receives exactly
the normalised image evaluation feeds the model (8-bit and 16-bit files, EXIF applied)."""
import cv2
import numpy as np
import pytest
import torch

from maskrcnn_benchmark.config import cfg as default_cfg
from maskrcnn_benchmark.data.image_io import read_image
from maskrcnn_benchmark.data.transforms import build_transforms
from maskrcnn_benchmark.engine.export import ExportableMaskRCNN, export_input
from maskrcnn_benchmark.structures.image_list import to_image_list


class _NoModel(torch.nn.Module):
    size_divisible = 32


@pytest.mark.parametrize("dtype,rule", [(np.uint8, "full_range"), (np.uint16, "full_range"),
                                        (np.uint16, "percentiles")])
def test_graph_input_is_the_evaluation_input(tmp_path, dtype, rule):
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max // 3, (50, 70, 3)).astype(dtype)
    path = str(tmp_path / "image.png")
    cv2.imwrite(path, image)
    cfg = default_cfg.clone()
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", 40, "INPUT.MAX_SIZE_TEST", 100, "INPUT.HIGH_BIT_DEPTH", rule])
    graph_input, (sx, sy) = export_input(path, cfg)
    assert graph_input.shape == (3, 40, 56) and (sx, sy) == (70 / 56, 50 / 40)
    module = ExportableMaskRCNN(_NoModel(), cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.TO_BGR255)
    evaluation, _ = build_transforms(cfg, is_train=False)(read_image(path))
    expected = to_image_list(evaluation, 32).tensors
    assert torch.equal(module.preprocess(graph_input), expected)
