"""Old home of maskrcnn_benchmark.data.preparation.phone (a converter/generator, not a Dataset), kept importable."""
import sys

from maskrcnn_benchmark.data.preparation import phone

sys.modules[__name__] = phone  # the old name is the very same module (its globals, monkeypatching included)
