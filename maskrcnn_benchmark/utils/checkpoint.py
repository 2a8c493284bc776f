"""Saving and restoring training state (model, optimizer, scheduler, discriminators) in one file."""
import errno
import logging
import os
import pickle
import re
import shutil
import zipfile

import torch

from maskrcnn_benchmark.utils.class_layers import (
    class_specific_tensors,
    match_checkpoint_categories,
    transfer_class_tensors,
)
from maskrcnn_benchmark.utils.comm import unwrap_model
from maskrcnn_benchmark.utils.io import atomic_write as _atomic_write  # the project's one temp-then-rename
from maskrcnn_benchmark.utils.model_serialization import (
    CheckpointMismatchError,
    load_state_dict,
    matching_loaded_key,
    strip_prefix_if_present,
)
from maskrcnn_benchmark.utils.model_zoo import cache_url
from maskrcnn_benchmark.utils.torchvision_model_loading import (
    convert_torchvision_detection_state_dict,
    convert_torchvision_resnet_state_dict,
    is_torchvision_detection_state_dict,
    is_torchvision_resnet_state_dict,
    torchvision_coco_categories,
)

LAST_CHECKPOINT_FILE = "last_checkpoint"
PERIODIC_CHECKPOINT_PATTERN = re.compile(r"^model_\d{7}\.pth$")  # do_train's model_{iteration:07d}.pth
_SPACE_MARGIN = 1.05  # a checkpoint's size varies a little between saves (optimizer state appears after step 1)


class CheckpointSpaceError(OSError):
    """Not enough free space in the checkpoint folder; raised before anything is written (or after a failed
    write, whose partial file is removed), so last_checkpoint still names a complete file."""


def _tensor_bytes(obj):
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _is_disk_full_error(error):
    """True for what a full disk raises mid-write: ENOSPC/EDQUOT, or torch's zip writer failing
    ("[enforce fail at inline_container.cc] unexpected pos", "basic_ios::clear: iostream error")."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    return "inline_container" in text or "iostream error" in text or "file write failed" in text


def _space_message(save_file, needed, free):
    return ("Not enough free disk space to save checkpoint {} in OUTPUT_DIR '{}': it needs about {} bytes "
            "({:.1f} MB) and {} bytes ({:.1f} MB) are free. Free some space (SOLVER.CHECKPOINT_KEEP prunes old "
            "periodic checkpoints) or point OUTPUT_DIR at a larger disk; last_checkpoint still names the previous "
            "checkpoint".format(os.path.basename(save_file), os.path.dirname(os.path.abspath(save_file)), needed,
                                needed / 1e6, free, free / 1e6))


def _save_durably(data, path):
    # fsync before the rename: otherwise a power cut could leave the new name pointing at unwritten blocks.
    torch.save(data, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_finite(data, save_file):
    """Refuse to write NaN/inf weights: the last good checkpoint must stay the one last_checkpoint names."""
    for entry in ("model", "discriminators"):
        state = data.get(entry)
        if not isinstance(state, dict):
            continue
        for name, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                raise FloatingPointError(
                    "Not writing checkpoint {}: {} '{}' holds NaN or inf values (training diverged); "
                    "last_checkpoint still names the previous checkpoint".format(save_file, entry, name))


def remove_stale_temporary_files(save_dir):
    """Delete ``.<name>.*.tmp`` files a killed process left behind in ``save_dir``; returns their paths."""
    removed = []
    if not save_dir or not os.path.isdir(save_dir):
        return removed
    for name in os.listdir(save_dir):
        if name.startswith(".") and name.endswith(".tmp"):
            path = os.path.join(save_dir, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:  # another process removed it first
                pass
    return removed


def load_checkpoint_file(path):
    """``torch.load`` a checkpoint safely onto the CPU.

    ``weights_only=True`` lets the unpickler build tensors, containers and numbers only, so a file that
    embeds code (a pickled callable or class) is refused instead of executed.

    Raises:
        FileNotFoundError: the file does not exist.
        RuntimeError: the file is truncated/corrupt, or contains objects other than tensors and plain
            containers; the message names the file and the reason.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError("Checkpoint file '{}' does not exist".format(path))
    try:
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            "Refusing to load checkpoint '{}': it contains objects other than tensors and plain containers, "
            "which could run code when unpickled (torch.load weights_only=True rejected it: {}). Re-save it "
            "from a trusted source as a plain state dict.".format(path, str(e).splitlines()[0] if str(e) else e)
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        size = os.path.getsize(path)
        raise RuntimeError(
            "Cannot read checkpoint '{}' ({} bytes): the file is truncated or corrupt ({}: {}). Delete it and "
            "resume from an earlier checkpoint or re-download it.".format(path, size, type(e).__name__, e)
        ) from e


class Checkpointer:
    """Save and restore the model together with optimizer, scheduler and any ``extra`` stateful objects.

    Args:
        model: the nn.Module (possibly wrapped in DistributedDataParallel).
        optimizer, scheduler: optional; restored when present in the file.
        save_dir: folder for checkpoints and the ``last_checkpoint`` pointer file.
        save_to_disk: only the main process should write (defaults to True when save_dir is set).
        logger: defaults to this module's logger.
        extra: dict name -> object with ``state_dict()``/``load_state_dict()`` (e.g. the GAN's discriminators,
            their optimizer and scheduler) saved in the SAME file under those names.
    """

    def __init__(self, model, optimizer=None, scheduler=None, save_dir="", save_to_disk=None, logger=None,
                 extra=None):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.save_dir = save_dir
        self.save_to_disk = bool(save_dir) if save_to_disk is None else save_to_disk
        self.logger = logger or logging.getLogger(__name__)
        self.extra = dict(extra or {})
        reserved = {"model", "optimizer", "scheduler"}
        clash = reserved.intersection(self.extra)
        if clash:
            raise ValueError("Checkpointer extra names {} clash with the reserved entries {}; rename them".format(
                sorted(clash), sorted(reserved)))

    def _bare_model(self):
        return unwrap_model(self.model)

    def save(self, name, tag_last=True, **kwargs):
        """Write ``save_dir/name.pth`` holding every state dict plus ``kwargs`` (e.g. iteration=...).

        The file is written under a temporary name and renamed when complete; only then is
        ``last_checkpoint`` (itself written atomically) pointed at it, so a crash at any moment leaves a
        loadable previous checkpoint that ``last_checkpoint`` names. Stale temporary files of a killed run are
        removed first. ``tag_last`` False leaves ``last_checkpoint`` as it is (model_best.pth: a copy to keep,
        not where a resumed run continues).

        Raises:
            FloatingPointError: the model or the discriminators hold NaN/inf (nothing is written).
            CheckpointSpaceError: the folder's free space is below the estimated size (the last checkpoint's
                size, or the tensors' bytes) or the disk filled up while writing; names the folder, the bytes
                needed and the bytes free.
        """
        if not self.save_dir or not self.save_to_disk:
            return None
        os.makedirs(self.save_dir, exist_ok=True)
        for path in remove_stale_temporary_files(self.save_dir):
            self.logger.info("Removed %s, left by a run that was killed while saving", path)
        data = {"model": self._bare_model().state_dict()}
        if self.optimizer is not None:
            data["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            data["scheduler"] = self.scheduler.state_dict()
        for key, obj in self.extra.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        save_file = os.path.join(self.save_dir, "{}.pth".format(name))
        self.logger.info("Saving checkpoint to %s", save_file)
        _check_finite(data, save_file)
        needed = self._estimated_size(data)
        free = shutil.disk_usage(self.save_dir).free
        if free < needed:
            raise CheckpointSpaceError(errno.ENOSPC, _space_message(save_file, needed, free))
        try:
            _atomic_write(save_file, lambda tmp: _save_durably(data, tmp))
        except (RuntimeError, OSError) as e:
            if not _is_disk_full_error(e):
                raise
            raise CheckpointSpaceError(errno.ENOSPC, _space_message(
                save_file, needed, shutil.disk_usage(self.save_dir).free)) from e
        if tag_last:
            self.tag_last_checkpoint(save_file)
        return save_file

    def _estimated_size(self, data):
        """Bytes a save of ``data`` needs: the last checkpoint's size, or the tensors' bytes when larger."""
        last = self.get_checkpoint_file() if self.has_checkpoint() else ""
        last_size = os.path.getsize(last) if last and os.path.isfile(last) else 0
        return int(max(last_size, _tensor_bytes(data)) * _SPACE_MARGIN)

    def prune_periodic_checkpoints(self, keep):
        """Delete all but the newest ``keep`` periodic checkpoints (``model_<7 digits>.pth``) of save_dir.

        Call it after a save succeeded. The file last_checkpoint names and model_final.pth are never deleted;
        ``keep`` <= 0 keeps everything. Returns the deleted paths.
        """
        if keep <= 0 or not self.save_dir or not self.save_to_disk or not os.path.isdir(self.save_dir):
            return []
        periodic = sorted(n for n in os.listdir(self.save_dir) if PERIODIC_CHECKPOINT_PATTERN.match(n))
        last = os.path.abspath(self.get_checkpoint_file()) if self.has_checkpoint() else None
        removed = []
        for name in periodic[:-keep]:
            path = os.path.join(self.save_dir, name)
            if os.path.abspath(path) == last:
                continue
            os.remove(path)
            removed.append(path)
            self.logger.info("Removed %s (SOLVER.CHECKPOINT_KEEP %d)", path, keep)
        return removed

    def load(self, f=None, use_latest=True, strict=False):
        """Restore from ``f``, or from the file ``last_checkpoint`` names when it exists and use_latest is True.

        ``strict``: every model tensor must be in the file with the model's shape (for testing and prediction);
        otherwise (training, fine-tuning) what fits is loaded and the rest is listed in the log.

        Returns:
            dict of the remaining entries of the file (e.g. {"iteration": 1000}); empty when nothing was
            loaded (no file given and no checkpoint yet: training starts from scratch).
        """
        if use_latest and self.has_checkpoint():
            f = self.get_checkpoint_file()
        if not f:
            self.logger.info("No checkpoint found. Initializing model from scratch")
            return {}
        self.logger.info("Loading checkpoint from %s", f)
        checkpoint = self._load_file(f)
        try:
            self._load_model(checkpoint, strict=strict)
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError("{}: {}".format(f, e)) from None
        if "optimizer" in checkpoint and self.optimizer is not None:
            self.logger.info("Loading optimizer from %s", f)
            self.optimizer.load_state_dict(checkpoint.pop("optimizer"))
        if "scheduler" in checkpoint and self.scheduler is not None:
            self.logger.info("Loading scheduler from %s", f)
            self.scheduler.load_state_dict(checkpoint.pop("scheduler"))
        for key, obj in self.extra.items():
            if key in checkpoint:
                state = checkpoint.pop(key)
                if isinstance(obj, torch.amp.GradScaler) and not state:
                    # saved by a disabled scaler (float32/bfloat16 run): an enabled one starts from its defaults
                    continue
                self.logger.info("Loading %s from %s", key, f)
                obj.load_state_dict(state)
            else:
                self.logger.warning("Checkpoint %s has no '%s' entry; it keeps its current state", f, key)
        # Whatever is left is the caller's (iteration, plus state of objects this checkpointer doesn't own).
        checkpoint.pop("optimizer", None)
        checkpoint.pop("scheduler", None)
        return checkpoint

    def resume(self):
        """Continue the run of save_dir: restore everything from the file ``last_checkpoint`` names.

        The model must fit the file exactly (a resumed run is the same model); the optimizer, scheduler and the
        ``extra`` objects (discriminators, their optimizer and scheduler, loss scalers) are restored too.

        Returns:
            (file, dict of the file's remaining entries: iteration, generator states, categories, ...).
        Raises:
            CheckpointMismatchError: the config describes another model than the run in save_dir; names the file
                and says how to fine-tune from it instead.
        """
        f = self.get_checkpoint_file()
        try:
            return f, self.load(f, use_latest=False, strict=True)
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError(
                "{}. OUTPUT_DIR '{}' holds a run of another model, and a run resumes from its own OUTPUT_DIR "
                "(last_checkpoint) with the same config; to fine-tune from that checkpoint, choose a new "
                "OUTPUT_DIR and set MODEL.WEIGHT to it".format(e, self.save_dir)) from None

    def initialise(self, f, categories=None):
        """Initialise a new run's weights from ``f`` (MODEL.WEIGHT): the model, and the nn.Modules among
        ``extra`` (the GAN's discriminators) where the file has them; never the iteration, optimizer, scheduler,
        loss scalers or generator states.

        Tensors load where their (suffix-matched) name and shape fit; the rest keep their initial values and are
        listed in the log. The class-specific layers (utils/class_layers.py) are decided by category name: when
        every training category is among the checkpoint's recorded ``categories``, their rows are taken by name
        (reordered or picked as needed); when one is missing they keep their initial values; when either side
        records no names they load only where their shape fits (with a warning). One log line names the kept and
        the re-initialised class layers and why.

        Args:
            f (str): any form :meth:`_load_file` reads; "" leaves everything at its initial values.
            categories: the training set's categories, list of {"id", "name"} in label order, or None.
        Returns:
            dict: "file", "categories" (the checkpoint's, or None), "class_layers_kept" and
            "class_layers_reinitialised" (dict model key -> why) ; {} when ``f`` is empty.
        """
        if not f:
            return {}
        checkpoint = self._load_file(f)
        if "model" not in checkpoint:
            raise KeyError("Checkpoint '{}' has no 'model' entry (found: {}); it is not a maskrcnn_benchmark "
                           "checkpoint".format(f, sorted(checkpoint.keys())))
        model = self._bare_model()
        loaded = strip_prefix_if_present(checkpoint["model"], prefix="module.")
        layouts = class_specific_tensors(model)
        model_state = model.state_dict()
        label_pairs, reason = match_checkpoint_categories(checkpoint.get("categories"), categories)
        loaded_keys = list(loaded.keys())
        kept, left = transfer_class_tensors(model_state, loaded, layouts, label_pairs,
                                            lambda key: matching_loaded_key(key, loaded_keys))
        load_state_dict(model, loaded, logger=self.logger, ignore=set(layouts))
        if kept:
            state = model.state_dict()
            state.update(kept)
            model.load_state_dict(state)
        self._log_class_layers(f, kept, left, label_pairs, reason)
        for key, obj in self.extra.items():
            if not isinstance(obj, torch.nn.Module):
                continue  # optimizers, schedulers, loss scalers: a new run starts its own
            if isinstance(checkpoint.get(key), dict) and checkpoint[key]:
                self.logger.info("Initialising %s from %s where the weights fit", key, f)
                load_state_dict(obj, checkpoint[key], logger=self.logger)
            else:
                self.logger.info("%s has no '%s' weights: they start from their initialisation", f, key)
        return {"file": f, "categories": checkpoint.get("categories"), "class_layers_kept": sorted(kept),
                "class_layers_reinitialised": left}

    def _log_class_layers(self, f, kept, left, label_pairs, reason):
        if not kept and not left:
            return
        layers = sorted({key.rsplit(".", 1)[0] for key in list(kept) + list(left)})
        kept_layers = sorted({key.rsplit(".", 1)[0] for key in kept} - {key.rsplit(".", 1)[0] for key in left})
        left_layers = [layer for layer in layers if layer not in kept_layers]
        why = "; ".join(sorted({"{} ({})".format(key.rsplit(".", 1)[0], why) for key, why in left.items()}))
        if not kept and all(why == "not in the checkpoint" for why in left.values()):
            # e.g. ImageNet backbone weights: nothing class-specific to decide
            self.logger.info("%s has no class-specific layers: %s start from their initialisation", f,
                             ", ".join(left_layers))
        elif label_pairs is None and reason.startswith("unknown"):
            self.logger.warning(
                "Class-specific layers from %s: kept by shape only, unchecked, %s; re-initialised %s. %s, so the "
                "rows may mean other classes: record them (a checkpoint written by tools/train_net.py does)",
                f, kept_layers or "none", why or "none", reason[len("unknown: "):].capitalize())
        elif label_pairs is None:
            self.logger.warning("Class-specific layers re-initialised (%s): %s", ", ".join(left_layers), reason)
        else:
            self.logger.info("Class-specific layers kept (%s): %s%s", ", ".join(kept_layers) or "none", reason,
                             "; re-initialised " + why if why else "")

    def has_checkpoint(self):
        """True when ``save_dir/last_checkpoint`` exists."""
        return bool(self.save_dir) and os.path.exists(os.path.join(self.save_dir, LAST_CHECKPOINT_FILE))

    def get_checkpoint_file(self):
        """Path stored in ``last_checkpoint`` ("" if unreadable); relative names resolve against save_dir."""
        save_file = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        try:
            with open(save_file, "r") as f:
                last_saved = f.read().strip()
        except IOError:
            return ""
        if last_saved and not os.path.isabs(last_saved):
            last_saved = os.path.join(self.save_dir, last_saved)
        return last_saved

    def tag_last_checkpoint(self, last_filename):
        """Atomically point ``last_checkpoint`` at ``last_filename`` (stored relative to save_dir so the
        output folder can be moved)."""
        save_file = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        relative = os.path.relpath(os.path.abspath(last_filename), os.path.abspath(self.save_dir))

        def write(tmp):
            with open(tmp, "w") as f:
                f.write(relative)
                f.flush()
                os.fsync(f.fileno())

        _atomic_write(save_file, write)

    def _load_file(self, f):
        return load_checkpoint_file(f)

    def _load_model(self, checkpoint, strict=False):
        if "model" not in checkpoint:
            raise KeyError("Checkpoint has no 'model' entry (found: {}); it is not a maskrcnn_benchmark "
                           "checkpoint".format(sorted(checkpoint.keys())))
        load_state_dict(self._bare_model(), checkpoint.pop("model"), logger=self.logger, strict=strict)


class DetectronCheckpointer(Checkpointer):
    """Checkpointer that also understands MODEL.WEIGHT's other forms.

    ``f`` may be ``catalog://<name>`` (resolved by ``config.paths_catalog.ModelCatalog``), an http(s):// or
    file:// URL (downloaded once into the torch.hub cache), a Detectron ImageNet ResNet ``.pkl`` (numpy arrays
    only), a torchvision ResNet ``.pth`` (renamed to our backbone names), a torchvision Faster/Mask R-CNN
    ResNet-50-FPN ``state_dict()`` (renamed to our detector's names), or a maskrcnn_benchmark checkpoint
    ``{"model": state_dict, ...}``.
    """

    def __init__(self, cfg, model, optimizer=None, scheduler=None, save_dir="", save_to_disk=None, logger=None,
                 extra=None):
        super().__init__(model, optimizer, scheduler, save_dir, save_to_disk, logger, extra)
        self.cfg = cfg.clone()

    def _load_file(self, f):
        if f.startswith("catalog://"):
            from maskrcnn_benchmark.config import paths_catalog

            catalog_f = paths_catalog.ModelCatalog.get(f[len("catalog://"):])
            self.logger.info("%s points to %s", f, catalog_f)
            f = catalog_f
        if "://" in f:
            cached_f = cache_url(f)
            self.logger.info("url %s cached in %s", f, cached_f)
            f = cached_f
        if f.endswith(".pkl"):
            # Detectron weights: a pickle of numpy arrays, read with an unpickler that allows nothing else.
            from maskrcnn_benchmark.utils.c2_model_loading import load_c2_format

            if not os.path.isfile(f):
                raise FileNotFoundError("Checkpoint file '{}' does not exist".format(f))
            return load_c2_format(f, logger=self.logger)
        loaded = super()._load_file(f)
        if not isinstance(loaded, dict):
            raise RuntimeError("Checkpoint '{}' holds a {}, expected a dict".format(f, type(loaded).__name__))
        if "model" in loaded:
            return loaded
        if "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
            loaded = loaded["state_dict"]
        if is_torchvision_detection_state_dict(loaded):
            self.logger.info("%s is a torchvision detection model's state dict; mapping it onto our names", f)
            if self.cfg.MODEL.BOX_CONVENTION != "torchvision":
                self.logger.warning(
                    "MODEL.BOX_CONVENTION is '%s': torchvision's weights were trained with its anchors and box "
                    "arithmetic; set MODEL.BOX_CONVENTION torchvision (configs/torchvision/) to get its detections",
                    self.cfg.MODEL.BOX_CONVENTION)
            converted = {"model": convert_torchvision_detection_state_dict(loaded, logger=self.logger)}
            categories = torchvision_coco_categories(loaded)
            if categories is not None:  # COCO weights: test_net matches their labels to a test set by name
                converted["categories"] = categories
            return converted
        if is_torchvision_resnet_state_dict(loaded):
            self.logger.info("%s is a torchvision ResNet state dict; mapping it onto backbone names", f)
            return {"model": convert_torchvision_resnet_state_dict(loaded, logger=self.logger)}
        # A bare state dict of our own model (e.g. model.state_dict() saved by hand).
        return {"model": loaded}
