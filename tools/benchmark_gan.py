#!/usr/bin/env python
"""Cost of the adversarial heads: the R-50-FPN training step with and without the GAN terms, on the CPU or a GPU.

    python tools/benchmark_gan.py [--device cpu|cuda] [--iters 5] [--warmup 2] [--threads 2] [--demo] [--profile]

--demo measures the demo's models instead (configs/demo/nuclei_R_18_FPN.yaml and its _gan twin) on the demo's own
first training batch (two stardist nuclei tiles at the demo's training size, about 35 nuclei each: many positive
RoIs, which is what the discriminators' cost grows with), as train_net.py loads it.
--profile also prints the median time per stage of both steps (backbone + FPN, RPN, box head, mask head, D_b and
D_m with their pooling, backward, optimizer, other), from forward hooks on each stage's modules.

Baseline: configs/e2e_mask_rcnn_R_50_FPN_1x.yaml, one step = forward, loss sum, backward, SGD step.
GAN: configs/gan/e2e_mask_rcnn_R_50_FPN_1x_gan.yaml, one step = engine/adversarial.py's iteration (one detector
forward, the discriminators' update on detached inputs, the detector's update with the discriminators frozen).
Both get the same batch as tools/benchmark.py (two 400x600 images, shorter side 400, three instances each), are
built untrained with the same seed, and step with learning rate 0 so every timed iteration sees the same weights.
Their iterations alternate in one process, so load from other programs hits both alike. On a GPU each timed step
starts and ends with torch.cuda.synchronize. Prints the median seconds per step of each and the ratio GAN / baseline.
"""
import argparse
import os
import statistics
import time

# the same model set-up and input as the detector benchmark (tools/benchmark.py)
from maskrcnn_benchmark.utils.benchmarking import (
    CONFIGS as CONFIG_DIR,
)
from maskrcnn_benchmark.utils.benchmarking import (
    BenchmarkDetector,
    add_detector_stages,
    make_inputs,
    synchronizer,
)

ZERO_LR = ["SOLVER.BASE_LR", 0.0]


CONFIGS = {False: ("e2e_mask_rcnn_R_50_FPN_1x.yaml", os.path.join("gan", "e2e_mask_rcnn_R_50_FPN_1x_gan.yaml")),
           True: (os.path.join("demo", "nuclei_R_18_FPN.yaml"), os.path.join("demo", "nuclei_R_18_FPN_gan.yaml"))}


class _Step(object):
    """One model (built untrained with seed 0, learning rate 0) and the batch it steps on, on `device`: `batch`
    (ImageList, list[BoxList]), or benchmark.py's synthetic batch when None."""

    def __init__(self, device, config_file, batch=None, opts=()):
        import torch

        torch.manual_seed(0)
        self.runner = BenchmarkDetector(config_file=config_file,
                                        extra_opts=ZERO_LR + ["MODEL.DEVICE", str(device)] + list(opts),
                                        benchmark_input=batch is None)
        self.runner.model.to(device).train()
        images, targets = batch if batch is not None else self.runner.prepare(*make_inputs())[:2]
        self.batch, self.targets = images.to(device), [target.to(device) for target in targets]


class _BaselineStep(_Step):
    def __init__(self, device, config_file=CONFIGS[False][0], batch=None, opts=()):
        import torch

        super().__init__(device, config_file, batch, opts)
        params = [p for p in self.runner.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)

    def __call__(self, iteration):
        loss = self.runner.train_loss(self.batch, self.targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class _GanStep(_Step):
    def __init__(self, device, config_file=CONFIGS[False][1], batch=None, opts=()):
        from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step
        from maskrcnn_benchmark.solver import make_optimizer

        super().__init__(device, config_file, batch, opts)
        optimizer = make_optimizer(self.runner.cfg, self.runner.model)
        self.step = build_adversarial_train_step(self.runner.cfg, self.runner.model, optimizer, device=device)

    def __call__(self, iteration):
        self.step(self.batch, self.targets, iteration)


def demo_batch(opts=()):
    """The first batch train_net.py trains the demo on (configs/demo/nuclei_R_18_FPN.yaml, whose _gan twin trains on
    the same): its data, sizes and augmentation, seeded by SOLVER.SEED as train_net.py seeds them."""
    from maskrcnn_benchmark.config import load_config
    from maskrcnn_benchmark.data import make_data_loader
    from maskrcnn_benchmark.utils.miscellaneous import set_random_seed

    cfg = load_config(os.path.join(CONFIG_DIR, CONFIGS[True][0]), ["MODEL.DEVICE", "cpu"] + list(opts))
    set_random_seed(cfg.SOLVER.SEED, 0)
    images, targets, _ = next(iter(make_data_loader(cfg, is_train=True)))
    return images, list(targets)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--demo", action="store_true",
                        help="the demo's R-18-FPN models on the demo's first training batch instead of R-50-FPN")
    parser.add_argument("--profile", action="store_true", help="also print the time per stage of both steps")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides for both models, e.g. MODEL.CHANNELS_LAST False")
    args = parser.parse_args(argv)

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device {}: torch sees no CUDA GPU on this machine; use --device cpu".format(args.device))
    torch.set_num_threads(args.threads)
    baseline_config, gan_config = CONFIGS[args.demo]
    batch = demo_batch(args.opts) if args.demo else None  # one batch for both: the same sizes and instances
    steps = {"baseline": _BaselineStep(device, baseline_config, batch, args.opts),
             "gan": _GanStep(device, gan_config, batch, args.opts)}
    synchronize = synchronizer(device)
    times = {name: [] for name in steps}
    for i in range(args.warmup + args.iters):
        for name, step in steps.items():
            synchronize()
            start = time.perf_counter()
            step(i)
            synchronize()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    gan = steps["gan"].runner.cfg.MODEL.GAN
    print("GAN: box D {} convs, {} channels, {}; mask D {} convs, {} channels, {}; levels '{}'".format(
        gan.BOX_DISC.NUM_CONVS, gan.BOX_DISC.CHANNELS, gan.BOX_DISC.POOLER_TYPE, gan.MASK_DISC.NUM_CONVS,
        gan.MASK_DISC.CHANNELS, gan.MASK_DISC.POOLER_TYPE, gan.FEATURE_FUSION))
    batch = steps["gan"].batch
    print("Input: {}; {} x {} padded, {} instances; {}, {} threads; median of {} after {} warm-up, alternating".format(
        "the demo's first training batch" if args.demo else "2 synthetic images 400x600", len(batch.image_sizes),
        tuple(batch.tensors.shape[-2:]), [len(t) for t in steps["gan"].targets], device, args.threads, args.iters,
        args.warmup))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in steps:
        print("{:<10} train step median {:.3f} s  (all: {})".format(
            name, medians[name], ", ".join("{:.2f}".format(t) for t in times[name])))
    ratio = medians["gan"] / medians["baseline"]
    print("GAN step / baseline step: {:.2f} ({})".format(ratio, "demo R-18-FPN" if args.demo else "R-50-FPN"))
    if args.profile:
        from maskrcnn_benchmark.utils.stage_timer import format_stage_table

        print("\n" + format_stage_table(profile_steps(steps, args.iters, synchronize),
                                        "Stages of the training step, median of {}:".format(args.iters)))
    return ratio


def profile_steps(steps, iters, synchronize):
    """{name: StageTimer medians} of the baseline and the GAN step (already warmed up by the timing)."""
    from maskrcnn_benchmark.utils.stage_timer import StageTimer

    columns = {}
    for name, step in steps.items():
        timer = StageTimer(synchronize)
        add_detector_stages(timer, "ours", step.runner.model)
        if name == "gan":
            discriminators = step.step.discriminators
            timer.add_modules("D_b", [discriminators.box_disc, discriminators.box_pooler])
            timer.add_modules("D_m", [discriminators.mask_disc, discriminators.mask_pooler])
            timer.add_optimizer(step.step.g_optimizer)
            timer.add_optimizer(step.step.d_optimizer)
        else:
            timer.add_optimizer(step.optimizer)
        for i in range(iters):
            with timer.iteration():
                step(i)
        timer.remove()
        columns[name] = timer.medians()
    return columns


if __name__ == "__main__":
    main()
