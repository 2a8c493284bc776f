"""Joint image/target transforms and their builder."""
from .build import build_transforms
from .transforms import (
    ColorJitter,
    Compose,
    MapHighBitDepth,
    Normalize,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    Resize,
    ToTensor,
)

__all__ = ["build_transforms", "ColorJitter", "Compose", "MapHighBitDepth", "Normalize", "RandomHorizontalFlip",
           "RandomVerticalFlip", "Resize", "ToTensor"]
