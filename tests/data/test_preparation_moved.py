"""The converters and generators moved to data/preparation/; their old data.datasets paths still import them."""
import importlib

import pytest


@pytest.mark.parametrize("name", ["phone", "glas", "nuclei", "synthetic"])
def test_old_module_path_is_the_moved_module(name):
    old = importlib.import_module("maskrcnn_benchmark.data.datasets." + name)
    assert old is importlib.import_module("maskrcnn_benchmark.data.preparation." + name)


def test_old_from_import_of_a_function_still_works():
    from maskrcnn_benchmark.data.datasets.synthetic import generate_synthetic_coco
    from maskrcnn_benchmark.data.preparation import synthetic

    assert generate_synthetic_coco is synthetic.generate_synthetic_coco
