"""Write a dataset folder so that a killed run never leaves half of it behind."""
import os
import shutil
import tempfile


def is_complete(out_dir, marker="annotations.json"):
    """True when `out_dir` was fully written (its marker file only appears with the final rename)."""
    return os.path.isfile(os.path.join(out_dir, marker))


def write_atomically(out_dir, write_fn):
    """Call write_fn(tmp_dir) to fill a temporary sibling folder, then rename it to `out_dir`.

    The rename is the last step, so `out_dir` either does not exist or is complete. If another process finished
    the same folder first, its copy is kept and ours is discarded.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".tmp-", dir=parent)
    try:
        write_fn(tmp_dir)
        if os.path.isdir(out_dir) and not is_complete(out_dir):
            # Left over by an older, non-atomic writer or a user: replace it rather than mix contents.
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.rename(tmp_dir, out_dir)
        except OSError:
            if not is_complete(out_dir):
                raise
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir
