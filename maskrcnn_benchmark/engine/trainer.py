"""The training loop: one plain function, with the per-iteration optimisation step pluggable."""
import datetime
import json
import logging
import os
import resource
import time

import torch

from maskrcnn_benchmark.engine.best_checkpoint import BestCheckpoint
from maskrcnn_benchmark.engine.train_step import NonFiniteLossError, check_finite_losses, make_baseline_train_step
from maskrcnn_benchmark.modeling.utils import NonFiniteTensorError
from maskrcnn_benchmark.utils.comm import (
    all_gather,
    get_rank,
    is_main_process,
    reduce_dict,
)
from maskrcnn_benchmark.utils.metric_logger import MetricLogger
from maskrcnn_benchmark.utils.random_state import get_rng_state, set_rng_state

LOG_PERIOD = 20  # iterations between log lines (the last iteration is always logged)


def _max_memory_mb(device):
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 1024.0 / 1024.0
    # On CPU: peak resident set size of this process (ru_maxrss is in KiB on Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _ScalarWriters:
    """metrics.json (one JSON object per logged iteration) and, if available, TensorBoard scalars."""

    def __init__(self, output_dir):
        self.json_file = None
        self.tensorboard = None
        if not output_dir or not is_main_process():
            return
        os.makedirs(output_dir, exist_ok=True)
        # Append: a resumed run continues the same file.
        self.json_file = open(os.path.join(output_dir, "metrics.json"), "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            SummaryWriter = None
        if SummaryWriter is not None:
            self.tensorboard = SummaryWriter(log_dir=os.path.join(output_dir, "tensorboard"))

    def write(self, record):
        """Append ``record`` (one JSON line); TensorBoard gets train/<loss>, train/lr, train/time and
        eval/<metric> scalars at record["iteration"]."""
        if self.json_file is not None:
            self.json_file.write(json.dumps(record) + "\n")
            self.json_file.flush()
        if self.tensorboard is not None:
            iteration = record["iteration"]
            for name, value in record.get("losses", {}).items():
                self.tensorboard.add_scalar("train/" + name, value, iteration)
            for name in ("loss", "lr", "time", "data_time"):
                if name in record:
                    self.tensorboard.add_scalar("train/" + name, record[name], iteration)
            for name, value in record.get("eval", {}).items():
                self.tensorboard.add_scalar("eval/" + name, value, iteration)

    def close(self):
        if self.json_file is not None:
            self.json_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def write_evaluation_metrics(output_dir, iteration, metrics, best=None):
    """Append ``{"iteration", "eval": metrics}`` to output_dir/metrics.json and eval/<name> TensorBoard scalars
    (main process only), e.g. for the evaluation that follows training.

    Arguments:
        output_dir (str), iteration (int), metrics (dict name -> float).
        best (dict or None): BestCheckpoint.update's verdict on this evaluation, added to the record as "best".
    """
    if not metrics:
        return
    writers = _ScalarWriters(output_dir)
    try:
        record = {"iteration": iteration, "eval": {k: float(v) for k, v in metrics.items()}}
        if best is not None:
            record["best"] = best
        writers.write(record)
    finally:
        writers.close()


# What a resumed run continues from: the loop's position, its skip count, the thread count it ran with, every
# process's generator states and the best evaluation so far. Everything else in a checkpoint is either restored
# by the Checkpointer (weights, optimizers, schedulers, scalers) or rewritten by this run (categories).
RESUMED_ENTRIES = ("iteration", "skipped_nonfinite_steps", "num_threads", "rng_states", "best_checkpoint")


def resume_arguments(checkpoint_data):
    """The ``arguments`` for :func:`do_train` of a resumed run, from what ``Checkpointer.resume`` left over.

    Args:
        checkpoint_data (dict): the checkpoint's remaining entries.
    Returns:
        dict with "iteration" (0 when absent) and those of RESUMED_ENTRIES the checkpoint has.
    """
    arguments = {key: checkpoint_data[key] for key in RESUMED_ENTRIES if key in checkpoint_data}
    arguments.setdefault("iteration", 0)
    return arguments


def gather_rng_states():
    """Every process's generator states, in rank order (a collective: call it on all processes)."""
    return all_gather(get_rng_state())


def restore_rng_states(rng_states):
    """Restore this process's entry of :func:`gather_rng_states`'s list (saved in a checkpoint).

    A process without an entry (resumed with more processes than saved) keeps its freshly seeded generators;
    the run goes on, but it no longer repeats an uninterrupted one exactly.
    """
    rank = get_rank()
    if rank >= len(rng_states):
        logging.getLogger("maskrcnn_benchmark.trainer").warning(
            "The checkpoint holds generator states of %d processes; rank %d keeps its seeded generators (resume "
            "with the same number of processes for an exact continuation)", len(rng_states), rank)
        return
    set_rng_state(rng_states[rank])


def check_thread_count(saved_num_threads, logger=None):
    """Warn when a resumed run uses another torch.get_num_threads() than the run that wrote the checkpoint.

    CPU kernels split their reductions by thread, so the same step with another thread count gives slightly
    different floats: the resumed run then no longer repeats an uninterrupted one bit for bit.
    Returns True when the counts match (or the checkpoint does not record one).
    """
    current = torch.get_num_threads()
    if saved_num_threads is None or int(saved_num_threads) == current:
        return True
    (logger or logging.getLogger("maskrcnn_benchmark.trainer")).warning(
        "The checkpoint was written with %d CPU threads and this run uses %d (torch.get_num_threads()): results "
        "will differ from an uninterrupted run. Set OMP_NUM_THREADS=%d to continue it exactly",
        int(saved_num_threads), current, int(saved_num_threads))
    return False


class NonFiniteGuard(object):
    """The skip policy for non-finite steps (SOLVER.SKIP_NONFINITE_STEPS).

    ``run`` calls the train step; a step that raised NonFiniteLossError (nothing updated) is skipped while
    fewer than ``skip_limit`` steps were skipped in the whole run (counted in ``arguments``, so the count
    survives a resume), and one more stops training with a FloatingPointError naming the terms, the
    iteration, the last good checkpoint and what to change.
    """

    def __init__(self, skip_limit, arguments, checkpointer, logger):
        self.skip_limit = skip_limit
        self.arguments = arguments
        self.checkpointer = checkpointer
        self.logger = logger
        arguments.setdefault("skipped_nonfinite_steps", 0)

    def run(self, train_step, images, targets, iteration):
        """Returns train_step's dict, or None for a skipped step."""
        try:
            try:
                loss_dict = train_step(images, targets, iteration)
            except NonFiniteTensorError as error:
                # found inside the forward pass: share it the way the losses' check would have
                check_finite_losses({}, iteration, {error.name: "{} of {} values NaN or inf".format(
                    error.count, error.total)})
                raise  # not reached: check_finite_losses raised NonFiniteLossError
        except NonFiniteLossError as error:
            skipped = self.arguments["skipped_nonfinite_steps"]
            if skipped >= self.skip_limit:
                raise self.stop(error, iteration) from error
            self.arguments["skipped_nonfinite_steps"] = skipped + 1
            self.logger.warning("Skipped iteration %d: %s (%d of at most %d skipped steps)", iteration, error,
                                skipped + 1, self.skip_limit)
            return None  # nothing was updated: the parameters are still the last good ones
        # A step that updated before checking (a custom train_step) cannot be undone: stop before the corrupted
        # parameters reach a checkpoint. Losses only: statistics such as D's may be absent on some processes.
        try:
            check_finite_losses({k: v for k, v in loss_dict.items() if k.startswith("loss")}, iteration)
        except NonFiniteLossError as error:
            raise self.stop(error, iteration) from error
        return loss_dict

    def stop(self, error, iteration):
        last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else "none written yet"
        return FloatingPointError(
            "{} is not finite at iteration {} ({}). Training stopped; the last good checkpoint is {}. Lower "
            "SOLVER.BASE_LR, raise SOLVER.WARMUP_ITERS, or raise SOLVER.SKIP_NONFINITE_STEPS (now {}, {} "
            "step(s) skipped before) to skip such steps".format(
                ", ".join(error.names), iteration, error, last, self.skip_limit,
                self.arguments["skipped_nonfinite_steps"]))


class TrainingMetrics(object):
    """The per-iteration numbers: smoothed in a MetricLogger, logged every ``log_period`` iterations (and at the
    last) as ``median (global avg)`` with lr, time, ETA and peak memory, and appended to
    ``output_dir/metrics.json`` (and TensorBoard) at the same iterations.

    "loss" is the detector's objective: the sum of the entries starting with "loss", except the
    discriminator's (ending in "_disc"), which are logged but not added in.
    """

    def __init__(self, output_dir, max_iter, device, log_period=LOG_PERIOD, logger=None):
        self.meters = MetricLogger(delimiter="  ")
        self.writers = _ScalarWriters(output_dir)
        self.max_iter = max_iter
        self.device = device
        self.log_period = log_period
        self.logger = logger or logging.getLogger("maskrcnn_benchmark.trainer")

    def update(self, loss_dict, iteration, batch_time, data_time, lr, skipped_steps):
        # Reduced over processes for logging only; the gradients were already averaged by DDP.
        loss_dict_reduced = reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        loss_names = [k for k in loss_dict_reduced if k.startswith("loss") and not k.endswith("_disc")]
        losses_reduced = sum(loss_dict_reduced[k] for k in loss_names) if loss_names else torch.zeros(())
        self.meters.update(loss=losses_reduced, **loss_dict_reduced)
        self.meters.update(time=batch_time, data=data_time)
        if iteration % self.log_period != 0 and iteration != self.max_iter:
            return
        eta_string = str(datetime.timedelta(seconds=int(self.meters.time.global_avg * (self.max_iter - iteration))))
        self.logger.info(self.meters.delimiter.join([
            "eta: {eta}", "iter: {iter}", "{meters}", "lr: {lr:.6f}", "max mem: {memory:.0f}",
        ]).format(eta=eta_string, iter=iteration, meters=str(self.meters), lr=lr, memory=_max_memory_mb(self.device)))
        self.writers.write({
            "iteration": iteration, "losses": {k: float(v) for k, v in loss_dict_reduced.items()},
            "loss": float(losses_reduced), "lr": lr, "time": batch_time, "data_time": data_time,
            "skipped_nonfinite_steps": skipped_steps,
        })

    def write_evaluation(self, iteration, metrics, best=None):
        """One metrics.json line {"iteration", "eval": metrics} (plus "best": BestCheckpoint.update's verdict)."""
        if metrics:
            record = {"iteration": iteration, "eval": {k: float(v) for k, v in metrics.items()}}
            if best is not None:
                record["best"] = best
            self.writers.write(record)

    def close(self):
        self.writers.close()


class PeriodicCheckpoint(object):
    """``model_{iteration:07d}`` every ``period`` iterations (<= 0: none), then pruning to the newest ``keep``
    (0 keeps all), and ``model_final`` at ``max_iter``; each file holds ``arguments`` and every process's
    generator states (a collective: every process calls ``save``)."""

    def __init__(self, checkpointer, period, keep, max_iter, arguments):
        if keep < 0:
            raise ValueError("SOLVER.CHECKPOINT_KEEP must be >= 0 (0 keeps every periodic checkpoint), got {}".format(
                keep))
        self.checkpointer, self.period, self.keep, self.max_iter = checkpointer, period, keep, max_iter
        self.arguments = arguments

    def save(self, name, tag_last=True):
        # every process takes part in gathering the generator states; only the checkpointer's writes to disk
        self.checkpointer.save(name, tag_last=tag_last, rng_states=gather_rng_states(), **self.arguments)

    def after_iteration(self, iteration):
        if self.period > 0 and iteration % self.period == 0:
            self.save("model_{:07d}".format(iteration))
            self.checkpointer.prune_periodic_checkpoints(self.keep)


class PeriodicEvaluation(object):
    """``test_fn(iteration)`` every ``period`` iterations before the last (the final test is the caller's); its
    metrics go to ``metrics`` and, with a ``best`` (BestCheckpoint), decide model_best.pth and early stopping;
    the model is put back in train mode after."""

    def __init__(self, test_fn, period, max_iter, model, metrics, best=None):
        self.test_fn, self.period, self.max_iter, self.model, self.metrics = test_fn, period, max_iter, model, metrics
        self.best = best

    def after_iteration(self, iteration):
        if self.test_fn is None or self.period <= 0 or iteration % self.period != 0 or iteration == self.max_iter:
            return
        results = self.test_fn(iteration)
        verdict = self.best.update(iteration, results or {}) if self.best is not None else None
        self.metrics.write_evaluation(iteration, results, verdict)
        self.model.train()


def do_train(model, data_loader, optimizer, scheduler, checkpointer, device, checkpoint_period, arguments,
             train_step=None, test_period=0, test_fn=None, output_dir=None, log_period=LOG_PERIOD,
             skip_nonfinite_steps=0, checkpoint_keep=0, best_checkpoint_metric="", early_stop_patience=0):
    """Train until the data loader is exhausted (its length is the total iteration count, SOLVER.MAX_ITER).

    Every iteration: move the batch to ``device``, call ``train_step`` through the NonFiniteGuard, step the
    scheduler (skipped steps included, so the learning rate is a function of the iteration), record the
    TrainingMetrics, then the PeriodicCheckpoint and PeriodicEvaluation.

    Args:
        model: the detector; put in train mode here.
        data_loader: yields (images ImageList, targets list[BoxList], image_ids); built with
            ``start_iter=arguments["iteration"]`` so a resumed run continues where it stopped.
        optimizer, scheduler: the detector's; the scheduler is stepped once per iteration.
        checkpointer: Checkpointer; saves ``model_{iteration:07d}`` every ``checkpoint_period`` iterations
            (<= 0: only model_final) and ``model_final`` at the end, with ``arguments`` and every process's
            generator states (``rng_states``) in the file.
        device: torch.device the batch is moved to.
        arguments: dict saved in every checkpoint; a resumed run passes :func:`resume_arguments` of its
            checkpoint, a new run ``{"iteration": 0}``. ``arguments["iteration"]`` is the iteration to start from
            and is kept up to date; ``arguments["skipped_nonfinite_steps"]`` counts skipped steps;
            ``arguments["num_threads"]`` (read on resume, see :func:`check_thread_count`) is set to this run's
            torch.get_num_threads(), part of what makes a resumed run repeat an uninterrupted one;
            ``arguments["rng_states"]`` (a resumed checkpoint's generator states) is taken out and restored after
            the data loader's iterator exists (creating it draws from the generator), so the continuation is
            exact.
        train_step: callable (images, targets, iteration) -> dict name -> 0-dim Tensor of values to log; it
            does the forward/backward/optimizer work and raises NonFiniteLossError before updating anything
            with a non-finite loss. Default: :func:`make_baseline_train_step`. The adversarial step
            (engine/adversarial.py) plugs in here.
        test_period, test_fn: ``test_fn(iteration)`` (returning None or dict metric name -> float, written to
            metrics.json and TensorBoard) every ``test_period`` iterations (SOLVER.TEST_PERIOD; 0 = never).
        output_dir: where metrics.json (and TensorBoard events) go; None disables them.
        skip_nonfinite_steps: SOLVER.SKIP_NONFINITE_STEPS (see NonFiniteGuard).
        checkpoint_keep: SOLVER.CHECKPOINT_KEEP (see PeriodicCheckpoint).
        best_checkpoint_metric, early_stop_patience: SOLVER.BEST_CHECKPOINT_METRIC and EARLY_STOP_PATIENCE
            (see engine/best_checkpoint.py): model_best.pth from the evaluations of ``test_fn``; once
            ``early_stop_patience`` evaluations in a row did not improve, model_final is written and training
            stops before SOLVER.MAX_ITER (``arguments["iteration"]`` says where).
    Returns:
        the MetricLogger (TrainingMetrics.meters).
    Raises:
        FloatingPointError naming the loss term and the iteration; no checkpoint is written after it, so
        ``last_checkpoint`` still names the last good one.
    """
    logger = logging.getLogger("maskrcnn_benchmark.trainer")
    max_iter, start_iter = len(data_loader), arguments["iteration"]
    checkpoints = PeriodicCheckpoint(checkpointer, checkpoint_period, checkpoint_keep, max_iter, arguments)
    best = (BestCheckpoint(checkpointer, best_checkpoint_metric, early_stop_patience, arguments,
                           save=lambda name: checkpoints.save(name, tag_last=False), logger=logger)
            if best_checkpoint_metric else None)
    guard = NonFiniteGuard(skip_nonfinite_steps, arguments, checkpointer, logger)
    logger.info("Start training")
    # the saved states are restored, not saved back: every checkpoint gathers the current ones
    rng_states = arguments.pop("rng_states", None)
    if start_iter > 0:
        check_thread_count(arguments.get("num_threads"), logger)
        if rng_states is None:
            logger.warning("The checkpoint holds no generator states: the resumed run will not repeat the "
                           "random draws of an uninterrupted one")
    arguments["num_threads"] = torch.get_num_threads()
    train_step = train_step or make_baseline_train_step(model, optimizer)
    metrics = TrainingMetrics(output_dir, max_iter, device, log_period, logger)
    # Evaluation before the checkpoint of the same iteration: that checkpoint then holds what the evaluation
    # decided (best value, evaluations without improvement) and the generator states after it (creating the test
    # loader's iterator draws from them), so a run resumed from it repeats the uninterrupted one.
    periodic = [PeriodicEvaluation(test_fn, test_period, max_iter, model, metrics, best), checkpoints]
    stopped_early = best is not None and best.should_stop

    model.train()
    start_training_time = end = time.time()
    batches = iter(data_loader)
    if rng_states is not None:
        restore_rng_states(rng_states)
    try:
        if stopped_early:
            logger.info("This run stopped early at iteration %d (SOLVER.EARLY_STOP_PATIENCE): nothing to train; "
                        "model_final is written from the checkpoint's state", start_iter)
            checkpoints.save("model_final")
            batches = ()
        for iteration, (images, targets, _) in enumerate(batches, start_iter + 1):
            data_time = time.time() - end
            arguments["iteration"] = iteration
            loss_dict = guard.run(train_step, images.to(device), [t.to(device) for t in targets], iteration)
            scheduler.step()
            if loss_dict is not None:
                metrics.update(loss_dict, iteration, time.time() - end, data_time, optimizer.param_groups[0]["lr"],
                               arguments["skipped_nonfinite_steps"])
            end = time.time()
            for action in periodic:
                action.after_iteration(iteration)
            if iteration == max_iter or (best is not None and best.should_stop):
                checkpoints.save("model_final")
                break
        if start_iter >= max_iter and not stopped_early:
            # Resumed from a periodic checkpoint taken at the last iteration: the run was killed before it
            # wrote model_final (or before last_checkpoint named it). Write it now from the same state.
            if start_iter > max_iter:
                logger.warning("The checkpoint is at iteration %d, past SOLVER.MAX_ITER %d: nothing to train; "
                               "model_final is written from the checkpoint's state", start_iter, max_iter)
            else:
                logger.info("Training had reached iteration %d of %d; writing model_final", start_iter, max_iter)
            checkpoints.save("model_final")
    finally:
        metrics.close()

    total_training_time = time.time() - start_training_time
    logger.info("Total training time: {} ({:.4f} s / it)".format(
        str(datetime.timedelta(seconds=int(total_training_time))),
        total_training_time / max(arguments["iteration"] - start_iter, 1)))
    return metrics.meters
