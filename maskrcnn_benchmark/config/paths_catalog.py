"""Where datasets and pretrained weights live: DatasetCatalog (name -> dataset factory + args) and ModelCatalog.

To add datasets without editing this file either
  * set DATASETS.CUSTOM to ("NAME:ANN_FILE:IMG_DIR", ...) in your YAML or on the command line, or
  * copy this file, add entries, and point PATHS_CATALOG at the copy (maskrcnn-benchmark behaviour).
The data root is the repository's datasets/ folder; set MASKRCNN_DATA_DIR to use another one.
"""
import os

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_custom_dataset(spec):
    """Parse one DATASETS.CUSTOM entry "NAME:ANN_FILE:IMG_DIR" into (name, abs ann_file, abs img_dir).

    The first ':' ends NAME and the last ':' starts IMG_DIR, so ANN_FILE may itself contain ':'.
    Relative paths are resolved against the current working directory.
    """
    if not isinstance(spec, str) or spec.count(":") < 2:
        raise ValueError(
            "DATASETS.CUSTOM entry {!r} must be a string 'NAME:ANN_FILE:IMG_DIR', e.g. "
            "'cells_train:data/cells/train.json:data/cells/images'".format(spec)
        )
    name, rest = spec.split(":", 1)
    ann_file, img_dir = rest.rsplit(":", 1)
    if not name or not ann_file or not img_dir:
        raise ValueError("DATASETS.CUSTOM entry {!r} has an empty NAME, ANN_FILE or IMG_DIR".format(spec))
    return name, os.path.abspath(ann_file), os.path.abspath(img_dir)


class UnknownDatasetError(KeyError):
    """A dataset or model name that the catalog does not know."""

    def __str__(self):
        return str(self.args[0])


class DatasetCatalog(object):
    """Dataset names -> {"factory": class name in data.datasets, "args": constructor kwargs} (+ "generate").

    A description only: nothing is read or written here. data/build.py builds the datasets and writes the
    embedded ones the first time they are used.
    """

    DATA_DIR = os.environ.get("MASKRCNN_DATA_DIR", os.path.join(_REPO_ROOT, "datasets"))
    DATASETS = {
        "coco_2017_train": {"img_dir": "coco/train2017", "ann_file": "coco/annotations/instances_train2017.json"},
        "coco_2017_val": {"img_dir": "coco/val2017", "ann_file": "coco/annotations/instances_val2017.json"},
        "coco_2014_train": {"img_dir": "coco/train2014", "ann_file": "coco/annotations/instances_train2014.json"},
        "coco_2014_val": {"img_dir": "coco/val2014", "ann_file": "coco/annotations/instances_val2014.json"},
        "coco_2014_minival": {
            "img_dir": "coco/val2014",
            "ann_file": "coco/annotations/instances_minival2014.json",
        },
        "coco_2014_valminusminival": {
            "img_dir": "coco/val2014",
            "ann_file": "coco/annotations/instances_valminusminival2014.json",
        },
        "keypoints_coco_2014_train": {
            "img_dir": "coco/train2014",
            "ann_file": "coco/annotations/person_keypoints_train2014.json",
        },
        "keypoints_coco_2014_val": {
            "img_dir": "coco/val2014",
            "ann_file": "coco/annotations/person_keypoints_val2014.json",
        },
        "keypoints_coco_2014_minival": {
            "img_dir": "coco/val2014",
            "ann_file": "coco/annotations/person_keypoints_minival2014.json",
        },
        "keypoints_coco_2014_valminusminival": {
            "img_dir": "coco/val2014",
            "ann_file": "coco/annotations/person_keypoints_valminusminival2014.json",
        },
        "cityscapes_fine_instanceonly_seg_train_cocostyle": {
            "img_dir": "cityscapes/images",
            "ann_file": "cityscapes/annotations/instancesonly_filtered_gtFine_train.json",
        },
        "cityscapes_fine_instanceonly_seg_val_cocostyle": {
            "img_dir": "cityscapes/images",
            "ann_file": "cityscapes/annotations/instancesonly_filtered_gtFine_val.json",
        },
        # Cityscapes converted by tools/cityscapes/convert_cityscapes_to_coco.py from the official gtFine /
        # leftImg8bit tree; gt_dir is what cityscapesscripts' instance-level evaluation reads.
        "cityscapes_fine_instanceonly_seg_train": {
            "factory": "CityscapesDataset",
            "img_dir": "cityscapes/leftImg8bit/train", "gt_dir": "cityscapes/gtFine/train",
            "ann_file": "cityscapes/annotations/instancesonly_gtFine_train.json",
        },
        "cityscapes_fine_instanceonly_seg_val": {
            "factory": "CityscapesDataset",
            "img_dir": "cityscapes/leftImg8bit/val", "gt_dir": "cityscapes/gtFine/val",
            "ann_file": "cityscapes/annotations/instancesonly_gtFine_val.json",
        },
        # Embedded datasets: no download; "generator" names what writes them on first use (data.build's
        # GENERATORS), and DatasetCatalog.get describes that under "generate".
        "synthetic_train": {
            "img_dir": "synthetic/train/images", "ann_file": "synthetic/train/annotations.json",
            "generator": "synthetic",
        },
        "synthetic_val": {
            "img_dir": "synthetic/val/images", "ann_file": "synthetic/val/annotations.json", "generator": "synthetic",
        },
        "nuclei_dsb2018_train": {
            "img_dir": "nuclei/train/images", "ann_file": "nuclei/train/annotations.json", "generator": "nuclei",
        },
        "nuclei_dsb2018_val": {
            "img_dir": "nuclei/val/images", "ann_file": "nuclei/val/annotations.json", "generator": "nuclei",
        },
        # GlaS gland segmentation: written by tools/glas/convert_glas_to_coco.py <GlaS folder> datasets/glas
        "glas_train": {"img_dir": "glas/train/images", "ann_file": "glas/train/annotations.json"},
        "glas_testA": {"img_dir": "glas/testA/images", "ann_file": "glas/testA/annotations.json"},
        "glas_testB": {"img_dir": "glas/testB/images", "ann_file": "glas/testB/annotations.json"},
        # Phone recycling (11 categories): tools/phone/split_dataset.py writes train/val, augment_dataset.py train_aug
        "phone_train": {"img_dir": "phone/images", "ann_file": "phone/annotations/train.json"},
        "phone_val": {"img_dir": "phone/images", "ann_file": "phone/annotations/val.json"},
        "phone_train_aug": {"img_dir": "phone/train_aug/images", "ann_file": "phone/train_aug/annotations.json"},
    }

    @staticmethod
    def get(name):
        """Return {"factory": "COCODataset", "args": {"root", "ann_file"}} for a catalog name.

        Embedded datasets also get "generate": {"generator": name in data.build.GENERATORS, "args": its kwargs},
        what writes their files under DATA_DIR when they are missing (data.build.resolve_dataset does it).
        """
        if name not in DatasetCatalog.DATASETS:
            raise UnknownDatasetError(
                "Dataset '{}' is not in the catalog {}. Known datasets: {}. To use your own COCO-format data, add "
                "'{}:ANN_FILE:IMG_DIR' to DATASETS.CUSTOM or point PATHS_CATALOG to your own catalog file.".format(
                    name, __file__, ", ".join(sorted(DatasetCatalog.DATASETS)), name
                )
            )
        attrs = DatasetCatalog.DATASETS[name]
        data_dir = DatasetCatalog.DATA_DIR
        args = dict(
            root=os.path.join(data_dir, attrs["img_dir"]),
            ann_file=os.path.join(data_dir, attrs["ann_file"]),
        )
        if "gt_dir" in attrs:  # Cityscapes: its own evaluator needs the gtFine split
            args["gt_dir"] = os.path.join(data_dir, attrs["gt_dir"])
        entry = dict(factory=attrs.get("factory", "COCODataset"), args=args)
        if "generator" in attrs:
            entry["generate"] = dict(generator=attrs["generator"],
                                     args=dict(split_dir=os.path.join(data_dir, os.path.dirname(attrs["ann_file"]))))
        return entry


class ModelCatalog(object):
    """Names used in MODEL.WEIGHT "catalog://NAME" -> download URL."""

    S3_C2_DETECTRON_URL = "https://dl.fbaipublicfiles.com/detectron"
    C2_IMAGENET_MODELS = {
        "MSRA/R-50": "ImageNetPretrained/MSRA/R-50.pkl",
        "MSRA/R-50-GN": "ImageNetPretrained/47261647/R-50-GN.pkl",
        "MSRA/R-101": "ImageNetPretrained/MSRA/R-101.pkl",
        "MSRA/R-101-GN": "ImageNetPretrained/47592356/R-101-GN.pkl",
        "FAIR/20171220/X-101-32x8d": "ImageNetPretrained/20171220/X-101-32x8d.pkl",
    }
    # torchvision's ImageNet ResNets (RGB 0-1 inputs: use INPUT.TO_BGR255 False with torchvision's mean/std)
    TORCHVISION_MODELS = {
        "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
        "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    }

    @staticmethod
    def get(name):
        """URL of a catalog model: "ImageNetPretrained/MSRA/R-50" or "torchvision/resnet18"."""
        if name.startswith("ImageNetPretrained/"):
            key = name[len("ImageNetPretrained/"):]
            if key in ModelCatalog.C2_IMAGENET_MODELS:
                return "/".join([ModelCatalog.S3_C2_DETECTRON_URL, ModelCatalog.C2_IMAGENET_MODELS[key]])
        if name.startswith("torchvision/"):
            key = name[len("torchvision/"):]
            if key in ModelCatalog.TORCHVISION_MODELS:
                return ModelCatalog.TORCHVISION_MODELS[key]
        known = ["ImageNetPretrained/" + k for k in ModelCatalog.C2_IMAGENET_MODELS]
        known += ["torchvision/" + k for k in ModelCatalog.TORCHVISION_MODELS]
        raise UnknownDatasetError(
            "Model '{}' is not in the ModelCatalog. Known models: {}".format(name, ", ".join(known))
        )
