"""Atomic file writes: the target path holds either its previous content or the complete new one, never a part.

Every writer of results, configs, annotations and checkpoints goes through ``atomic_write`` (the data is written
to a temporary file in the target's folder, then renamed over the target: a rename within one file system is
atomic). The temporary file is named ``.<target name>.<random>.tmp`` so that
``utils.checkpoint.remove_stale_temporary_files`` recognises what a killed process left behind.
"""
import contextlib
import json
import os
import secrets

TEMPORARY_SUFFIX = ".tmp"


def _create_temporary_file(path):
    """Create a new empty file next to ``path``; returns its name.

    Created with ``os.open(..., 0o666)`` like ``open(path, "w")`` would (so the umask decides the permissions,
    unlike ``tempfile.mkstemp``'s 0600), and O_EXCL so two writers never share a temporary file.
    """
    directory, name = os.path.split(os.path.abspath(path))
    while True:
        tmp_path = os.path.join(directory, ".{}.{}{}".format(name, secrets.token_hex(4), TEMPORARY_SUFFIX))
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp_path


@contextlib.contextmanager
def atomic_path(path):
    """``with atomic_path(path) as tmp_path: <write tmp_path>``: ``path`` becomes that file once the block ends.

    The one temp-then-rename of the project. If the block raises (or the process is interrupted), the temporary
    file is removed and any previous ``path`` is left untouched. The folder of ``path`` must exist.
    """
    tmp_path = _create_temporary_file(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` to write a temporary file next to ``path``, then rename it to ``path``.

    For writers that take a file name (``torch.save``, ``Image.save``); see ``atomic_path`` for what happens
    on failure.
    """
    with atomic_path(path) as tmp_path:
        write_fn(tmp_path)


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """``with atomic_open(path) as f: f.write(...)``: ``path`` gets what was written once the block ends.

    An exception inside the block leaves any previous ``path`` untouched and no temporary file behind.
    ``mode`` is a writing mode of ``open`` ("w" or "wb").
    """
    if "w" not in mode:
        raise ValueError("atomic_open writes a whole file: mode must be 'w' or 'wb', got {!r}".format(mode))
    with atomic_path(path) as tmp_path:
        with open(tmp_path, mode) as f:
            yield f


def save_json(obj, path, **json_kwargs):
    """Write ``obj`` as JSON to ``path`` atomically; ``json_kwargs`` go to ``json.dump`` (indent, sort_keys...)."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, **json_kwargs)
