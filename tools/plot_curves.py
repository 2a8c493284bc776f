#!/usr/bin/env python
"""Plot a run's training curves: detector (G) losses, discriminator (D) losses, D's probabilities, D's scale, AP and
the learning rates.

    python tools/plot_curves.py output/nuclei_R_18_FPN output/nuclei_R_18_FPN_gan --labels baseline GAN \\
        --output curves.png

Each argument is a run's OUTPUT_DIR. Losses come from ``OUTPUT_DIR/metrics.json`` (JSON lines written by
engine/trainer.py: {"iteration", "losses": {name: value}, "loss", "lr", ...} per logged iteration and
{"iteration", "eval": {"<dataset>/<task>/<metric>": value}} per periodic evaluation; a resumed run appends, and the
last record of an iteration wins). AP comes from those "eval" records, from the periodic evaluations' files
``OUTPUT_DIR/inference/<dataset>/iter_<N>/coco_results.json`` (SOLVER.TEST_PERIOD) and from the final
``OUTPUT_DIR/inference/<dataset>/coco_results.json``, placed at the run's last logged iteration. Two runs are
overlaid (solid and dashed lines). One PNG with six panels is written. D's scale (the mean |gamma| of each
discriminator's BatchNorms and the mean norm of D_m's embedding of the real inputs) is drawn relative to its first
logged value, so drift in either shows as a line leaving 1; the legend gives that first value.
"""
import argparse
import glob
import json
import os
import re
import sys

AP_TASKS = ("bbox", "segm", "boundary")  # the AP curves drawn, when the evaluation reported them
D_PROB_KEYS = ("d_box_real_prob", "d_box_fake_prob")
# D's scale measures (engine/adversarial.py logs them)
D_SCALE_KEYS = ("d_box_bn_gamma", "d_mask_bn_gamma", "d_mask_real_embedding_norm")
D_SCALE_PANEL = "D scale / its first value (mean |BN gamma|, D_m real-embedding norm)"
LR_PANEL = "learning rate (G: lr, D: d_lr)"


def _read_records(run_dir):
    """metrics.json as two dicts iteration -> record: training records ("losses") and evaluation records ("eval")."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError("No metrics.json in '{}': pass a run's OUTPUT_DIR (tools/train_net.py writes it "
                                "there)".format(run_dir))
    training, evaluations = {}, {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                iteration = int(record["iteration"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError("{} line {}: not a metrics record with an 'iteration' ({})".format(
                    path, line_number, e)) from e
            # A resumed run logs some iterations again: keep the latest.
            if "eval" in record:
                evaluations[iteration] = record["eval"]
            else:
                training[iteration] = record
    return training, evaluations


def read_metrics(run_dir):
    """The run's logged iterations.

    Returns:
        dict name -> (list[int] iterations, list[float] values) for every loss in "losses", the total "loss" and
        "lr", iterations ascending.
    Raises:
        FileNotFoundError naming the missing metrics.json; ValueError naming the file and line of a bad record.
    """
    records, _ = _read_records(run_dir)
    series = {}
    for iteration in sorted(records):
        record = records[iteration]
        values = dict(record.get("losses", {}))
        for key in ("loss", "lr"):
            if key in record:
                values[key] = record[key]
        for name, value in values.items():
            its, vals = series.setdefault(name, ([], []))
            its.append(iteration)
            vals.append(float(value))
    return series


def read_ap(run_dir, last_iteration=None):
    """AP after each evaluation of the run.

    Returns:
        dict "<dataset>/<task>" -> (list[int] iterations, list[float] AP) for the tasks of AP_TASKS found
        (metrics.json "eval" records and coco_results.json files); the final evaluation counts at
        ``last_iteration`` (skipped when None).
    """
    curves = {}
    for iteration, metrics in _read_records(run_dir)[1].items():
        for name, value in metrics.items():
            parts = name.split("/")
            if len(parts) >= 3 and parts[-1] == "AP" and parts[-2] in AP_TASKS:
                curves.setdefault("{}/{}".format("/".join(parts[:-2]), parts[-2]), {})[iteration] = float(value)
    for results_file in glob.glob(os.path.join(run_dir, "inference", "*", "**", "coco_results.json"),
                                  recursive=True):
        relative = os.path.relpath(results_file, os.path.join(run_dir, "inference")).split(os.sep)
        dataset = relative[0]
        match = re.fullmatch(r"iter_(\d+)", relative[-2]) if len(relative) == 3 else None
        if match:
            iteration = int(match.group(1))
        elif len(relative) == 2 and last_iteration is not None:
            iteration = last_iteration
        else:
            continue
        with open(results_file) as f:
            results = json.load(f)
        for task in AP_TASKS:
            if isinstance(results.get(task), dict) and "AP" in results[task]:
                curves.setdefault("{}/{}".format(dataset, task), {})[iteration] = float(results[task]["AP"])
    return {name: (sorted(points), [points[i] for i in sorted(points)]) for name, points in curves.items()}


def _smooth(values, window):
    if window <= 1:
        return values
    out = []
    for k in range(len(values)):
        chunk = values[max(0, k - window + 1):k + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_runs(run_dirs, labels, output, smooth=1):
    """Draw the six panels for 1 or 2 runs into ``output`` (PNG); returns the dict of what was plotted
    {panel title: [curve labels]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, 3, figsize=(15, 6.5), dpi=80)
    panels = {
        "detector (G) losses": axes[0, 0], "discriminator (D) losses": axes[0, 1],
        "D_b probability (real / fake boxes)": axes[0, 2], D_SCALE_PANEL: axes[1, 0],
        "AP on the test set": axes[1, 1], LR_PANEL: axes[1, 2],
    }
    plotted = {title: [] for title in panels}
    colors = {}

    palette = plt.get_cmap("tab20").colors  # a run logs up to ~13 series; 10 default colours would repeat

    def color_of(name):
        if name not in colors:
            colors[name] = palette[(2 * len(colors)) % 20 + (len(colors) // 10) % 2]
        return colors[name]

    for run_index, (run_dir, label) in enumerate(zip(run_dirs, labels)):
        style = styles[run_index % len(styles)]
        series = read_metrics(run_dir)
        last_iteration = max((its[-1] for its, _ in series.values() if its), default=None)
        for name, (its, vals) in sorted(series.items()):
            if name == "lr" or not name.startswith("loss"):
                continue
            title = "discriminator (D) losses" if name.endswith("_disc") else "detector (G) losses"
            curve = "{} {}".format(label, name)
            panels[title].plot(its, _smooth(vals, smooth), style, color=color_of(name), label=curve, linewidth=1.2)
            plotted[title].append(curve)
        for name in D_PROB_KEYS:
            if name in series:
                its, vals = series[name]
                curve = "{} {}".format(label, name)
                panels["D_b probability (real / fake boxes)"].plot(its, _smooth(vals, smooth), style,
                                                                   color=color_of(name), label=curve)
                plotted["D_b probability (real / fake boxes)"].append(curve)
        for name in D_SCALE_KEYS:
            if name in series and series[name][1] and series[name][1][0] != 0:
                its, vals = series[name]
                curve = "{} {} (first {:.3g})".format(label, name, vals[0])
                panels[D_SCALE_PANEL].plot(its, _smooth([v / vals[0] for v in vals], smooth), style,
                                           color=color_of(name), label=curve)
                plotted[D_SCALE_PANEL].append(curve)
        for name in ("lr", "d_lr"):
            if name in series:
                its, vals = series[name]
                curve = "{} {}".format(label, name)
                panels[LR_PANEL].plot(its, vals, style, color=color_of(name), label=curve)
                plotted[LR_PANEL].append(curve)
        for name, (its, vals) in sorted(read_ap(run_dir, last_iteration).items()):
            curve = "{} {} AP".format(label, name.split("/")[-1])
            panels["AP on the test set"].plot(its, vals, style, marker="o", markersize=3,
                                              color=color_of(name.split("/")[-1]), label=curve)
            plotted["AP on the test set"].append(curve)

    for title, axis in panels.items():
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("iteration", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if plotted[title]:
            axis.legend(fontsize=6, ncol=2 if len(plotted[title]) > 6 else 1)
        else:
            axis.text(0.5, 0.5, "not in these runs", ha="center", va="center", transform=axis.transAxes, color="grey")
    panels["detector (G) losses"].set_yscale("log")
    panels["D_b probability (real / fake boxes)"].set_ylim(0, 1)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return plotted


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Plot training curves of one or two runs")
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIR of each run (1 or 2)")
    parser.add_argument("--labels", nargs="+", default=None, help="legend name of each run (default: folder name)")
    parser.add_argument("--output", default="curves.png", help="PNG file to write")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window over logged points")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("--labels gives {} names for {} runs".format(len(labels), len(args.runs)))
    plotted = plot_runs(args.runs, labels, args.output, smooth=args.smooth)
    print("wrote {} ({} curves)".format(args.output, sum(len(v) for v in plotted.values())))
    return plotted


if __name__ == "__main__":
    main()
    sys.exit(0)
