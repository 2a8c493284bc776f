"""How sure a difference between two models is: a Welch interval over training seeds and, on one test set, a
paired bootstrap interval over test images (data/datasets/evaluation/coco/bootstrap.py), and the table of both.

The two answer different questions. Welch's interval asks whether retraining with other seeds (and, with
``--data-seeds``, other training draws) would give the same gap; it needs at least two runs per model. The
bootstrap asks how much of the gap comes from which images happen to be in the test set, for the trained models at
hand; it says nothing about retraining.
"""
import json
import math
import os
from collections import OrderedDict

# (key of load_results()/aggregate_seeds(), column name) of the AP the differences are reported for.
DIFFERENCE_TASKS = (("bbox", "box AP"), ("segm", "mask AP"), ("boundary", "Boundary AP"))


def welch_interval_from_stats(mean_ref, std_ref, n_ref, mean_other, std_other, n_other, confidence=0.95):
    """Welch's interval of mean_other - mean_ref from means, sample standard deviations and counts.

    Returns:
        {"diff", "low", "high", "df" (Welch-Satterthwaite), "p" (two-sided Welch t-test), "n": (n_ref, n_other),
        "confidence",
        "note"}; low/high/df/p are None, with the reason in "note", when a model has fewer than 2 runs (no spread
        to estimate) or neither model varies over its runs.
    """
    from scipy import stats

    diff = mean_other - mean_ref
    out = {"diff": diff, "low": None, "high": None, "df": None, "p": None, "n": (n_ref, n_other), "note": None,
           "confidence": confidence}
    if n_ref < 2 or n_other < 2:
        out["note"] = "n<2: no interval from {} and {} run(s)".format(n_ref, n_other)
        return out
    var_ref, var_other = std_ref ** 2 / n_ref, std_other ** 2 / n_other
    se = math.sqrt(var_ref + var_other)
    if se == 0:
        out["note"] = "no spread over the runs of either model"
        return out
    df = (var_ref + var_other) ** 2 / (var_ref ** 2 / (n_ref - 1) + var_other ** 2 / (n_other - 1))
    half = stats.t.ppf(0.5 + confidence / 2.0, df) * se
    p = stats.ttest_ind_from_stats(mean_other, std_other, n_other, mean_ref, std_ref, n_ref, equal_var=False).pvalue
    out.update(low=diff - half, high=diff + half, df=df, p=float(p))
    return out


def welch_interval(reference, other, confidence=0.95):
    """Welch's interval of mean(other) - mean(reference) from the two lists of per-run values (e.g. AP per seed).

    The p-value is scipy.stats.ttest_ind(other, reference, equal_var=False)'s. See welch_interval_from_stats.
    """
    from scipy import stats

    reference, other = [float(v) for v in reference], [float(v) for v in other]
    if not reference or not other:
        raise ValueError("welch_interval needs at least one value per model, got {} and {}".format(
            len(reference), len(other)))

    def mean_std(values):
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return mean, std

    out = welch_interval_from_stats(*mean_std(reference), len(reference), *mean_std(other), len(other),
                                    confidence=confidence)
    if out["p"] is not None:
        out["p"] = float(stats.ttest_ind(other, reference, equal_var=False).pvalue)
    return out


def paired_interval(before, after, confidence=0.95):
    """t interval of the mean change after - before over paired runs (e.g. one model's AP at two iterations, per
    seed), with scipy.stats.ttest_rel's p-value.

    Returns:
        {"diff", "low", "high", "df", "p", "n", "note", "confidence"}; no interval (None, reason in "note") for fewer
        than 2 pairs or pairs that all changed by the same amount.
    """
    from scipy import stats

    if len(before) != len(after):
        raise ValueError("paired_interval needs as many values before as after, got {} and {}".format(
            len(before), len(after)))
    changes = [float(a) - float(b) for b, a in zip(before, after)]
    n = len(changes)
    if n == 0:
        raise ValueError("paired_interval needs at least one pair")
    mean = sum(changes) / n
    out = {"diff": mean, "low": None, "high": None, "df": None, "p": None, "n": n, "note": None,
           "confidence": confidence}
    if n < 2:
        out["note"] = "n<2: no interval from 1 pair"
        return out
    std = math.sqrt(sum((c - mean) ** 2 for c in changes) / (n - 1))
    if std == 0:
        out["note"] = "every pair changed by the same amount"
        return out
    half = stats.t.ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    out.update(low=mean - half, high=mean + half, df=n - 1,
               p=float(stats.ttest_rel([float(a) for a in after], [float(b) for b in before]).pvalue))
    return out


def _ap_values(runs, task):
    """Per-run AP in % of `task` (runs without it left out)."""
    values = [((run or {}).get(task) or {}).get("AP") for run in runs]
    return [100.0 * v for v in values if v is not None and v >= 0]


def seed_differences(results_by_model, reference=None, confidence=0.95):
    """Welch intervals of every model against the reference, per task.

    Args:
        results_by_model: OrderedDict model name -> list of load_results() dicts (one per seed).
        reference: name of the reference model (default: the first).
    Returns:
        OrderedDict model name -> OrderedDict task -> welch_interval() output (in AP points), for the tasks both
        models have; the reference itself is left out.
    """
    names = list(results_by_model)
    reference = reference or names[0]
    out = OrderedDict()
    for name in names:
        if name == reference:
            continue
        per_task = OrderedDict()
        for task, _ in DIFFERENCE_TASKS:
            ref, other = _ap_values(results_by_model[reference], task), _ap_values(results_by_model[name], task)
            if ref and other:
                per_task[task] = welch_interval(ref, other, confidence)
        out[name] = per_task
    return out


def bootstrap_differences(folders_by_model, ann_file, reference=None, num_samples=1000, seed=0, confidence=0.95,
                          tasks=None):
    """Paired bootstrap intervals over test images of every model against the reference, per task.

    Args:
        folders_by_model: OrderedDict model name -> list of evaluation output folders (inference/<dataset>/, one
            per seed), all evaluated on the ground truth `ann_file`.
        tasks: subset of "bbox", "segm", "boundary" (default: those every run's coco_results.json has).
    Returns:
        OrderedDict model name -> OrderedDict task -> paired_bootstrap() output (mean over seeds of each model).
    """
    from maskrcnn_benchmark.data.datasets.evaluation.coco import bootstrap

    names = list(folders_by_model)
    reference = reference or names[0]
    if tasks is None:
        present = []
        for folders in folders_by_model.values():
            for folder in folders:
                with open(os.path.join(folder, "coco_results.json")) as f:
                    present.append(set(json.load(f)))
        tasks = [task for task, _ in DIFFERENCE_TASKS if all(task in p for p in present)]
    coco_gt = bootstrap.load_coco_gt(ann_file)
    matches = {(name, task): [bootstrap.load_matches(folder, ann_file, task, coco_gt) for folder in folders]
               for name, folders in folders_by_model.items() for task in tasks}
    out = OrderedDict()
    for name in names:
        if name != reference:
            out[name] = OrderedDict((task, bootstrap.paired_bootstrap(matches[reference, task], matches[name, task],
                                                            num_samples, seed, confidence)) for task in tasks)
    return out


def _signed(value):
    return "n/a" if value is None else "{:+.1f}".format(value)


def _interval(entry):
    if entry is None:
        return "n/a"
    if entry.get("low") is None or (isinstance(entry["low"], float) and math.isnan(entry["low"])):
        return "n/a ({})".format(entry["note"]) if entry.get("note") else "n/a"
    return "[{:+.1f}, {:+.1f}]".format(entry["low"], entry["high"])


def format_differences(welch, bootstrap, title, reference="baseline", markdown=False):
    """Table of each model's AP difference to the reference with its intervals, one row per (model, task).

    Args:
        welch: seed_differences() output; bootstrap: bootstrap_differences() output or None (column n/a).
    Columns: difference of the means (AP points), 95% interval by Welch over seeds, the Welch p-value and degrees
    of freedom, and the paired bootstrap interval over test images.
    """
    level = None
    for per_task in list(welch.values()) + list((bootstrap or {}).values()):
        for entry in per_task.values():
            level = level or entry.get("confidence")
    level = int(round(100 * (level or 0.95)))
    header = ["difference", "AP", "diff", "{}% CI, Welch over seeds".format(level), "p", "df",
              "{}% CI, paired bootstrap over test images".format(level)]
    names = {task: name for task, name in DIFFERENCE_TASKS}
    rows = []
    for model, per_task in welch.items():
        for task, entry in per_task.items():
            boot = ((bootstrap or {}).get(model) or {}).get(task)
            rows.append(["{} - {}".format(model, reference), names.get(task, task), _signed(entry["diff"]),
                         _interval(entry), "n/a" if entry["p"] is None else "{:.2f}".format(entry["p"]),
                         "n/a" if entry["df"] is None else "{:.1f}".format(entry["df"]), _interval(boot)])
    boot_note = "not computed"
    for per_task in (bootstrap or {}).values():
        for entry in per_task.values():
            boot_note = "{} resamples of the {} test images (seed {}), mean over seeds of each model".format(
                entry["num_samples"], entry["num_images"], entry["seed"])
    name = "{} - differences to {} (AP points)".format(title, reference)
    note = "Welch: t interval of the difference of means, Welch-Satterthwaite df; bootstrap: {}".format(boot_note)
    if markdown:
        lines = ["**{}**".format(name), "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + ["", note])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(  # noqa: E731
        c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([name, fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in rows] + [note])
