#!/usr/bin/env python
"""Regenerate the paper's tables from evaluation output, or compare Mask R-CNN and GAN over several seeds.

    # one dataset's table from a baseline and a GAN run (OUTPUT_DIRs, inference/<dataset>/ folders or
    # coco_results.json files), as text and Markdown, with the paper's published rows and the differences:
    python tools/make_tables.py table --dataset cityscapes --baseline output/cs_base --gan output/cs_gan

    # the phone ablations (Table 5, loss; Table 6, discriminator depth) from a set of runs (any may be left out):
    python tools/make_tables.py ablations --baseline B --gan G --adv-only A --disc3 D3 --disc4 D4

    # the AP of each category (box, mask, Boundary AP) of one or more runs side by side; `table` appends the same
    # section for its two runs with --per-category:
    python tools/make_tables.py categories output/run1 output/run2 [--labels base gan]

    # every table of the paper (Tables 1-6) from the runs of configs/paper/, found at each config's OUTPUT_DIR
    # (or under --runs-root/<dataset>/<config name>); runs not made yet print n/a next to the paper's rows, and
    # further variants of configs/paper/ (authors' variant, ablations of the abstract's claims) get our rows:
    python tools/make_tables.py paper [--runs-root output/paper]

    # small-scale comparison on the embedded data: both configs trained with the same iterations and LR schedule
    # for each seed (tools/train_net.py in a subprocess each), then mean and spread of every AP, and GAN - baseline
    # with a 95% interval by Welch over seeds and one by a paired bootstrap over test images (--bootstrap B, 0: off);
    # a run folder is reused only if it was made with the same settings (else refused, naming the difference):
    python tools/make_tables.py compare --config configs/demo/synthetic_R_18_FPN.yaml \
        --gan-config configs/demo/synthetic_R_18_FPN_gan.yaml --seeds 0 1 2 --iters 100

The logic lives in maskrcnn_benchmark/utils/tables.py, utils/intervals.py (intervals) and utils/run_settings.py
(what made a run folder).
"""
import argparse
import glob
import json
import os
import sys
from collections import OrderedDict

from maskrcnn_benchmark.utils.intervals import bootstrap_differences, format_differences, seed_differences
from maskrcnn_benchmark.utils.io import save_json
from maskrcnn_benchmark.utils.tables import (
    PAPER_RESULTS,
    aggregate_seeds,
    format_comparison,
    load_results,
    make_ablation_table,
    make_per_category_table,
    make_table,
    render_runs,
)
from maskrcnn_benchmark.utils.training_runs import (
    add_comparison_arguments,
    check_runs,
    ground_truth_file,
    run_training,
    scaled_schedule,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_CONFIGS = os.path.join(REPO_ROOT, "configs", "paper")
# tools/make_tables.py ablations option -> (ablation, row) of maskrcnn_benchmark.utils.tables.PAPER_ABLATIONS
ABLATION_RUNS = OrderedDict([
    ("baseline", [("phone_loss_ablation", "baseline loss")]),
    ("gan", [("phone_loss_ablation", "combined loss"), ("phone_discriminator_depth", "5 conv layers")]),
    ("adv_only", [("phone_loss_ablation", "adversarial loss only")]),
    ("disc3", [("phone_discriminator_depth", "3 conv layers")]),
    ("disc4", [("phone_discriminator_depth", "4 conv layers")]),
])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Paper tables from evaluation output; multi-seed comparison")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="one dataset's table from a baseline and a GAN run")
    table.add_argument("--dataset", required=True,
                       help="one of {} (with the paper's rows) or any name (ours only)".format(list(PAPER_RESULTS)))
    table.add_argument("--baseline", required=True, help="baseline OUTPUT_DIR, inference/<dataset>/ or its JSON")
    table.add_argument("--gan", required=True, help="GAN OUTPUT_DIR, inference/<dataset>/ or its JSON")
    table.add_argument("--paper-json", default=None,
                       help="JSON replacing the built-in reference rows: one entry shaped like PAPER_RESULTS' "
                            "({'baseline': {'bbox': {'AP': ..}, 'segm': ..}, 'gan': ..., 'source': ...}, fractions "
                            "in [0, 1], null = n/a), or a file with 'tables': {dataset: entry}")
    table.add_argument("--per-category", action="store_true",
                       help="append the AP of each category of both runs (box, mask, Boundary AP)")
    table.add_argument("--format", choices=("text", "markdown", "both"), default="both")

    categories = sub.add_parser("categories", help="the AP of each category of one or more runs")
    categories.add_argument("runs", nargs="+", help="OUTPUT_DIRs, inference/<dataset>/ folders or coco_results.json")
    categories.add_argument("--labels", nargs="+", default=None, help="column names (default: the paths)")
    categories.add_argument("--format", choices=("text", "markdown", "both"), default="both")

    ablations = sub.add_parser("ablations", help="the phone ablations (Tables 5 and 6) from a set of runs")
    for option, config in (("baseline", "phone"), ("gan", "phone_gan"), ("adv_only", "phone_gan_adv_only"),
                           ("disc3", "phone_gan_disc3"), ("disc4", "phone_gan_disc4")):
        ablations.add_argument("--" + option.replace("_", "-"), default=None,
                               help="run of configs/paper/phone/mask_rcnn_R_101_FPN_{}.yaml (OUTPUT_DIR, "
                                    "inference/<dataset>/ or its JSON)".format(config))
    ablations.add_argument("--format", choices=("text", "markdown", "both"), default="both")

    paper = sub.add_parser("paper", help="every table of the paper from the runs of configs/paper/")
    paper.add_argument("--runs-root", default=None,
                       help="folder holding <dataset>/<config name>/ runs (default: each config's OUTPUT_DIR)")
    paper.add_argument("--format", choices=("text", "markdown", "both"), default="both")

    compare = sub.add_parser("compare", help="train baseline and GAN for several seeds, mean and spread of AP")
    compare.add_argument("--config", required=True, help="baseline (Mask R-CNN) config")
    compare.add_argument("--gan-config", required=True, help="GAN config")
    compare.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    compare.add_argument("--iters", type=int, required=True, help="SOLVER.MAX_ITER of every run")
    compare.add_argument("--output-dir", default="output/compare", help="one sub-folder per run is made here")
    add_comparison_arguments(compare, "GAN - baseline")
    return parser.parse_args(argv)


def _print(render, fmt):
    if fmt in ("text", "both"):
        print(render(False))
    if fmt == "both":
        print()
    if fmt in ("markdown", "both"):
        print(render(True))


def compare(config, gan_config, seeds, iters, output_dir, opts=(), run_fn=run_training, bootstrap_samples=1000,
            bootstrap_seed=0, check_code=True):
    """Train both configs for every seed with the same iterations and LR schedule; aggregate their COCO APs and
    give the GAN's difference with its intervals.

    The schedule (steps, warmup) of the baseline config is scaled to `iters` and used for both models.
    Args:
        bootstrap_samples: resamples of the paired bootstrap over test images (0: no bootstrap).
        bootstrap_seed: seed of those resamples.
        check_code: False reuses runs whose code fingerprint differs (run_training).
    Returns:
        {"baseline": aggregate_seeds(...), "gan": ..., "runs": {"baseline": [folders], "gan": [folders]},
        "differences": {"welch": seed_differences(...), "bootstrap": bootstrap_differences(...) or None}, ...}.
    """
    schedule = scaled_schedule(config, iters)
    planned = [(config_file, seed, schedule, os.path.join(output_dir, "{}_seed{}_iter{}".format(name, seed, iters)),
                list(opts), {"model": name, "iters": iters})
               for seed in seeds for name, config_file in (("baseline", config), ("gan", gan_config))]
    if run_fn is run_training:
        check_runs(planned, check_code)
    runs = {"baseline": [], "gan": []}
    for config_file, seed, schedule, run_dir, run_opts, settings in planned:
        runs[settings["model"]].append(run_fn(config_file, seed, schedule, run_dir, run_opts, settings=settings,
                                              check_code=check_code))
    results = OrderedDict((name, [load_results(folder) for folder in runs[name]]) for name in ("baseline", "gan"))
    boot = None
    if bootstrap_samples:
        boot = bootstrap_differences(runs, ground_truth_file(config, opts), "baseline", bootstrap_samples,
                                     bootstrap_seed)
    return {"baseline": aggregate_seeds(results["baseline"]), "gan": aggregate_seeds(results["gan"]),
            "runs": runs, "seeds": list(seeds), "iters": iters, "schedule": schedule,
            "differences": {"welch": seed_differences(results, "baseline"), "bootstrap": boot}}


def _load_optional(path):
    """load_results(path); for a run not made yet, {"path": "<path> (no evaluation output yet)"}, whose metrics
    print as n/a."""
    try:
        return load_results(path)
    except FileNotFoundError:
        return {"path": "{} (no evaluation output yet)".format(path)}


def load_paper_json(path, dataset):
    """The reference entry for `dataset` from a JSON file: the entry itself, or its ``tables[dataset]``."""
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError("--paper-json '{}' is not valid JSON: {}".format(path, e)) from e
    if isinstance(data, dict) and "tables" in data:
        if dataset not in data["tables"]:
            raise KeyError("--paper-json '{}' has no table for dataset '{}' (it has {})".format(
                path, dataset, sorted(data["tables"])))
        entry = dict(data["tables"][dataset])
        entry.setdefault("source", data.get("paper"))
        return entry
    return data


def ablation_tables(runs, markdown=False):
    """Tables 5 and 6 from {ABLATION_RUNS option: load_results() dict or None}."""
    rows = OrderedDict()
    for option, places in ABLATION_RUNS.items():
        for ablation, row in places:
            rows.setdefault(ablation, {})[row] = runs.get(option)
    return "\n\n".join(make_ablation_table(name, table_runs, markdown=markdown) for name, table_runs in rows.items())


def paper_runs(runs_root=None, configs_dir=PAPER_CONFIGS):
    """{dataset: {config name without .yaml: run folder}} for every config of configs/paper/.

    The run folder is ``runs_root/<dataset>/<config name>`` when `runs_root` is given, else the config's OUTPUT_DIR.
    """
    from maskrcnn_benchmark.config import load_config

    out = OrderedDict()
    for path in sorted(glob.glob(os.path.join(configs_dir, "*", "*.yaml"))):
        dataset = os.path.basename(os.path.dirname(path))
        name = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.join(runs_root, dataset, name) if runs_root else load_config(path).OUTPUT_DIR
        out.setdefault(dataset, OrderedDict())[name] = folder
    return out


def paper_tables(runs_root=None, markdown=False, configs_dir=PAPER_CONFIGS):
    """Every table of the paper: Tables 1-4 per dataset (baseline ``*_<dataset>`` and GAN ``*_<dataset>_gan``
    configs), Tables 5-6 (phone ablations), then our rows of every further variant in configs/paper/."""
    blocks = []
    found = paper_runs(runs_root, configs_dir)
    for dataset in PAPER_RESULTS:
        configs = found.get(dataset, {})
        role = lambda suffix: next((folder for name, folder in configs.items()  # noqa: E731
                                    if name.endswith("_" + dataset + suffix)), None)
        runs = [_load_optional(role(suffix)) if role(suffix) else None for suffix in ("", "_gan")]
        blocks.append(make_table(dataset, runs[0], runs[1], markdown=markdown))
    phone = found.get("phone", {})
    ablation_runs = {}
    for option in ABLATION_RUNS:
        suffix = "_phone" + ("" if option == "baseline" else "_gan" if option == "gan" else "_gan_" + option)
        folder = next((folder for name, folder in phone.items() if name.endswith(suffix)), None)
        ablation_runs[option] = _load_optional(folder) if folder else None
    blocks.append(ablation_tables(ablation_runs, markdown=markdown))
    known = ("", "_gan", "_gan_adv_only", "_gan_disc3", "_gan_disc4")
    variants = OrderedDict()
    for dataset, configs in found.items():
        for name, folder in configs.items():
            if not any(name.endswith("_" + dataset + suffix) for suffix in known):
                variants["{}/{}".format(dataset, name)] = _load_optional(folder)
    if variants:
        blocks.append(render_runs("Variants beyond the paper's tables (configs/paper/; ours only)", variants,
                                  markdown=markdown))
    return "\n\n".join(blocks)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "ablations":
        runs = {option: load_results(getattr(args, option)) if getattr(args, option) else None
                for option in ABLATION_RUNS}
        _print(lambda md: ablation_tables(runs, markdown=md), args.format)
        return 0
    if args.command == "paper":
        _print(lambda md: paper_tables(args.runs_root, markdown=md), args.format)
        return 0
    if args.command == "table":
        paper = None
        if args.paper_json:
            paper = load_paper_json(args.paper_json, args.dataset)
        baseline, gan = load_results(args.baseline), load_results(args.gan)

        def render(md):
            text = make_table(args.dataset, baseline, gan, paper=paper, markdown=md)
            if args.per_category:
                runs = OrderedDict([("Mask R-CNN", baseline), ("GAN", gan)])
                text += "\n\n" + make_per_category_table(runs, markdown=md)
            return text

        _print(render, args.format)
        return 0
    if args.command == "categories":
        labels = args.labels or args.runs
        if len(labels) != len(args.runs):
            raise SystemExit("--labels gives {} names for {} runs".format(len(labels), len(args.runs)))
        runs = OrderedDict((label, load_results(path)) for label, path in zip(labels, args.runs))
        _print(lambda md: make_per_category_table(runs, markdown=md), args.format)
        return 0
    from maskrcnn_benchmark.utils.run_settings import StaleRunError

    try:
        summary = compare(args.config, args.gan_config, args.seeds, args.iters, args.output_dir, args.opts,
                          bootstrap_samples=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                          check_code=not args.ignore_code_version)
    except StaleRunError as e:
        print(str(e), file=sys.stderr)
        return 2
    title = "{} vs {} ({} iterations, seeds {})".format(
        os.path.basename(args.config), os.path.basename(args.gan_config), args.iters,
        " ".join(str(s) for s in args.seeds))
    differences = summary["differences"]
    _print(lambda md: format_comparison(summary["baseline"], summary["gan"], title, markdown=md) + "\n\n" +
           format_differences(differences["welch"], differences["bootstrap"], title, "baseline", markdown=md),
           args.format)
    out_file = os.path.join(args.output_dir, "compare_results.json")
    save_json(summary, out_file, indent=1)
    print("\nwritten: {}".format(out_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
