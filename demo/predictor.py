"""``from predictor import COCODemo`` from demo/, as in maskrcnn-benchmark; the code is in engine/predictor.py."""
from maskrcnn_benchmark.engine.predictor import COCODemo  # noqa: F401

__all__ = ["COCODemo"]
