"""The paper's result tables regenerated from our evaluation output, and the multi-seed baseline-vs-GAN comparison.

Inputs are the files the evaluation writes under OUTPUT_DIR/inference/<dataset>/:
  * coco_results.json: {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...}, "max_dets": N}
    (fractions in [0, 1], COCOeval's summary; see data/datasets/evaluation/coco/coco_eval.py), plus "boundary"
    (Boundary AP, same metrics) when TEST.BOUNDARY_AP is on and "glas" {"F1", "ObjDice", "ObjHausdorff"} on GlaS;
  * cityscapes_results.json (Cityscapes only): {"AP", "AP50", "classes": {name: {"AP", "AP50"}}} from
    cityscapesscripts' instance-level evaluation (None for a class without ground truth).
Tables print percentages with one decimal, as the paper does.

Reference numbers of Le et al., "Instance Semantic Segmentation Benefits from Generative Adversarial Networks"
(arXiv 2010.13757) live in PAPER_RESULTS. The searchable sources available when this was written (the paper's
abstract pages, the authors' GAN_Mask-RCNN repository whose README is empty) do not contain its tables, so every
published number is left as None and printed as "n/a" with a note; nothing is guessed. Supply them with
``--paper-json`` (same structure as one PAPER_RESULTS entry) or fill PAPER_RESULTS from the paper's PDF.
"""
import json
import math
import os
from collections import OrderedDict

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = (("bbox", "A. bbox"), ("segm", "B. segm"))
# Keys of the GlaS challenge metrics in coco_results.json (data/datasets/evaluation/glas).
GLAS_TASK = "glas"
GLAS_METRICS = ("F1", "ObjDice", "ObjHausdorff")
# The 10 Cityscapes instance classes (cityscapesscripts' hasInstances labels, label-id order).
CITYSCAPES_CLASSES = ("person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle",
                      "bicycle")

_NOT_FOUND = ("published numbers not found in the sources searched (arXiv 2010.13757 abstract pages, "
              "github.com/quangle2110/GAN_Mask-RCNN README); pass --paper-json to add them")


def _empty_reference(title, per_class=False):
    entry = {
        "title": title,
        "source": None,
        "note": _NOT_FOUND,
        "baseline": {"bbox": {}, "segm": {}},
        "gan": {"bbox": {}, "segm": {}},
    }
    if per_class:
        entry["baseline"]["cityscapes"] = {}
        entry["gan"]["cityscapes"] = {}
    return entry


# dataset key -> reference entry. Values would be percentages as printed in the paper; {} means not known.
PAPER_RESULTS = OrderedDict([
    ("phone", _empty_reference("Cellphone recycling")),
    ("cityscapes", _empty_reference("Cityscapes fine (val)", per_class=True)),
    ("coco", _empty_reference("COCO 2017 (val)")),
    ("glas", _empty_reference("GlaS")),
])


# ---------------------------------------------------------------------------------------------- reading results
def find_results_dir(path):
    """The folder holding coco_results.json for `path`: that file, its folder, or an OUTPUT_DIR with exactly one
    inference/<dataset>/ result.

    Raises:
        FileNotFoundError naming what was looked for; ValueError when an OUTPUT_DIR has several datasets.
    """
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(path, "coco_results.json")):
        return path
    inference = os.path.join(path, "inference")
    candidates = []
    if os.path.isdir(inference):
        candidates = sorted(os.path.join(inference, d) for d in os.listdir(inference)
                            if os.path.isfile(os.path.join(inference, d, "coco_results.json")))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(
            "No evaluation output at '{}': expected '{}' or '{}' (written by tools/test_net.py or the test at the "
            "end of tools/train_net.py)".format(path, os.path.join(path, "coco_results.json"),
                                                os.path.join(inference, "<dataset>", "coco_results.json")))
    raise ValueError("'{}' has results for several datasets {}; pass one of these folders instead".format(
        path, candidates))


def load_results(path):
    """Read one run's evaluation output.

    Returns:
        {"bbox": {metric: fraction}, "segm": {...}, optionally "cityscapes": {"AP", "AP50", "classes"}} and
        "path": the folder read.
    """
    folder = find_results_dir(path)
    coco_file = os.path.join(folder, "coco_results.json")
    with open(coco_file) as f:
        try:
            coco = json.load(f)
        except ValueError as e:
            raise ValueError("'{}' is not valid JSON: {}".format(coco_file, e)) from e
    if not isinstance(coco, dict) or not any(t in coco for t, _ in IOU_TYPES):
        raise ValueError("'{}' has no 'bbox' or 'segm' entry; expected the coco_results.json of our COCO "
                         "evaluation".format(coco_file))
    results = {"path": folder}
    for iou_type, _ in IOU_TYPES:
        if iou_type in coco:
            results[iou_type] = {m: coco[iou_type].get(m) for m in COCO_METRICS}
    for extra in ("boundary", GLAS_TASK):  # Boundary AP (TEST.BOUNDARY_AP) and the GlaS challenge metrics
        if isinstance(coco.get(extra), dict):
            results[extra] = dict(coco[extra])
    cs_file = os.path.join(folder, "cityscapes_results.json")
    if os.path.isfile(cs_file):
        with open(cs_file) as f:
            results["cityscapes"] = json.load(f)
    return results


# ---------------------------------------------------------------------------------------------- formatting
def _pct(value):
    """Fraction -> percentage; None/-1 (not computed) -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0:
        return None
    return 100.0 * value


def _diff(a, b):
    return None if a is None or b is None else a - b


def _cell(value, signed=False):
    if value is None:
        return "n/a"
    return "{:+.1f}".format(value) if signed else "{:.1f}".format(value)


def _render(title, header, rows, markdown):
    """rows: list of (label, values, signed) -> text (aligned columns) or a Markdown table."""
    cells = [[label] + [_cell(v, signed) for v in values] for label, values, signed in rows]
    if markdown:
        lines = ["**{}**".format(title), "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header] + cells) for i in range(len(header))]
    fmt = lambda row: "  ".join(  # noqa: E731
        str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row))
    return "\n".join([title, fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in cells])


def _block_rows(ours_base, ours_gan, paper_base, paper_gan):
    """Rows of one block from four lists of percentages (None where unknown)."""
    rows = [
        ("Mask R-CNN (ours)", ours_base, False),
        ("GAN (ours)", ours_gan, False),
        ("GAN - Mask R-CNN (ours)", [_diff(g, b) for g, b in zip(ours_gan, ours_base)], True),
        ("Mask R-CNN (paper)", paper_base, False),
        ("GAN (paper)", paper_gan, False),
        ("GAN - Mask R-CNN (paper)", [_diff(g, b) for g, b in zip(paper_gan, paper_base)], True),
        ("ours - paper, Mask R-CNN", [_diff(o, p) for o, p in zip(ours_base, paper_base)], True),
        ("ours - paper, GAN", [_diff(o, p) for o, p in zip(ours_gan, paper_gan)], True),
    ]
    return rows


def make_table(dataset, baseline, gan, paper=None, markdown=False):
    """The paper's table for `dataset` from two runs' results (see load_results).

    Args:
        dataset: key of PAPER_RESULTS ("phone", "cityscapes", "coco", "glas"); any other name (e.g. "synthetic")
            gives our rows only.
        baseline, gan: load_results() dicts of the Mask R-CNN and the GAN run.
        paper: reference entry overriding PAPER_RESULTS[dataset] (percentages; missing metrics are "n/a").
    Returns:
        the table as text or Markdown: block A (bbox) and B (segm) with AP, AP50, AP75, APs, APm, APl, and for
        Cityscapes block C with cityscapesscripts' AP and AP50 per class.
    """
    if paper is None:
        paper = PAPER_RESULTS.get(dataset) or {
            "title": dataset, "note": "'{}' is not one of the paper's datasets {}: no reference rows".format(
                dataset, list(PAPER_RESULTS))}
    title = paper.get("title", dataset)
    blocks = []
    for iou_type, block_title in IOU_TYPES:
        ours = [[_pct(run.get(iou_type, {}).get(m)) for m in COCO_METRICS] for run in (baseline, gan)]
        ref = [[paper.get(model, {}).get(iou_type, {}).get(m) for m in COCO_METRICS] for model in ("baseline", "gan")]
        blocks.append(_render("{} - {} (AP in %)".format(title, block_title), ["model"] + list(COCO_METRICS),
                              _block_rows(ours[0], ours[1], ref[0], ref[1]), markdown))
    if baseline.get("boundary") or gan.get("boundary"):
        # Not in the paper (Boundary IoU came later); ours only, for the boundary-quality claim.
        ours = [[_pct((run.get("boundary") or {}).get(m)) for m in COCO_METRICS] for run in (baseline, gan)]
        none = [None] * len(COCO_METRICS)
        blocks.append(_render("{} - Boundary AP (Cheng et al. 2021; AP in %)".format(title),
                              ["model"] + list(COCO_METRICS), _block_rows(ours[0], ours[1], none, none), markdown))
    if baseline.get(GLAS_TASK) or gan.get(GLAS_TASK):
        # F1 and object Dice in %, object Hausdorff in pixels (lower is better).
        scale = {"F1": 100.0, "ObjDice": 100.0, "ObjHausdorff": 1.0}
        ours = [[None if (run.get(GLAS_TASK) or {}).get(m) is None else scale[m] * run[GLAS_TASK][m]
                 for m in GLAS_METRICS] for run in (baseline, gan)]
        ref = [[paper.get(model, {}).get(GLAS_TASK, {}).get(m) for m in GLAS_METRICS] for model in ("baseline", "gan")]
        blocks.append(_render("{} - GlaS challenge metrics (F1, ObjDice in %; ObjHausdorff in px, lower is "
                              "better)".format(title), ["model"] + list(GLAS_METRICS),
                              _block_rows(ours[0], ours[1], ref[0], ref[1]), markdown))
    if dataset == "cityscapes":
        header = ["model"] + list(CITYSCAPES_CLASSES) + ["average"]
        for key in ("AP", "AP50"):
            ours = []
            for run in (baseline, gan):
                cs = run.get("cityscapes") or {}
                per_class = cs.get("classes", {})
                ours.append([_pct((per_class.get(c) or {}).get(key)) for c in CITYSCAPES_CLASSES] +
                            [_pct(cs.get(key))])
            ref = []
            for model in ("baseline", "gan"):
                cs = paper.get(model, {}).get("cityscapes", {})
                ref.append([(cs.get(c) or {}).get(key) for c in CITYSCAPES_CLASSES] + [cs.get("average", {}).get(key)])
            blocks.append(_render(
                "{} - C. Cityscapes instance-level {} per class (cityscapesscripts; caravan and trailer are "
                "ignoreInEval there, so n/a)".format(title, key), header,
                _block_rows(ours[0], ours[1], ref[0], ref[1]), markdown))
    notes = ["baseline: {}".format(baseline.get("path", "?")), "GAN: {}".format(gan.get("path", "?"))]
    notes.append("paper: {}".format(paper.get("source") or paper.get("note") or "n/a"))
    notes = "\n".join(("- " if markdown else "  ") + n for n in notes)
    return "\n\n".join(blocks + [notes])


# ---------------------------------------------------------------------------------------------- seed comparison
def aggregate_seeds(runs):
    """Mean and spread of each AP over seeds.

    Args:
        runs: list of load_results() dicts (one per seed) of the same model.
    Returns:
        {iou_type: {metric: {"mean", "std" (sample std, 0 for one seed), "min", "max", "n"}}} in percent for
        "bbox", "segm" and, when any run has it, "boundary" (Boundary AP), ignoring runs where a metric was not
        computed.
    """
    out = OrderedDict()
    iou_types = [iou_type for iou_type, _ in IOU_TYPES]
    if any(run.get("boundary") for run in runs):
        iou_types.append("boundary")
    for iou_type in iou_types:
        per_metric = OrderedDict()
        for metric in COCO_METRICS:
            values = [_pct(run.get(iou_type, {}).get(metric)) for run in runs]
            values = [v for v in values if v is not None]
            if not values:
                per_metric[metric] = {"mean": None, "std": None, "min": None, "max": None, "n": 0}
                continue
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            per_metric[metric] = {"mean": mean, "std": std, "min": min(values), "max": max(values),
                                  "n": len(values)}
        out[iou_type] = per_metric
    return out


def format_comparison(baseline_stats, gan_stats, title, markdown=False):
    """Table of mean +- std (and GAN - baseline of the means) per metric: blocks A (bbox), B (segm) and, when either
    model's statistics have it, Boundary AP."""
    def cell(stats):
        if stats["mean"] is None:
            return "n/a"
        return "{:.1f} ± {:.1f}".format(stats["mean"], stats["std"])

    empty = {m: {"mean": None, "std": None, "n": 0} for m in COCO_METRICS}
    block_titles = list(IOU_TYPES)
    if "boundary" in baseline_stats or "boundary" in gan_stats:
        block_titles.append(("boundary", "Boundary AP"))
    blocks = []
    for iou_type, block_title in block_titles:
        b, g = baseline_stats.get(iou_type, empty), gan_stats.get(iou_type, empty)
        header = ["model"] + list(COCO_METRICS)
        rows = [["Mask R-CNN (n={})".format(b["AP"]["n"])] + [cell(b[m]) for m in COCO_METRICS],
                ["GAN (n={})".format(g["AP"]["n"])] + [cell(g[m]) for m in COCO_METRICS],
                ["GAN - Mask R-CNN"] + [_cell(_diff(g[m]["mean"], b[m]["mean"]), signed=True)
                                        for m in COCO_METRICS]]
        name = "{} - {} (AP in %, mean ± sample std over seeds)".format(title, block_title)
        if markdown:
            lines = ["**{}**".format(name), "", "| " + " | ".join(header) + " |",
                     "|" + "|".join(["---"] + ["---:"] * len(COCO_METRICS)) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
            fmt = lambda r: "  ".join(  # noqa: E731
                c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
            lines = [name, fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
