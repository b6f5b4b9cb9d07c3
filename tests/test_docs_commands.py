"""Every command that README.md, docs/ and the benchmarks' READMEs show exists and parses its arguments.

A reader copies what the documentation shows. Commands are collected from fenced code blocks
and inline code spans: ``mlperf-bnas ...``, ``python -m mlperf_bnas ...``, ``dynast ...``
(also under ``mpirun``/``torchrun``), ``python tools/<x>.py ...`` and shell scripts
(``./run.sh``, ``code/<benchmark>/run_offline.sh`` ...).

* A script must exist and be executable; the arguments shown after it are parsed by the
  ``mlperf-bnas`` command that the script hands ``"$@"`` to.
* ``mlperf-bnas``/``dynast``/tool commands go through the real argument parser (``cli.main``,
  ``dynast.main``, the tool's ``main``), stopped right after parsing, so nothing runs.
* Synopsis notation is read as a reader would: ``[...]`` is optional (shown, so parsed),
  ``a|b`` alternatives (each one parsed), ``<name>`` and UPPER-CASE words are placeholders (a
  placeholder takes the option's first choice, or 1 for a number). A fragment (an inline
  mention in prose, or a line that ends in ``...``) may leave required arguments out, but every
  option and value it shows must be accepted; a code block's command line must be complete.

The last tests check the claims about where versions are pinned.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "code").glob("*/README.md"))]
ENTRY = ("mlperf-bnas", "dynast")
REQUIRED = re.compile(r"the following arguments are required|one of the arguments .* is required")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.[a-z]+)?$")


@dataclass(frozen=True)
class Shown:
    doc: Path
    line: int
    text: str
    block: bool             # from a fenced code block (else an inline span)
    cwd: str = ""           # a code block's `cd DIR` before this line (relative to the repository)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: {self.text}"


def _starts_command(text: str) -> bool:
    words = _words(text)
    if not words:
        return False
    first = words[0]
    return (first in ENTRY or first.endswith(".sh") or (first.endswith("python") and len(words) > 1)
            or first in ("mpirun", "mpiexec", "torchrun"))


def _words(text: str) -> list[str]:
    """Shell words without env assignments and ``exec``; comments dropped."""
    text = text.split(" #")[0].strip()
    if text.startswith("#"):
        return []
    try:
        words = shlex.split(text.replace("\\|", "|"))
    except ValueError:
        words = text.split()
    while words and (re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]) or words[0] == "exec"):
        words = words[1:]
    return words


def collect() -> list[Shown]:
    found: list[Shown] = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        in_block, k, cwd = False, 0, ""
        while k < len(lines):
            line = lines[k]
            if line.lstrip().startswith("```"):
                in_block, cwd = not in_block, ""
                k += 1
                continue
            if in_block:
                start = k
                cd = re.match(r"^\s*cd (\S+)\s*(#.*)?$", line)
                if cd:
                    cwd = str(Path(cwd) / cd.group(1))
                    k += 1
                    continue
                text = line
                # Continuations: a trailing backslash, or indented lines under a command (a synopsis).
                while k + 1 < len(lines) and (text.rstrip().endswith("\\") or (
                        _starts_command(lines[start]) and lines[k + 1].startswith((" ", "\t"))
                        and lines[k + 1].strip() and not lines[k + 1].lstrip().startswith("```"))):
                    text = text.rstrip().rstrip("\\").split(" #")[0] + " " + lines[k + 1].strip()
                    k += 1
                if _starts_command(text):
                    found.append(Shown(doc, start + 1, text.strip(), True, cwd))
            else:
                # Inline spans may wrap: read the paragraph (up to a blank line or a fence) at once.
                end = k
                while end + 1 < len(lines) and lines[end + 1].strip() and not lines[end + 1].lstrip().startswith("```"):
                    end += 1
                paragraph = "\n".join(lines[k:end + 1])
                for m in re.finditer(r"`([^`]+)`", paragraph):
                    span = " ".join(m.group(1).split())
                    if _starts_command(span):
                        found.append(Shown(doc, k + 1 + paragraph.count("\n", 0, m.start()), span, False))
                k = end
            k += 1
    return found


SHOWN = collect()


# ----------------------------------------------------------------------------- notation

def _alternatives(words: list[str]) -> list[list[str]]:
    """Synopsis -> concrete argument lists: brackets and parentheses dropped, ``a|b`` values and
    ``--x X | --y Y`` option groups expanded one at a time."""
    flat: list[str] = []
    for w in words:
        w = w.strip("[]()")
        if w.startswith("<") and w.endswith(">"):
            w = w[1:-1].upper().replace("-", "_")
        if w and w not in ("...", "…"):
            flat.append(w)
    variants = [[]]
    k = 0
    while k < len(flat):
        w = flat[k]
        if w == "|":
            # An alternative to the option group (or word) before it.
            nxt = k + 1
            group = [flat[nxt]] if nxt < len(flat) else []
            nxt += 1
            while group and group[0].startswith("-") and nxt < len(flat) and not flat[nxt].startswith("-") \
                    and flat[nxt] != "|":
                group.append(flat[nxt])
                nxt += 1
            base = variants[0]
            cut = max((i for i, x in enumerate(base) if x.startswith("-")), default=len(base) - 1) \
                if group and group[0].startswith("-") else len(base) - 1
            variants.append(base[:cut] + group)
            k = nxt
            continue
        if "|" in w and not w.startswith("-"):
            choices = [c for c in w.split("|") if c]
            variants = [v + [choices[0]] for v in variants] + [variants[0] + [c] for c in choices[1:]]
        else:
            variants = [v + [w] for v in variants]
        k += 1
    # Options shown after an alternative group belong to every variant (e.g. "--a A | --b B [--c]").
    return variants


def _is_fragment(shown: Shown) -> bool:
    """Prose names a command by the flag it is about (`mlperf-bnas size --check`); a code block
    shows a whole command line unless it ends in ``...``."""
    return "..." in shown.text or not shown.block


class _Parsed(Exception):
    pass


class _Refused(Exception):
    pass


@contextlib.contextmanager
def _parse_only(fragment: bool):
    """argparse stops after parsing (raises _Parsed) and reports errors as _Refused; placeholders
    become the option's first choice (or 1 for a number)."""
    original_parse = argparse.ArgumentParser.parse_args
    original_value = argparse.ArgumentParser._get_value

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(original_parse(self, args, namespace))

    def error(self, message):
        if fragment and REQUIRED.search(message):
            return None                 # argparse goes on, so unknown options are still reported
        raise _Refused(f"{self.prog}: {message}")

    def get_value(self, action, arg_string):
        if action.nargs not in (argparse.PARSER, argparse.REMAINDER) and PLACEHOLDER.match(arg_string) \
                and not (action.choices and arg_string in action.choices):
            if action.choices:
                arg_string = str(next(iter(action.choices)))
            elif action.type in (int, float):
                arg_string = "1"
        return original_value(self, action, arg_string)

    patches = {"parse_args": parse_args, "error": error, "_get_value": get_value}
    saved = {k: getattr(argparse.ArgumentParser, k) for k in patches}
    try:
        for k, v in patches.items():
            setattr(argparse.ArgumentParser, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(argparse.ArgumentParser, k, v)


def _main_of(words: list[str]):
    """(main function, argv) for an ``mlperf-bnas``/``dynast``/tool command line."""
    head, rest = words[0], words[1:]
    if head in ("mpirun", "mpiexec", "torchrun"):
        for i, w in enumerate(rest):
            if w in ENTRY:
                return _main_of(rest[i:])
            if w == "-m" and i + 1 < len(rest) and rest[i + 1] == "mlperf_bnas":
                return _main_of(["mlperf-bnas", *rest[i + 2:]])
        raise AssertionError(f"{head}: launches nothing this project ships: {words}")
    if head.endswith("python"):
        if rest[:2] == ["-m", "mlperf_bnas"]:
            return _main_of(["mlperf-bnas", *rest[2:]])
        if rest[:2] == ["-m", "mlperf_bnas.commands.dynast"]:
            return _main_of(["dynast", *rest[2:]])
        tool = REPO / rest[0]
        assert tool.is_file(), f"{rest[0]}: no such file"
        spec = importlib.util.spec_from_file_location(f"_doc_tool_{tool.stem}", tool)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module                   # dataclasses look their module up there
        sys.path.insert(0, str(tool.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(tool.parent))
        main = module.main
        if not inspect.signature(main).parameters:        # reads sys.argv (set by _parse)
            return (lambda _argv: main()), rest[1:]
        return main, rest[1:]
    if head == "dynast":
        from mlperf_bnas.commands import dynast
        return dynast.main, rest
    from mlperf_bnas import cli
    return cli.main, rest


def _parse(main, argv: list[str], fragment: bool) -> None:
    saved_argv = sys.argv
    sys.argv = ["prog", *argv]
    try:
        with _parse_only(fragment):
            main(argv)
    except _Parsed:
        return
    except _Refused as exc:
        raise AssertionError(str(exc)) from None
    finally:
        sys.argv = saved_argv
    raise AssertionError("the parser never ran")


def _scripts(doc: Path, name: str, cwd: str = "") -> list[Path]:
    """The script(s) a shown name means: ``<benchmark>``-style placeholders match every benchmark."""
    pattern = re.sub(r"<[^>]+>", "*", name)
    for base in ([REPO / cwd] if cwd else []) + [REPO, doc.parent]:
        found = sorted(p.resolve() for p in base.glob(pattern)) if "*" in pattern else \
            [(base / name).resolve()] if (base / name).is_file() else []
        if found:
            return found
    if "/" not in name:                       # prose naming every benchmark's script: "run_calibration.sh"
        found = sorted((REPO / "code").glob(f"*/{name}"))
        if found:
            return found
    raise AssertionError(f"{name}: no such script (from {REPO} or {doc.parent})")


def _script_lines(script: Path) -> list[str]:
    """The script's lines with backslash continuations joined."""
    out: list[str] = []
    for line in script.read_text(encoding="utf-8").splitlines():
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def _env_functions() -> dict[str, list[str]]:
    """The functions tools/env.sh defines, by name: their body lines."""
    out: dict[str, list[str]] = {}
    name = None
    for line in _script_lines(REPO / "tools" / "env.sh"):
        m = re.match(r"^([a-z_]+)\(\) \{", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif line.startswith("}"):
            name = None
        elif name:
            out[name].append(line)
    return out


def _script_command(script: Path) -> list[str] | None:
    """The command a script hands its own arguments (``"$@"``) to, or None (it takes none)."""
    return _script_command_of_lines(_script_lines(script), script)


def _script_command_of_lines(lines: list[str], script: Path) -> list[str] | None:
    for line in lines:
        if '"$@"' not in line or line.lstrip().startswith(("#", "for ")):
            continue
        words = _words(line.replace('"$@"', ""))
        for i, w in enumerate(words):
            if w in ENTRY:
                sub = []
                for x in words[i + 1:]:             # the subcommand words right after it
                    if not re.match(r"^[a-z]+$", x):
                        break
                    sub.append(x)
                return [w, *sub]
            if w.endswith(".sh"):
                return _script_command(_scripts(script.parent, w.replace("$HERE/", "").strip('"'))[0])
            if w in _env_functions():
                # A function of tools/env.sh (run_performance): the command its body hands "$@" to.
                return _script_command_of_lines(_env_functions()[w], script)
            if w in ("python", "python3") and i + 1 < len(words) and words[i + 1].endswith(".py"):
                # exec python "$REPO/tools/x.py" "$@": the tool's own parser
                return ["python", words[i + 1].strip('"').replace("$REPO/", "")]
    return None


def _script_positional(script: Path) -> tuple[list[str], bool] | None:
    """The values of a leading positional the script reads itself (``X="${1:-...}"; shift``, or,
    optional before flags, ``[ "${1#-}" = "$1" ] ... shift``), from its ``# Usage: name [A|B]``
    line, and whether a leading flag means it is left out; None when it has none."""
    text = script.read_text(encoding="utf-8")
    optional = '"${1#-}" = "$1"' in text
    if ('"${1:-' not in text and not optional) or "shift" not in text:
        return None
    usage = re.search(r"^# Usage: \S+ \[([A-Za-z0-9_|]+)\]", text, re.M)
    assert usage, f"{script}: reads $1 but has no '# Usage: {script.name} [A|B]' line"
    return usage.group(1).split("|"), optional


def _check_script(shown: Shown, script: Path, args: list[str]) -> None:
    if not script.read_text(encoding="utf-8").startswith("#!"):
        assert not args, f"{script.name} is sourced, not run"
        return                                      # sourced (tools/env.sh): it exists
    assert os.access(script, os.X_OK), f"{script}: not executable"
    if not args or script.name in ("run.sh", "prepare_env.sh", "render_report.sh"):
        return                                      # these take a folder/nothing; see their headers
    if script.name == "test.sh":                  # [--fast] then pytest's own arguments
        for arg in args[1:] if args[0] == "--fast" else args:
            assert arg != "--fast", "test.sh: --fast must come first"
            if arg.startswith("tests/"):
                assert (REPO / arg.split("::")[0]).exists(), f"test.sh: {arg}: no such test file"
        return
    positional = _script_positional(script)
    variants = _alternatives(args)
    if positional is not None:
        values, optional = positional
        for variant in variants:
            if optional and (not variant or variant[0].startswith("-")):
                continue                            # left out: the script's default
            first = variant.pop(0)
            assert first in values or PLACEHOLDER.match(first), \
                f"{script.name}: first argument {first!r} is not one of {values}"
    command = _script_command(script)
    assert command is not None or not any(variants), f"{script.name} takes no arguments, but {args} are shown"
    if command is None:
        return
    main, argv = _main_of(command)
    for variant in variants:
        _parse(main, [*argv, *variant], fragment=True)


def check(shown: Shown) -> None:
    words = _words(shown.text)
    if words[0].endswith(".sh"):
        if "&&" in words:                           # ./prepare_env.sh && ./run.sh
            parts, current = [], []
            for w in words + ["&&"]:
                if w == "&&":
                    parts.append(current)
                    current = []
                else:
                    current.append(w)
            for part in parts:
                check(Shown(shown.doc, shown.line, shlex.join(part), shown.block, shown.cwd))
            return
        for script in _scripts(shown.doc, words[0], shown.cwd):
            _check_script(shown, script, words[1:])
        return
    if words[0] in ("mpirun", "mpiexec", "torchrun") and (len(words) == 1 or (
            "..." in shown.text and not any(w in ENTRY or w == "mlperf_bnas" for w in words))):
        return                                      # the launcher (and its options) named in prose
    main, argv = _main_of(words)
    for variant in _alternatives(argv):
        _parse(main, variant, _is_fragment(shown))


@pytest.mark.parametrize("shown", SHOWN, ids=lambda s: f"{s.doc.name}:{s.line}")
def test_shown_command_exists_and_parses(shown):
    try:
        check(shown)
    except AssertionError as exc:
        raise AssertionError(f"{shown.where}\n  {exc}") from None


def test_the_collection_finds_the_documented_commands():
    texts = [s.text for s in SHOWN]
    assert any(t.startswith("./prepare_env.sh && ./run.sh") for t in texts)
    assert any(t.startswith("mlperf-bnas nas search") for t in texts)
    assert any(t.startswith("dynast ") for t in texts)
    assert any("mpirun" in t and "dynast" in t for t in texts)
    assert any("tools/benchmark_resnet50.py" in t for t in texts)
    assert len(SHOWN) > 60


@pytest.mark.parametrize("bad, message", [
    ("mlperf-bnas nas search --supernet X.pt --no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("mlperf-bnas nas search --supernet X.pt --search_tactic genetic", "invalid choice: 'genetic'"),
    ("mlperf-bnas no-such-command", "invalid choice: 'no-such-command'"),
    ("dynast --supernet resnet50 --optimization_metrics accuracy_top1 flops --results_path r.csv",
     "invalid choice: 'flops'"),
    ("mlperf-bnas nas export --supernet S.pt", "the following arguments are required: --output"),
    ("mlperf-bnas check --rules --no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("code/resnet50-openvino/tune.sh --no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("code/resnet50-openvino/run_offlin.sh", "no such script"),
    ("python tools/benchmark_resnet50.py --no-such-flag", "unrecognized arguments: --no-such-flag"),
])
def test_a_wrong_command_fails_the_check(bad, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        check(Shown(REPO / "README.md", 0, bad, True))


def test_synopsis_notation():
    assert _alternatives(["--a", "x|y", "[--b]"]) == [["--a", "x", "--b"], ["--a", "y", "--b"]]
    assert _alternatives(["info", "--supernet", "S", "|", "--config", "C"]) == \
        [["info", "--supernet", "S"], ["info", "--config", "C"]]
    assert _alternatives(["(--output", "NEW", "|", "--backup", "DIR)"]) == [["--output", "NEW"], ["--backup", "DIR"]]


# ----------------------------------------------------------------------------- version pins

def _pins(text: str) -> list[str]:
    return re.findall(r"^\s*-?\s*([A-Za-z0-9_.\-]+)\s*(?:==|=)\s*[0-9]", text, re.M)


def _pinned(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", path.read_text(), re.M))


def test_the_requirements_files_are_the_only_places_package_versions_are_pinned():
    """README: requirements.txt and requirements-ipex.txt pin package versions, the packages both
    environments have at the same version (torch and torchvision aside); environment.yml pins
    only conda's Python; nothing else pins."""
    requirements = (REPO / "code" / "requirements.txt").read_text()
    assert len(_pins(requirements)) >= 8                       # torch, torchvision, openvino, nncf, ...
    main, ipex = _pinned(REPO / "code" / "requirements.txt"), _pinned(REPO / "code" / "requirements-ipex.txt")
    assert "intel-extension-for-pytorch" in ipex
    differ = {k: (main[k], ipex[k]) for k in set(main) & set(ipex) if main[k] != ipex[k]}
    assert set(differ) <= {"torch", "torchvision"}, f"requirements-ipex.txt differs from requirements.txt: {differ}"
    for script in [REPO / "prepare_env.sh", REPO / ".ci" / "run", *sorted((REPO / "code").glob("*/*.sh"))]:
        assert not re.search(r"pip[^\n]*install[^\n]*==", script.read_text()), f"{script}: pins a version"
    pyproject = (REPO / "code" / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["requirements.txt"] }' in pyproject
    assert not re.search(r"==\s*[0-9]", pyproject)
    conda = (REPO / "environment.yml").read_text()
    assert _pins(conda) == ["python"], "environment.yml pins Python only (README says so)"
    assert "requirements.txt" in conda


# ----------------------------------------------------------------------------- config examples

def test_the_bootstrapnas_config_shown_is_the_shipped_one_and_reads(tmp_path):
    """docs/bootstrapnas.md shows the demo's config "as shipped": it is, and it reads."""
    import json

    from mlperf_bnas.nas.nas_config import load_nas_config

    text = (REPO / "docs" / "bootstrapnas.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S) if "bootstrapNAS" in b]
    shipped = REPO / "code" / "bootstrapnas" / "configs" / "digits_progressive_shrinking.json"
    assert blocks and blocks[0] == json.loads(shipped.read_text())
    for k, block in enumerate(blocks):
        path = tmp_path / f"shown{k}.json"
        path.write_text(json.dumps(block))
        load_nas_config(path)


# ----------------------------------------------------------------------------- figures

def test_readme_gives_one_int8_fidelity_figure_per_model():
    """README quotes the synthetic-set INT8 fidelity in its figures table, the summary sentence and
    sample output; each model's figure must be one number wherever it appears (to 0.1 %)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    retinanet = {round(float(v), 1) for v in re.findall(r"mAP[= ]([0-9]+\.[0-9]+)%", text)}
    retinanet |= {round(float(v), 1) for v in re.findall(r"RetinaNet ([0-9]+\.[0-9]+)% mAP", text)}
    resnet50 = {round(float(v), 1) for v in re.findall(r"accuracy ([0-9]+\.[0-9]+)% \(INT8 fidelity\)", text)}
    resnet50 |= {round(float(v), 1) for v in re.findall(r"ResNet-50 ([0-9]+\.[0-9]+)% top-1 agreement", text)}
    assert len(retinanet) == 1, f"README.md: RetinaNet INT8 fidelity given as {sorted(retinanet)} mAP"
    assert len(resnet50) == 1, f"README.md: ResNet-50 INT8 fidelity given as {sorted(resnet50)} top-1"


def test_the_commands_shown_are_the_package_s_console_scripts():
    """`mlperf-bnas` and `dynast`, as the docs call them, are what `pip install code/` installs."""
    from mlperf_bnas import cli
    from mlperf_bnas.commands import dynast

    section = (REPO / "code" / "pyproject.toml").read_text().split("[project.scripts]\n")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([^"]+)"$', section, re.M))     # tomllib is Python 3.11+
    assert scripts == {"mlperf-bnas": "mlperf_bnas.cli:main", "dynast": "mlperf_bnas.commands.dynast:main"}
    assert callable(cli.main) and callable(dynast.main)
    assert {s.text.split()[0] for s in SHOWN if s.text.split()[0] in ENTRY} == set(ENTRY)
