"""model_best.pth from the periodic evaluations (SOLVER.BEST_CHECKPOINT_METRIC) and early stopping
(SOLVER.EARLY_STOP_PATIENCE).

The state (metric, best value, its iteration, evaluations without improvement, whether training stopped early)
lives in the training ``arguments`` under "best_checkpoint", so every checkpoint carries it and a resumed run
compares against the best value so far instead of overwriting a better model_best.pth with a worse one.
"""
import logging
import os

import torch

from maskrcnn_benchmark.utils.comm import all_gather

BEST_CHECKPOINT_NAME = "model_best"
# The metrics the evaluation reports (COCO AP / AR, see data/datasets/evaluation/coco/coco_eval.py:COCOResults) all
# grow with quality; a metric name containing one of these words would be one where lower is better.
_LOWER_IS_BETTER_WORDS = ("loss", "error", "err")


def higher_is_better(metric):
    """True for every metric the evaluation produces (AP, AR and their variants)."""
    last = metric.rsplit("/", 1)[-1].lower()
    return not any(word in last for word in _LOWER_IS_BETTER_WORDS)


def evaluated_iou_types(cfg):
    """The iou types run_test evaluates for ``cfg`` (engine/inference.py:run_test)."""
    iou_types = ["bbox"]
    if cfg.MODEL.MASK_ON:
        iou_types.append("segm")
        if cfg.TEST.BOUNDARY_AP:
            iou_types.append("boundary")
    if cfg.MODEL.KEYPOINT_ON:
        iou_types.append("keypoints")
    return iou_types


def check_best_checkpoint_config(cfg):
    """Refuse, before training, SOLVER.BEST_CHECKPOINT_METRIC / EARLY_STOP_PATIENCE values that cannot work.

    The metric is "<iou type>/<metric>" (e.g. "segm/AP"; with one test set) or "<test set>/<iou type>/<metric>";
    the iou type must be one the config evaluates. Whether the metric itself is produced is checked at the first
    evaluation (:meth:`BestCheckpoint.update`), against the names the evaluation returned.

    Raises:
        ValueError naming the key, its value and what to set.
    """
    metric, patience, period = cfg.SOLVER.BEST_CHECKPOINT_METRIC, cfg.SOLVER.EARLY_STOP_PATIENCE, \
        cfg.SOLVER.TEST_PERIOD
    if patience < 0:
        raise ValueError("SOLVER.EARLY_STOP_PATIENCE must be >= 0 (evaluations without improvement before training "
                         "stops; 0 = off), got {}".format(patience))
    if patience > 0 and not metric:
        raise ValueError("SOLVER.EARLY_STOP_PATIENCE {} needs SOLVER.BEST_CHECKPOINT_METRIC (e.g. segm/AP): early "
                         "stopping watches that metric".format(patience))
    if not metric:
        return
    if period <= 0:
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}' needs SOLVER.TEST_PERIOD > 0 (now {}): the best "
                         "checkpoint is chosen among the periodic evaluations{}".format(
                             metric, period, " and early stopping counts them" if patience else ""))
    parts = metric.split("/")
    datasets = list(cfg.DATASETS.TEST)
    iou_types = evaluated_iou_types(cfg)
    examples = ["{}/{}".format(t, "AP") for t in iou_types]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}' is not '<iou type>/<metric>' or '<test set>/<iou "
                         "type>/<metric>': use e.g. {}".format(metric, " or ".join(examples)))
    if len(parts) == 3 and parts[0] not in datasets:
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}' names test set '{}', which is not in DATASETS.TEST "
                         "{}".format(metric, parts[0], datasets))
    if len(parts) == 2 and len(datasets) > 1:
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}' is ambiguous with {} test sets: name one, e.g. "
                         "'{}/{}'".format(metric, len(datasets), datasets[0], metric))
    if parts[-2] not in iou_types:
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}': this config evaluates {}, not '{}' (segm needs "
                         "MODEL.MASK_ON, boundary TEST.BOUNDARY_AP, keypoints MODEL.KEYPOINT_ON)".format(
                             metric, iou_types, parts[-2]))


class BestCheckpoint(object):
    """Keeps ``model_best.pth`` for the best value of ``metric`` over the evaluations, and counts evaluations
    without improvement for early stopping.

    Args:
        checkpointer: the run's Checkpointer; model_best is written through its atomic save, without moving
            ``last_checkpoint`` (model_best is not where a resumed run continues from) and never pruned
            (SOLVER.CHECKPOINT_KEEP prunes only model_<iteration>.pth).
        metric (str): SOLVER.BEST_CHECKPOINT_METRIC, as accepted by :func:`check_best_checkpoint_config`.
        patience (int): SOLVER.EARLY_STOP_PATIENCE (0 = never stop early).
        arguments (dict): the training arguments saved in every checkpoint; the state goes in
            ``arguments["best_checkpoint"]`` (a resumed run's is kept).
        save (callable name -> None): writes a checkpoint of the current state (do_train's, with the generator
            states); default ``checkpointer.save(name, tag_last=False, **arguments)``.
    """

    def __init__(self, checkpointer, metric, patience, arguments, save=None, logger=None):
        self.checkpointer, self.metric, self.patience, self.arguments = checkpointer, metric, patience, arguments
        self.logger = logger or logging.getLogger("maskrcnn_benchmark.trainer")
        self.higher_is_better = higher_is_better(metric)
        self._save = save or (lambda name: checkpointer.save(name, tag_last=False, **arguments))
        state = arguments.get("best_checkpoint")
        if state is not None and state.get("metric") != metric:
            self.logger.warning("The checkpoint tracked the best %s; this run tracks %s (SOLVER.BEST_CHECKPOINT_"
                                "METRIC) and starts its count afresh", state.get("metric"), metric)
            state = None
        if state is None:
            state = {"metric": metric, "value": None, "iteration": None, "evaluations_without_improvement": 0,
                     "stopped_early": False}
        arguments["best_checkpoint"] = self._newer_best_on_disk(state)
        self.metric_key = None

    @property
    def state(self):
        return self.arguments["best_checkpoint"]

    @property
    def path(self):
        return os.path.join(self.checkpointer.save_dir, BEST_CHECKPOINT_NAME + ".pth")

    def _newer_best_on_disk(self, state):
        # An evaluation after the checkpoint being resumed may have written model_best.pth: its value counts.
        if not self.checkpointer.save_dir or not os.path.isfile(self.path):
            return state
        try:
            on_disk = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True).get("best_checkpoint")
        except (RuntimeError, OSError, ValueError) as e:
            self.logger.warning("Cannot read the best value stored in %s (%s); it will be replaced by the next "
                                "best evaluation", self.path, e)
            return state
        if not on_disk or on_disk.get("metric") != self.metric or on_disk.get("value") is None:
            return state
        if state["value"] is None or self._better(on_disk["value"], state["value"]):
            return dict(state, value=on_disk["value"], iteration=on_disk["iteration"])
        return state

    def _better(self, value, best):
        return value > best if self.higher_is_better else value < best

    def _resolve(self, names):
        if self.metric in names:
            return self.metric
        matches = [name for name in names if name.endswith("/" + self.metric)]
        if len(matches) == 1:
            return matches[0]
        raise ValueError("SOLVER.BEST_CHECKPOINT_METRIC '{}' is not a metric the evaluation produces; it produced: "
                         "{}".format(self.metric, ", ".join(sorted(names)) or "nothing (no test set result)"))

    @property
    def should_stop(self):
        """True once ``patience`` evaluations in a row did not improve on the best (or training stopped early)."""
        return self.state["stopped_early"] or (
            self.patience > 0 and self.state["evaluations_without_improvement"] >= self.patience)

    def update(self, iteration, metrics):
        """Compare an evaluation with the best so far; write model_best.pth when it is better.

        A collective under torch.distributed (every process calls it; the main process's metrics decide, and
        saving gathers every process's generator states).

        Args:
            iteration (int): the iteration the evaluated weights are at.
            metrics (dict name -> float): the evaluation (empty on non-main processes).
        Returns:
            dict for metrics.json: {"metric", "value", "best", "best_iteration", "improved", "higher_is_better"}.
        Raises:
            ValueError: the metric is not among the evaluation's names (listed in the message).
        """
        metrics = all_gather(dict(metrics or {}))[0]
        if self.metric_key is None:
            self.metric_key = self._resolve(list(metrics))
        value = float(metrics[self.metric_key])
        state = self.state
        previous, previous_iteration = state["value"], state["iteration"]
        improved = previous is None or self._better(value, previous)
        direction = "higher" if self.higher_is_better else "lower"
        if improved:
            state.update(value=value, iteration=iteration, evaluations_without_improvement=0)
            self._save(BEST_CHECKPOINT_NAME)
            self.logger.info("New best %s %.4f at iteration %d (%s is better; previous best %s): saved %s",
                             self.metric_key, value, iteration, direction,
                             "none" if previous is None else "{:.4f} at iteration {}".format(previous,
                                                                                               previous_iteration),
                             self.path)
        else:
            state["evaluations_without_improvement"] += 1
            self.logger.info("%s %.4f at iteration %d is not better than the best %.4f at iteration %d (%s is "
                             "better)%s", self.metric_key, value, iteration, previous, previous_iteration, direction,
                             "; {} of {} evaluations without improvement (SOLVER.EARLY_STOP_PATIENCE)".format(
                                 state["evaluations_without_improvement"], self.patience) if self.patience else "")
        if self.patience > 0 and state["evaluations_without_improvement"] >= self.patience:
            state["stopped_early"] = True
            self.logger.info("Stopping early at iteration %d: %s did not improve for %d evaluations "
                             "(SOLVER.EARLY_STOP_PATIENCE %d); the best is %.4f at iteration %d (%s)", iteration,
                             self.metric_key, self.patience, self.patience, state["value"], state["iteration"],
                             self.path)
        return {"metric": self.metric_key, "value": value, "best": state["value"],
                "best_iteration": state["iteration"], "improved": improved, "higher_is_better": self.higher_is_better}
