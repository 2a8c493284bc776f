"""tools/predict.py end to end on a tiny random checkpoint: the files it writes and its exit status."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.utils.imports import import_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_predict_tool_writes_json_label_maps_overlays_and_reports_unreadable(tiny_cfg, tmp_path,
                                                                              synthetic_dataset_dir):
    tool = import_file("predict_tool", os.path.join(REPO, "tools", "predict.py"))
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH", 0.0])
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(tiny_cfg.dump())
    torch.manual_seed(0)
    checkpoint = str(tmp_path / "model.pth")
    torch.save({"model": build_detection_model(tiny_cfg).state_dict(),
                "categories": [{"id": 1, "name": "disc"}, {"id": 3, "name": "square"}, {"id": 7, "name": "blob"}]},
               checkpoint)
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    shutil.copy(os.path.join(synthetic_dataset_dir, "images", "000000.png"), images / "000000.png")
    shutil.copy(os.path.join(synthetic_dataset_dir, "images", "000001.png"), images / "nested" / "000001.png")
    (images / "nested" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    status = tool.main(["--config-file", str(config_file), "--ckpt", checkpoint, "--input", str(images),
                        "--output-dir", str(out), "--confidence", "0.0", "--tile", "96", "--tile-overlap", "32",
                        "--overlays"])
    assert status == 1  # one file could not be read
    coco = COCO(str(out / "predictions.json"))
    assert sorted(i["file_name"] for i in coco.dataset["images"]) == ["000000.png", "nested/000001.png"]
    assert [c["name"] for c in coco.dataset["categories"]] == ["disc", "square", "blob"]
    assert {a["category_id"] for a in coco.dataset["annotations"]} <= {1, 3, 7}
    for info in coco.dataset["images"]:
        stem = os.path.splitext(info["file_name"])[0]
        labels = cv2.imread(str(out / "instances" / (stem + ".png")), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16 and labels.shape == (info["height"], info["width"])
        count = len(coco.getAnnIds(imgIds=info["id"]))
        assert labels.max() <= count
        assert os.path.isfile(out / "overlays" / (stem + ".png"))
    annotations = json.loads((out / "predictions.json").read_text())["annotations"]
    assert annotations and all(isinstance(a["segmentation"]["counts"], str) for a in annotations)
