"""Import a Python module from a file path (used for the optional environment module and catalogs)."""
import importlib.util
import sys


def import_file(module_name, file_path, make_importable=False):
    """Load ``file_path`` as module ``module_name``; register it in sys.modules if make_importable."""
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    if spec is None or spec.loader is None:
        raise ImportError("Cannot import '{}' as module '{}': not a Python source file".format(file_path, module_name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if make_importable:
        sys.modules[module_name] = module
    return module
