"""Process-wide environment set-up run by the tools before anything else."""
import os

from maskrcnn_benchmark.utils.imports import import_file


def setup_environment():
    """Run a user's custom environment module if ``TORCH_DETECTRON_ENV_MODULE`` names one.

    The variable holds a path to a ``.py`` file (or a module name) with a ``setup_environment()`` function;
    this is how a site adds e.g. extra dataset paths without editing the package.
    """
    custom_module_path = os.environ.get("TORCH_DETECTRON_ENV_MODULE")
    if custom_module_path:
        setup_custom_environment(custom_module_path)


def setup_custom_environment(custom_module_path):
    """Import ``custom_module_path`` (file path or module name) and call its ``setup_environment()``."""
    if custom_module_path.endswith(".py"):
        module = import_file("maskrcnn_benchmark.utils.env.custom_module", custom_module_path)
    else:
        import importlib

        module = importlib.import_module(custom_module_path)
    if not callable(getattr(module, "setup_environment", None)):
        raise RuntimeError(
            "Custom environment module '{}' (from TORCH_DETECTRON_ENV_MODULE) has no setup_environment() "
            "function; define one or unset the variable".format(custom_module_path))
    module.setup_environment()
