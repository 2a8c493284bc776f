"""Catalog entries of the paper's datasets resolve to maskrcnn-benchmark's on-disk layout."""
import os

import pytest

from maskrcnn_benchmark.config.paths_catalog import DatasetCatalog


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(DatasetCatalog, "DATA_DIR", str(tmp_path))
    return str(tmp_path)


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_2017_entries(data_dir, split):
    entry = DatasetCatalog.get("coco_2017_" + split)
    assert entry["factory"] == "COCODataset"
    assert entry["args"] == {
        "root": os.path.join(data_dir, "coco", split + "2017"),
        "ann_file": os.path.join(data_dir, "coco", "annotations", "instances_{}2017.json".format(split)),
    }


@pytest.mark.parametrize("split", ["train", "val"])
def test_cityscapes_entries(data_dir, split):
    entry = DatasetCatalog.get("cityscapes_fine_instanceonly_seg_" + split)
    assert entry["factory"] == "CityscapesDataset"
    assert entry["args"] == {
        "root": os.path.join(data_dir, "cityscapes", "leftImg8bit", split),
        "ann_file": os.path.join(data_dir, "cityscapes", "annotations", "instancesonly_gtFine_{}.json".format(split)),
        "gt_dir": os.path.join(data_dir, "cityscapes", "gtFine", split),
    }


def test_cityscapes_factory_is_a_dataset_class():
    from maskrcnn_benchmark.data import datasets as D
    from maskrcnn_benchmark.data.datasets.coco import COCODataset

    assert issubclass(getattr(D, DatasetCatalog.get("cityscapes_fine_instanceonly_seg_val")["factory"]), COCODataset)


@pytest.mark.parametrize("is_train", [True, False])
def test_coco_subclasses_drop_images_without_instances_only_for_training(monkeypatch, is_train):
    """build_dataset gives every COCODataset subclass (Cityscapes, ...) remove_images_without_annotations=is_train."""
    from maskrcnn_benchmark.data import datasets as D
    from maskrcnn_benchmark.data.build import build_dataset
    from maskrcnn_benchmark.data.datasets.coco import COCODataset

    received = {}

    class RecordingDataset(COCODataset):
        def __init__(self, ann_file, root, remove_images_without_annotations, transforms=None):
            received.update(remove_images_without_annotations=remove_images_without_annotations)
            self.ids = [1]  # one image, present: build_dataset refuses empty training sets and missing images

        def missing_image_files(self):
            return []

    class Catalog:
        @staticmethod
        def get(name):
            return {"factory": "RecordingDataset", "args": {"ann_file": "a.json", "root": "imgs"}}

    monkeypatch.setattr(D, "RecordingDataset", RecordingDataset, raising=False)
    build_dataset(["anything"], None, Catalog, is_train=is_train)
    assert received == {"remove_images_without_annotations": is_train}


def test_catalog_lookup_writes_nothing_and_describes_generation(data_dir):
    """DatasetCatalog.get is a description: even the embedded datasets are only described, not written."""
    for name in sorted(DatasetCatalog.DATASETS):
        DatasetCatalog.get(name)
    assert os.listdir(data_dir) == []
    entry = DatasetCatalog.get("synthetic_val")
    assert entry["generate"] == {"generator": "synthetic",
                                 "args": {"split_dir": os.path.join(data_dir, "synthetic", "val")}}
    assert "generate" not in DatasetCatalog.get("coco_2017_val")


def test_the_catalog_module_imports_nothing_from_the_data_package():
    import subprocess
    import sys

    code = ("import sys; from maskrcnn_benchmark.config.paths_catalog import DatasetCatalog; "
            "DatasetCatalog.get('nuclei_dsb2018_train'); "
            "print(sorted(m for m in sys.modules if m.startswith('maskrcnn_benchmark.data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MASKRCNN_DATA_DIR="/nonexistent-data-dir"))
    assert out.stdout.strip() == "[]"


def test_resolving_an_embedded_dataset_runs_its_generator_once_per_lookup(data_dir, monkeypatch):
    from maskrcnn_benchmark.data import build

    calls = []
    monkeypatch.setitem(build.GENERATORS, "synthetic", lambda split_dir: calls.append(split_dir))
    entry = build.resolve_dataset("synthetic_train", DatasetCatalog)
    assert calls == [os.path.join(data_dir, "synthetic", "train")]
    assert entry["args"]["ann_file"] == os.path.join(data_dir, "synthetic", "train", "annotations.json")
    build.resolve_dataset("coco_2017_val", DatasetCatalog)  # no "generate": nothing runs
    assert len(calls) == 1


def test_an_unknown_generator_is_refused_by_name():
    from maskrcnn_benchmark.data.build import generate_if_missing

    with pytest.raises(ValueError, match="generator 'mnist'; known generators: nuclei, synthetic"):
        generate_if_missing({"factory": "COCODataset", "args": {}, "generate": {"generator": "mnist", "args": {}}})
