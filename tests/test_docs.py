"""The documentation (README.md and docs/*.md) matches the repository: every relative link and #anchor resolves, the
README keeps the two command lines CI runs and stays short, every image in docs/ is shown somewhere, every config key
and repository path the pages name exists, and every tool they mention answers --help and knows the flags its
commands use."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
README_MAX_LINES = 160


def _markdown_files():
    names = sorted(name for name in os.listdir(DOCS) if name.endswith(".md"))
    return [os.path.join(REPO, "README.md")] + [os.path.join(DOCS, name) for name in names]


MARKDOWN = _markdown_files()


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _rel(path):
    return os.path.relpath(path, REPO)


def _without_code_blocks(text):
    """The text with fenced code blocks blanked (links and headings inside them are not Markdown)."""
    return re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.S | re.M)


def _without_inline_code(text):
    """The text with each `code span` replaced by a word (keeping its line breaks): brackets inside code, as in
    `registry.BACKBONES[name](cfg)`, are not links."""
    return re.sub(r"`[^`]*`", lambda m: "code" + "\n" * m.group(0).count("\n"), text)


def _code_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)


def github_anchor(heading):
    """The #fragment GitHub gives a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link in a heading keeps its text
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path):
    """Every #fragment a Markdown file offers: one per heading, duplicates numbered -1, -2, ... as GitHub does."""
    seen, anchors = {}, set()
    for line in _without_code_blocks(_read(path)).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            anchors.add(anchor if count == 0 else "{}-{}".format(anchor, count))
    return anchors


def _relative_links(path):
    """(target, line number) of every Markdown link or image in `path` that is not an external URL."""
    text = _without_inline_code(_without_code_blocks(_read(path)))
    links = []
    for number, line in enumerate(text.splitlines(), 1):
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                links.append((target, number))
    return links


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("Drawing detections: `tools/demo.py`") == "drawing-detections-toolsdemopy"
    assert github_anchor("Building the compiled extension `_C`") == "building-the-compiled-extension-_c"
    assert github_anchor("torchvision's COCO Mask R-CNN") == "torchvisions-coco-mask-r-cnn"


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_every_relative_link_and_anchor_resolves(path):
    broken = []
    for target, number in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        where = "{}:{}: {}".format(_rel(path), number, target)
        if not os.path.exists(resolved):
            broken.append(where + " (no such file)")
        elif anchor and resolved.endswith(".md") and anchor not in anchors_of(resolved):
            broken.append("{} (no heading gives #{} in {})".format(where, anchor, _rel(resolved)))
    assert not broken, "broken links:\n" + "\n".join(broken)


def _readme_command(marker):
    """The line two lines below `marker`, as .ci/run reads it."""
    lines = _read(os.path.join(REPO, "README.md")).splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    return lines[index + 1], lines[index + 2]


def test_readme_has_cis_two_commands_and_stays_short():
    text = _read(os.path.join(REPO, "README.md"))
    for marker, runs in (("<!-- test-command -->", "python -m pytest -q tests"),
                         ("<!-- main-command -->", "python tools/train_net.py --config-file configs/demo/")):
        assert text.count(marker) == 1, "README.md must hold {} exactly once (.ci/run reads it)".format(marker)
        fence, command = _readme_command(marker)
        assert fence == "```", "the line after {} must open a code block".format(marker)
        assert command.startswith("pip install -r requirements.txt") and runs in command, command
    lines = len(text.splitlines())
    assert lines <= README_MAX_LINES, "README.md has {} lines; keep it under {} and move detail to docs/".format(
        lines, README_MAX_LINES)


def test_every_image_in_docs_is_shown():
    shown = set()
    for path in MARKDOWN:
        for target, _ in _relative_links(path):
            shown.add(os.path.normpath(os.path.join(os.path.dirname(path), target.partition("#")[0])))
    images = [os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith((".png", ".jpg", ".svg"))]
    assert not [_rel(p) for p in images if p not in shown], "images in docs/ that no page shows"


CONFIG_KEY = re.compile(r"\b((?:MODEL|INPUT|SOLVER|DATASETS|DATALOADER|TEST|DISTRIBUTED)(?:\.[A-Z][A-Z0-9_]*)+)"
                        r"(\.?\*)?")


def _key_exists(cfg, key, wildcard):
    """`key` ("MODEL.GAN.ENABLED") is a key or a section of `cfg`; with `wildcard` ("TEST.BBOX_AUG.*",
    "MODEL.FBNET.KPTS_HEAD_*") its last part may be the start of a name."""
    node = cfg
    *sections, last = key.split(".")
    for part in sections:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if not isinstance(node, dict):
        return False
    return last in node or (wildcard and any(name.startswith(last) for name in node))


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_every_config_key_named_exists(path):
    from maskrcnn_benchmark.config import cfg

    missing = sorted({m.group(1) + (m.group(2) or "") for m in CONFIG_KEY.finditer(_read(path))
                      if not _key_exists(cfg, m.group(1), bool(m.group(2)))})
    assert not missing, "{} names keys that maskrcnn_benchmark/config/defaults.py does not have: {}".format(
        _rel(path), missing)


def _repository_paths(text):
    """Backticked paths whose first folder is a folder of the repository (or of the package), without
    placeholders or wildcards; datasets/ and output folders are made by runs, so they are not checked."""
    roots = {name for name in os.listdir(REPO) if os.path.isdir(os.path.join(REPO, name))}
    package = os.path.join(REPO, "maskrcnn_benchmark")
    roots |= {name for name in os.listdir(package) if os.path.isdir(os.path.join(package, name))}
    roots -= {"datasets", "output"}
    paths = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.split("::")[0]
        if "/" in token and "..." not in token and re.fullmatch(r"[\w./-]+", token) and token.split("/")[0] in roots:
            paths.add(token)
    return paths


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_every_repository_path_named_exists(path):
    missing = [p for p in sorted(_repository_paths(_read(path)))
               if not (os.path.exists(os.path.join(REPO, p))
                       or os.path.exists(os.path.join(REPO, "maskrcnn_benchmark", p)))]
    assert not missing, "{} names paths that do not exist: {}".format(_rel(path), missing)


SCRIPT = re.compile(r"\b((?:tools|demo)/[\w/]+\.py)\b")


def _is_script(relpath):
    full = os.path.join(REPO, relpath)
    return os.path.isfile(full) and "__main__" in _read(full)


def _tool_commands():
    """{(script, subcommand or ""): the flags its commands in the docs use}, from code blocks and `code spans`, for
    every script the pages mention (a bare mention adds the script with no flags: it is still run with --help)."""
    commands = {}
    for path in MARKDOWN:
        text = _read(path)
        for script in SCRIPT.findall(text):
            if _is_script(script):
                commands.setdefault((script, ""), set())
        command_lines = [line for block in _code_blocks(text) for line in block.replace("\\\n", " ").splitlines()]
        command_lines += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", _without_code_blocks(text))]
        for line in command_lines:
            match = SCRIPT.search(line)
            if not match or not _is_script(match.group(1)):
                continue
            rest = line[match.end():].split("#")[0].split()
            sub = rest[0] if rest and re.fullmatch(r"[a-z]+", rest[0]) else ""
            flags = {token.strip("[]").split("=")[0] for token in rest if re.match(r"^\[?--[a-z]", token)}
            commands.setdefault((match.group(1), sub), set()).update(flags)
    return commands


TOOL_COMMANDS = _tool_commands()


def test_the_docs_mention_the_tools():
    scripts = {script for script, _ in TOOL_COMMANDS}
    assert {"tools/train_net.py", "tools/test_net.py", "tools/export.py", "demo/onnxruntime_example.py"} <= scripts


@pytest.mark.slow  # one Python start with torch per tool and subcommand
@pytest.mark.parametrize("script, sub", sorted(TOOL_COMMANDS), ids=lambda v: v or "-")
def test_every_tool_mentioned_answers_help_with_the_flags_the_docs_use(script, sub):
    if script == "demo/onnxruntime_example.py":
        pytest.importorskip("onnxruntime", reason="the onnxruntime example needs the 'export' extra: "
                                                  "pip install -r requirements-export.txt")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, os.path.join(REPO, script)] + ([sub] if sub else []) + ["--help"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "usage:" in proc.stdout, "{} {} --help failed:\n{}".format(
        script, sub, proc.stderr[-2000:])
    unknown = sorted(flag for flag in TOOL_COMMANDS[(script, sub)] if flag not in proc.stdout)
    assert not unknown, "the docs run {} {} with flags its --help does not list: {}".format(script, sub, unknown)
