"""Training runs in subprocesses for the comparisons and the study (tools/make_tables.py compare,
tools/study.py): the LR schedule scaled to fewer iterations, and one tools/train_net.py run whose results are
reused when they exist."""
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
    cmd = [sys.executable, TRAIN_NET, "--config-file", config_file]
    cmd += list(schedule_opts) + ["SOLVER.SEED", str(seed), "OUTPUT_DIR", output_dir] + list(opts)
    log_file = os.path.join(output_dir, "compare_stdout.log")
    print("running {} (log: {})".format(" ".join(cmd), log_file), flush=True)
    with open(log_file, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError("training run failed with exit code {}: {}\nsee the end of {}".format(
            code, " ".join(cmd), log_file))
    return results_dir
