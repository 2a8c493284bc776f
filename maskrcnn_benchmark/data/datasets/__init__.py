"""Datasets: COCO-format files, concatenation, plain image lists, and the embedded synthetic / nuclei data."""
from .coco import COCODataset
from .concat_dataset import ConcatDataset
from .list_dataset import ListDataset

__all__ = ["COCODataset", "ConcatDataset", "ListDataset"]
