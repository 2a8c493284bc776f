"""make_data_loader: datasets named in the config -> transforms -> samplers -> DataLoader(s)."""
import bisect
import copy
import logging
import os

import torch.utils.data

from maskrcnn_benchmark.config.paths_catalog import UnknownDatasetError, parse_custom_dataset

from . import datasets as D
from . import samplers
from .categories import check_num_classes, dataset_categories
from .collate_batch import BatchCollator, BBoxAugCollator
from .preparation import nuclei, synthetic
from .transforms import build_transforms


def load_catalog(paths_catalog):
    """Return the DatasetCatalog class of the Python file `paths_catalog` (cfg.PATHS_CATALOG)."""
    from maskrcnn_benchmark.utils.imports import import_file

    if not os.path.isfile(paths_catalog):
        raise FileNotFoundError("PATHS_CATALOG file not found: '{}'".format(paths_catalog))
    module = import_file("maskrcnn_benchmark.config.paths_catalog_user", paths_catalog, True)
    if not hasattr(module, "DatasetCatalog"):
        raise AttributeError("PATHS_CATALOG file '{}' defines no DatasetCatalog class".format(paths_catalog))
    return module.DatasetCatalog


# The catalog's "generate" entries name one of these: each writes its dataset's split folder when it is missing.
GENERATORS = {"synthetic": synthetic.ensure_dataset, "nuclei": nuclei.ensure_dataset}


def generate_if_missing(entry):
    """Write the files of an embedded dataset the first time it is used (``entry["generate"]``, if any).

    Args:
        entry (dict): a catalog entry, {"factory", "args"} and optionally
            "generate": {"generator": a key of GENERATORS, "args": its keyword arguments}.
    """
    spec = entry.get("generate")
    if spec is None:
        return
    if spec["generator"] not in GENERATORS:
        raise ValueError("Catalog entry asks for generator '{}'; known generators: {}".format(
            spec["generator"], ", ".join(sorted(GENERATORS))))
    GENERATORS[spec["generator"]](**spec["args"])


def resolve_dataset(name, catalog, custom_specs=()):
    """{"factory", "args"} of dataset `name`: a DATASETS.CUSTOM entry first, else the catalog's get(name).

    An embedded dataset (synthetic, nuclei) is written under the catalog's data folder first if it is missing.
    """
    custom_names = []
    for spec in custom_specs:
        custom_name, ann_file, img_dir = parse_custom_dataset(spec)
        if custom_name == name:
            return {"factory": "COCODataset", "args": {"ann_file": ann_file, "root": img_dir}}
        custom_names.append(custom_name)
    try:
        entry = catalog.get(name)
    except (KeyError, RuntimeError) as e:
        # KeyError: our catalog (or a PATHS_CATALOG copy of it); RuntimeError("Dataset not available: ..."):
        # a catalog file written for maskrcnn-benchmark.
        if isinstance(e, RuntimeError) and "not available" not in str(e):
            raise
        if not custom_names:
            raise
        raise UnknownDatasetError("{} DATASETS.CUSTOM defines: {}.".format(
            str(e.args[0]) if e.args else name, ", ".join(custom_names))) from None
    generate_if_missing(entry)
    return entry


def build_dataset(dataset_list, transforms, catalog, is_train=True, custom_specs=(), filter_empty=True):
    """Instantiate each named dataset; for training, concatenate them into one.

    Args:
        dataset_list (sequence[str]): names from DATASETS.TRAIN / TEST.
        transforms (callable): joint image/target transforms.
        catalog: class with get(name) -> {"factory": class name in data.datasets, "args": kwargs}.
        is_train (bool): training returns one (concatenated) dataset and, with ``filter_empty``, drops images
            without usable annotations.
        custom_specs (sequence[str]): DATASETS.CUSTOM entries "NAME:ANN_FILE:IMG_DIR".
        filter_empty (bool): DATALOADER.FILTER_EMPTY_ANNOTATIONS; False keeps training images without
            annotations (negatives: every anchor and proposal of theirs is background).
    Returns:
        list of datasets (length 1 when is_train).
    """
    if not isinstance(dataset_list, (list, tuple)):
        raise ValueError("dataset_list should be a list of dataset names, got {!r}".format(dataset_list))
    if len(dataset_list) == 0:
        raise ValueError("No dataset given: set DATASETS.{} in the config".format("TRAIN" if is_train else "TEST"))
    built = []
    for name in dataset_list:
        entry = resolve_dataset(name, catalog, custom_specs)
        factory = getattr(D, entry["factory"])
        args = copy.deepcopy(entry["args"])
        if issubclass(factory, D.COCODataset):  # COCO, Cityscapes, ...: by default train only on images with instances
            args["remove_images_without_annotations"] = is_train and filter_empty
        elif is_train and not filter_empty:
            raise ValueError("DATALOADER.FILTER_EMPTY_ANNOTATIONS False keeps images without annotations of "
                             "COCO-format datasets; training set '{}' is a {}, which has no such option. Set it True "
                             "or train on a COCO-format file (DATASETS.CUSTOM)".format(name, entry["factory"]))
        args["transforms"] = transforms
        dataset = factory(**args)
        if is_train and len(dataset) == 0:
            raise ValueError(_empty_training_set_message(name, dataset))
        built.append(dataset)
    check_image_files_exist(built, dataset_list)
    if not is_train:
        return built
    return [built[0] if len(built) == 1 else D.ConcatDataset(built)]


def _empty_training_set_message(name, dataset):
    ann_file = getattr(dataset, "ann_file", None)
    skipped = getattr(dataset, "skipped_annotations", {})
    return ("Training dataset '{}'{} has no image left to train on: every image lacks a usable annotation{}. Check "
            "that the file is the training split and that its annotations have boxes (and segmentations for "
            "MODEL.MASK_ON)".format(
                name, " ('{}')".format(ann_file) if ann_file else "",
                " ({} annotation(s) were unusable: {})".format(
                    sum(skipped.values()), ", ".join("{} x{}".format(r, n) for r, n in sorted(skipped.items())))
                if skipped else ""))


def check_image_files_exist(datasets, names, shown=10):
    """Raise FileNotFoundError listing together the missing image files of every dataset (those with
    ``missing_image_files()``), so a wrong image folder is found at start and not when the loader reaches it."""
    problems = []
    for name, dataset in zip(names, datasets):
        missing = dataset.missing_image_files() if hasattr(dataset, "missing_image_files") else []
        if missing:
            problems.append("dataset '{}' ('{}', images under '{}'): {} of {} image files missing: {}{}".format(
                name, getattr(dataset, "ann_file", "?"), getattr(dataset, "root", "?"), len(missing), len(dataset),
                ", ".join(missing[:shown]), ", ..." if len(missing) > shown else ""))
    if problems:
        raise FileNotFoundError("Image files not found (check the image folder of DATASETS.CUSTOM or of the paths "
                                "catalog):\n  " + "\n  ".join(problems))


def _quantize(values, bins):
    bins = sorted(bins)
    return [bisect.bisect_right(bins, v) for v in values]


def _aspect_ratios(dataset):
    ratios = []
    for i in range(len(dataset)):
        info = dataset.get_img_info(i)
        ratios.append(float(info["height"]) / float(info["width"]))
    return ratios


def make_data_sampler(dataset, shuffle, distributed, seed=0):
    """Random or sequential sampler over `dataset`, sharded over processes when `distributed`."""
    if distributed:
        return samplers.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    if shuffle:
        return torch.utils.data.sampler.RandomSampler(dataset)
    return torch.utils.data.sampler.SequentialSampler(dataset)


def make_batch_data_sampler(dataset, sampler, aspect_grouping, images_per_batch, num_iters=None, start_iter=0):
    """Batches (grouped by aspect ratio when `aspect_grouping` lists bin edges), run for num_iters when given."""
    if aspect_grouping:
        group_ids = _quantize(_aspect_ratios(dataset), aspect_grouping)
        batch_sampler = samplers.GroupedBatchSampler(sampler, group_ids, images_per_batch, drop_uneven=False)
    else:
        batch_sampler = torch.utils.data.sampler.BatchSampler(sampler, images_per_batch, drop_last=False)
    if num_iters is not None:
        batch_sampler = samplers.IterationBasedBatchSampler(batch_sampler, num_iters, start_iter)
    return batch_sampler


def _check_targets_match_heads(cfg, dataset):
    """Fail before training when a head is on but the data has no targets for it (not deep inside its loss)."""
    parts = dataset.datasets if isinstance(dataset, D.ConcatDataset) else [dataset]
    for part in parts:
        if not isinstance(part, D.COCODataset):
            continue
        if cfg.MODEL.MASK_ON and not part.has_masks:
            raise ValueError(
                "MODEL.MASK_ON is True but '{}' has no 'segmentation' in its annotations: add masks or set "
                "MODEL.MASK_ON False".format(part.ann_file)
            )
        if cfg.MODEL.KEYPOINT_ON and not part.has_keypoints:
            raise ValueError(
                "MODEL.KEYPOINT_ON is True but '{}' has no 'keypoints' in its annotations: use a keypoint file or "
                "set MODEL.KEYPOINT_ON False".format(part.ann_file)
            )


def make_data_loader(cfg, is_train=True, is_distributed=False, start_iter=0):
    """Data loader(s) for cfg.DATASETS.TRAIN (one loader) or cfg.DATASETS.TEST (a list, one per dataset).

    Each batch is (images: ImageList, targets: tuple[BoxList], image_ids: tuple[int]); with TEST.BBOX_AUG.ENABLED
    a test batch's images are the untransformed PIL images (tuple). Training loaders yield
    SOLVER.MAX_ITER - start_iter batches of SOLVER.IMS_PER_BATCH / world-size images; test loaders one pass in
    order with TEST.IMS_PER_BATCH / world-size images per batch.
    """
    from maskrcnn_benchmark.utils.comm import get_world_size

    num_gpus = get_world_size()
    if is_train:
        images_per_batch = cfg.SOLVER.IMS_PER_BATCH
        key = "SOLVER.IMS_PER_BATCH"
        shuffle = True
        num_iters = cfg.SOLVER.MAX_ITER
    else:
        images_per_batch = cfg.TEST.IMS_PER_BATCH
        key = "TEST.IMS_PER_BATCH"
        shuffle = False
        num_iters = None
        start_iter = 0
    if images_per_batch <= 0 or images_per_batch % num_gpus != 0:
        raise ValueError(
            "{} ({}) must be a positive multiple of the number of processes ({})".format(key, images_per_batch,
                                                                                          num_gpus)
        )
    images_per_gpu = images_per_batch // num_gpus
    if is_train and images_per_gpu > 1:
        logging.getLogger(__name__).info("Training with %d images per process per batch", images_per_gpu)

    # Aspect-ratio bins: one edge at 1 separates landscape (h/w < 1) from portrait images.
    aspect_grouping = [1] if cfg.DATALOADER.ASPECT_RATIO_GROUPING else []
    catalog = load_catalog(cfg.PATHS_CATALOG)
    dataset_list = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
    # Test-time augmentation transforms each original image itself, once per pass (engine/bbox_aug.py).
    bbox_aug = not is_train and cfg.TEST.BBOX_AUG.ENABLED
    transforms = None if bbox_aug else build_transforms(cfg, is_train)
    datasets = build_dataset(dataset_list, transforms, catalog, is_train, cfg.DATASETS.CUSTOM,
                             cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    if is_train:
        _check_targets_match_heads(cfg, datasets[0])
        if not cfg.MODEL.RPN_ONLY:
            check_num_classes(cfg, dataset_categories(datasets[0]), ", ".join(dataset_list))
    seed = cfg.SOLVER.SEED if cfg.SOLVER.SEED >= 0 else 0

    data_loaders = []
    for dataset in datasets:
        sampler = make_data_sampler(dataset, shuffle, is_distributed, seed)
        batch_sampler = make_batch_data_sampler(dataset, sampler, aspect_grouping, images_per_gpu, num_iters,
                                                start_iter)
        data_loaders.append(torch.utils.data.DataLoader(
            dataset,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            batch_sampler=batch_sampler,
            collate_fn=BBoxAugCollator() if bbox_aug else BatchCollator(cfg.DATALOADER.SIZE_DIVISIBILITY),
        ))
    if is_train:
        return data_loaders[0]
    return data_loaders
