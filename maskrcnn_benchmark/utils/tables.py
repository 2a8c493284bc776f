"""The paper's result tables regenerated from our evaluation output, and the multi-seed baseline-vs-GAN comparison.

Inputs are the files the evaluation writes under OUTPUT_DIR/inference/<dataset>/:
  * coco_results.json: {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...}, "max_dets": N}
    (fractions in [0, 1], COCOeval's summary; see data/datasets/evaluation/coco/coco_eval.py), plus "boundary"
    (Boundary AP, same metrics) when TEST.BOUNDARY_AP is on, "glas" {"F1", "ObjDice", "ObjHausdorff"} on GlaS and
    "per_category_ap" {task: {category name: AP, -1 without ground truth}};
  * cityscapes_results.json (Cityscapes only): {"AP", "AP50", "classes": {name: {"AP", "AP50"}}} from
    cityscapesscripts' instance-level evaluation (None for a class without ground truth).
Tables print percentages with one decimal, as the paper does.

Reference numbers of Le et al., "Instance Semantic Segmentation Benefits from Generative Adversarial Networks"
(arXiv 2010.13757) live in PAPER_RESULTS (Tables 1-4) and PAPER_ABLATIONS (Tables 5-6, phone): fractions in [0, 1]
exactly as printed in the paper. Cells that cannot be read reliably from the paper are None, printed as "n/a", and
each table's note says why; nothing is guessed. ``--paper-json`` of tools/make_tables.py replaces one entry.
"""
import json
import math
import os
from collections import OrderedDict

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = (("bbox", "A. bbox"), ("segm", "B. segm"))
# Keys of the GlaS challenge metrics in coco_results.json; data/datasets/evaluation/glas writes them under these
# names (the one definition: this module stays importable without torch).
GLAS_TASK = "glas"  # key of the GlaS numbers in COCOResults.results and coco_results.json
GLAS_METRICS = ("F1", "ObjDice", "ObjHausdorff")  # keys of glas_eval.aggregate_glas_metrics' result
# Key of the per-category AP in coco_results.json ({task: {category name: AP}}), written by the COCO evaluation.
PER_CATEGORY_KEY = "per_category_ap"
PER_CATEGORY_TASKS = (("bbox", "box AP"), ("segm", "mask AP"), ("boundary", "Boundary AP"))
# The 10 Cityscapes instance classes (cityscapesscripts' hasInstances labels, label-id order).
CITYSCAPES_CLASSES = ("person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle",
                      "bicycle")

PAPER = ("Le, Tsetserukou, Youcef-Toumi, Jahanian: Instance Semantic Segmentation Benefits from Generative "
         "Adversarial Networks (arXiv 2010.13757)")

# dataset key -> the paper's table: fractions as printed; None = a cell that cannot be read reliably (see "note").
# Cityscapes (Table 2) gives AP, AP50, AP75 per class as lists in the order of "classes" ("average" first).
PAPER_RESULTS = OrderedDict([
    ("phone", {
        "title": "Cellphone recycling", "table": 1, "split": "validation", "backbone": "R-101-FPN",
        "baseline": {
            "bbox": {"AP": 0.5486, "AP50": 0.7333, "AP75": 0.6261, "APs": 0.3327, "APm": 0.5071, "APl": 0.7462},
            "segm": {"AP": 0.5718, "AP50": 0.7242, "AP75": 0.6439, "APs": 0.3195, "APm": 0.5247, "APl": 0.7735}},
        "gan": {
            "bbox": {"AP": 0.5844, "AP50": 0.7746, "AP75": 0.6448, "APs": 0.3833, "APm": 0.5480, "APl": 0.7586},
            "segm": {"AP": 0.5923, "AP50": 0.7607, "AP75": 0.6525, "APs": 0.3615, "APm": 0.5549, "APl": 0.7846}},
        "note": None,
    }),
    ("cityscapes", {
        "title": "Cityscapes fine (val)", "table": 2, "split": "validation", "backbone": "R-50-FPN",
        "classes": ["average", "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle",
                    "bicycle"],
        "baseline": {
            "bbox": {"AP": [0.406, 0.378, 0.459, 0.545, 0.385, 0.572, 0.499, 0.326, 0.268, 0.32, 0.313],
                     "AP50": [0.73, 0.721, 0.806, 0.84, 0.655, 0.827, 0.839, 0.641, 0.661, 0.682, 0.629],
                     "AP75": [0.373, 0.349, 0.457, 0.575, 0.379, 0.679, 0.484, 0.17, 0.155, 0.208, 0.273]},
            "segm": {"AP": [0.403, 0.329, 0.334, 0.535, 0.391, 0.594, 0.557, 0.353, 0.442, 0.271, 0.219],
                     "AP50": [0.724, 0.693, 0.811, 0.819, 0.624, 0.817, 0.957, 0.642, 0.669, 0.652, 0.561],
                     "AP75": [0.365, 0.28, 0.148, 0.561, 0.417, 0.696, 0.484, 0.288, 0.507, 0.145, 0.121]}},
        "gan": {
            "bbox": {"AP": [0.423, 0.383, 0.482, 0.552, 0.403, 0.562, 0.592, 0.359, 0.27, 0.309, 0.317],
                     "AP50": [0.745, 0.723, 0.821, 0.844, 0.704, 0.787, 0.888, 0.764, 0.632, 0.646, 0.638],
                     "AP75": [0.409, 0.364, 0.497, 0.58, 0.394, 0.638, 0.708, 0.298, 0.112, 0.221, 0.276]},
            "segm": {"AP": [0.416, 0.34, 0.353, 0.545, 0.414, 0.598, 0.597, 0.407, 0.425, 0.258, 0.228],
                     "AP50": [0.736, 0.703, 0.844, 0.825, 0.676, 0.792, 0.888, 0.763, 0.701, 0.59, 0.582],
                     "AP75": [0.398, 0.288, 0.192, 0.576, 0.448, 0.674, 0.595, 0.483, 0.448, 0.143, 0.136]}},
        "note": "Table 2 gives AP, AP50, AP75 only (blocks A and B: its 'average' column). It scores caravan and "
                "trailer, which cityscapesscripts marks ignoreInEval, so its per-class numbers are not "
                "cityscapesscripts' instance evaluation (our block C): compare them with care",
    }),
    ("coco", {
        "title": "COCO 2017 (val)", "table": 3, "split": "val2017", "backbone": "R-101-FPN",
        "baseline": {
            "bbox": None,
            "segm": {"AP": 0.3604, "AP50": 0.5828, "AP75": 0.3835, "APs": 0.1606, "APm": 0.3892, "APl": 0.5299}},
        "gan": {
            "bbox": None,
            "segm": {"AP": 0.3681, "AP50": 0.5855, "AP75": 0.3919, "APs": 0.1685, "APm": 0.3988, "APl": 0.5452}},
        "note": "bbox block n/a: it cannot be read reliably from the paper's text. One row survives, run label "
                "unreadable: AP 0.3992, AP50 0.6116, AP75 0.4387, APs 0.2336, APm 0.4328, APl 0.5183; the caption "
                "says the two runs have comparable bbox AP",
    }),
    ("glas", {
        "title": "GlaS", "table": 4, "split": "test (A and B together)", "backbone": "R-50-FPN",
        "baseline": {
            "bbox": {"AP": 0.5689, "AP50": 0.8174, "AP75": 0.6419, "APm": 0.5940, "APl": 0.5717},
            "segm": {"AP": 0.5892, "AP50": 0.8014, "AP75": None, "APm": 0.589, "APl": 0.6189}},
        "gan": {
            "bbox": {"AP": 0.5855, "AP50": 0.8398, "AP75": 0.6668, "APm": 0.6057, "APl": 0.5983},
            "segm": {"AP": 0.6156, "AP50": 0.8236, "AP75": 0.7054, "APm": 0.6054, "APl": 0.6516}},
        "note": "no APs column (the paper: the test set has no small objects); the baseline's segm AP75 is n/a: it "
                "is printed as 0.9814, which cannot be right (it exceeds AP50)",
    }),
])

# The phone ablations of the appendix: row label -> [segm AP, bbox AP], fractions as printed.
PAPER_ABLATIONS = OrderedDict([
    ("phone_loss_ablation", {
        "title": "Cellphone recycling - loss ablation", "table": 5, "split": "phone validation",
        "columns": ["segm AP", "bbox AP"],
        "rows": OrderedDict([("baseline loss", [0.5718, 0.5486]), ("adversarial loss only", [0.5684, 0.5620]),
                             ("combined loss", [None, None])]),
        "note": "the combined-loss row is not in the paper's text; Table 1's GAN row (0.5923, 0.5844) is the same "
                "run setting",
    }),
    ("phone_discriminator_depth", {
        "title": "Cellphone recycling - discriminator depth", "table": 6, "split": "phone validation",
        "columns": ["segm AP", "bbox AP"],
        "rows": OrderedDict([("3 conv layers", [0.5624, 0.547]), ("4 conv layers", [0.574, 0.55]),
                             ("5 conv layers", [0.5923, 0.5844])]),
        "note": None,
    }),
])


def _paper_metrics(paper, model, iou_type):
    """{metric: fraction or None} of the paper's `model` ("baseline"/"gan") for `iou_type` ("bbox"/"segm"); a
    Cityscapes-style entry (per-class lists) gives its "average" column."""
    block = (paper.get(model) or {}).get(iou_type) or {}
    classes = paper.get("classes")
    if classes and "average" in classes:
        index = classes.index("average")
        return {m: (v[index] if isinstance(v, list) else v) for m, v in block.items()}
    return dict(block)


def _paper_per_class(paper, model, iou_type, metric):
    """{class name: fraction or None} of a Cityscapes-style entry (empty for the others)."""
    classes = paper.get("classes") or []
    values = ((paper.get(model) or {}).get(iou_type) or {}).get(metric)
    if not isinstance(values, list):
        return {}
    return dict(zip(classes, values))


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
        {"bbox": {metric: fraction}, "segm": {...}, optionally "boundary", "glas", "per_category_ap"
        ({task: {category name: fraction, -1 = no ground truth}}) and "cityscapes": {"AP", "AP50", "classes"}} and
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
    # Boundary AP (TEST.BOUNDARY_AP), the GlaS challenge metrics and the AP of each category (older files: none)
    for extra in ("boundary", GLAS_TASK, PER_CATEGORY_KEY):
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


def _paper_note(paper):
    parts = [paper.get("source") or PAPER]
    if paper.get("table"):
        parts.append("Table {}".format(paper["table"]))
    if paper.get("split"):
        parts.append(paper["split"])
    if paper.get("backbone"):
        parts.append(paper["backbone"])
    text = ", ".join(str(p) for p in parts)
    return text + ("; note: " + paper["note"] if paper.get("note") else "")


def make_table(dataset, baseline, gan, paper=None, markdown=False):
    """The paper's table for `dataset` from two runs' results (see load_results).

    Args:
        dataset: key of PAPER_RESULTS ("phone", "cityscapes", "coco", "glas"); any other name (e.g. "synthetic")
            gives our rows only.
        baseline, gan: load_results() dicts of the Mask R-CNN and the GAN run (None: not run, our rows n/a).
        paper: reference entry overriding PAPER_RESULTS[dataset] (same structure: fractions, None = n/a).
    Returns:
        the table as text or Markdown: block A (bbox) and B (segm) with AP, AP50, AP75, APs, APm, APl, and for
        Cityscapes blocks C (masks: ours from cityscapesscripts, AP and AP50) and D (boxes) per class with the
        paper's Table 2 per-class numbers; then notes naming the runs and the paper's table.
    """
    if paper is None:
        paper = PAPER_RESULTS.get(dataset) or {
            "title": dataset, "source": "no reference", "note": "'{}' is not one of the paper's datasets {}: no "
                                                               "reference rows".format(dataset, list(PAPER_RESULTS))}
    baseline, gan = baseline or {}, gan or {}
    title = paper.get("title", dataset)
    blocks = []
    for iou_type, block_title in IOU_TYPES:
        ours = [[_pct(run.get(iou_type, {}).get(m)) for m in COCO_METRICS] for run in (baseline, gan)]
        ref = [[_pct(_paper_metrics(paper, model, iou_type).get(m)) for m in COCO_METRICS]
               for model in ("baseline", "gan")]
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
        ref = [[None if ((paper.get(model) or {}).get(GLAS_TASK) or {}).get(m) is None
                else scale[m] * paper[model][GLAS_TASK][m] for m in GLAS_METRICS] for model in ("baseline", "gan")]
        blocks.append(_render("{} - GlaS challenge metrics (F1, ObjDice in %; ObjHausdorff in px, lower is "
                              "better)".format(title), ["model"] + list(GLAS_METRICS),
                              _block_rows(ours[0], ours[1], ref[0], ref[1]), markdown))
    if dataset == "cityscapes":
        blocks += _cityscapes_blocks(title, baseline, gan, paper, markdown)
    notes = ["baseline: {}".format(baseline.get("path", "not run")), "GAN: {}".format(gan.get("path", "not run"))]
    notes.append("paper: {}".format(_paper_note(paper)))
    notes = "\n".join(("- " if markdown else "  ") + n for n in notes)
    return "\n\n".join(blocks + [notes])


def _cityscapes_blocks(title, baseline, gan, paper, markdown):
    """Per-class blocks: C. masks (ours: cityscapesscripts' AP and AP50; AP75 is not computed there) and D. boxes
    (ours n/a: our evaluation has no per-class box AP), each against Table 2's per-class numbers."""
    header = ["model"] + list(CITYSCAPES_CLASSES) + ["average"]
    columns = list(CITYSCAPES_CLASSES) + ["average"]
    blocks = []
    for block, iou_type, what in (("C", "segm", "masks"), ("D", "bbox", "boxes")):
        for key in ("AP", "AP50", "AP75"):
            ours = []
            for run in (baseline, gan):
                cs = (run.get("cityscapes") or {}) if iou_type == "segm" else {}
                per_class = cs.get("classes", {})
                ours.append([_pct((per_class.get(c) or {}).get(key)) for c in CITYSCAPES_CLASSES] +
                            [_pct(cs.get(key))])
            ref = [[_pct(_paper_per_class(paper, model, iou_type, key).get(c)) for c in columns]
                   for model in ("baseline", "gan")]
            if block == "C":
                source = "ours: cityscapesscripts, which does not score caravan and trailer"
            else:
                source = "ours: not computed per class"
            blocks.append(_render("{} - {}. Cityscapes {} per class, {} ({}; paper: Table 2)".format(
                title, block, key, what, source), header, _block_rows(ours[0], ours[1], ref[0], ref[1]), markdown))
    return blocks


def make_ablation_table(name, runs, paper=None, markdown=False):
    """One of the paper's phone ablations (Table 5, loss; Table 6, discriminator depth) from a set of runs.

    Args:
        name: key of PAPER_ABLATIONS ("phone_loss_ablation", "phone_discriminator_depth").
        runs: {row label of that entry (e.g. "adversarial loss only"): load_results() dict or None (not run)}.
        paper: entry overriding PAPER_ABLATIONS[name].
    Returns:
        text or Markdown: per row, ours, the paper's and ours - paper, for segm AP and bbox AP (in %).
    """
    if paper is None:
        if name not in PAPER_ABLATIONS:
            raise KeyError("unknown ablation {!r}; use one of {}".format(name, list(PAPER_ABLATIONS)))
        paper = PAPER_ABLATIONS[name]
    unknown = sorted(set(runs) - set(paper["rows"]))
    if unknown:
        raise KeyError("{}: unknown rows {}; the table's rows are {}".format(name, unknown, list(paper["rows"])))
    iou_types = [column.split()[0] for column in paper["columns"]]  # "segm AP" -> "segm"
    rows = []
    for label, reference in paper["rows"].items():
        run = runs.get(label) or {}
        ours = [_pct(run.get(iou_type, {}).get("AP")) for iou_type in iou_types]
        ref = [_pct(v) for v in reference]
        rows += [("{} (ours)".format(label), ours, False), ("{} (paper)".format(label), ref, False),
                 ("{}: ours - paper".format(label), [_diff(o, p) for o, p in zip(ours, ref)], True)]
    text = _render("{} (Table {}; AP in %)".format(paper["title"], paper.get("table", "?")),
                   ["run"] + list(paper["columns"]), rows, markdown)
    notes = ["{}: {}".format(label, (runs.get(label) or {}).get("path", "not run")) for label in paper["rows"]]
    notes.append("paper: {}".format(_paper_note(paper)))
    return text + "\n\n" + "\n".join(("- " if markdown else "  ") + n for n in notes)


def render_runs(title, runs, markdown=False):
    """Our AP of several runs side by side (no reference): bbox, segm and Boundary AP in %.

    Args:
        runs: {label: load_results() dict or None (not run: n/a)}.
    """
    columns = (("bbox", "bbox AP"), ("segm", "segm AP"), ("boundary", "Boundary AP"))
    rows = [(label, [_pct(((run or {}).get(key) or {}).get("AP")) for key, _ in columns], False)
            for label, run in runs.items()]
    notes = ["{}: {}".format(label, (run or {}).get("path", "not run")) for label, run in runs.items()]
    return _render(title + " (AP in %)", ["run"] + [name for _, name in columns], rows, markdown) + "\n\n" + \
        "\n".join(("- " if markdown else "  ") + n for n in notes)


def make_per_category_table(runs, markdown=False):
    """The AP of each category (in %), one block per task (box, mask, Boundary AP): a row per category, a column per
    run.

    Args:
        runs: {label: load_results() dict or None (not run)}. Categories are listed in the order of the first run
            that has them; a category without ground truth (AP -1) or not in a run prints n/a.
    Returns:
        the blocks as text or Markdown; a note when no run has per-category AP (coco_results.json written before
        it existed: evaluate again with tools/test_net.py).
    """
    runs = OrderedDict((label, run or {}) for label, run in runs.items())
    blocks = []
    for task, name in PER_CATEGORY_TASKS:
        tables = [(run.get(PER_CATEGORY_KEY) or {}).get(task) or {} for run in runs.values()]
        categories = []
        for table in tables:
            categories += [c for c in table if c not in categories]
        if not categories:
            continue
        rows = [(category, [_pct(table.get(category)) for table in tables], False) for category in categories]
        blocks.append(_render("Per-category {} (AP in %; n/a: no ground truth)".format(name),
                              ["category"] + list(runs), rows, markdown))
    notes = ["{}: {}".format(label, run.get("path", "not run")) for label, run in runs.items()]
    if not blocks:
        blocks.append("No per-category AP in these runs' coco_results.json (written before it was added): evaluate "
                      "them again with tools/test_net.py")
    return "\n\n".join(blocks) + "\n\n" + "\n".join(("- " if markdown else "  ") + n for n in notes)


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


# ---------------------------------------------------------------------------------------------- multi-variant study
STUDY_COLUMNS = (("bbox", "box AP"), ("segm", "mask AP"), ("boundary", "Boundary AP"))


def format_study(stats_by_variant, title, markdown=False):
    """Table of several variants' AP (mean ± sample std over seeds, in %), then each variant's difference of means
    to the first one (the baseline).

    Args:
        stats_by_variant: OrderedDict variant name -> aggregate_seeds() output; the first is the reference.
    """
    def cell(stats):
        if stats is None or stats["mean"] is None:
            return "n/a"
        if stats["n"] == 1:  # one seed has no spread to show: not "± 0.0"
            return "{:.1f}".format(stats["mean"])
        return "{:.1f} ± {:.1f}".format(stats["mean"], stats["std"])

    names = list(stats_by_variant)
    header = ["variant", "n"] + [name for _, name in STUDY_COLUMNS]
    rows = []
    for name in names:
        stats = stats_by_variant[name]
        n = max((stats.get(key, {}).get("AP", {}).get("n", 0) for key, _ in STUDY_COLUMNS), default=0)
        rows.append([name, str(n)] + [cell(stats.get(key, {}).get("AP")) for key, _ in STUDY_COLUMNS])
    reference = stats_by_variant[names[0]] if names else {}
    for name in names[1:]:
        stats = stats_by_variant[name]
        means = [(stats.get(key, {}).get("AP") or {}).get("mean") for key, _ in STUDY_COLUMNS]
        base = [(reference.get(key, {}).get("AP") or {}).get("mean") for key, _ in STUDY_COLUMNS]
        rows.append(["{} - {}".format(name, names[0]), ""] + [_cell(_diff(m, b), signed=True)
                                                               for m, b in zip(means, base)])
    name = "{} (AP in %, mean ± sample std over seeds)".format(title)
    if markdown:
        lines = ["**{}**".format(name), "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---", "---:"] + ["---:"] * len(STUDY_COLUMNS)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(  # noqa: E731
        c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([name, fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in rows])
