"""What made a run folder of tools/study.py or tools/make_tables.py compare, so that a folder is reused only for the
same run.

When a run folder is made, RUN_SETTINGS_FILE records (atomically) the study's own settings (variant, seed, data
seed, image counts and size...), the resolved config the run trains with (every key, after the YAML and the
command-line overrides) and a fingerprint of the code. A later study with the same folder compares them: any
difference is refused, naming each setting with its recorded and its current value. A non-empty folder without the
record (made before it existed, or by hand) is refused too: its settings cannot be checked.
"""
import hashlib
import json
import os

from maskrcnn_benchmark.utils.io import save_json

RUN_SETTINGS_FILE = "study_settings.json"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPO_ROOT = os.path.dirname(_PACKAGE_ROOT)
# Config keys that name where the run is, not what it is: a run folder may be moved.
_LOCATION_KEYS = ("OUTPUT_DIR",)


class StaleRunError(RuntimeError):
    """A run folder that was made with other settings than the ones asked for, or whose settings are unknown."""


def code_fingerprint(package_root=_PACKAGE_ROOT, repo_root=_REPO_ROOT):
    """sha256 (first 16 hex digits) over the package's Python files, the compiled ops' sources and
    tools/train_net.py: what trains and evaluates a run. Uncommitted edits count; comments too."""
    paths = []
    for root, extensions in ((package_root, (".py",)), (os.path.join(repo_root, "csrc"), (".h", ".cpp", ".cu"))):
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            paths += [os.path.join(folder, f) for f in sorted(files) if f.endswith(extensions)]
    train_net = os.path.join(repo_root, "tools", "train_net.py")
    if os.path.isfile(train_net):
        paths.append(train_net)
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.relpath(path, repo_root).encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def flatten_config(node, prefix=""):
    """{"KEY.PATH": value} of a nested dict (a CfgNode or a loaded YAML), keys sorted, each name after `prefix`."""
    out = {}
    for key in sorted(node):
        value = node[key]
        name = prefix + key
        if isinstance(value, dict):
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = value
    return out


def _json_value(value):
    """What a value reads back as from JSON (tuples become lists), so recorded and current values compare."""
    return json.loads(json.dumps(value))


def describe_run(config_file, opts, settings=None, code_version=None):
    """The record of one run: its settings, resolved config and code fingerprint.

    Args:
        config_file: the YAML the run trains with.
        opts: every KEY VALUE pair given to tools/train_net.py after the YAML, in order.
        settings: the caller's own settings by name (variant, seed, data_seed, ...): JSON-serialisable values.
        code_version: fingerprint of the code (default: code_fingerprint()).
    Returns:
        {"settings": {...}, "config": {"KEY.PATH": value}, "code_version": str}.
    """
    from maskrcnn_benchmark.config import load_config

    cfg = load_config(config_file, list(opts))
    config = {k: v for k, v in flatten_config(cfg).items() if k not in _LOCATION_KEYS}
    settings = dict(settings or {}, config_file=os.path.abspath(config_file))
    return _json_value({"settings": settings, "config": config,
                        "code_version": code_version if code_version is not None else code_fingerprint()})


def _default_config():
    from maskrcnn_benchmark.config import cfg

    return _json_value(flatten_config(cfg))


def differences(recorded, current, check_code=True):
    """[(name, recorded value, current value)] of every setting, config key and (unless check_code is False) the
    code fingerprint that differs between two describe_run() records. A name missing on one side shows as
    "(not recorded)" or "(not set now)".

    With check_code False (the code is trusted not to change the run), a config key that the record lacks and that
    is now at its default is no difference: a key added to the code since the run was made, whose default keeps the
    behaviour the run had (the rule every new key follows)."""
    out = []
    defaults = None if check_code else _default_config()
    for section in ("settings", "config"):
        old, new = recorded.get(section, {}), current.get(section, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name, KeyError) == new.get(name, KeyError):
                continue
            if (section == "config" and defaults is not None and name not in old and name in defaults
                    and new.get(name, KeyError) == defaults[name]):
                continue
            out.append((name, old.get(name, "(not recorded)"), new.get(name, "(not set now)")))
    if check_code and recorded.get("code_version") != current.get("code_version"):
        out.append(("code_version", recorded.get("code_version"), current.get("code_version")))
    return out


def check_run_dir(run_dir, record, check_code=True):
    """Whether `run_dir` already holds the run `record` describes; nothing is written.

    Returns:
        True when the folder holds this run (reuse or resume it), False when it is missing or empty.
    Raises:
        StaleRunError naming every difference (or the missing record) and what to do.
    """
    path = os.path.join(run_dir, RUN_SETTINGS_FILE)
    advice = ("Delete the folder to run it again with the current settings, or pass another --output-dir to keep "
              "it.")
    if os.path.isfile(path):
        with open(path) as f:
            try:
                recorded = json.load(f)
            except ValueError as e:
                raise StaleRunError("'{}' is not valid JSON ({}): the run's settings are unknown. {}".format(
                    path, e, advice)) from e
        found = differences(recorded, record, check_code)
        if found:
            lines = ["  {}: recorded {}, now {}".format(name, json.dumps(old), json.dumps(new))
                     for name, old, new in found]
            extra = ""
            if any(name == "code_version" for name, _, _ in found):
                extra = (" The code fingerprint covers maskrcnn_benchmark/, csrc/ and tools/train_net.py; if the "
                         "code change cannot affect the run, --ignore-code-version reuses it (config keys added "
                         "since, at their defaults, are then accepted too).")
            raise StaleRunError("Run folder '{}' was made with other settings than this study's ({} difference(s), "
                                "from {}):\n{}\n{}{}".format(run_dir, len(found), path, "\n".join(lines), advice,
                                                             extra))
        return True
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        raise StaleRunError("Run folder '{}' holds files but no {} (it was made by an older tools/study.py or "
                            "make_tables.py compare, or by hand), so its settings cannot be checked against this "
                            "study's. {}".format(run_dir, RUN_SETTINGS_FILE, advice))
    return False


def prepare_run_dir(run_dir, record, check_code=True):
    """check_run_dir, then make a new folder with the record in RUN_SETTINGS_FILE (written atomically).

    Returns:
        True when the folder already held this run (reuse or resume it), False when it was just made.
    Raises:
        StaleRunError as check_run_dir.
    """
    if check_run_dir(run_dir, record, check_code):
        return True
    os.makedirs(run_dir, exist_ok=True)
    save_json(record, os.path.join(run_dir, RUN_SETTINGS_FILE), indent=1, sort_keys=True)
    return False
