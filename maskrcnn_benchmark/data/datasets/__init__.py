"""Datasets: COCO-format files, Cityscapes, concatenation and plain image lists (the files of the embedded
synthetic / nuclei data and the converters live in data/preparation/)."""
from .cityscapes import CityscapesDataset
from .coco import COCODataset
from .concat_dataset import ConcatDataset
from .list_dataset import ListDataset

__all__ = ["CityscapesDataset", "COCODataset", "ConcatDataset", "ListDataset"]
