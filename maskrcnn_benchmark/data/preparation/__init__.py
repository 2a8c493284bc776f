"""Dataset preparation: converters of downloaded datasets to COCO-format folders (phone, glas; Cityscapes' lives
beside CityscapesDataset in data/datasets/cityscapes.py) and generators of the embedded ones (synthetic, nuclei).

These write files; the Dataset classes that read them are in data/datasets/. Each split folder is written
atomically (_atomic.py), so a killed run never leaves half a dataset behind.
"""
