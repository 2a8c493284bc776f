"""Environment report printed at the start of a run (library versions, devices)."""
import PIL
from torch.utils.collect_env import get_pretty_env_info


def get_pil_version():
    return "\n        Pillow ({})".format(PIL.__version__)


def collect_env_info():
    """Text describing torch/CUDA/OS versions plus Pillow and OpenCV, for bug reports and logs."""
    env_str = get_pretty_env_info()
    env_str += get_pil_version()
    try:
        import cv2

        env_str += "\n        OpenCV ({})".format(cv2.__version__)
    except ImportError:
        pass
    return env_str
