"""The training loop: one plain function, with the per-iteration optimisation step pluggable."""
import datetime
import json
import logging
import os
import resource
import time

import torch

from maskrcnn_benchmark.utils.comm import is_main_process, reduce_dict
from maskrcnn_benchmark.utils.metric_logger import MetricLogger

LOG_PERIOD = 20  # iterations between log lines (the last iteration is always logged)


def make_baseline_train_step(model, optimizer):
    """The supervised Mask R-CNN step: forward, sum the losses, backward, optimizer step.

    Returns:
        callable (images, targets, iteration) -> dict name -> 0-dim Tensor of the losses to log
        (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask``...).
    """

    def train_step(images, targets, iteration):
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        return loss_dict

    return train_step


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
        if self.json_file is not None:
            self.json_file.write(json.dumps(record) + "\n")
            self.json_file.flush()
        if self.tensorboard is not None:
            iteration = record["iteration"]
            for name, value in record["losses"].items():
                self.tensorboard.add_scalar("train/" + name, value, iteration)
            self.tensorboard.add_scalar("train/lr", record["lr"], iteration)
            self.tensorboard.add_scalar("train/time", record["time"], iteration)

    def close(self):
        if self.json_file is not None:
            self.json_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def do_train(model, data_loader, optimizer, scheduler, checkpointer, device, checkpoint_period, arguments,
             train_step=None, test_period=0, test_fn=None, output_dir=None, log_period=LOG_PERIOD):
    """Train until the data loader is exhausted (its length is the total iteration count, SOLVER.MAX_ITER).

    Every iteration: move the batch to ``device``, call ``train_step``, step the scheduler. Every
    ``log_period`` iterations (and at the last) log each loss as ``median (global avg)``, lr, time per
    iteration, data time, ETA and peak memory, and append the same numbers to ``output_dir/metrics.json``.

    Args:
        model: the detector; put in train mode here.
        data_loader: yields (images ImageList, targets list[BoxList], image_ids); built with
            ``start_iter=arguments["iteration"]`` so a resumed run continues where it stopped.
        optimizer, scheduler: the detector's; the scheduler is stepped once per iteration.
        checkpointer: Checkpointer; saves ``model_{iteration:07d}`` every ``checkpoint_period`` iterations
            and ``model_final`` at the end, with ``arguments`` in the file.
        device: torch.device the batch is moved to.
        checkpoint_period: iterations between checkpoints (<= 0: only model_final).
        arguments: dict saved in every checkpoint; ``arguments["iteration"]`` is the iteration to start from
            and is kept up to date.
        train_step: callable (images, targets, iteration) -> dict name -> 0-dim Tensor of values to log; it
            does the forward/backward/optimizer work. Default: :func:`make_baseline_train_step`. The
            adversarial step (engine/adversarial.py) plugs in here.
        test_period: run ``test_fn(iteration)`` every this many iterations (SOLVER.TEST_PERIOD; 0 = never).
        test_fn: periodic evaluation callable; the model is put back in train mode afterwards.
        output_dir: where metrics.json (and TensorBoard events) go; None disables them.
    Returns:
        the MetricLogger; its "loss" meter is the sum of the returned entries whose name starts with "loss",
        except the discriminator's (ending in "_disc").
    """
    logger = logging.getLogger("maskrcnn_benchmark.trainer")
    logger.info("Start training")
    meters = MetricLogger(delimiter="  ")
    max_iter = len(data_loader)
    start_iter = arguments["iteration"]
    if train_step is None:
        train_step = make_baseline_train_step(model, optimizer)
    writers = _ScalarWriters(output_dir)
    model.train()
    start_training_time = time.time()
    end = time.time()
    iteration = start_iter
    try:
        for iteration, (images, targets, _) in enumerate(data_loader, start_iter):
            data_time = time.time() - end
            iteration = iteration + 1
            arguments["iteration"] = iteration

            images = images.to(device)
            targets = [target.to(device) for target in targets]
            loss_dict = train_step(images, targets, iteration)

            # Reduce over processes for logging only; the gradients were already averaged by DDP.
            loss_dict_reduced = reduce_dict({k: v.detach() for k, v in loss_dict.items()})
            # "loss" is the detector's objective: discriminator losses (*_disc) are logged but not added in.
            loss_names = [k for k in loss_dict_reduced if k.startswith("loss") and not k.endswith("_disc")]
            losses_reduced = sum(loss_dict_reduced[k] for k in loss_names) if loss_names else torch.zeros(())
            for name, value in loss_dict_reduced.items():
                if not torch.isfinite(value).all():
                    raise FloatingPointError(
                        "{} is {} at iteration {}; lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS".format(
                            name, value.item(), iteration))
            scheduler.step()
            meters.update(loss=losses_reduced, **loss_dict_reduced)

            batch_time = time.time() - end
            end = time.time()
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
                })
            if checkpoint_period > 0 and iteration % checkpoint_period == 0:
                checkpointer.save("model_{:07d}".format(iteration), **arguments)
            if test_fn is not None and test_period > 0 and iteration % test_period == 0 and iteration != max_iter:
                test_fn(iteration)
                model.train()
            if iteration == max_iter:
                checkpointer.save("model_final", **arguments)
    finally:
        writers.close()

    total_training_time = time.time() - start_training_time
    total_time_str = str(datetime.timedelta(seconds=int(total_training_time)))
    logger.info("Total training time: {} ({:.4f} s / it)".format(
        total_time_str, total_training_time / max(max_iter - start_iter, 1)))
    return meters
