#!/usr/bin/env python
"""The small-scale study: Mask R-CNN against four GAN variants on the synthetic hard dataset, several seeds each,
at one schedule, reported as box, mask and Boundary AP mean ± std.

    python tools/study.py --output-dir output/study                      # the study (its cost: docs/results.md)
    python tools/study.py --output-dir /tmp/smoke --iters 4 --seeds 0 --train-images 4 --test-images 2  # smoke

Variants (all on configs/demo/synthetic_R_18_FPN*.yaml, same data, iterations and LR schedule per seed):
  baseline       Mask R-CNN alone
  gan_paper      the box and mask discriminators as in the paper (MODEL.GAN defaults)
  gan_authors    the authors' code (the MODEL.GAN keys of configs/paper/glas/*_gan_authors.yaml: D losses weighted,
                 D_m's embedding, real and fake in separate D calls, G steps before D, ... docs/adversarial.md)
  gan_mask_pixels  D_m judging mask x image pixels instead of mask x features (the abstract's pixel-space claim)
  gan_box_coords   D_b judging normalised box coordinates instead of pooled regions (the abstract's context claim)

The dataset is generated once under --data-dir (train and test from different seeds, so the test AP measures
generalisation). By default every training seed trains on the same draw of training images (data seed 100);
--data-seeds gives each training seed its own draw (e.g. --seeds 0 1 2 --data-seeds 100 101 102), so the seeds'
spread includes the luck of the training set. The test set (data seed 200) is the same for every run.
Each run is tools/train_net.py in a subprocess (run_training of
maskrcnn_benchmark/utils/training_runs.py) in
<output-dir>/<variant>_seed<S>_data<D>_iter<N>/, which records every setting that made it (study_settings.json);
a folder is reused (or resumed) only when they all match, else the study stops and names each difference.
With --test-period the runs also evaluate during training, and the baseline's AP over iterations is printed with
its change over the last evaluation interval (paired t interval over seeds), to check that the schedule is long
enough for it to stop improving.
Prints the table (mean ± std over seeds) and each variant's difference to the baseline with a 95% interval by Welch
over seeds and one by a paired bootstrap over test images (--bootstrap B, 0: off), as text and Markdown, with the
CPU time used; writes <output-dir>/study_results.json.
"""
import argparse
import json
import os
import resource
import sys
from collections import OrderedDict

from maskrcnn_benchmark.utils.intervals import (
    bootstrap_differences,
    format_differences,
    paired_interval,
    seed_differences,
)
from maskrcnn_benchmark.utils.io import save_json
from maskrcnn_benchmark.utils.run_settings import StaleRunError, flatten_config
from maskrcnn_benchmark.utils.tables import aggregate_seeds, format_study, load_results
from maskrcnn_benchmark.utils.training_runs import add_comparison_arguments, check_runs, run_training, scaled_schedule

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TOOLS)
BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "demo", "synthetic_R_18_FPN.yaml")
GAN_CONFIG = os.path.join(REPO_ROOT, "configs", "demo", "synthetic_R_18_FPN_gan.yaml")
TRAIN_DATA_SEED = 100  # the training images' draw when --data-seeds is not given (the one draw of earlier studies)
TEST_DATA_SEED = 200  # the test images' draw, the same for every run

# the authors' variant's MODEL.GAN keys are read from this file (one source for the configs and the study)
AUTHORS_CONFIG = os.path.join(REPO_ROOT, "configs", "paper", "glas", "mask_rcnn_R_50_FPN_glas_gan_authors.yaml")


def authors_code_options(config_file=AUTHORS_CONFIG):
    """The MODEL.GAN keys that ``config_file`` sets, as KEY VALUE options (values as yacs reads them)."""
    import yaml

    with open(config_file) as f:
        gan = yaml.safe_load(f)["MODEL"]["GAN"]
    return [item for key, value in flatten_config(gan, "MODEL.GAN.").items() for item in (key, str(value))]


# name -> (config, extra KEY VALUE options)
VARIANTS = OrderedDict([
    ("baseline", (BASE_CONFIG, [])),
    ("gan_paper", (GAN_CONFIG, [])),
    ("gan_authors", (GAN_CONFIG, authors_code_options())),
    ("gan_mask_pixels", (GAN_CONFIG, ["MODEL.GAN.MASK_DISC.INPUT", "pixels"])),
    ("gan_box_coords", (GAN_CONFIG, ["MODEL.GAN.BOX_DISC.INPUT", "coordinates"])),
])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Baseline vs GAN variants on the synthetic hard dataset")
    parser.add_argument("--output-dir", default="output/study", help="one sub-folder per run is made here")
    parser.add_argument("--data-dir", default=None, help="where the dataset is generated (default: "
                                                          "<output-dir>/data)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (SOLVER.SEED)")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[TRAIN_DATA_SEED],
                        help="seeds of the synthetic training images: one per --seeds entry (paired in order: each "
                             "training seed gets its own draw), or one for all (default: {}, the same draw for "
                             "every seed); must differ from the test set's {}".format(TRAIN_DATA_SEED,
                                                                                      TEST_DATA_SEED))
    parser.add_argument("--iters", type=int, default=1500, help="SOLVER.MAX_ITER of every run (LR steps and "
                                                                 "warm-up scaled from the baseline config)")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic training images")
    parser.add_argument("--test-images", type=int, default=100, help="synthetic test images (another seed)")
    parser.add_argument("--image-size", type=int, default=128, help="side of the synthetic images, px; the "
                                                                    "network sees them 1.5x larger")
    parser.add_argument("--test-period", type=int, default=0, help="SOLVER.TEST_PERIOD of every run (0: evaluate "
                                                                   "at the end only)")
    add_comparison_arguments(parser, "each variant - baseline")
    args = parser.parse_args(argv)
    try:
        args.data_seeds = data_seeds_per_seed(args.seeds, args.data_seeds)
    except ValueError as e:
        parser.error(str(e))
    return args


def data_seeds_per_seed(seeds, data_seeds):
    """{training seed: training-data seed} from --seeds and --data-seeds (one per seed, or one for all)."""
    if len(data_seeds) == 1:
        data_seeds = list(data_seeds) * len(seeds)
    if len(data_seeds) != len(seeds):
        raise ValueError("--data-seeds takes one seed per --seeds entry ({} given for {} seeds) or a single one for "
                         "all".format(len(data_seeds), len(seeds)))
    if TEST_DATA_SEED in data_seeds:
        raise ValueError("--data-seeds {} is the test set's seed: the training images would be the test images; "
                         "use another".format(TEST_DATA_SEED))
    if len(set(seeds)) != len(seeds):
        raise ValueError("--seeds {} repeats a seed".format(" ".join(str(s) for s in seeds)))
    return OrderedDict(zip(seeds, data_seeds))


def split_folder(data_dir, split, num_images, image_size, seed):
    """Where one synthetic split is generated: its name says what it holds."""
    return os.path.join(data_dir, "{}_n{}_px{}_seed{}".format(split, num_images, image_size, seed))


def annotations_of_test_set(data_dir, test_images, image_size):
    """The test set's ground-truth file (the same for every run)."""
    return os.path.join(split_folder(data_dir, "test", test_images, image_size, TEST_DATA_SEED), "annotations.json")


def make_dataset(data_dir, train_images, test_images, image_size, train_seed=TRAIN_DATA_SEED):
    """Generate (once) the train split drawn with `train_seed` and the test split; returns the DATASETS options
    that point a run at them."""
    from maskrcnn_benchmark.data.preparation.synthetic import generate_synthetic_coco

    specs = []
    for split, num_images, seed in (("train", train_images, train_seed), ("test", test_images, TEST_DATA_SEED)):
        paths = generate_synthetic_coco(split_folder(data_dir, split, num_images, image_size, seed), num_images,
                                        image_size, seed)
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


def study(output_dir, variants, seeds, iters, dataset_opts, extra_opts=(), test_period=0, run_fn=None,
          data_seeds=None, settings=None, check_code=True, test_ann_file=None, bootstrap_samples=0, bootstrap_seed=0):
    """Train every variant for every seed at one schedule and aggregate their APs, with each variant's difference
    to the first (the baseline) and its intervals.

    Args:
        dataset_opts: DATASETS options of every run (a list), or {training seed: options} when the seeds train on
            different draws (see make_dataset).
        data_seeds: {training seed: training-data seed} (goes into the folder names and the run records).
        settings: further settings recorded in every run folder (image counts and size, overrides...).
        check_code: False reuses runs made by other code (see run_training).
        test_ann_file, bootstrap_samples, bootstrap_seed: the paired bootstrap over the test images (skipped when
            bootstrap_samples is 0 or test_ann_file is None).
    Returns:
        {"variants": {name: aggregate_seeds(...)}, "runs": {name: [results folders]}, "seeds", "data_seeds",
        "iters", "schedule", "differences": {"welch": seed_differences(...), "bootstrap": ... or None},
        "cpu_seconds" (user + system time of the training subprocesses run now; reused runs count 0)}
    """
    run_fn = run_fn or run_training
    schedule = scaled_schedule(BASE_CONFIG, iters)
    data_seeds = data_seeds or OrderedDict((seed, TRAIN_DATA_SEED) for seed in seeds)
    planned = []
    for seed in seeds:
        seed_dataset = dataset_opts[seed] if isinstance(dataset_opts, dict) else dataset_opts
        common = list(seed_dataset) + list(extra_opts) + ["SOLVER.TEST_PERIOD", str(test_period)]
        for name in variants:
            config, variant_opts = VARIANTS[name]
            run_dir = os.path.join(output_dir, "{}_seed{}_data{}_iter{}".format(name, seed, data_seeds[seed], iters))
            planned.append((config, seed, schedule, run_dir, common + list(variant_opts),
                            dict(settings or {}, variant=name, data_seed=data_seeds[seed], iters=iters)))
    if run_fn is run_training:
        check_runs(planned, check_code)  # a stale folder stops the study before anything trains
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = OrderedDict((name, []) for name in variants)
    for config, seed, schedule, run_dir, opts, run_settings in planned:
        runs[run_settings["variant"]].append(run_fn(config, seed, schedule, run_dir, opts, settings=run_settings,
                                                    check_code=check_code))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = OrderedDict((name, [load_results(folder) for folder in folders]) for name, folders in runs.items())
    stats = OrderedDict((name, aggregate_seeds(per_seed)) for name, per_seed in results.items())
    boot = None
    if bootstrap_samples and test_ann_file and len(runs) > 1:
        boot = bootstrap_differences(runs, test_ann_file, None, bootstrap_samples, bootstrap_seed)
    return {"variants": stats, "runs": runs, "seeds": list(seeds), "data_seeds": list(data_seeds.values()),
            "iters": iters, "schedule": schedule, "cpu_seconds": cpu,
            "differences": {"welch": seed_differences(results), "bootstrap": boot}}


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
    if len(iterations) >= 2:
        # has the baseline stopped improving? the change over the last evaluation interval, seed by seed
        first, last = iterations[-2], iterations[-1]
        for task, name in (("bbox", "box"), ("segm", "mask")):
            pairs = [(100 * c[first][task], 100 * c[last][task]) for c in curves
                     if task in c.get(first, {}) and task in c.get(last, {})]
            if not pairs:
                continue
            change = paired_interval([p[0] for p in pairs], [p[1] for p in pairs])
            interval = "no interval ({})".format(change["note"]) if change["low"] is None else \
                "95% CI [{:+.1f}, {:+.1f}], p {:.2f}".format(change["low"], change["high"], change["p"])
            lines.append("{} AP change from iteration {} to {}: {:+.1f} points, {} (paired t over {} seeds)".format(
                name, first, last, change["diff"], interval, change["n"]))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    data_dir = args.data_dir or os.path.join(args.output_dir, "data")
    dataset_opts = OrderedDict((seed, make_dataset(data_dir, args.train_images, args.test_images, args.image_size,
                                                   data_seed) + input_size_options(args.image_size))
                               for seed, data_seed in args.data_seeds.items())
    settings = {"train_images": args.train_images, "test_images": args.test_images, "image_size": args.image_size,
                "overrides": list(args.opts)}
    try:
        summary = study(args.output_dir, args.variants, args.seeds, args.iters, dataset_opts, args.opts,
                        args.test_period, data_seeds=args.data_seeds, settings=settings,
                        check_code=not args.ignore_code_version,
                        test_ann_file=annotations_of_test_set(data_dir, args.test_images, args.image_size),
                        bootstrap_samples=args.bootstrap, bootstrap_seed=args.bootstrap_seed)
    except StaleRunError as e:
        print(str(e), file=sys.stderr)
        return 2
    title = "Synthetic hard dataset, {} train / {} test images of {} px, {} iterations, seeds {}, data seeds {}".format(
        args.train_images, args.test_images, args.image_size, args.iters, " ".join(str(s) for s in args.seeds),
        " ".join(str(s) for s in args.data_seeds.values()))
    differences = summary["differences"]
    reference = args.variants[0]
    for markdown in {"text": (False,), "markdown": (True,), "both": (False, True)}[args.format]:
        print(format_study(summary["variants"], title, markdown=markdown))
        if differences["welch"]:
            print()
            print(format_differences(differences["welch"], differences["bootstrap"], title, reference,
                                     markdown=markdown))
        print()
    curve = baseline_curve_text(summary)
    if curve:
        print(curve + "\n")
    print("CPU time of the training runs made now: {:.0f} s ({:.2f} h)".format(
        summary["cpu_seconds"], summary["cpu_seconds"] / 3600.0))
    os.makedirs(args.output_dir, exist_ok=True)
    out_file = os.path.join(args.output_dir, "study_results.json")
    save_json(dict(summary, title=title), out_file, indent=1)
    print("written: {}".format(out_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
