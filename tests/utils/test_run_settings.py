"""Run folders of the study record what made them; a folder made otherwise is refused, naming each difference."""
import json
import os

import pytest

from maskrcnn_benchmark.utils import run_settings

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo", "synthetic_R_18_FPN.yaml")


def _record(opts=(), code="code-a", **settings):
    return run_settings.describe_run(CONFIG, ["SOLVER.MAX_ITER", "20"] + list(opts), dict({"variant": "baseline"},
                                                                                          **settings), code)


def test_a_new_folder_gets_the_record_and_the_same_run_is_recognised(tmp_path):
    run_dir = str(tmp_path / "run")
    record = _record(data_seed=100)
    assert run_settings.prepare_run_dir(run_dir, record) is False
    with open(os.path.join(run_dir, run_settings.RUN_SETTINGS_FILE)) as f:
        saved = json.load(f)
    assert saved["settings"]["data_seed"] == 100 and saved["config"]["SOLVER.MAX_ITER"] == 20
    assert "OUTPUT_DIR" not in saved["config"]  # where the folder is does not make the run
    assert run_settings.prepare_run_dir(run_dir, _record(data_seed=100)) is True


def test_a_folder_made_with_other_settings_is_refused_naming_each_difference_with_both_values(tmp_path):
    run_dir = str(tmp_path / "run")
    run_settings.prepare_run_dir(run_dir, _record(data_seed=100, train_images=400))
    with pytest.raises(run_settings.StaleRunError) as error:
        run_settings.prepare_run_dir(run_dir, _record(["INPUT.MIN_SIZE_TRAIN", "(96,)"], data_seed=101,
                                                      train_images=400))
    message = str(error.value)
    assert run_dir in message and "2 difference(s)" in message
    assert "data_seed: recorded 100, now 101" in message
    assert "INPUT.MIN_SIZE_TRAIN: recorded [256, 288, 320], now [96]" in message
    assert "train_images" not in message
    assert "Delete the folder" in message and "--output-dir" in message


def test_other_code_is_refused_unless_the_code_check_is_off(tmp_path):
    run_dir = str(tmp_path / "run")
    run_settings.prepare_run_dir(run_dir, _record(code="code-a"))
    with pytest.raises(run_settings.StaleRunError, match='(?s)code_version: recorded "code-a", now "code-b".*'
                                                         '--ignore-code-version'):
        run_settings.prepare_run_dir(run_dir, _record(code="code-b"))
    assert run_settings.prepare_run_dir(run_dir, _record(code="code-b"), check_code=False) is True
    with pytest.raises(run_settings.StaleRunError, match="variant"):  # other settings still count
        run_settings.prepare_run_dir(run_dir, dict(_record(code="code-b"), settings={"variant": "gan"}),
                                     check_code=False)


def _record_made_before_key_existed(record, key):
    """`record` as the code before `key` was added would have written it."""
    return dict(record, config={k: v for k, v in record["config"].items() if k != key})


def test_a_key_added_since_the_run_counts_only_when_not_at_its_default_and_only_with_the_code_check_off(tmp_path):
    run_dir = str(tmp_path / "run")
    key = "MODEL.GAN.DETECTOR_POOLER_FUSION"
    old = _record_made_before_key_existed(_record(code="code-a"), key)
    run_settings.prepare_run_dir(run_dir, old)
    # newer code: the key exists; at its default the run is the same run once the code check is off
    assert run_settings.prepare_run_dir(run_dir, _record(code="code-b"), check_code=False) is True
    with pytest.raises(run_settings.StaleRunError, match="code_version"):
        run_settings.prepare_run_dir(run_dir, _record(code="code-b"))
    # set to another value it is a difference, named with both sides
    with pytest.raises(run_settings.StaleRunError) as error:
        run_settings.prepare_run_dir(run_dir, _record([key, "max"], code="code-b"), check_code=False)
    assert '{}: recorded "(not recorded)", now "max"'.format(key) in str(error.value)
    # a key the record has and the current config lacks still counts (a key removed since)
    other_dir = str(tmp_path / "other")
    run_settings.prepare_run_dir(other_dir, dict(old, config=dict(old["config"], **{"MODEL.OLD_KEY": 1})))
    with pytest.raises(run_settings.StaleRunError, match='MODEL.OLD_KEY: recorded 1, now "\\(not set now\\)"'):
        run_settings.prepare_run_dir(other_dir, _record(code="code-b"), check_code=False)


def test_a_folder_without_the_record_is_refused_and_an_empty_one_is_used(tmp_path):
    old = tmp_path / "old_run"
    (old / "inference" / "study_test").mkdir(parents=True)
    (old / "inference" / "study_test" / "coco_results.json").write_text("{}")
    with pytest.raises(run_settings.StaleRunError, match="holds files but no study_settings.json.*older"):
        run_settings.prepare_run_dir(str(old), _record())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_settings.prepare_run_dir(str(empty), _record()) is False


def test_the_code_fingerprint_follows_the_package_sources(tmp_path):
    package = tmp_path / "maskrcnn_benchmark"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (package / "notes.txt").write_text("not code")
    first = run_settings.code_fingerprint(str(package), str(tmp_path))
    (package / "notes.txt").write_text("still not code")
    assert run_settings.code_fingerprint(str(package), str(tmp_path)) == first
    (package / "a.py").write_text("x = 2\n")
    assert run_settings.code_fingerprint(str(package), str(tmp_path)) != first
