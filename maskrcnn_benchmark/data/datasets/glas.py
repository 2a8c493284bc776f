"""Old home of maskrcnn_benchmark.data.preparation.glas (a converter/generator, not a Dataset), kept importable."""
import sys

from maskrcnn_benchmark.data.preparation import glas

sys.modules[__name__] = glas  # the old name is the very same module (its globals, monkeypatching included)
