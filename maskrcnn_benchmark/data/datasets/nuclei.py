"""Old home of maskrcnn_benchmark.data.preparation.nuclei (a converter/generator, not a Dataset), kept importable."""
import sys

from maskrcnn_benchmark.data.preparation import nuclei

sys.modules[__name__] = nuclei  # the old name is the very same module (its globals, monkeypatching included)
