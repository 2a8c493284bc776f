"""make_data_loader: batch types, padded sizes, flips applied to masks too, iteration count, user datasets."""
import os
import random

import pytest
import torch

from maskrcnn_benchmark.data import make_data_loader
from maskrcnn_benchmark.data.build import build_dataset, load_catalog
from maskrcnn_benchmark.data.transforms import build_transforms
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import ImageList
from maskrcnn_benchmark.structures.segmentation_mask import SegmentationMask


def test_training_batches_have_contract_types_and_divisible_sizes(tiny_cfg):
    tiny_cfg.merge_from_list(["SOLVER.MAX_ITER", 3, "INPUT.MIN_SIZE_TRAIN", (100, 112), "DATALOADER.SIZE_DIVISIBILITY",
                              32])
    loader = make_data_loader(tiny_cfg, is_train=True)
    batches = list(loader)
    assert len(batches) == 3 == len(loader)
    for images, targets, image_ids in batches:
        assert isinstance(images, ImageList) and isinstance(targets, tuple) and isinstance(image_ids, tuple)
        n, c, h, w = images.tensors.shape
        assert n == len(targets) == len(image_ids) == 2 and c == 3
        assert h % 32 == 0 and w % 32 == 0
        for (ih, iw), target in zip(images.image_sizes, targets):
            assert isinstance(target, BoxList) and target.size == (iw, ih)
            assert min(ih, iw) in (100, 112)
            labels = target.get_field("labels")
            assert labels.dtype == torch.int64 and labels.min() >= 1 and labels.max() <= 3
            assert isinstance(target.get_field("masks"), SegmentationMask)
            assert len(target.get_field("masks")) == len(target) > 0


def test_resume_yields_remaining_iterations(tiny_cfg):
    tiny_cfg.merge_from_list(["SOLVER.MAX_ITER", 5])
    assert sum(1 for _ in make_data_loader(tiny_cfg, is_train=True, start_iter=3)) == 2


def test_test_loader_is_one_ordered_pass_per_dataset(tiny_cfg):
    loaders = make_data_loader(tiny_cfg, is_train=False)
    assert isinstance(loaders, list) and len(loaders) == 1
    ids = [i for _, _, batch_ids in loaders[0] for i in batch_ids]
    assert ids == list(range(8))


def _object_colour_consistency(image, masks):
    """Largest per-instance channel std of the image pixels under each mask (small when masks sit on objects)."""
    worst = 0.0
    for mask in masks:
        inside = image[:, mask.bool()]
        if inside.shape[1] > 4:
            worst = max(worst, float(inside.std(dim=1).max()))
    return worst


def test_masks_flip_with_the_image(tiny_cfg):
    catalog = load_catalog(tiny_cfg.PATHS_CATALOG)
    samples = {}
    for prob in (0.0, 1.0):
        tiny_cfg.merge_from_list(["INPUT.HORIZONTAL_FLIP_PROB_TRAIN", prob, "INPUT.PIXEL_STD", [1.0, 1.0, 1.0]])
        dataset = build_dataset(tiny_cfg.DATASETS.TRAIN, build_transforms(tiny_cfg, True), catalog, True,
                                tiny_cfg.DATASETS.CUSTOM)[0]
        random.seed(0)
        samples[prob] = dataset[0]
    (plain, plain_target, _), (flipped, flipped_target, _) = samples[0.0], samples[1.0]
    assert torch.allclose(flipped, plain.flip(-1))
    plain_masks = plain_target.get_field("masks").get_mask_tensor()
    flipped_masks = flipped_target.get_field("masks").get_mask_tensor()
    assert torch.equal(flipped_masks, plain_masks.flip(-1))
    # and the masks sit on the (flat-coloured) objects of the flipped image, not on their mirror images
    assert _object_colour_consistency(flipped, flipped_masks) < 10
    assert _object_colour_consistency(flipped, plain_masks) > 20


def test_user_catalog_file_via_paths_catalog(tiny_cfg, synthetic_dataset_dir, tmp_path):
    catalog_file = tmp_path / "my_catalog.py"
    catalog_file.write_text(
        "class DatasetCatalog:\n"
        "    @staticmethod\n"
        "    def get(name):\n"
        "        assert name == 'my_shapes'\n"
        "        return {'factory': 'COCODataset', 'args': {'ann_file': %r, 'root': %r}}\n"
        % (os.path.join(synthetic_dataset_dir, "annotations.json"), os.path.join(synthetic_dataset_dir, "images"))
    )
    tiny_cfg.merge_from_list(["PATHS_CATALOG", str(catalog_file), "DATASETS.CUSTOM", (), "DATASETS.TEST",
                              ("my_shapes",)])
    loaders = make_data_loader(tiny_cfg, is_train=False)
    assert len(loaders[0].dataset) == 8


def test_unknown_dataset_name_and_missing_catalog_are_explained(tiny_cfg, tmp_path):
    tiny_cfg.merge_from_list(["DATASETS.TRAIN", ("synthetic_fixtur",)])
    with pytest.raises(KeyError, match="synthetic_fixtur.*Known datasets"):
        make_data_loader(tiny_cfg, is_train=True)
    tiny_cfg.merge_from_list(["PATHS_CATALOG", str(tmp_path / "absent.py")])
    with pytest.raises(FileNotFoundError, match="absent.py"):
        make_data_loader(tiny_cfg, is_train=True)


def test_mask_head_without_masks_in_data_fails_before_training(tiny_cfg, tmp_path):
    import json

    from PIL import Image

    Image.new("RGB", (32, 32)).save(str(tmp_path / "a.png"))
    ann = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "iscrowd": 0,
                            "area": 64}],
           "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "boxes.json").write_text(json.dumps(ann))
    tiny_cfg.merge_from_list(["DATASETS.CUSTOM", ("boxes:{}:{}".format(tmp_path / "boxes.json", tmp_path),),
                              "DATASETS.TRAIN", ("boxes",)])
    with pytest.raises(ValueError, match="MODEL.MASK_ON.*boxes.json"):
        make_data_loader(tiny_cfg, is_train=True)


def _custom_dataset(tiny_cfg, tmp_path, name, images, annotations):
    import json

    ann_file = tmp_path / (name + ".json")
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "thing"}]}))
    tiny_cfg.merge_from_list(["DATASETS.CUSTOM", tuple(tiny_cfg.DATASETS.CUSTOM) + (
        "{}:{}:{}".format(name, ann_file, tmp_path),)])
    return str(ann_file)


def test_missing_image_files_of_train_and_test_sets_are_listed_together_at_start(tiny_cfg, tmp_path,
                                                                                synthetic_dataset_dir):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(str(tmp_path / "present.png"))
    images = [{"id": i, "file_name": name, "width": 32, "height": 32}
              for i, name in enumerate(("present.png", "gone_1.png", "gone_2.png"), 1)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0,
                    "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]]} for i in (1, 2, 3)]
    ann_file = _custom_dataset(tiny_cfg, tmp_path, "holes", images, annotations)
    tiny_cfg.merge_from_list(["DATASETS.TEST", ("synthetic_fixture", "holes")])
    with pytest.raises(FileNotFoundError) as info:
        make_data_loader(tiny_cfg, is_train=False)
    message = str(info.value)
    assert "dataset 'holes' ('{}', images under '{}'): 2 of 3 image files missing".format(ann_file, tmp_path) \
        in message
    assert str(tmp_path / "gone_1.png") in message and str(tmp_path / "gone_2.png") in message
    assert "synthetic_fixture" not in message


def test_empty_training_set_after_filtering_is_refused_naming_its_file(tiny_cfg, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(str(tmp_path / "a.png"))
    images = [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0,
                    "segmentation": [[2, 2, 10, 2]]}]
    ann_file = _custom_dataset(tiny_cfg, tmp_path, "nothing_usable", images, annotations)
    tiny_cfg.merge_from_list(["DATASETS.TRAIN", ("nothing_usable",)])
    with pytest.raises(ValueError) as info:
        make_data_loader(tiny_cfg, is_train=True)
    message = str(info.value)
    assert "Training dataset 'nothing_usable' ('{}') has no image left to train on".format(ann_file) in message
    assert "1 annotation(s) were unusable: polygon with < 3 points x1" in message
