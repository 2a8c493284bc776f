#!/usr/bin/env python
"""Speed and memory of our R-50-FPN Mask R-CNN against torchvision's maskrcnn_resnet50_fpn, on the CPU or a GPU.

    python tools/benchmark.py [--device cpu|cuda] [--iters 5] [--warmup 2] [--threads 2] [--profile]
                              [--ours-like-torchvision | --torchvision-like-ours] [KEY VALUE ...]

With --profile it also prints, for training and inference, the median time per stage of both models (backbone +
FPN, RPN, box head, mask head, backward, optimizer, other = losses, sampling, post-processing; torchvision's
input transform apart), from forward hooks on each stage's modules (utils/stage_timer.py).

On a GPU every timed region starts and ends with torch.cuda.synchronize, and memory is the rise of
torch.cuda.max_memory_allocated instead of the RSS (below).

Both models are built untrained (ours: configs/e2e_mask_rcnn_R_50_FPN_1x.yaml with MODEL.WEIGHT ""; torchvision:
maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)) with 81 classes, and get the same input: a batch of
two 400x600 images (shorter side 400, so neither model rescales) with three synthetic instances each (box, label,
binary mask). Measured:

* train step: forward + loss sum + backward + SGD step (lr 0, so every iteration sees the same weights) on the
  batch of two, median over --iters after --warmup;
* inference: one image per forward in eval mode, median over --iters per image after --warmup. Both return
  full-image mask probabilities [N, 1, H, W] (torchvision always pastes them; ours is configured to,
  MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS with threshold -1).
  Both models live in one process and their iterations alternate (ours, torchvision, ours, ...), so load from
  other programs on the machine hits both alike;
* peak memory: each (model, mode) then runs --warmup + 1 iterations in its own fresh subprocess, --memory-repeats
  times (median reported). We report the rise of the process's peak resident set size (VmHWM, reset once model
  and inputs are built) above its RSS at that point. This counts activations, gradients, optimizer state and
  whatever the allocator keeps cached, i.e. what the OS must give the process; it is not a count of live tensors.

Differences by default (both are the libraries' defaults, printed in the report): torchvision without
pretrained backbone weights uses trainable BatchNorm2d and trains all ResNet stages, ours uses FrozenBatchNorm2d
and freezes the stem and stage 1 (MODEL.BACKBONE.FREEZE_CONV_BODY_AT 2). Two like-for-like settings remove
that difference: ``--ours-like-torchvision`` switches ours to BatchNorm and no frozen stage;
``--torchvision-like-ours`` builds torchvision's model as maskrcnn_resnet50_fpn does for pretrained weights
(FrozenBatchNorm2d, trainable_backbone_layers 3), without the weights. What still differs in both: torchvision's
transform normalises and "resizes" (at scale 1) the images inside the model (timed as its own stage); ours
clips boxes, decodes and assigns RoI levels with maskrcnn-benchmark's +1 pixel convention; ours keeps conv weights
in channels-last memory (MODEL.CHANNELS_LAST, our default) and runs RoIAlign on all threads (layers/roi_align.py).
Untrained heads keep a random number of detections above the 0.05 score threshold, which changes the mask
head's inference cost; the detection counts are printed next to the times.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from maskrcnn_benchmark.utils.benchmarking import (
    HEIGHT,
    INSTANCES,
    NUM_CLASSES,
    WIDTH,
    BenchmarkDetector,
    add_detector_stages,
    make_inputs,
    synchronizer,
)


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb():
    """VmHWM, the peak RSS of this process image. (getrusage's ru_maxrss is not used: after fork+exec it
    starts from the parent's peak, which here holds both models.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line; peak memory cannot be measured on this system")


def _reset_peak_rss():
    """Make VmHWM restart from the current RSS (Linux >= 4.0), so the peak covers the measured steps only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # without it the peak also covers model building, which only raises the baseline-subtracted rise


class Torchvision:
    """torchvision's Mask R-CNN; its transform normalises RGB 0-1 input and (at scale 1.0) keeps the size."""

    def __init__(self, like_ours=False):
        """like_ours: the model maskrcnn_resnet50_fpn builds for pretrained weights (FrozenBatchNorm2d, stem and
        stage 1 frozen: trainable_backbone_layers 3), as our default config; built here without the weights."""
        from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn

        if not like_ours:
            self.model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                               min_size=HEIGHT, max_size=1000)
            return
        from torchvision.models import resnet50
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops.misc import FrozenBatchNorm2d

        backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3)
        self.model = MaskRCNN(backbone, num_classes=NUM_CLASSES, min_size=HEIGHT, max_size=1000)

    def settings(self):
        import torch

        norm = type(self.model.backbone.body.bn1).__name__
        frozen = [n for n, p in self.model.backbone.body.named_parameters() if not p.requires_grad]
        return {"backbone": "ResNet-50 FPN {}, {} frozen parameters".format(norm, len(frozen)),
                "rpn_post_nms_train": "{} per image".format(self.model.rpn._post_nms_top_n["training"]),
                "roi_batch": self.model.roi_heads.fg_bg_sampler.batch_size_per_image,
                "torch": torch.__version__}

    def prepare(self, images, boxes, labels, masks):
        rgb = [image.flip(0).float() / 255.0 for image in images]
        targets = [{"boxes": b, "labels": c, "masks": m} for b, c, m in zip(boxes, labels, masks)]
        return rgb, targets, [[image] for image in rgb]

    def train_loss(self, batch, targets):
        return sum(self.model(batch, targets).values())

    def infer(self, single):
        return len(self.model(single)[0]["boxes"])


def _to_device(value, device):
    """Tensors, BoxLists and ImageLists moved to `device`, inside lists and dicts too."""
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value.to(device)


class _Session:
    """One model with its prepared inputs and optimizer, stepping one timed iteration at a time."""

    def __init__(self, impl, mode, like, device="cpu", opts=()):
        """like: "torchvision" (ours as torchvision without weights), "ours" (torchvision as built for pretrained
        weights, as our default) or "" (each library's default). opts: KEY VALUE config overrides for ours."""
        import torch

        torch.manual_seed(0)
        if impl == "ours":
            self.runner = BenchmarkDetector(like == "torchvision",
                                            extra_opts=["MODEL.DEVICE", str(device)] + list(opts))
        else:
            self.runner = Torchvision(like_ours=like == "ours")
        self.runner.model.to(device)
        if impl == "ours":
            self.runner.mean = self.runner.mean.to(device)
        inputs = _to_device(make_inputs(), device)
        self.batch, self.targets, self.singles = self.runner.prepare(*inputs)
        self.synchronize = synchronizer(device)
        self.mode = mode
        if mode == "train":
            self.runner.model.train()
            params = [p for p in self.runner.model.parameters() if p.requires_grad]
            # lr 0: the step does all its arithmetic (momentum, weight decay) but leaves the weights as they
            # are, so every timed iteration does the same work. A real step would also make our untrained
            # FrozenBN ResNet (identity normalisation, built for ImageNet weights) diverge after one iteration.
            self.optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)
        else:
            self.runner.model.eval()

    def step(self):
        """Run one iteration; returns (list of seconds, list of detections per image)."""
        import torch

        if self.mode == "train":
            self.synchronize()
            start = time.perf_counter()
            loss = self.runner.train_loss(self.batch, self.targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.synchronize()
            return [time.perf_counter() - start], []
        times, detections = [], []
        with torch.no_grad():
            for single in self.singles:
                self.synchronize()
                start = time.perf_counter()
                detections.append(self.runner.infer(single))
                self.synchronize()
                times.append(time.perf_counter() - start)
        return times, detections


def profile_stages(mode, iters, warmup, like, device="cpu", opts=()):
    """{impl: StageTimer medians} of ``mode`` ("train" or "infer") for ours and torchvision, one after the other."""
    from maskrcnn_benchmark.utils.stage_timer import StageTimer

    columns = {}
    for impl in ("ours", "torchvision"):
        session = _Session(impl, mode, like, device, opts)
        timer = StageTimer(session.synchronize)
        add_detector_stages(timer, impl, session.runner.model)
        if mode == "train":
            timer.add_optimizer(session.optimizer)
        for i in range(warmup + iters):
            if i < warmup:
                session.step()
                continue
            with timer.iteration():
                session.step()
        timer.remove()
        columns[impl] = timer.medians()
    return columns


def time_interleaved(mode, iters, warmup, like, device="cpu", opts=()):
    """Median seconds per iteration of both models, their iterations alternating in this process."""
    sessions = {impl: _Session(impl, mode, like, device, opts) for impl in ("ours", "torchvision")}
    times = {impl: [] for impl in sessions}
    detections = {impl: [] for impl in sessions}
    for i in range(warmup + iters):
        for impl, session in sessions.items():
            t, d = session.step()
            if i >= warmup:
                times[impl] += t
                detections[impl] += d
    return {impl: {"times": times[impl], "median_s": statistics.median(times[impl]),
                   "detections": detections[impl], "settings": sessions[impl].runner.settings()}
            for impl in sessions}


def measure_memory(impl, mode, warmup, like, device="cpu", opts=()):
    """Peak memory rise (MB) of this process over warmup + 1 iterations after building model and inputs: of its
    RSS on the CPU, of torch.cuda.max_memory_allocated on a GPU."""
    import torch

    session = _Session(impl, mode, like, device, opts)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2 ** 20
        for _ in range(warmup + 1):
            session.step()
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
        return {"impl": impl, "mode": mode, "peak_rss_rise_mb": peak_mb - before}
    _reset_peak_rss()
    rss_before = _rss_mb()
    for _ in range(warmup + 1):
        session.step()
    return {"impl": impl, "mode": mode, "peak_rss_rise_mb": _peak_rss_mb() - rss_before}


def memory_worker_command(impl, mode, args):
    """The command line of a fresh process measuring the peak memory of (impl, mode) with the settings of ``args``
    (this script's parsed arguments): warm-up, threads, device, like-for-like flag and config overrides."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, mode,
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device]
    if args.ours_like_torchvision:
        cmd.append("--ours-like-torchvision")
    elif args.torchvision_like_ours:
        cmd.append("--torchvision-like-ours")
    return cmd + [str(opt) for opt in args.opts]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both models")
    like = parser.add_mutually_exclusive_group()
    like.add_argument("--ours-like-torchvision", action="store_true",
                      help="ours with trainable BatchNorm and no frozen stages, as torchvision without weights")
    like.add_argument("--torchvision-like-ours", action="store_true",
                      help="torchvision as maskrcnn_resnet50_fpn builds it for pretrained weights (FrozenBatchNorm2d, "
                           "stem and stage 1 frozen), as our default")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (memory: CUDA allocations)")
    parser.add_argument("--profile", action="store_true", help="also print the time per stage of both models")
    parser.add_argument("--memory-repeats", type=int, default=3,
                        help="fresh processes per memory measurement, median reported (the RSS peak of one run "
                             "varies by up to 15%% with the allocator's and threads' timing)")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides for ours, after the other options, e.g. "
                             "MODEL.RESNETS.ACTIVATION_CHECKPOINTING True")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    like = "torchvision" if args.ours_like_torchvision else "ours" if args.torchvision_like_ours else ""

    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device {}: torch sees no CUDA GPU on this machine; use --device cpu".format(args.device))
    torch.set_num_threads(args.threads)
    if args.worker:
        result = measure_memory(args.worker[0], args.worker[1], args.warmup, like, args.device, args.opts)
        print("RESULT " + json.dumps(result))
        return result

    memory_name = "CUDA memory" if torch.device(args.device).type == "cuda" else "RSS"
    results = {}
    for mode in ("train", "infer"):
        timed = time_interleaved(mode, args.iters, args.warmup, like, args.device, args.opts)
        for impl in ("ours", "torchvision"):
            results[(impl, mode)] = timed[impl]
            cmd = memory_worker_command(impl, mode, args)
            peaks = []
            for _ in range(args.memory_repeats):
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError("benchmark memory worker {} {} failed:\n{}".format(
                        impl, mode, proc.stderr[-4000:]))
                peaks.append(json.loads(lines[-1][len("RESULT "):])["peak_rss_rise_mb"])
            r = results[(impl, mode)]
            r["peak_rss_rise_mb"], r["peak_rss_rise_runs_mb"] = statistics.median(peaks), peaks
            print("{:<12} {:<6} median {:.3f} s  peak {} rise {:.0f} MB (runs: {}){}".format(
                impl, mode, r["median_s"], memory_name, r["peak_rss_rise_mb"],
                ", ".join("{:.0f}".format(p) for p in peaks),
                "  detections/image {}".format(r["detections"]) if r["detections"] else ""), flush=True)

    print("\nSettings: ours {}\n          torchvision {}".format(results[("ours", "train")]["settings"],
                                                                  results[("torchvision", "train")]["settings"]))
    print("Input: 2 images {}x{} (h x w), {} instances each, {} classes; {}, {} threads, median of {} after {} "
          "warm-up, iterations alternating between the models".format(
              HEIGHT, WIDTH, INSTANCES, NUM_CLASSES, args.device, args.threads, args.iters, args.warmup))
    print("\n{:<26} {:>10} {:>12} {:>16}".format("", "ours", "torchvision", "ours/torchvision"))
    rows = [("train step (batch 2), s", "train", "median_s"), ("inference per image, s", "infer", "median_s"),
            ("train peak {} rise, MB".format(memory_name), "train", "peak_rss_rise_mb"),
            ("infer peak {} rise, MB".format(memory_name), "infer", "peak_rss_rise_mb")]
    summary = {}
    for label, mode, key in rows:
        ours, tv = results[("ours", mode)][key], results[("torchvision", mode)][key]
        ratio = ours / tv if tv else float("nan")
        summary[label] = {"ours": ours, "torchvision": tv, "ratio": ratio}
        print("{:<26} {:>10.3f} {:>12.3f} {:>16.2f}".format(label, ours, tv, ratio))
    profiles = {}
    if args.profile:
        from maskrcnn_benchmark.utils.stage_timer import format_stage_table

        for mode, title in (("train", "train step (batch 2)"), ("infer", "inference (per image: 2 images)")):
            profiles[mode] = profile_stages(mode, args.iters, args.warmup, like, args.device, args.opts)
            print("\n" + format_stage_table(profiles[mode], "Stages, {}, median of {}:".format(title, args.iters)))
    if args.json:
        from maskrcnn_benchmark.utils.io import save_json

        save_json({"summary": summary, "runs": {"{} {}".format(*k): v for k, v in results.items()},
                   "profile": profiles}, args.json, indent=2)
    return summary


if __name__ == "__main__":
    main()
