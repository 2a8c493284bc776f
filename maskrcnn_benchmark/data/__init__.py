"""Data loading: datasets, transforms, samplers and make_data_loader."""
from .build import make_data_loader

__all__ = ["make_data_loader"]
