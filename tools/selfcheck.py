#!/usr/bin/env python
"""Self-check of a new machine: the first command to run, GPU or not.

    python tools/selfcheck.py [--devices cpu,cuda] [--keep DIR]

On every available device (the CPU, and the first GPU when there is one) it checks:

* extension: ``maskrcnn_benchmark._C`` imports, with its CUDA kernels when a GPU is present;
* prroi_pool: the compiled Precise RoI Pooling against the plain-PyTorch implementation, forward and both
  gradients, in float64 (what MODEL.PRROI_POOL_IMPL "auto" does once per device, here with a verdict);
* train float16 / bfloat16: a few GAN training iterations (tools/train_net.py, tiny R-18-FPN, synthetic data,
  box and mask discriminators) under autocast, float16 with loss scaling; finite losses required. float16
  autocast is a CUDA feature here (MixedPrecision refuses it on the CPU), so on the CPU it is SKIP;
* checkpoint: save and load into a fresh model give identical tensors, and train_net resumes at the saved
  iteration;
* ddp: one training step in 2 processes (gloo on the CPU, NCCL with 2+ GPUs); parameters must be identical on
  both ranks afterwards.

Prints a PASS/FAIL/SKIP table with timings; every FAIL says what to do. Exits 1 on any FAIL. The CPU subset takes
about a minute on a 2-core machine.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUILD_HINT = ("build the extension in the repository: `python setup.py build_ext --inplace` (a CUDA toolkit with "
              "nvcc must be found for the CUDA kernels, or set FORCE_CUDA=1)")

# A tiny detector and GAN (R-18-FPN with GroupNorm, 128 px images, few RoIs) that trains in seconds on a CPU.
TINY_CONFIG = os.path.join(REPO, "configs", "selfcheck", "tiny_gan_R_18_FPN.yaml")


class Skip(Exception):
    """The check does not apply on this device; the message says why."""


class Failure(Exception):
    """The check failed; ``fix`` says what to do."""

    def __init__(self, message, fix):
        super().__init__(message)
        self.fix = fix


class Workspace:
    """Synthetic data and run folders under one temporary directory."""

    def __init__(self, root):
        from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco

        self.root = root
        data = os.path.join(root, "synthetic")
        generate_synthetic_coco(data, num_images=4, image_size=128, seed=0)
        spec = "selfcheck_synthetic:{}:{}".format(os.path.join(data, "annotations.json"), os.path.join(data, "images"))
        self.data_opts = ["DATASETS.CUSTOM", "('{}',)".format(spec), "DATASETS.TRAIN", "('selfcheck_synthetic',)",
                          "DATASETS.TEST", "('selfcheck_synthetic',)"]

    def run_dir(self, name):
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path


def _train(workspace, name, device, opts, world_size=1, timeout=600):
    """tools/train_net.py in `world_size` fresh processes (this script's --train-worker mode); returns the
    output dir. Raises Failure with the end of the log when a process fails."""
    out_dir = workspace.run_dir(name)
    argv = ["--config-file", TINY_CONFIG, "--skip-test"] + workspace.data_opts + ["MODEL.DEVICE", device,
                                                                                "OUTPUT_DIR", out_dir] + opts
    # The workers import maskrcnn_benchmark as this process does (the installed package, or PYTHONPATH's).
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if world_size > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size))
    processes = []
    for rank in range(world_size):
        log = open(os.path.join(out_dir, "log_rank{}.txt".format(rank)), "w")
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank)) if world_size > 1 else env
        processes.append((subprocess.Popen([sys.executable, os.path.abspath(__file__), "--train-worker", out_dir,
                                            "--"] + argv, env=rank_env, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.time() + timeout
    failed = []
    for rank, (process, log) in enumerate(processes):
        try:
            code = process.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            code = "timeout"
        log.close()
        if code != 0:
            failed.append((rank, code))
    if failed:
        rank, code = failed[0]
        with open(os.path.join(out_dir, "log_rank{}.txt".format(rank))) as f:
            tail = "".join(f.readlines()[-6:]).strip()
        raise Failure("train_net rank {} exited with {}: ...{}".format(rank, code, tail[-600:]),
                      "read {} and fix the error it ends with".format(
                          os.path.join(out_dir, "log_rank{}.txt".format(rank))))
    return out_dir


def _last_losses(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return json.loads(f.readlines()[-1])


def check_extension(device):
    try:
        from maskrcnn_benchmark import _C
    except ImportError as error:
        raise Failure("maskrcnn_benchmark._C does not import ({})".format(error), BUILD_HINT)
    if device.startswith("cuda") and not _C.has_cuda():
        raise Failure("maskrcnn_benchmark._C was built without CUDA kernels but a GPU is present",
                      "rebuild with a CUDA toolkit: `FORCE_CUDA=1 python setup.py build_ext --inplace`")
    return "CUDA kernels: {}".format("yes" if _C.has_cuda() else "no")


def check_prroi_pool(device):
    from maskrcnn_benchmark.layers.prroi_pool import compare_implementations

    check_extension(device)
    error = compare_implementations(device, torch.float64)
    if not error <= 1e-9:
        raise Failure("compiled PrRoIPool differs from the torch implementation by {:.3g} (relative, float64)".format(
            error), "train with MODEL.PRROI_POOL_IMPL torch and report this output with `python -m "
                    "torch.utils.collect_env`")
    return "max relative error {:.2g} (float64; fwd, grad features, grad rois)".format(error)


def _check_training(workspace, device, dtype):
    from maskrcnn_benchmark.engine.mixed_precision import MixedPrecision

    try:
        MixedPrecision(dtype, device.split(":")[0])
    except ValueError as error:
        raise Skip(str(error).split(";")[0])
    if dtype == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bfloat16")
    out_dir = _train(workspace, "train_{}_{}".format(device.replace(":", ""), dtype), device,
                     ["DTYPE", dtype, "SOLVER.MAX_ITER", "3"])
    record = _last_losses(out_dir)
    losses = record["losses"]
    bad = sorted(k for k, v in losses.items() if not (isinstance(v, (int, float)) and abs(v) < float("inf")))
    for name in ("loss_box_adv", "loss_mask_adv", "loss_box_disc", "loss_mask_disc"):
        if name not in losses:
            bad.append(name + " missing")
    if bad:
        raise Failure("non-finite or missing losses after 3 iterations: {}".format(bad),
                      "train with DTYPE float32 and report this output")
    return "3 iterations, loss {:.3f}".format(sum(v for k, v in losses.items() if k.startswith("loss_")))


def check_checkpoint(workspace, device):
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.modeling.detector import build_detection_model
    from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer

    folder = workspace.run_dir("checkpoint_{}".format(device.replace(":", "")))
    cfg = load_config(TINY_CONFIG, workspace.data_opts + ["MODEL.DEVICE", device, "OUTPUT_DIR", folder])
    torch.manual_seed(0)
    saved = build_detection_model(cfg).to(device)
    DetectronCheckpointer(cfg, saved, save_dir=folder).save("roundtrip", iteration=7)
    torch.manual_seed(1)
    loaded = build_detection_model(cfg).to(device)
    extra = DetectronCheckpointer(cfg, loaded, save_dir=folder).load(os.path.join(folder, "roundtrip.pth"))
    different = [k for k, v in saved.state_dict().items() if not torch.equal(v, loaded.state_dict()[k])]
    if different or extra.get("iteration") != 7:
        raise Failure("loaded checkpoint differs from the saved one ({} tensors, iteration {})".format(
            len(different), extra.get("iteration")), "check the disk holding OUTPUT_DIR and the torch version")
    # train_net resumes where it stopped
    opts = ["SOLVER.CHECKPOINT_PERIOD", "1", "MODEL.GAN.START_ITER", "0"]
    out_dir = _train(workspace, "resume_{}".format(device.replace(":", "")), device, opts + ["SOLVER.MAX_ITER", "1"])
    _train(workspace, "resume_{}".format(device.replace(":", "")), device, opts + ["SOLVER.MAX_ITER", "2"])
    with open(os.path.join(out_dir, "log_rank0.txt")) as f:
        resumed = "Resuming at iteration 1 of 2" in f.read()
    if not resumed or _last_losses(out_dir)["iteration"] != 2:
        raise Failure("train_net did not resume from its last checkpoint",
                      "see {}; the last_checkpoint file must name the latest model_*.pth".format(out_dir))
    return "{} tensors identical; train_net resumed at iteration 1".format(len(saved.state_dict()))


def check_ddp(workspace, device):
    if device.startswith("cuda") and torch.cuda.device_count() < 2:
        raise Skip("NCCL needs 2 GPUs, found {}".format(torch.cuda.device_count()))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    out_dir = _train(workspace, "ddp_{}".format(device.split(":")[0]), device.split(":")[0],
                     ["SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2", "MODEL.GAN.START_ITER", "0"], world_size=2)
    states = [torch.load(os.path.join(out_dir, "params_rank{}.pth".format(r)), weights_only=True) for r in (0, 1)]
    moved = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    if moved:
        raise Failure("after one DDP step {} parameters differ between the ranks (e.g. {})".format(
                          len(moved), moved[0]),
                      "check that every process runs the same code and torch version; report this output")
    return "{} step, {} parameters identical on both ranks".format(backend, len(states[0]))


def _train_worker(out_dir, argv):
    """--train-worker mode: run tools/train_net.py's main in this process and save this rank's parameters."""
    from maskrcnn_benchmark.engine.train_net import main as train_net_main
    from maskrcnn_benchmark.utils.comm import unwrap_model

    model = train_net_main(argv)
    bare = unwrap_model(model)
    state = {k: v.detach().cpu() for k, v in bare.state_dict().items()}
    torch.save(state, os.path.join(out_dir, "params_rank{}.pth".format(os.environ.get("RANK", "0"))))


def run_checks(devices, workspace):
    """Runs every check on every device; returns rows (check, device, status, seconds, detail, fix)."""
    checks = [
        ("extension", lambda d: check_extension(d)),
        ("prroi_pool compiled vs torch", lambda d: check_prroi_pool(d)),
        ("train GAN float16 autocast", lambda d: _check_training(workspace, d, "float16")),
        ("train GAN bfloat16 autocast", lambda d: _check_training(workspace, d, "bfloat16")),
        ("checkpoint save/resume", lambda d: check_checkpoint(workspace, d)),
        ("ddp 2-process step", lambda d: check_ddp(workspace, d)),
    ]
    rows = []
    for device in devices:
        for name, check in checks:
            start = time.perf_counter()
            try:
                status, detail, fix = "PASS", check(device), ""
            except Skip as skip:
                status, detail, fix = "SKIP", str(skip), ""
            except Failure as failure:
                status, detail, fix = "FAIL", str(failure), failure.fix
            except Exception as error:  # a crash of the check itself is a FAIL too
                status, detail = "FAIL", "{}: {}".format(type(error).__name__, error)
                fix = "report this output: " + traceback.format_exc(limit=2).strip().splitlines()[-1]
            rows.append((name, device, status, time.perf_counter() - start, detail, fix))
            print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    name, device, status, seconds, detail, fix = row
    line = "{:<30} {:<7} {:<6} {:>7.1f}s  {}".format(name, device, status, seconds, detail)
    return line + ("\n{:>54}{}".format("-> ", fix) if fix else "")


def available_devices():
    return ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default=None, help="comma-separated, e.g. cpu or cuda:0 (default: all available)")
    parser.add_argument("--keep", default=None, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--train-worker", default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.train_worker:
        _train_worker(args.train_worker, [a for a in rest if a != "--"])
        return 0
    devices = args.devices.split(",") if args.devices else available_devices()
    root = args.keep or tempfile.mkdtemp(prefix="maskrcnn_selfcheck_")
    print("torch {} (CUDA {}), devices: {}, work folder {}".format(torch.__version__, torch.version.cuda,
                                                                    ", ".join(devices), root))
    print("{:<30} {:<7} {:<6} {:>8}  {}".format("check", "device", "result", "time", "detail"))
    try:
        rows = run_checks(devices, Workspace(root))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    failed = [row for row in rows if row[2] == "FAIL"]
    print("{} checks: {} PASS, {} FAIL, {} SKIP".format(len(rows), sum(r[2] == "PASS" for r in rows), len(failed),
                                                        sum(r[2] == "SKIP" for r in rows)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
