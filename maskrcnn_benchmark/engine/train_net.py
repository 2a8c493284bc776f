"""The body of tools/train_net.py: train a detector from a config file, then evaluate it on DATASETS.TEST.

``main(argv)`` is the command line (``--config-file FILE [--skip-test] [KEY VALUE ...]``) and returns the trained
model; ``train(cfg, distributed, device)`` is the same run from a frozen config. Scripts and tests import them from
here rather than loading the tool by path (anchor: detectron2's ``engine/defaults.py`` beside its thin tools).

SOLVER.IMS_PER_BATCH and TEST.IMS_PER_BATCH are global batch sizes, split evenly over the processes.
DTYPE bfloat16 (CPU or CUDA) or float16 (CUDA, with loss scaling) trains under torch.autocast.

Resumes automatically from OUTPUT_DIR/last_checkpoint when it exists (on the CPU with the same seed and
process count and DATALOADER.NUM_WORKERS 0, a run killed at any moment and resumed ends bit-identical to an
uninterrupted one); otherwise a new run starts at iteration 0 with its weights initialised from MODEL.WEIGHT
(weights only: never another run's iteration, optimizer, scheduler or generator states; the class-specific
layers are kept only for the same category names, see utils/class_layers.py).
With MODEL.GAN.ENABLED the iteration is the adversarial one of engine/adversarial.py and the discriminators,
their optimizer and scheduler are saved in the same checkpoints.
SOLVER.BEST_CHECKPOINT_METRIC keeps model_best.pth from the evaluations; SOLVER.EARLY_STOP_PATIENCE stops training
early (engine/best_checkpoint.py).
"""
import logging
import os

from maskrcnn_benchmark.data import make_data_loader
from maskrcnn_benchmark.data.categories import dataset_categories
from maskrcnn_benchmark.engine.best_checkpoint import BestCheckpoint, check_best_checkpoint_config
from maskrcnn_benchmark.engine.defaults import default_argument_parser, default_setup, stalled_processes_reported
from maskrcnn_benchmark.engine.inference import run_test
from maskrcnn_benchmark.engine.mixed_precision import build_mixed_precision
from maskrcnn_benchmark.engine.train_step import distribute_module, make_baseline_train_step
from maskrcnn_benchmark.engine.trainer import PeriodicCheckpoint, do_train, resume_arguments, write_evaluation_metrics
from maskrcnn_benchmark.modeling.detector import build_detection_model
from maskrcnn_benchmark.solver import make_lr_scheduler, make_optimizer
from maskrcnn_benchmark.utils.checkpoint import DetectronCheckpointer
from maskrcnn_benchmark.utils.comm import get_rank, synchronize
from maskrcnn_benchmark.utils.miscellaneous import save_config, set_random_seed


def evaluation_metrics(results, dataset_names):
    """Flatten run_test's results into {"<dataset>/<iou type>/<metric>": value} (empty on non-main ranks)."""
    metrics = {}
    for dataset_name, result in zip(dataset_names, results):
        coco_results = result[0] if isinstance(result, tuple) and result else result
        for iou_type, values in getattr(coco_results, "results", {}).items():
            for metric, value in values.items():
                metrics["{}/{}/{}".format(dataset_name, iou_type, metric)] = float(value)
    return metrics


def train(cfg, distributed, device, test_at_end=True):
    """Build model, optimizer, scheduler, checkpointer and loader; run do_train.

    Under torch.distributed the detector and the discriminators get one DistributedDataParallel wrapper each;
    the checkpoint holds both bare modules, both optimizers, both schedulers, both loss scalers, the
    iteration and every process's generator states (the data order follows from the iteration).
    With ``test_at_end`` (or SOLVER.TEST_PERIOD) the test sets are built at start too, so a missing image or a
    broken annotation file of DATASETS.TEST stops the run before training rather than after it; with
    ``test_at_end`` the trained model is then evaluated (metrics.json; with SOLVER.BEST_CHECKPOINT_METRIC it
    competes for model_best.pth).

    Returns:
        the trained model.
    """
    check_best_checkpoint_config(cfg)
    logger = logging.getLogger("maskrcnn_benchmark.trainer")
    model = build_detection_model(cfg)
    model.to(device)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_lr_scheduler(cfg, optimizer)
    precision = build_mixed_precision(cfg, device)
    g_scaler = precision.grad_scaler()
    if precision.enabled:
        logger.info("Mixed precision: %s", precision)
    if distributed:
        model = distribute_module(model, device)

    extra = {"grad_scaler": g_scaler}
    if cfg.MODEL.GAN.ENABLED:
        from maskrcnn_benchmark.engine.adversarial import build_adversarial_train_step

        train_step = build_adversarial_train_step(cfg, model, optimizer, device=device, precision=precision,
                                                  g_scaler=g_scaler, distributed=distributed)
        extra.update(train_step.checkpoint_entries())
    else:
        train_step = make_baseline_train_step(model, optimizer, precision, g_scaler)

    output_dir = cfg.OUTPUT_DIR
    checkpointer = DetectronCheckpointer(cfg, model, optimizer, scheduler, output_dir,
                                         save_to_disk=get_rank() == 0, extra=extra)
    # Every process reads the same file, so the replicas start equal (DDP also broadcasts rank 0's weights).
    resumed_from = None
    if checkpointer.has_checkpoint():
        resumed_from, checkpoint_data = checkpointer.resume()
        arguments = resume_arguments(checkpoint_data)
    else:
        arguments = {"iteration": 0}
    data_loader = make_data_loader(cfg, is_train=True, is_distributed=distributed,
                                   start_iter=arguments["iteration"])
    # Saved with every checkpoint, so test_net and demo know what the model's labels mean.
    arguments["categories"] = dataset_categories(data_loader.dataset)
    if resumed_from is not None:
        saved_categories = checkpoint_data.get("categories")
        if saved_categories is not None and arguments["categories"] is not None and \
                [c["name"] for c in saved_categories] != [c["name"] for c in arguments["categories"]]:
            raise ValueError(
                "OUTPUT_DIR '{}' holds a run trained on categories {} ({}), but DATASETS.TRAIN {} has {}: a run "
                "resumes only with its own training set. To train on the new categories, choose a new OUTPUT_DIR "
                "and set MODEL.WEIGHT {} (its class layers are then matched by name)".format(
                    output_dir, [c["name"] for c in saved_categories], resumed_from, list(cfg.DATASETS.TRAIN),
                    [c["name"] for c in arguments["categories"]], resumed_from))
        logger.info("Resuming at iteration %d of %d from %s (OUTPUT_DIR/last_checkpoint): weights, optimizer, "
                    "scheduler and generator states%s", arguments["iteration"], cfg.SOLVER.MAX_ITER, resumed_from,
                    "; MODEL.WEIGHT is not used (it initialises new runs only)" if cfg.MODEL.WEIGHT else "")
    elif cfg.MODEL.WEIGHT:
        # A new run in this OUTPUT_DIR: weights only, from any file (another run's model_final.pth included).
        logger.info("Initialising from %s (MODEL.WEIGHT): weights only, training starts at iteration 0 of %d",
                    cfg.MODEL.WEIGHT, cfg.SOLVER.MAX_ITER)
        checkpointer.initialise(cfg.MODEL.WEIGHT, arguments["categories"])
    else:
        logger.info("No MODEL.WEIGHT and no checkpoint in OUTPUT_DIR: training from scratch, iteration 0 of %d",
                    cfg.SOLVER.MAX_ITER)
    if cfg.SOLVER.TEST_PERIOD > 0 or test_at_end:
        # Builds the test sets now: their annotation files and image files are checked before hours of training.
        make_data_loader(cfg, is_train=False, is_distributed=distributed)

    def test_fn(iteration):
        results = run_test(cfg, model, distributed, output_subdir="iter_{:07d}".format(iteration),
                           model_categories=arguments["categories"])
        synchronize()
        return evaluation_metrics(results, cfg.DATASETS.TEST)

    do_train(
        model, data_loader, optimizer, scheduler, checkpointer, device, cfg.SOLVER.CHECKPOINT_PERIOD, arguments,
        train_step=train_step, test_period=cfg.SOLVER.TEST_PERIOD,
        test_fn=test_fn if cfg.SOLVER.TEST_PERIOD > 0 else None, output_dir=output_dir,
        skip_nonfinite_steps=cfg.SOLVER.SKIP_NONFINITE_STEPS,
        checkpoint_keep=cfg.SOLVER.CHECKPOINT_KEEP, best_checkpoint_metric=cfg.SOLVER.BEST_CHECKPOINT_METRIC,
        early_stop_patience=cfg.SOLVER.EARLY_STOP_PATIENCE,
    )
    if test_at_end:
        final_iteration = arguments["iteration"]  # SOLVER.MAX_ITER, or where early stopping stopped
        results = run_test(cfg, model, distributed, model_categories=arguments["categories"])
        metrics = evaluation_metrics(results, cfg.DATASETS.TEST)
        best = None
        if cfg.SOLVER.BEST_CHECKPOINT_METRIC and not arguments["best_checkpoint"]["stopped_early"]:
            # the final model competes too (an early stop's final model was the last periodic evaluation's)
            best = BestCheckpoint(checkpointer, cfg.SOLVER.BEST_CHECKPOINT_METRIC, cfg.SOLVER.EARLY_STOP_PATIENCE,
                                  arguments, save=lambda name: PeriodicCheckpoint(
                                      checkpointer, 0, 0, final_iteration, arguments).save(name, tag_last=False)
                                  ).update(final_iteration, metrics)
        write_evaluation_metrics(output_dir, final_iteration, metrics, best)
    return model


def parse_args(argv=None):
    """tools/train_net.py's command line: default_argument_parser's plus ``--skip-test``."""
    def add_train_arguments(parser):
        parser.add_argument("--skip-test", dest="skip_test", action="store_true",
                            help="Do not test the final model")

    return default_argument_parser("PyTorch Object Detection Training", add_train_arguments).parse_args(argv)


def main(argv=None):
    """Run tools/train_net.py with ``argv`` (default: sys.argv[1:]): set up, save OUTPUT_DIR/config.yml, seed
    SOLVER.SEED (+ rank), train and, unless ``--skip-test``, evaluate. Returns the trained model."""
    args = parse_args(argv)
    cfg, distributed, _, device, logger = default_setup(args)
    output_dir = cfg.OUTPUT_DIR
    if output_dir:
        output_config_path = os.path.join(output_dir, "config.yml")
        logger.info("Saving config into: %s", output_config_path)
        save_config(cfg, output_config_path)
    seed = set_random_seed(cfg.SOLVER.SEED, get_rank())
    logger.info("Random seed %d", seed)

    with stalled_processes_reported(cfg, distributed):
        return train(cfg, distributed, device, test_at_end=not args.skip_test)


__all__ = ["evaluation_metrics", "main", "parse_args", "train"]
