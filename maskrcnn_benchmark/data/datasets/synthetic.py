"""Old home of maskrcnn_benchmark.data.preparation.synthetic (a converter/generator, not a Dataset), kept importable."""
import sys

from maskrcnn_benchmark.data.preparation import synthetic

sys.modules[__name__] = synthetic  # the old name is the very same module (its globals, monkeypatching included)
