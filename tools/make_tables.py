#!/usr/bin/env python
"""Regenerate the paper's tables from evaluation output, or compare Mask R-CNN and GAN over several seeds.

    # one dataset's table from a baseline and a GAN run (OUTPUT_DIRs, inference/<dataset>/ folders or
    # coco_results.json files), as text and Markdown, with the paper's published rows and the differences:
    python tools/make_tables.py table --dataset cityscapes --baseline output/cs_base --gan output/cs_gan

    # small-scale comparison on the embedded data: both configs trained with the same iterations and LR schedule
    # for each seed (tools/train_net.py in a subprocess each), then mean and spread of every AP:
    python tools/make_tables.py compare --config configs/demo/synthetic_R_18_FPN.yaml \
        --gan-config configs/demo/synthetic_R_18_FPN_gan.yaml --seeds 0 1 2 --iters 100

The logic lives in maskrcnn_benchmark/utils/tables.py.
"""
import argparse
import json
import os
import subprocess
import sys

from maskrcnn_benchmark.utils.tables import (
    PAPER_RESULTS, aggregate_seeds, format_comparison, load_results, make_table)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Paper tables from evaluation output; multi-seed comparison")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="one dataset's table from a baseline and a GAN run")
    table.add_argument("--dataset", required=True,
                       help="one of {} (with the paper's rows) or any name (ours only)".format(list(PAPER_RESULTS)))
    table.add_argument("--baseline", required=True, help="baseline OUTPUT_DIR, inference/<dataset>/ or its JSON")
    table.add_argument("--gan", required=True, help="GAN OUTPUT_DIR, inference/<dataset>/ or its JSON")
    table.add_argument("--paper-json", default=None,
                       help="JSON with the paper's numbers in %% ({'baseline': {'bbox': {'AP': ..}, 'segm': ..}, "
                            "'gan': ..., 'source': ...}) replacing the built-in reference rows")
    table.add_argument("--format", choices=("text", "markdown", "both"), default="both")

    compare = sub.add_parser("compare", help="train baseline and GAN for several seeds, mean and spread of AP")
    compare.add_argument("--config", required=True, help="baseline (Mask R-CNN) config")
    compare.add_argument("--gan-config", required=True, help="GAN config")
    compare.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    compare.add_argument("--iters", type=int, required=True, help="SOLVER.MAX_ITER of every run")
    compare.add_argument("--output-dir", default="output/compare", help="one sub-folder per run is made here")
    compare.add_argument("--format", choices=("text", "markdown", "both"), default="both")
    compare.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to every run")
    return parser.parse_args(argv)


def _print(render, fmt):
    if fmt in ("text", "both"):
        print(render(False))
    if fmt == "both":
        print()
    if fmt in ("markdown", "both"):
        print(render(True))


def scaled_schedule(config_file, iters):
    """SOLVER opts that shrink `config_file`'s LR schedule (steps, warmup) proportionally to `iters` iterations."""
    from maskrcnn_benchmark.config import load_config

    cfg = load_config(config_file)
    ratio = float(iters) / cfg.SOLVER.MAX_ITER
    steps = []
    for step in cfg.SOLVER.STEPS:
        scaled = max(1, int(round(step * ratio)))
        if not steps or scaled > steps[-1]:
            steps.append(scaled)
    warmup = max(1, int(round(cfg.SOLVER.WARMUP_ITERS * ratio)))
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", str(tuple(steps)), "SOLVER.WARMUP_ITERS", str(warmup)]


def run_training(config_file, seed, schedule_opts, output_dir, opts=()):
    """Train + evaluate one model with tools/train_net.py in a subprocess; return its inference results folder.

    A run whose results already exist is not repeated (train_net.py would resume from its last checkpoint anyway).
    """
    from maskrcnn_benchmark.config import load_config

    cfg = load_config(config_file, list(opts))
    results_dir = os.path.join(output_dir, "inference", cfg.DATASETS.TEST[0])
    if os.path.isfile(os.path.join(results_dir, "coco_results.json")):
        print("reusing {}".format(results_dir), flush=True)
        return results_dir
    os.makedirs(output_dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "train_net.py"), "--config-file", config_file]
    cmd += list(schedule_opts) + ["SOLVER.SEED", str(seed), "OUTPUT_DIR", output_dir] + list(opts)
    log_file = os.path.join(output_dir, "compare_stdout.log")
    print("running {} (log: {})".format(" ".join(cmd), log_file), flush=True)
    with open(log_file, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError("training run failed with exit code {}: {}\nsee the end of {}".format(
            code, " ".join(cmd), log_file))
    return results_dir


def compare(config, gan_config, seeds, iters, output_dir, opts=(), run_fn=run_training):
    """Train both configs for every seed with the same iterations and LR schedule; aggregate their COCO APs.

    The schedule (steps, warmup) of the baseline config is scaled to `iters` and used for both models.
    Returns:
        {"baseline": aggregate_seeds(...), "gan": ..., "runs": {"baseline": [folders], "gan": [folders]}}.
    """
    schedule = scaled_schedule(config, iters)
    runs = {"baseline": [], "gan": []}
    for seed in seeds:
        for name, config_file in (("baseline", config), ("gan", gan_config)):
            run_dir = os.path.join(output_dir, "{}_seed{}_iter{}".format(name, seed, iters))
            runs[name].append(run_fn(config_file, seed, schedule, run_dir, opts))
    results = {name: [load_results(folder) for folder in folders] for name, folders in runs.items()}
    return {"baseline": aggregate_seeds(results["baseline"]), "gan": aggregate_seeds(results["gan"]),
            "runs": runs, "seeds": list(seeds), "iters": iters, "schedule": schedule}


def main(argv=None):
    args = parse_args(argv)
    if args.command == "table":
        paper = None
        if args.paper_json:
            with open(args.paper_json) as f:
                paper = json.load(f)
        baseline, gan = load_results(args.baseline), load_results(args.gan)
        _print(lambda md: make_table(args.dataset, baseline, gan, paper=paper, markdown=md), args.format)
        return 0
    summary = compare(args.config, args.gan_config, args.seeds, args.iters, args.output_dir, args.opts)
    title = "{} vs {} ({} iterations, seeds {})".format(
        os.path.basename(args.config), os.path.basename(args.gan_config), args.iters,
        " ".join(str(s) for s in args.seeds))
    _print(lambda md: format_comparison(summary["baseline"], summary["gan"], title, markdown=md), args.format)
    out_file = os.path.join(args.output_dir, "compare_results.json")
    with open(out_file + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(out_file + ".tmp", out_file)
    print("\nwritten: {}".format(out_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
