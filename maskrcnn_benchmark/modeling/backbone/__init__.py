from . import (
    fbnet,  # noqa: F401 -- registers "FBNet" and its RPN / RoI heads
    resnet,  # noqa: F401
)
from . import fpn as fpn_module  # noqa: F401
from .backbone import build_backbone  # noqa: F401
