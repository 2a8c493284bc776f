"""DATALOADER.FILTER_EMPTY_ANNOTATIONS False: images without annotations train as negatives, GAN step included."""
import json
import os

import pytest
import torch

from maskrcnn_benchmark.data.build import build_dataset, build_transforms
from maskrcnn_benchmark.data.collate_batch import BatchCollator
from maskrcnn_benchmark.modeling.matcher import Matcher

NUM_NEGATIVES = 2


@pytest.fixture
def negatives_cfg(tiny_cfg, tmp_path):
    """tiny_cfg training on the synthetic fixture plus NUM_NEGATIVES images without any annotation."""
    _, ann_file, image_dir = tiny_cfg.DATASETS.CUSTOM[0].split(":")
    with open(ann_file) as f:
        data = json.load(f)
    first_id = max(image["id"] for image in data["images"]) + 1
    for offset in range(NUM_NEGATIVES):
        image = dict(data["images"][offset], id=first_id + offset)
        data["images"].append(image)
    path = tmp_path / "with_negatives.json"
    path.write_text(json.dumps(data))
    tiny_cfg.merge_from_list(["DATASETS.CUSTOM", ("negatives:{}:{}".format(path, image_dir),),
                              "DATASETS.TRAIN", ("negatives",), "DATASETS.TEST", ("negatives",)])
    return tiny_cfg


def _train_dataset(cfg):
    from maskrcnn_benchmark.data.build import load_catalog

    return build_dataset(cfg.DATASETS.TRAIN, build_transforms(cfg, True), load_catalog(cfg.PATHS_CATALOG), True,
                         cfg.DATASETS.CUSTOM, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)[0]


def test_the_key_keeps_or_drops_images_without_annotations(negatives_cfg):
    with_annotations = len(_train_dataset(negatives_cfg))
    negatives_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    dataset = _train_dataset(negatives_cfg)
    assert len(dataset) == with_annotations + NUM_NEGATIVES
    image, target, _ = dataset[len(dataset) - 1]
    assert len(target) == 0 and target.get_field("labels").shape == (0,) and image.shape[0] == 3


def _batch(dataset, indices):
    images, targets, _ = BatchCollator(32)([dataset[i] for i in indices])
    return images, list(targets)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["negatives_only", "mixed"])
def test_gan_step_trains_on_images_without_annotations(negatives_cfg, kind):
    from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.solver import make_optimizer

    negatives_cfg.merge_from_list(["DATALOADER.FILTER_EMPTY_ANNOTATIONS", False, "MODEL.GAN.ENABLED", True,
                                   "MODEL.GAN.START_ITER", 1, "MODEL.GAN.BOX_DISC.CHANNELS", 8,
                                   "MODEL.GAN.MASK_DISC.CHANNELS", 8, "MODEL.GAN.BOX_DISC.NUM_CONVS", 3,
                                   "MODEL.GAN.MASK_DISC.NUM_CONVS", 3])
    dataset = _train_dataset(negatives_cfg)
    last = len(dataset) - 1
    indices = [last - 1, last] if kind == "negatives_only" else [0, last]
    images, targets = _batch(dataset, indices)
    assert [len(t) == 0 for t in targets] == ([True, True] if kind == "negatives_only" else [False, True])

    torch.manual_seed(0)
    model = build_detection_model(negatives_cfg).train()
    optimizer = make_optimizer(negatives_cfg, model)
    step = build_adversarial_train_step(negatives_cfg, model, optimizer)
    g_before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses = step(images, targets, iteration=1)
    for name in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask",
                 "loss_box_adv", "loss_mask_adv", "loss_box_disc", "loss_mask_disc"):
        assert name in losses and torch.isfinite(losses[name]).all(), (name, losses.get(name))
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, g_before[k])]
    # the background class logit learns from negatives; nothing became NaN
    assert "roi_heads.box.predictor.cls_score.weight" in changed
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in step.discriminators.parameters())
    if kind == "negatives_only":
        # no object, no positive RoI: the regression, mask and adversarial terms are exact zeros
        for name in ("loss_box_reg", "loss_mask", "loss_box_adv", "loss_mask_adv", "loss_box_disc", "loss_mask_disc"):
            assert float(losses[name]) == 0.0, name


def test_the_matcher_refusal_points_to_the_key():
    with pytest.raises(ValueError, match="FILTER_EMPTY_ANNOTATIONS"):
        Matcher(0.7, 0.3)(torch.zeros((0, 5)))


def test_the_training_loader_honours_the_key(negatives_cfg):
    from maskrcnn_benchmark.data import make_data_loader

    negatives_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    loader = make_data_loader(negatives_cfg, is_train=True)
    assert len(loader.dataset) == 8 + NUM_NEGATIVES
    assert os.path.basename(loader.dataset.ann_file) == "with_negatives.json"


def test_a_training_set_without_the_option_refuses_false(monkeypatch):
    from maskrcnn_benchmark.data import datasets as D

    class PlainDataset(torch.utils.data.Dataset):
        def __init__(self, transforms=None):
            pass

    class Catalog:
        @staticmethod
        def get(name):
            return {"factory": "PlainDataset", "args": {}}

    monkeypatch.setattr(D, "PlainDataset", PlainDataset, raising=False)
    with pytest.raises(ValueError, match=r"FILTER_EMPTY_ANNOTATIONS False .* training set 'plain' is a PlainDataset"):
        build_dataset(["plain"], None, Catalog, is_train=True, filter_empty=False)
