"""Datasets: COCO-format files, concatenation, plain image lists, and the embedded synthetic / nuclei data."""
from .cityscapes import CityscapesDataset
from .coco import COCODataset
from .concat_dataset import ConcatDataset
from .list_dataset import ListDataset

__all__ = ["CityscapesDataset", "COCODataset", "ConcatDataset", "ListDataset"]
