"""The training loop: one plain function, with the per-iteration optimisation step pluggable."""
import datetime
import inspect
import json
import logging
import os
import resource
import time

import torch

from maskrcnn_benchmark.engine.mixed_precision import backward_and_step
from maskrcnn_benchmark.modeling.utils import NonFiniteTensorError
from maskrcnn_benchmark.utils.comm import (
    all_gather,
    any_process_true,
    get_rank,
    is_main_process,
    reduce_dict,
)
from maskrcnn_benchmark.utils.metric_logger import MetricLogger
from maskrcnn_benchmark.utils.random_state import get_rng_state, set_rng_state

LOG_PERIOD = 20  # iterations between log lines (the last iteration is always logged)


class NonFiniteLossError(FloatingPointError):
    """A loss term (or a tensor of the forward pass, see NonFiniteTensorError) is NaN or infinite; raised before
    anything is updated with it.

    Attributes: ``names`` (list[str]) the non-finite terms or tensors, ``iteration`` (int).
    """

    def __init__(self, names, iteration, values=None):
        self.names = list(names)
        self.iteration = iteration
        shown = ", ".join("{}={}".format(n, values[n]) if values else n for n in self.names)
        what = "loss" if all(n.startswith("loss") for n in self.names) else "value"
        super().__init__("non-finite {} at iteration {}: {}".format(what, iteration, shown))


def check_finite_losses(loss_dict, iteration, nonfinite_here=None):
    """Raise NonFiniteLossError naming every non-finite entry of ``loss_dict`` (dict name -> Tensor).

    Args:
        nonfinite_here (dict name -> str or None): non-finite values this process found elsewhere (e.g. a
            NonFiniteTensorError raised inside the forward pass), reported with the losses.

    Under torch.distributed the verdict is shared: a term non-finite on any process counts on all, so every
    process skips (or stops at) the same step and none is left waiting in a gradient all-reduce. A process
    whose forward pass failed calls this with ``loss_dict={}`` and its finding, so the collectives match.
    """
    local = {n: float(loss_dict[n].detach().float().sum()) for n in sorted(loss_dict)
             if not bool(torch.isfinite(loss_dict[n].detach()).all())}
    local.update(nonfinite_here or {})
    # one small all-reduce per step; the names are gathered only when something is wrong somewhere
    if not any_process_true([bool(local)])[0]:
        return
    gathered = all_gather(local)
    names = sorted(set().union(*gathered))
    values = {}
    for name in names:
        if name in local:
            values[name] = local[name]
        else:
            rank = next(r for r, entries in enumerate(gathered) if name in entries)
            values[name] = "finite here, not on another process (process {})".format(rank)
    raise NonFiniteLossError(names, iteration, values)


def make_baseline_train_step(model, optimizer, precision=None, scaler=None):
    """The supervised Mask R-CNN step: forward, check the losses, sum them, backward, optimizer step.

    Arguments:
        model: the detector (or its DistributedDataParallel wrapper, so the gradients are averaged).
        optimizer: over the detector's parameters.
        precision (MixedPrecision or None): autocast region of the forward pass.
        scaler (GradScaler or None): the optimizer's loss scaler (float16).
    Returns:
        callable (images, targets, iteration) -> dict name -> 0-dim Tensor of the losses to log
        (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask``...);
        raises NonFiniteLossError (before any update) when a loss is NaN or infinite.
    """

    def train_step(images, targets, iteration):
        if precision is not None:
            with precision.autocast():
                loss_dict = model(images, targets)
        else:
            loss_dict = model(images, targets)
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        check_finite_losses(loss_dict, iteration)
        backward_and_step(sum(loss for loss in loss_dict.values()), optimizer, scaler)
        return {k: v.detach() for k, v in loss_dict.items()}

    return train_step


def unwrap_model(model):
    """The module inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def distribute_module(module, device):
    """Wrap ``module`` in DistributedDataParallel for ``device`` (CUDA: one GPU per process; CPU: gloo).

    find_unused_parameters stays False (no per-iteration graph walk): every loss of the detector and of the
    discriminators touches all the parameters it could reach, with an exact zero when it has nothing to
    average over (``logits.sum() * 0`` for empty RoI sets), and the adversarial-only variant adds the
    dropped supervised losses times zero (engine/adversarial.py).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    # Buffers are made equal once, at wrapping, and not re-broadcast before every forward: FrozenBatchNorm
    # buffers never change, and BatchNorm running statistics stay per process (rank 0's are saved).
    # Current PyTorch names that forward_sync_buffers=False (broadcast_buffers is deprecated there).
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    buffer_option = {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters \
        else {"broadcast_buffers": False}
    return torch.nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if cuda else None,
        output_device=device.index if cuda else None,
        **buffer_option
    )


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


def write_evaluation_metrics(output_dir, iteration, metrics):
    """Append ``{"iteration", "eval": metrics}`` to output_dir/metrics.json and eval/<name> TensorBoard scalars
    (main process only), e.g. for the evaluation that follows training.

    Arguments:
        output_dir (str), iteration (int), metrics (dict name -> float).
    """
    if not metrics:
        return
    writers = _ScalarWriters(output_dir)
    try:
        writers.write({"iteration": iteration, "eval": {k: float(v) for k, v in metrics.items()}})
    finally:
        writers.close()


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


def do_train(model, data_loader, optimizer, scheduler, checkpointer, device, checkpoint_period, arguments,
             train_step=None, test_period=0, test_fn=None, output_dir=None, log_period=LOG_PERIOD,
             rng_states=None, skip_nonfinite_steps=0, checkpoint_keep=0):
    """Train until the data loader is exhausted (its length is the total iteration count, SOLVER.MAX_ITER).

    Every iteration: move the batch to ``device``, call ``train_step``, step the scheduler. Every
    ``log_period`` iterations (and at the last) log each loss as ``median (global avg)``, lr, time per
    iteration, data time, ETA and peak memory, and append the same numbers to ``output_dir/metrics.json``.

    Args:
        model: the detector; put in train mode here.
        data_loader: yields (images ImageList, targets list[BoxList], image_ids); built with
            ``start_iter=arguments["iteration"]`` so a resumed run continues where it stopped.
        optimizer, scheduler: the detector's; the scheduler is stepped once per iteration (skipped steps
            included, so the learning rate is a function of the iteration).
        checkpointer: Checkpointer; saves ``model_{iteration:07d}`` every ``checkpoint_period`` iterations
            and ``model_final`` at the end, with ``arguments`` and every process's generator states
            (``rng_states``) in the file.
        device: torch.device the batch is moved to.
        checkpoint_period: iterations between checkpoints (<= 0: only model_final).
        arguments: dict saved in every checkpoint; ``arguments["iteration"]`` is the iteration to start from
            and is kept up to date; ``arguments["skipped_nonfinite_steps"]`` counts skipped steps;
            ``arguments["num_threads"]`` (read on resume, see :func:`check_thread_count`) is set to this run's
            torch.get_num_threads(), part of what makes a resumed run repeat an uninterrupted one.
        train_step: callable (images, targets, iteration) -> dict name -> 0-dim Tensor of values to log; it
            does the forward/backward/optimizer work and raises NonFiniteLossError before updating anything
            with a non-finite loss. Default: :func:`make_baseline_train_step`. The adversarial step
            (engine/adversarial.py) plugs in here.
        test_period: run ``test_fn(iteration)`` every this many iterations (SOLVER.TEST_PERIOD; 0 = never).
        test_fn: periodic evaluation callable returning None or dict metric name -> float (written to
            metrics.json and TensorBoard); the model is put back in train mode afterwards.
        output_dir: where metrics.json (and TensorBoard events) go; None disables them.
        rng_states: the ``rng_states`` entry of the checkpoint being resumed (default: taken out of
            ``arguments`` when it is there); restored after the data loader's
            iterator exists (creating it draws from the generator), so the continuation is exact.
        skip_nonfinite_steps: how many non-finite steps may be skipped in the whole run
            (SOLVER.SKIP_NONFINITE_STEPS); one more stops training. 0 stops at the first.
        checkpoint_keep: after each successful periodic save, delete all but the newest this many periodic
            checkpoints (SOLVER.CHECKPOINT_KEEP; 0 keeps all).
    Returns:
        the MetricLogger; its "loss" meter is the sum of the returned entries whose name starts with "loss",
        except the discriminator's (ending in "_disc").
    Raises:
        FloatingPointError naming the loss term and the iteration; no checkpoint is written after it, so
        ``last_checkpoint`` still names the last good one.
    """
    logger = logging.getLogger("maskrcnn_benchmark.trainer")
    if checkpoint_keep < 0:
        raise ValueError("SOLVER.CHECKPOINT_KEEP must be >= 0 (0 keeps every periodic checkpoint), got {}".format(
            checkpoint_keep))
    logger.info("Start training")
    meters = MetricLogger(delimiter="  ")
    max_iter = len(data_loader)
    start_iter = arguments["iteration"]
    arguments.setdefault("skipped_nonfinite_steps", 0)
    if start_iter > 0:
        check_thread_count(arguments.get("num_threads"), logger)
    arguments["num_threads"] = torch.get_num_threads()
    # arguments.update(checkpointer.load()) brings the saved states along: use them, don't save them back
    saved_rng_states = arguments.pop("rng_states", None)
    if rng_states is None:
        rng_states = saved_rng_states
    if train_step is None:
        train_step = make_baseline_train_step(model, optimizer)
    writers = _ScalarWriters(output_dir)

    def save(name):
        # every process takes part in gathering the generator states; only the checkpointer's writes to disk
        checkpointer.save(name, rng_states=gather_rng_states(), **arguments)

    def log_step(loss_dict, iteration, data_time):
        # Reduce over processes for logging only; the gradients were already averaged by DDP.
        loss_dict_reduced = reduce_dict({k: v.detach() for k, v in loss_dict.items()})
        # "loss" is the detector's objective: discriminator losses (*_disc) are logged but not added in.
        loss_names = [k for k in loss_dict_reduced if k.startswith("loss") and not k.endswith("_disc")]
        losses_reduced = sum(loss_dict_reduced[k] for k in loss_names) if loss_names else torch.zeros(())
        meters.update(loss=losses_reduced, **loss_dict_reduced)
        batch_time = time.time() - end
        meters.update(time=batch_time, data=data_time)
        if iteration % log_period == 0 or iteration == max_iter:
            eta_seconds = meters.time.global_avg * (max_iter - iteration)
            eta_string = str(datetime.timedelta(seconds=int(eta_seconds)))
            lr = optimizer.param_groups[0]["lr"]
            logger.info(
                meters.delimiter.join([
                    "eta: {eta}", "iter: {iter}", "{meters}", "lr: {lr:.6f}", "max mem: {memory:.0f}",
                ]).format(eta=eta_string, iter=iteration, meters=str(meters), lr=lr,
                          memory=_max_memory_mb(device)))
            writers.write({
                "iteration": iteration,
                "losses": {k: float(v) for k, v in loss_dict_reduced.items()},
                "loss": float(losses_reduced),
                "lr": lr,
                "time": batch_time,
                "data_time": data_time,
                "skipped_nonfinite_steps": arguments["skipped_nonfinite_steps"],
            })

    def stop(error, iteration):
        last = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else "none written yet"
        return FloatingPointError(
            "{} is not finite at iteration {} ({}). Training stopped; the last good checkpoint is {}. Lower "
            "SOLVER.BASE_LR, raise SOLVER.WARMUP_ITERS, or raise SOLVER.SKIP_NONFINITE_STEPS (now {}, {} "
            "step(s) skipped before) to skip such steps".format(
                ", ".join(error.names), iteration, error, last, skip_nonfinite_steps,
                arguments["skipped_nonfinite_steps"]))

    model.train()
    start_training_time = time.time()
    end = time.time()
    iteration = start_iter
    batches = iter(data_loader)
    if rng_states is not None:
        restore_rng_states(rng_states)
    try:
        for iteration, (images, targets, _) in enumerate(batches, start_iter):
            data_time = time.time() - end
            iteration = iteration + 1
            arguments["iteration"] = iteration

            images = images.to(device)
            targets = [target.to(device) for target in targets]
            try:
                try:
                    loss_dict = train_step(images, targets, iteration)
                except NonFiniteTensorError as error:
                    # found inside the forward pass: share it the way the losses' check would have
                    check_finite_losses({}, iteration, {error.name: "{} of {} values NaN or inf".format(
                        error.count, error.total)})
                    raise  # not reached: check_finite_losses raised NonFiniteLossError
            except NonFiniteLossError as error:
                if arguments["skipped_nonfinite_steps"] >= skip_nonfinite_steps:
                    raise stop(error, iteration) from error
                arguments["skipped_nonfinite_steps"] += 1
                logger.warning("Skipped iteration %d: %s (%d of at most %d skipped steps)", iteration, error,
                               arguments["skipped_nonfinite_steps"], skip_nonfinite_steps)
                loss_dict = None  # nothing was updated: the parameters are still the last good ones

            if loss_dict is not None:
                # A step that updated before checking (a custom train_step) cannot be undone: stop before
                # the corrupted parameters reach a checkpoint.
                try:
                    # losses only: statistics such as D's probabilities may be absent on some processes
                    check_finite_losses({k: v for k, v in loss_dict.items() if k.startswith("loss")}, iteration)
                except NonFiniteLossError as error:
                    raise stop(error, iteration) from error
            scheduler.step()
            if loss_dict is not None:
                log_step(loss_dict, iteration, data_time)
            end = time.time()

            if checkpoint_period > 0 and iteration % checkpoint_period == 0:
                save("model_{:07d}".format(iteration))
                checkpointer.prune_periodic_checkpoints(checkpoint_keep)
            if test_fn is not None and test_period > 0 and iteration % test_period == 0 and iteration != max_iter:
                metrics = test_fn(iteration)
                if metrics:
                    writers.write({"iteration": iteration, "eval": {k: float(v) for k, v in metrics.items()}})
                model.train()
            if iteration == max_iter:
                save("model_final")
        if start_iter >= max_iter:
            # Resumed from a periodic checkpoint taken at the last iteration: the run was killed before it
            # wrote model_final (or before last_checkpoint named it). Write it now from the same state.
            if start_iter > max_iter:
                logger.warning("The checkpoint is at iteration %d, past SOLVER.MAX_ITER %d: nothing to train; "
                               "model_final is written from the checkpoint's state", start_iter, max_iter)
            else:
                logger.info("Training had reached iteration %d of %d; writing model_final", start_iter, max_iter)
            save("model_final")
    finally:
        writers.close()

    total_training_time = time.time() - start_training_time
    total_time_str = str(datetime.timedelta(seconds=int(total_training_time)))
    logger.info("Total training time: {} ({:.4f} s / it)".format(
        total_time_str, total_training_time / max(max_iter - start_iter, 1)))
    return meters
