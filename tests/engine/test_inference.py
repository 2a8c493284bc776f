"""inference(): predictions in original image coordinates on the CPU, saved atomically, then evaluated."""
import contextlib
import io
import json
import os

import pytest
import torch
from pycocotools.coco import COCO
from torch import nn

from maskrcnn_benchmark.engine.inference import inference
from maskrcnn_benchmark.structures.bounding_box import BoxList
from maskrcnn_benchmark.structures.image_list import ImageList

ORIGINAL_SIZES = {101: (120, 80), 102: (90, 150)}  # COCO id -> (width, height)
GT_BOXES = {101: [[10, 20, 40, 30]], 102: [[5, 50, 60, 70], [30, 10, 20, 20]]}  # xywh, original pixels
SCALE = 0.5  # the test transform shrinks every image by this factor


class _TinyCocoDataset(torch.utils.data.Dataset):
    def __init__(self):
        coco = COCO()
        anns = []
        for image_id, boxes in GT_BOXES.items():
            for x, y, w, h in boxes:
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "bbox": [x, y, w, h],
                             "area": float(w * h), "iscrowd": 0})
        coco.dataset = {"images": [{"id": i, "width": w, "height": h} for i, (w, h) in ORIGINAL_SIZES.items()],
                        "categories": [{"id": 1, "name": "thing"}], "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco
        self.ids = sorted(ORIGINAL_SIZES)
        self.id_to_img_map = dict(enumerate(self.ids))
        self.contiguous_category_id_to_json_id = {1: 1}
        self.json_category_id_to_contiguous_id = {1: 1}

    def get_img_info(self, index):
        w, h = ORIGINAL_SIZES[self.id_to_img_map[index]]
        return {"width": w, "height": h}

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        w, h = ORIGINAL_SIZES[self.id_to_img_map[index]]
        return torch.zeros(3, int(h * SCALE), int(w * SCALE)), None, index


def _collate(batch):
    images = [b[0] for b in batch]
    height = max(i.shape[1] for i in images)
    width = max(i.shape[2] for i in images)
    padded = torch.zeros(len(images), 3, height, width)
    for k, image in enumerate(images):
        padded[k, :, : image.shape[1], : image.shape[2]] = image
    return ImageList(padded, [tuple(i.shape[1:]) for i in images]), [b[1] for b in batch], tuple(b[2] for b in batch)


class _OracleDetector(nn.Module):
    """Returns the GT boxes in the resized image's coordinates, as a real detector does in eval mode."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.seen_eval_mode = []
        self.next_index = 0

    def forward(self, images):
        self.seen_eval_mode.append(not self.training)
        results = []
        for h, w in images.image_sizes:
            image_id = self.dataset.id_to_img_map[self.next_index]
            self.next_index += 1
            boxes = BoxList(torch.tensor(GT_BOXES[image_id], dtype=torch.float32), ORIGINAL_SIZES[image_id],
                            mode="xywh").convert("xyxy").resize((w, h))
            boxes.add_field("scores", torch.ones(len(boxes)))
            boxes.add_field("labels", torch.ones(len(boxes), dtype=torch.int64))
            results.append(boxes)
        return results


def test_inference_resizes_saves_and_evaluates(tmp_path):
    dataset = _TinyCocoDataset()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_collate)
    model = _OracleDetector(dataset)
    results, _, _ = inference(model, loader, "tiny", iou_types=("bbox",), output_folder=str(tmp_path))
    assert all(model.seen_eval_mode)

    predictions = torch.load(str(tmp_path / "predictions.pth"), weights_only=False)
    assert [p.size for p in predictions] == [ORIGINAL_SIZES[i] for i in dataset.ids]
    for prediction, image_id in zip(predictions, dataset.ids):
        assert prediction.bbox.device.type == "cpu"
        expected = BoxList(torch.tensor(GT_BOXES[image_id], dtype=torch.float32), ORIGINAL_SIZES[image_id],
                           mode="xywh").convert("xyxy").bbox
        assert torch.allclose(prediction.bbox, expected, atol=1e-4)
    assert results.results["bbox"]["AP50"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "coco_results.json").read_text())
    assert saved["bbox"]["AP50"] == pytest.approx(1.0)
    assert not list(tmp_path.glob("*.tmp"))


def test_expected_results_check_and_unknown_metric(tmp_path, caplog):
    dataset = _TinyCocoDataset()
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=False, collate_fn=_collate)
    inference(_OracleDetector(dataset), loader, "tiny", output_folder=None,
              expected_results=[["bbox", "AP50", 0.2, 0.01]])
    assert "FAIL: bbox > AP50" in caplog.text
    with pytest.raises(ValueError, match="segm/AP"):
        inference(_OracleDetector(dataset), loader, "tiny", expected_results=[["segm", "AP", 0.2, 0.01]])


def test_results_are_published_as_one_set_and_a_failed_evaluation_leaves_the_previous_set(tmp_path, monkeypatch):
    out = tmp_path / "inference" / "tiny"
    out.mkdir(parents=True)
    (out / "segm.json").write_text("[]")  # an earlier run's result this evaluation does not produce
    (out / "iter_0000005").mkdir()  # a periodic evaluation's folder is not part of the set
    dataset = _TinyCocoDataset()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_collate)
    inference(_OracleDetector(dataset), loader, "tiny", iou_types=("bbox",), output_folder=str(out))
    first_set = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert first_set == ["bbox.json", "coco_results.json", "iter_0000005", "predictions.pth"]
    before = {name: (out / name).read_bytes() for name in ("bbox.json", "coco_results.json", "predictions.pth")}

    import maskrcnn_benchmark.data.datasets.evaluation.coco.coco_eval as coco_eval

    def failing_summary(*args, **kwargs):
        raise RuntimeError("evaluation failed after writing bbox.json")

    monkeypatch.setattr(coco_eval, "check_expected_results", failing_summary)
    with pytest.raises(RuntimeError, match="after writing bbox.json"):
        inference(_OracleDetector(dataset), loader, "tiny", iou_types=("bbox",), output_folder=str(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(first_set + [".result_set.json"])
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_full_disk_while_writing_results_names_the_folder_and_keeps_the_previous_results(tmp_path, monkeypatch):
    dataset = _TinyCocoDataset()
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_collate)
    inference(_OracleDetector(dataset), loader, "tiny", iou_types=("bbox",), output_folder=str(tmp_path))
    before = (tmp_path / "coco_results.json").read_bytes()

    def full_disk_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(OSError) as info:
        inference(_OracleDetector(dataset), loader, "tiny", iou_types=("bbox",), output_folder=str(tmp_path))
    assert "No disk space left to write the evaluation results of tiny in '{}'".format(tmp_path) in str(info.value)
    assert (tmp_path / "coco_results.json").read_bytes() == before
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith(".evaluation-")]
