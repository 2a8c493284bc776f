"""tools/make_tables.py: the paper's tables from hand-written metrics files, and the seed aggregation."""
import json
import math
import os

import pytest

from maskrcnn_benchmark.utils import tables, training_runs
from maskrcnn_benchmark.utils.imports import import_file

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "make_tables.py")


def _tool():
    return import_file("make_tables_tool", TOOL)


def write_run(folder, bbox_ap, segm_ap, dataset="synthetic_val", cityscapes=None):
    """An OUTPUT_DIR with inference/<dataset>/coco_results.json as our COCO evaluation writes it."""
    out = os.path.join(folder, "inference", dataset)
    os.makedirs(out)
    metrics = lambda ap: {"AP": ap, "AP50": ap + 0.2, "AP75": ap + 0.05, "APs": ap - 0.1, "APm": ap,  # noqa: E731
                          "APl": -1.0}
    with open(os.path.join(out, "coco_results.json"), "w") as f:
        json.dump({"bbox": metrics(bbox_ap), "segm": metrics(segm_ap), "max_dets": 100}, f)
    if cityscapes is not None:
        with open(os.path.join(out, "cityscapes_results.json"), "w") as f:
            json.dump(cityscapes, f)
    return folder


def _row(text, label):
    lines = [line for line in text.splitlines() if line.startswith(label + "  ")]
    assert lines, "no row {!r} in\n{}".format(label, text)
    return lines[0][len(label):].split()


def test_table_rows_and_differences(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.300, 0.250))
    gan = tables.load_results(write_run(str(tmp_path / "gan"), 0.312, 0.268))
    text = tables.make_table("coco", base, gan)
    block_a, block_b = text.split("B. segm")[0], "B. segm" + text.split("B. segm")[1]
    assert _row(block_a, "Mask R-CNN (ours)") == ["30.0", "50.0", "35.0", "20.0", "30.0", "n/a"]
    assert _row(block_a, "GAN (ours)") == ["31.2", "51.2", "36.2", "21.2", "31.2", "n/a"]
    assert _row(block_a, "GAN - Mask R-CNN (ours)") == ["+1.2", "+1.2", "+1.2", "+1.2", "+1.2", "n/a"]
    assert _row(block_b, "GAN - Mask R-CNN (ours)")[:2] == ["+1.8", "+1.8"]
    # Table 3's bbox block cannot be read reliably: n/a with the note, no invented values; its segm block is there.
    assert _row(block_a, "GAN (paper)") == ["n/a"] * 6
    assert "bbox block n/a: it cannot be read reliably" in text
    assert _row(block_b, "GAN (paper)") == ["36.8", "58.6", "39.2", "16.9", "39.9", "54.5"]


def test_paper_numbers_give_reference_rows_and_gaps(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.300, 0.250))
    gan = tables.load_results(write_run(str(tmp_path / "gan"), 0.312, 0.268))
    paper = {"title": "Test", "source": "hand-written", "baseline": {"bbox": {"AP": 0.29}, "segm": {"AP": 0.265}},
             "gan": {"bbox": {"AP": 0.305}, "segm": {"AP": 0.27}}}
    text = tables.make_table("coco", base, gan, paper=paper)
    block_a, block_b = text.split("B. segm")
    assert _row(block_a, "GAN - Mask R-CNN (paper)")[0] == "+1.5"
    assert _row(block_a, "ours - paper, Mask R-CNN")[0] == "+1.0"
    assert _row(block_b, "ours - paper, GAN")[0] == "-0.2"
    assert _row(block_b, "GAN (paper)")[1] == "n/a"  # AP50 not given


def test_markdown_table(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.3, 0.25))
    gan = tables.load_results(write_run(str(tmp_path / "gan"), 0.35, 0.2))
    md = tables.make_table("glas", base, gan, markdown=True)
    assert "| model | AP | AP50 | AP75 | APs | APm | APl |" in md
    assert "| GAN - Mask R-CNN (ours) | +5.0 | +5.0 | +5.0 | +5.0 | +5.0 | n/a |" in md
    assert "| GAN - Mask R-CNN (ours) | -5.0 |" in md


def test_cityscapes_per_class_block(tmp_path):
    def cs(person, car):
        classes = {name: {"AP": None, "AP50": None} for name in
                   ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")}
        classes["person"] = {"AP": person, "AP50": person + 0.2}
        classes["car"] = {"AP": car, "AP50": car + 0.2}
        return {"AP": (person + car) / 2, "AP50": (person + car) / 2 + 0.2, "classes": classes}

    base = tables.load_results(write_run(str(tmp_path / "b"), 0.3, 0.3, "cityscapes_val", cs(0.30, 0.50)))
    gan = tables.load_results(write_run(str(tmp_path / "g"), 0.3, 0.3, "cityscapes_val", cs(0.33, 0.49)))
    text = tables.make_table("cityscapes", base, gan)
    block_ap = text.split("C. Cityscapes AP per class")[1].split("C. Cityscapes")[0]
    header = [line for line in block_ap.splitlines() if line.startswith("model")][0].split()
    assert header[1:] == list(tables.CITYSCAPES_CLASSES) + ["average"]
    diff = _row(block_ap, "GAN - Mask R-CNN (ours)")
    assert diff[header.index("person") - 1] == "+3.0"
    assert diff[header.index("car") - 1] == "-1.0"
    assert diff[header.index("caravan") - 1] == "n/a"
    assert diff[-1] == "+1.0"
    block_ap50 = text.split("C. Cityscapes AP50 per class")[1]
    assert _row(block_ap50, "GAN (ours)")[0] == "53.0"
    # Table 2's per-class numbers as reference rows: masks in block C, boxes in block D
    assert _row(block_ap, "Mask R-CNN (paper)")[header.index("motorcycle") - 1] == "27.1"
    block_box_ap = text.split("D. Cityscapes AP per class, boxes")[1]
    assert _row(block_box_ap, "GAN (paper)")[header.index("bicycle") - 1] == "31.7"
    assert _row(block_box_ap, "GAN (ours)") == ["n/a"] * len(header[1:])


def test_load_results_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="coco_results.json"):
        tables.load_results(str(tmp_path))
    write_run(str(tmp_path / "two"), 0.1, 0.1, "a")
    os.makedirs(str(tmp_path / "two" / "inference" / "b"))
    json.dump({"bbox": {}}, open(str(tmp_path / "two" / "inference" / "b" / "coco_results.json"), "w"))
    with pytest.raises(ValueError, match="several datasets"):
        tables.load_results(str(tmp_path / "two"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "coco_results.json").write_text(json.dumps({"box_proposal": {}}))
    with pytest.raises(ValueError, match="no 'bbox' or 'segm'"):
        tables.load_results(str(bad))


def test_aggregate_seeds_mean_and_sample_std():
    runs = [{"bbox": {"AP": v, "AP50": -1.0}, "segm": {"AP": v / 2}} for v in (0.30, 0.32, 0.37)]
    stats = tables.aggregate_seeds(runs)
    assert stats["bbox"]["AP"]["mean"] == pytest.approx(33.0)
    assert stats["bbox"]["AP"]["std"] == pytest.approx(math.sqrt(((3 ** 2) + 1 + 4 ** 2) / 2))
    assert (stats["bbox"]["AP"]["min"], stats["bbox"]["AP"]["max"]) == pytest.approx((30.0, 37.0))
    assert stats["bbox"]["AP50"]["n"] == 0 and stats["bbox"]["AP50"]["mean"] is None
    assert stats["segm"]["AP"]["mean"] == pytest.approx(16.5)
    assert tables.aggregate_seeds(runs[:1])["bbox"]["AP"]["std"] == 0.0
    assert "boundary" not in stats


def test_seed_comparison_has_a_boundary_ap_block_when_the_runs_computed_it():
    with_boundary = [{"bbox": {"AP": 0.3}, "segm": {"AP": 0.2}, "boundary": {"AP": v}} for v in (0.10, 0.14)]
    without = [{"bbox": {"AP": 0.3}, "segm": {"AP": 0.2}}]
    gan, baseline = tables.aggregate_seeds(with_boundary), tables.aggregate_seeds(without)
    assert gan["boundary"]["AP"]["mean"] == pytest.approx(12.0)
    text = tables.format_comparison(baseline, gan, "t")
    block = text.split("t - Boundary AP")[1]
    assert "12.0 ± 2.8" in block and "Mask R-CNN (n=0)" in block


def test_compare_trains_both_models_per_seed_with_the_same_schedule(tmp_path, capsys):
    tool = _tool()
    calls = []
    aps = {("baseline", 0): 0.30, ("baseline", 1): 0.34, ("gan", 0): 0.33, ("gan", 1): 0.35}

    def fake_run(config_file, seed, schedule, run_dir, opts, settings, check_code):
        name = "gan" if config_file.endswith("_gan.yaml") else "baseline"
        calls.append((name, seed, tuple(schedule), tuple(opts)))
        assert settings == {"model": name, "iters": 20} and check_code is True
        write_run(run_dir, aps[(name, seed)], aps[(name, seed)] - 0.1)
        return os.path.join(run_dir, "inference", "synthetic_val")

    root = os.path.join(os.path.dirname(TOOL), "..", "configs", "demo")
    summary = tool.compare(os.path.join(root, "synthetic_R_18_FPN.yaml"),
                           os.path.join(root, "synthetic_R_18_FPN_gan.yaml"),
                           [0, 1], 20, str(tmp_path), opts=["MODEL.DEVICE", "cpu"], run_fn=fake_run,
                           bootstrap_samples=0)
    assert [(c[0], c[1]) for c in calls] == [("baseline", 0), ("gan", 0), ("baseline", 1), ("gan", 1)]
    welch = summary["differences"]["welch"]["gan"]["bbox"]
    assert welch["diff"] == pytest.approx(2.0) and welch["n"] == (2, 2)
    assert welch["low"] < 2.0 < welch["high"] and summary["differences"]["bootstrap"] is None
    # One schedule for both models: the baseline's (150, 185) of 200 iterations and 30 warm-up, scaled to 20.
    assert {c[2] for c in calls} == {("SOLVER.MAX_ITER", "20", "SOLVER.STEPS", "(15, 18)", "SOLVER.WARMUP_ITERS",
                                      "3")}
    assert summary["baseline"]["bbox"]["AP"]["mean"] == pytest.approx(32.0)
    assert summary["gan"]["segm"]["AP"]["mean"] == pytest.approx(24.0)
    text = tables.format_comparison(summary["baseline"], summary["gan"], "t")
    assert "GAN - Mask R-CNN" in text and "+2.0" in text
    assert "32.0 ± 2.8" in text


def test_table_command_line(tmp_path, capsys):
    tool = _tool()
    write_run(str(tmp_path / "base"), 0.2, 0.1)
    write_run(str(tmp_path / "gan"), 0.25, 0.1)
    assert tool.main(["table", "--dataset", "phone", "--baseline", str(tmp_path / "base"), "--gan",
                      str(tmp_path / "gan")]) == 0
    out = capsys.readouterr().out
    assert "Cellphone recycling - A. bbox" in out and "**Cellphone recycling - B. segm (AP in %)**" in out


def test_a_dataset_outside_the_paper_has_no_reference_rows(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.3, 0.25))
    gan = tables.load_results(write_run(str(tmp_path / "gan"), 0.3, 0.25))
    text = tables.make_table("synthetic", base, gan)
    assert "synthetic - A. bbox" in text
    assert _row(text, "Mask R-CNN (paper)") == ["n/a"] * 6
    assert "not one of the paper's datasets" in text


def _add_to_coco_results(folder, dataset, entries):
    path = os.path.join(folder, "inference", dataset, "coco_results.json")
    data = json.load(open(path))
    data.update(entries)
    json.dump(data, open(path, "w"))


def test_glas_metrics_and_boundary_ap_get_their_own_blocks(tmp_path):
    base_dir = write_run(str(tmp_path / "base"), 0.30, 0.25, dataset="glas_testA")
    gan_dir = write_run(str(tmp_path / "gan"), 0.31, 0.27, dataset="glas_testA")
    boundary = {"AP": 0.20, "AP50": 0.5, "AP75": 0.1, "APs": -1.0, "APm": 0.2, "APl": 0.3}
    _add_to_coco_results(base_dir, "glas_testA", {"glas": {"F1": 0.80, "ObjDice": 0.75, "ObjHausdorff": 60.0},
                                                  "boundary": boundary})
    _add_to_coco_results(gan_dir, "glas_testA", {"glas": {"F1": 0.84, "ObjDice": 0.78, "ObjHausdorff": 52.5},
                                                 "boundary": dict(boundary, AP=0.23)})
    paper = {"title": "GlaS", "gan": {"glas": {"F1": 0.86}}}
    text = tables.make_table("glas", tables.load_results(base_dir), tables.load_results(gan_dir), paper=paper)
    glas_block = text.split("GlaS challenge metrics")[1]
    assert _row(glas_block, "Mask R-CNN (ours)") == ["80.0", "75.0", "60.0"]
    assert _row(glas_block, "GAN - Mask R-CNN (ours)") == ["+4.0", "+3.0", "-7.5"]
    assert _row(glas_block, "ours - paper, GAN")[0] == "-2.0"
    boundary_block = text.split("Boundary AP")[1].split("GlaS challenge metrics")[0]
    assert _row(boundary_block, "GAN - Mask R-CNN (ours)")[0] == "+3.0"


def test_runs_without_glas_or_boundary_have_no_such_blocks(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.3, 0.25))
    gan = tables.load_results(write_run(str(tmp_path / "gan"), 0.35, 0.2))
    text = tables.make_table("coco", base, gan)
    assert "GlaS challenge" not in text and "Boundary AP" not in text


def test_table_command_prints_the_papers_phone_bbox_ap_as_reference_rows(tmp_path, capsys):
    tool = _tool()
    write_run(str(tmp_path / "base"), 0.5, 0.52)
    write_run(str(tmp_path / "gan"), 0.55, 0.56)
    assert tool.main(["table", "--dataset", "phone", "--baseline", str(tmp_path / "base"), "--gan",
                      str(tmp_path / "gan"), "--format", "text"]) == 0
    block_a = capsys.readouterr().out.split("B. segm")[0]
    assert _row(block_a, "Mask R-CNN (paper)")[0] == "54.9"
    assert _row(block_a, "GAN (paper)")[0] == "58.4"
    assert _row(block_a, "GAN - Mask R-CNN (paper)")[0] == "+3.6"  # 58.44 - 54.86
    assert _row(block_a, "ours - paper, Mask R-CNN")[0] == "-4.9"  # 50.0 - 54.86
    assert _row(block_a, "ours - paper, GAN")[0] == "-3.4"


def test_glas_null_cell_prints_na_with_its_note(tmp_path):
    base = tables.load_results(write_run(str(tmp_path / "base"), 0.3, 0.25))
    text = tables.make_table("glas", base, base)
    block_b = text.split("B. segm")[1]
    assert _row(block_b, "Mask R-CNN (paper)") == ["58.9", "80.1", "n/a", "n/a", "58.9", "61.9"]
    assert "printed as 0.9814, which cannot be right" in text


# the paper's published numbers as transcribed from the paper (a copy of the project's shared/paper file)
PUBLISHED_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "published_results.json")


def test_paper_results_in_the_package_equal_the_published_json():
    with open(PUBLISHED_JSON) as f:
        published = json.load(f)["tables"]
    for dataset, entry in tables.PAPER_RESULTS.items():
        for model in ("baseline", "gan"):
            assert entry[model] == published[dataset][model], (dataset, model)
        assert entry.get("classes") == published[dataset].get("classes")
    for name, entry in tables.PAPER_ABLATIONS.items():
        rows = {label: values for label, values in entry["rows"].items() if values != [None, None]}
        assert rows == published[name]["rows"], name
        assert entry["columns"] == published[name]["columns"]


def test_ablation_tables_compare_runs_with_tables_5_and_6(tmp_path, capsys):
    tool = _tool()
    for name, ap in (("base", 0.50), ("gan", 0.55), ("adv", 0.52), ("d3", 0.51)):
        write_run(str(tmp_path / name), ap, ap + 0.01)
    assert tool.main(["ablations", "--baseline", str(tmp_path / "base"), "--gan", str(tmp_path / "gan"),
                      "--adv-only", str(tmp_path / "adv"), "--disc3", str(tmp_path / "d3"), "--format", "text"]) == 0
    out = capsys.readouterr().out
    table5, table6 = out.split("discriminator depth (Table 6")
    assert _row(table5, "adversarial loss only (ours)") == ["53.0", "52.0"]  # segm AP, bbox AP
    assert _row(table5, "adversarial loss only (paper)") == ["56.8", "56.2"]
    assert _row(table5, "adversarial loss only: ours - paper") == ["-3.8", "-4.2"]
    assert _row(table5, "combined loss (ours)") == ["56.0", "55.0"]
    assert _row(table5, "combined loss (paper)") == ["n/a", "n/a"]
    assert "Table 1's GAN row (0.5923, 0.5844) is the same run setting" in table5
    assert _row(table6, "3 conv layers (ours)") == ["52.0", "51.0"]
    assert _row(table6, "4 conv layers (ours)") == ["n/a", "n/a"]  # --disc4 not given
    assert _row(table6, "5 conv layers (paper)") == ["59.2", "58.4"]
    assert _row(table6, "5 conv layers (ours)") == ["56.0", "55.0"]
    with pytest.raises(KeyError, match="unknown rows"):
        tables.make_ablation_table("phone_discriminator_depth", {"6 conv layers": None})


def test_paper_command_finds_the_runs_of_configs_paper_and_lists_the_rest(tmp_path, capsys):
    tool = _tool()
    root = tmp_path / "runs"
    write_run(str(root / "phone" / "mask_rcnn_R_101_FPN_phone"), 0.50, 0.52, dataset="phone_val")
    write_run(str(root / "phone" / "mask_rcnn_R_101_FPN_phone_gan_disc4"), 0.53, 0.54, dataset="phone_val")
    assert tool.main(["paper", "--runs-root", str(root), "--format", "text"]) == 0
    out = capsys.readouterr().out
    phone = out.split("Cellphone recycling - A. bbox")[1].split("Cityscapes")[0]
    assert _row(phone, "Mask R-CNN (ours)")[0] == "50.0"
    assert _row(phone, "GAN (ours)") == ["n/a"] * 6
    assert _row(phone, "Mask R-CNN (paper)")[0] == "54.9" and _row(phone, "GAN (paper)")[0] == "58.4"
    assert "mask_rcnn_R_101_FPN_phone_gan (no evaluation output yet)" in out
    for title in ("Cityscapes fine (val) - A. bbox", "COCO 2017 (val) - B. segm", "GlaS - B. segm",
                  "loss ablation (Table 5", "discriminator depth (Table 6"):
        assert title in out
    table6 = out.split("discriminator depth (Table 6")[1]
    assert _row(table6, "4 conv layers (ours)") == ["54.0", "53.0"]


def _with_per_category(folder, per_category):
    """Add per_category_ap ({task: {category: AP}}) to the coco_results.json of a write_run() folder."""
    path = os.path.join(tables.find_results_dir(folder), "coco_results.json")
    with open(path) as f:
        data = json.load(f)
    data["per_category_ap"] = per_category
    with open(path, "w") as f:
        json.dump(data, f)
    return folder


def test_per_category_table_lists_every_category_of_every_run(tmp_path, capsys):
    base = _with_per_category(write_run(str(tmp_path / "base"), 0.3, 0.25), {
        "bbox": {"nucleus": 0.5, "gland": 0.1, "unseen": -1.0}, "segm": {"nucleus": 0.45, "gland": 0.05}})
    gan = _with_per_category(write_run(str(tmp_path / "gan"), 0.3, 0.25), {
        "bbox": {"nucleus": 0.55, "gland": 0.2}, "segm": {"nucleus": 0.5, "gland": 0.1}})
    assert _tool().main(["categories", base, gan, "--labels", "base", "gan", "--format", "text"]) == 0
    text = capsys.readouterr().out
    box_block, mask_block = text.split("Per-category mask AP")
    assert "Per-category box AP" in box_block and "Boundary AP" not in text  # no run has boundary per category
    assert _row(box_block, "nucleus") == ["50.0", "55.0"]
    assert _row(box_block, "unseen") == ["n/a", "n/a"]  # no ground truth in base, not in gan
    assert _row(mask_block, "gland") == ["5.0", "10.0"]

    assert _tool().main(["table", "--dataset", "synthetic", "--baseline", base, "--gan", gan, "--per-category",
                         "--format", "markdown"]) == 0
    assert "| nucleus | 45.0 | 50.0 |" in capsys.readouterr().out


def test_per_category_table_says_when_runs_predate_it(tmp_path):
    old = tables.load_results(write_run(str(tmp_path / "old"), 0.3, 0.25))
    assert "evaluate them again with tools/test_net.py" in tables.make_per_category_table({"old": old})


def test_run_training_records_the_run_reuses_the_same_run_and_refuses_another_in_its_folder(tmp_path, monkeypatch):
    tool = _tool()
    config = os.path.join(os.path.dirname(TOOL), "..", "configs", "demo", "synthetic_R_18_FPN.yaml")
    trained = []

    def fake_train(cmd, stdout, stderr):  # what tools/train_net.py leaves behind: the evaluation output
        trained.append(cmd)
        output_dir = cmd[cmd.index("OUTPUT_DIR") + 1]
        write_run(output_dir, 0.3, 0.2, dataset="synthetic_val")
        return 0

    monkeypatch.setattr(training_runs.subprocess, "call", fake_train)
    run_dir = str(tmp_path / "baseline_seed0_iter20")
    schedule = ["SOLVER.MAX_ITER", "20"]
    first = tool.run_training(config, 0, schedule, run_dir, ["INPUT.MIN_SIZE_TEST", "192"], settings={"n": 400})
    assert len(trained) == 1 and os.path.isfile(os.path.join(run_dir, "study_settings.json"))
    again = tool.run_training(config, 0, schedule, run_dir, ["INPUT.MIN_SIZE_TEST", "192"], settings={"n": 400})
    assert again == first and len(trained) == 1  # reused, not trained again
    with pytest.raises(RuntimeError) as error:
        tool.run_training(config, 1, schedule, run_dir, ["INPUT.MIN_SIZE_TEST", "96"], settings={"n": 400})
    message = str(error.value)
    assert "SOLVER.SEED: recorded 0, now 1" in message and "seed: recorded 0, now 1" in message
    assert "INPUT.MIN_SIZE_TEST: recorded 192, now 96" in message and len(trained) == 1


def test_compare_refuses_stale_run_folders_before_training_any(tmp_path, monkeypatch, capsys):
    tool = _tool()
    monkeypatch.setattr(training_runs.subprocess, "call", lambda *a, **k: pytest.fail("nothing may train"))
    write_run(str(tmp_path / "gan_seed1_iter20"), 0.3, 0.2)  # an old folder without the settings record
    root = os.path.join(os.path.dirname(TOOL), "..", "configs", "demo")
    code = tool.main(["compare", "--config", os.path.join(root, "synthetic_R_18_FPN.yaml"), "--gan-config",
                      os.path.join(root, "synthetic_R_18_FPN_gan.yaml"), "--seeds", "0", "1", "--iters", "20",
                      "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "1 of the 4 run folders cannot be reused; nothing was trained" in err
    assert str(tmp_path / "gan_seed1_iter20") in err and not (tmp_path / "baseline_seed0_iter20").exists()
