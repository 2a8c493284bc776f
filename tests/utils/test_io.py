"""utils/io.py: the one temp-then-rename writer keeps the old file on failure and leaves no temporary file."""
import json
import os
import stat

import pytest

from maskrcnn_benchmark.utils import checkpoint
from maskrcnn_benchmark.utils.checkpoint import remove_stale_temporary_files
from maskrcnn_benchmark.utils.io import atomic_open, atomic_write, save_json


class _Crash(Exception):
    pass


def _write_half_then_crash(tmp_path):
    with open(tmp_path, "w") as f:
        f.write('{"half": ')  # the writer dies mid-file
    raise _Crash("simulated failure in write_fn")


def test_atomic_write_keeps_old_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"old": 1}')
    with pytest.raises(_Crash):
        atomic_write(str(target), _write_half_then_crash)
    assert target.read_text() == '{"old": 1}'
    assert sorted(os.listdir(str(tmp_path))) == ["results.json"]


def test_atomic_write_of_a_new_file_that_fails_creates_nothing(tmp_path):
    with pytest.raises(_Crash):
        atomic_write(str(tmp_path / "new.json"), _write_half_then_crash)
    assert os.listdir(str(tmp_path)) == []


def test_atomic_open_failure_inside_block_keeps_old_content(tmp_path):
    target = tmp_path / "config.yml"
    target.write_text("OLD: 1\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(str(target)) as f:
            f.write("NEW: ")
            raise KeyboardInterrupt  # BaseException too: Ctrl-C must not leave a temporary file
    assert target.read_text() == "OLD: 1\n"
    assert sorted(os.listdir(str(tmp_path))) == ["config.yml"]


def test_save_json_writes_the_complete_document_with_json_options(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("stale")
    obj = {"b": [1, 2.5, None], "a": {"nested": "x" * 10000}}
    save_json(obj, str(target), indent=1, sort_keys=True)
    assert target.read_text() == json.dumps(obj, indent=1, sort_keys=True)
    assert json.loads(target.read_text()) == obj
    assert sorted(os.listdir(str(tmp_path))) == ["summary.json"]


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "a.bin"), lambda p: open(p, "wb").close())
        open(str(tmp_path / "b.bin"), "wb").close()
    finally:
        os.umask(umask)
    mode = stat.S_IMODE(os.stat(str(tmp_path / "a.bin")).st_mode)
    assert mode == stat.S_IMODE(os.stat(str(tmp_path / "b.bin")).st_mode) == 0o644


def test_atomic_open_refuses_a_reading_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'r'"):
        with atomic_open(str(tmp_path / "x"), "r"):
            pass


def test_a_killed_writers_temporary_file_is_what_the_checkpoint_cleanup_removes(tmp_path, monkeypatch):
    # A process killed between creating the temporary file and the rename leaves it behind; its name must be
    # one remove_stale_temporary_files recognises.
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(SystemExit("killed")))
    monkeypatch.setattr(os, "remove", lambda p: None)  # the kill also skips the cleanup
    with pytest.raises(SystemExit):
        atomic_write(str(tmp_path / "model_final.pth"), lambda p: open(p, "wb").close())
    monkeypatch.undo()
    (left,) = os.listdir(str(tmp_path))
    assert left.startswith(".model_final.pth.") and left.endswith(".tmp")
    assert remove_stale_temporary_files(str(tmp_path)) == [str(tmp_path / left)]


def test_checkpoint_uses_the_io_helper():
    assert checkpoint._atomic_write is atomic_write


def test_save_labels_writes_labels_json_atomically(tmp_path, monkeypatch):
    from maskrcnn_benchmark.utils import io as io_module
    from maskrcnn_benchmark.utils.miscellaneous import save_labels

    class _Dataset:
        categories = {1: "disc", 2: "square"}

    save_labels([_Dataset()], str(tmp_path))
    assert json.load(open(str(tmp_path / "labels.json"))) == {"1": "disc", "2": "square"}

    def failing_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io_module.json, "dump", failing_dump)
    with pytest.raises(OSError):
        save_labels([_Dataset()], str(tmp_path))
    assert json.load(open(str(tmp_path / "labels.json"))) == {"1": "disc", "2": "square"}  # the old file stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json"]  # no temporary file left
