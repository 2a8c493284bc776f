"""`_BASE_` in a YAML file: the base is merged first and the file's own keys win."""
import pytest

from maskrcnn_benchmark.config import cfg as default_cfg


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_variant_overrides_its_base_and_keeps_the_rest(tmp_path):
    _write(tmp_path / "base.yaml", "SOLVER:\n  MAX_ITER: 123\n  BASE_LR: 0.5\nOUTPUT_DIR: base_out\n")
    sub = tmp_path / "variants"
    sub.mkdir()
    variant = _write(sub / "gan.yaml",
                     "_BASE_: ../base.yaml\nSOLVER:\n  BASE_LR: 0.1\nMODEL:\n  GAN:\n    ENABLED: True\n")
    cfg = default_cfg.clone()
    cfg.merge_from_file(variant)
    assert cfg.SOLVER.MAX_ITER == 123
    assert cfg.SOLVER.BASE_LR == 0.1
    assert cfg.MODEL.GAN.ENABLED is True
    assert cfg.OUTPUT_DIR == "base_out"


def test_missing_base_names_the_file_and_where_it_looked(tmp_path):
    variant = _write(tmp_path / "v.yaml", "_BASE_: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError) as err:
        default_cfg.clone().merge_from_file(variant)
    assert "nowhere.yaml" in str(err.value) and "v.yaml" in str(err.value)


def test_a_cycle_of_bases_is_refused(tmp_path):
    a = _write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match="includes itself"):
        default_cfg.clone().merge_from_file(a)


def test_unknown_key_in_a_base_names_the_base_file(tmp_path):
    _write(tmp_path / "base.yaml", "SOLVER:\n  MAX_ITERS: 10\n")
    variant = _write(tmp_path / "v.yaml", "_BASE_: base.yaml\n")
    with pytest.raises(KeyError) as err:
        default_cfg.clone().merge_from_file(variant)
    assert "base.yaml" in str(err.value) and "SOLVER.MAX_ITER" in str(err.value)
