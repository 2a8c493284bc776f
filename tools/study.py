#!/usr/bin/env python
"""The small-scale study: Mask R-CNN against four GAN variants on the synthetic hard dataset, several seeds each,
at one schedule, reported as box, mask and Boundary AP mean ± std.

    python tools/study.py --output-dir output/study                      # the study (see README for its cost)
    python tools/study.py --output-dir /tmp/smoke --iters 4 --seeds 0 --train-images 4 --test-images 2  # smoke

Variants (all on configs/demo/synthetic_R_18_FPN*.yaml, same data, iterations and LR schedule per seed):
  baseline       Mask R-CNN alone
  gan_paper      the box and mask discriminators as in the paper (MODEL.GAN defaults)
  gan_authors    the authors' variant (D losses weighted by w_b / w_m, D_m embedding with its input, layer weights)
  gan_mask_pixels  D_m judging mask x image pixels instead of mask x features (the abstract's pixel-space claim)
  gan_box_coords   D_b judging normalised box coordinates instead of pooled regions (the abstract's context claim)

The dataset is generated once under --data-dir (train and test from different seeds, so the test AP measures
generalisation). Each run is tools/train_net.py in a subprocess (run_training of
maskrcnn_benchmark/utils/training_runs.py; a run whose results exist is reused). With --test-period the runs also
evaluate during training, and the baseline's AP over iterations is printed, to check that the schedule is long
enough for it to stop improving.
Writes <output-dir>/study_results.json and prints the table as text and Markdown, with the CPU time used.
"""
import argparse
import json
import os
import resource
import sys
from collections import OrderedDict

from maskrcnn_benchmark.utils.io import save_json
from maskrcnn_benchmark.utils.tables import aggregate_seeds, format_study, load_results
from maskrcnn_benchmark.utils.training_runs import run_training, scaled_schedule

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TOOLS)
BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "demo", "synthetic_R_18_FPN.yaml")
GAN_CONFIG = os.path.join(REPO_ROOT, "configs", "demo", "synthetic_R_18_FPN_gan.yaml")

# name -> (config, extra KEY VALUE options)
VARIANTS = OrderedDict([
    ("baseline", (BASE_CONFIG, [])),
    ("gan_paper", (GAN_CONFIG, [])),
    ("gan_authors", (GAN_CONFIG, ["MODEL.GAN.D_LOSS_WEIGHTED", "True", "MODEL.GAN.MASK_DISC.EMBED_INPUT", "True",
                                  "MODEL.GAN.MASK_DISC.LAYER_WEIGHTS", "(1.0, 2.0, 2.0, 2.0, 4.0)"])),
    ("gan_mask_pixels", (GAN_CONFIG, ["MODEL.GAN.MASK_DISC.INPUT", "pixels"])),
    ("gan_box_coords", (GAN_CONFIG, ["MODEL.GAN.BOX_DISC.INPUT", "coordinates"])),
])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Baseline vs GAN variants on the synthetic hard dataset")
    parser.add_argument("--output-dir", default="output/study", help="one sub-folder per run is made here")
    parser.add_argument("--data-dir", default=None, help="where the dataset is generated (default: "
                                                          "<output-dir>/data)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=1500, help="SOLVER.MAX_ITER of every run (LR steps and "
                                                                 "warm-up scaled from the baseline config)")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic training images")
    parser.add_argument("--test-images", type=int, default=100, help="synthetic test images (another seed)")
    parser.add_argument("--image-size", type=int, default=128, help="side of the synthetic images, px; the "
                                                                    "network sees them 1.5x larger")
    parser.add_argument("--test-period", type=int, default=0, help="SOLVER.TEST_PERIOD of every run (0: evaluate "
                                                                   "at the end only)")
    parser.add_argument("--format", choices=("text", "markdown", "both"), default="both")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to every run")
    return parser.parse_args(argv)


def make_dataset(data_dir, train_images, test_images, image_size):
    """Generate (once) the train and test splits; returns the DATASETS options that point every run at them."""
    from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco

    specs = []
    for split, num_images, seed in (("train", train_images, 100), ("test", test_images, 200)):
        folder = os.path.join(data_dir, "{}_n{}_px{}_seed{}".format(split, num_images, image_size, seed))
        paths = generate_synthetic_coco(folder, num_images, image_size, seed)
        specs.append("study_{}:{}:{}".format(split, paths["ann_file"], paths["img_dir"]))
    return ["DATASETS.CUSTOM", str(tuple(specs)), "DATASETS.TRAIN", "('study_train',)",
            "DATASETS.TEST", "('study_test',)"]


def input_size_options(image_size):
    """INPUT sizes that show the network the images 1.5x larger (the demo config's ratio)."""
    side = int(round(1.5 * image_size))
    return ["INPUT.MIN_SIZE_TRAIN", "({},)".format(side), "INPUT.MAX_SIZE_TRAIN", str(2 * side),
            "INPUT.MIN_SIZE_TEST", str(side), "INPUT.MAX_SIZE_TEST", str(2 * side)]


def eval_curve(run_dir):
    """{iteration: {"bbox": AP, "segm": AP, ...}} from the "eval" records of run_dir/metrics.json (fractions)."""
    path = os.path.join(run_dir, "metrics.json")
    curve = {}
    if not os.path.isfile(path):
        return curve
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            for key, value in record.get("eval", {}).items():
                parts = key.split("/")  # <dataset>/<task>/<metric>
                if len(parts) == 3 and parts[2] == "AP":
                    curve.setdefault(record["iteration"], {})[parts[1]] = value
    return curve


def study(output_dir, variants, seeds, iters, dataset_opts, extra_opts=(), test_period=0, run_fn=None):
    """Train every variant for every seed at one schedule and aggregate their APs.

    Returns:
        {"variants": {name: aggregate_seeds(...)}, "runs": {name: [results folders]}, "seeds", "iters",
        "schedule", "cpu_seconds" (user + system time of the training subprocesses run now; reused runs count 0)}
    """
    run_fn = run_fn or run_training
    schedule = scaled_schedule(BASE_CONFIG, iters)
    common = list(dataset_opts) + list(extra_opts) + ["SOLVER.TEST_PERIOD", str(test_period)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = OrderedDict((name, []) for name in variants)
    for seed in seeds:
        for name in variants:
            config, variant_opts = VARIANTS[name]
            run_dir = os.path.join(output_dir, "{}_seed{}_iter{}".format(name, seed, iters))
            runs[name].append(run_fn(config, seed, schedule, run_dir, common + list(variant_opts)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = OrderedDict((name, aggregate_seeds([load_results(folder) for folder in folders]))
                        for name, folders in runs.items())
    return {"variants": stats, "runs": runs, "seeds": list(seeds), "iters": iters, "schedule": schedule,
            "cpu_seconds": cpu}


def baseline_curve_text(summary):
    """The baseline's AP over the evaluated iterations, averaged over seeds (empty without --test-period)."""
    folders = summary["runs"].get("baseline", [])
    curves = [eval_curve(os.path.dirname(os.path.dirname(folder))) for folder in folders]  # <run>/inference/<ds>
    iterations = sorted(set().union(*[set(c) for c in curves])) if curves else []
    if not iterations:
        return ""
    lines = ["baseline AP over iterations (mean over seeds, %): iteration  box  mask"]
    for iteration in iterations:
        values = {task: [c[iteration][task] for c in curves if task in c.get(iteration, {})]
                  for task in ("bbox", "segm")}
        cells = ["{:.1f}".format(100 * sum(v) / len(v)) if v else "n/a" for v in values.values()]
        lines.append("  {:>6}  {}".format(iteration, "  ".join(cells)))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    data_dir = args.data_dir or os.path.join(args.output_dir, "data")
    dataset_opts = make_dataset(data_dir, args.train_images, args.test_images, args.image_size)
    summary = study(args.output_dir, args.variants, args.seeds, args.iters,
                    dataset_opts + input_size_options(args.image_size), args.opts, args.test_period)
    title = "Synthetic hard dataset, {} train / {} test images of {} px, {} iterations, seeds {}".format(
        args.train_images, args.test_images, args.image_size, args.iters, " ".join(str(s) for s in args.seeds))
    if args.format in ("text", "both"):
        print(format_study(summary["variants"], title))
    if args.format == "both":
        print()
    if args.format in ("markdown", "both"):
        print(format_study(summary["variants"], title, markdown=True))
    curve = baseline_curve_text(summary)
    if curve:
        print("\n" + curve)
    print("\nCPU time of the training runs made now: {:.0f} s ({:.2f} h)".format(
        summary["cpu_seconds"], summary["cpu_seconds"] / 3600.0))
    os.makedirs(args.output_dir, exist_ok=True)
    out_file = os.path.join(args.output_dir, "study_results.json")
    save_json(dict(summary, title=title), out_file, indent=1)
    print("written: {}".format(out_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
