"""Training runs in subprocesses for the comparisons and the study (tools/make_tables.py compare,
tools/study.py): the LR schedule scaled to fewer iterations, and one tools/train_net.py run that records what made
it in its folder and is reused only for the same run (utils/run_settings.py)."""
import argparse
import os
import subprocess
import sys

# tools/train_net.py of this checkout, run as a program (never imported)
TRAIN_NET = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools",
                         "train_net.py")


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


def _run_record(config_file, seed, schedule_opts, output_dir, opts, settings):
    """(tools/train_net.py's KEY VALUE options, the run_settings record) of one run."""
    from maskrcnn_benchmark.utils.run_settings import describe_run

    cmd_opts = list(schedule_opts) + ["SOLVER.SEED", str(seed), "OUTPUT_DIR", output_dir] + list(opts)
    return cmd_opts, describe_run(config_file, cmd_opts, dict(settings or {}, seed=seed))


def check_runs(planned, check_code=True):
    """Before anything trains: raise one StaleRunError naming every folder of `planned` (run_training's arguments
    config_file, seed, schedule_opts, output_dir, opts, settings per run) that holds another run."""
    from maskrcnn_benchmark.utils.run_settings import StaleRunError, check_run_dir

    errors = []
    for config_file, seed, schedule_opts, output_dir, opts, settings in planned:
        try:
            check_run_dir(output_dir, _run_record(config_file, seed, schedule_opts, output_dir, opts, settings)[1],
                          check_code)
        except StaleRunError as e:
            errors.append(str(e))
    if errors:
        raise StaleRunError("{} of the {} run folders cannot be reused; nothing was trained.\n\n{}".format(
            len(errors), len(planned), "\n\n".join(errors)))


def run_training(config_file, seed, schedule_opts, output_dir, opts=(), settings=None, check_code=True):
    """Train + evaluate one model with tools/train_net.py in a subprocess; return its inference results folder.

    The folder records what made the run (maskrcnn_benchmark/utils/run_settings.py: `settings`, the resolved config,
    the code fingerprint). A folder holding the same run is reused when its results exist, else resumed from its
    last checkpoint; a folder made with other settings, or without the record, is refused (StaleRunError naming
    each difference). `check_code` False lets a run made by other code be reused.
    """
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.utils.run_settings import prepare_run_dir

    cmd_opts, record = _run_record(config_file, seed, schedule_opts, output_dir, opts, settings)
    cfg = load_config(config_file, cmd_opts)
    results_dir = os.path.join(output_dir, "inference", cfg.DATASETS.TEST[0])
    if prepare_run_dir(output_dir, record, check_code) and \
            os.path.isfile(os.path.join(results_dir, "coco_results.json")):
        print("reusing {}".format(results_dir), flush=True)
        return results_dir
    cmd = [sys.executable, TRAIN_NET, "--config-file", config_file] + cmd_opts
    log_file = os.path.join(output_dir, "compare_stdout.log")
    print("running {} (log: {})".format(" ".join(cmd), log_file), flush=True)
    with open(log_file, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError("training run failed with exit code {}: {}\nsee the end of {}".format(
            code, " ".join(cmd), log_file))
    return results_dir


def ground_truth_file(config_file, opts=()):
    """The ground-truth file of the first test dataset (DATASETS.TEST[0]) of `config_file` with `opts`."""
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.data.build import load_catalog, resolve_dataset

    cfg = load_config(config_file, list(opts))
    entry = resolve_dataset(cfg.DATASETS.TEST[0], load_catalog(cfg.PATHS_CATALOG), cfg.DATASETS.CUSTOM)
    return entry["args"]["ann_file"]


def add_comparison_arguments(parser, difference):
    """The flags tools/make_tables.py compare and tools/study.py share: the paired bootstrap, the reuse of run
    folders made by other code, the output format and the KEY VALUE overrides of every run. ``difference`` names
    the difference the bootstrap is over (e.g. "GAN - baseline")."""
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                        help="resamples of the paired bootstrap over test images of the {} AP difference "
                             "(0: no bootstrap)".format(difference))
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resamples")
    parser.add_argument("--ignore-code-version", action="store_true",
                        help="reuse run folders made by other code (maskrcnn_benchmark/, csrc/, tools/train_net.py "
                             "changed since); every other setting must still match")
    parser.add_argument("--format", choices=("text", "markdown", "both"), default="both")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to every run")
