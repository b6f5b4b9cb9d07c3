#!/usr/bin/env python3
"""Run the official MLPerf submission checker beside ours, on a packaged tree and on corrupted copies.

    tools/compare_with_official_checker.py --official-checker ~/inference/tools/submission \\
        --tree $OUTPUT_DIR/submission [--full-results $OUTPUT_DIR/results]

``--official-checker`` is the ``tools/submission`` folder of a checkout of
mlcommons/inference (its ``submission_checker/`` package, or a single-file
``submission_checker.py``); it is run as it is, from its own folder, with
``--version v5.1``. Nothing of it is copied into this repository.

Every tree is a throw-away copy of ``--tree``: the tree as packaged, then that tree with
each corruption of ``mlperf_bnas.submission.corruptions`` (the list the tests use). The
same is repeated on a second base, the copy with ``fake_full_run_values`` applied: a smoke
tree fails the official checker on duration, sample counts and latency whatever else is
wrong with it, so only on a base that passes can a corruption change the official verdict.
That base is a fixture for comparing checkers, never a submission.

For each tree the table shows the rules of ours that the corruption added, our prediction
of the official verdict (``official v5.1 checker verdict (by its rules)``: FAIL when a
finding's rule is one the official checker fails on), the official checker's exit status
with its first error line that the uncorrupted base did not have, and AGREE/DISAGREE.
Exit status 1 on any disagreement, 2 on bad arguments (one line), 0 when all agree.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlperf_bnas.errors import UserError
from mlperf_bnas.submission.corruptions import CORRUPTIONS, Tree, fake_full_run_values

OFFICIAL_VERSION = "v5.1"
#: Official log lines that only repeat a failure already reported on an earlier line.
_OFFICIAL_ECHO = re.compile(r"Checks failed for|^NoResults |^SUMMARY:|Checks failed$|has issues$")
_LOG_PREFIX = re.compile(r"^\[[^\]]*\b(ERROR|WARNING|INFO)\] ")
BASES: dict[str, Callable[[Tree], None] | None] = {
    "packaged": None,                       # the tree as packaged
    "full-run-values": fake_full_run_values,  # short-run rules read as met (a fixture, see above)
}


@dataclass(frozen=True)
class OfficialChecker:
    folder: Path
    script: Path     # run with the folder as working directory

    @classmethod
    def find(cls, folder: Path) -> "OfficialChecker":
        folder = folder.expanduser()
        if not folder.is_dir():
            raise UserError(f"--official-checker {folder}: not a folder; pass the tools/submission folder of a "
                            "checkout of mlcommons/inference")
        for script in (folder / "submission_checker" / "main.py", folder / "submission_checker.py"):
            if script.is_file():
                return cls(folder.resolve(), script.resolve())
        raise UserError(f"--official-checker {folder}: neither submission_checker/main.py nor submission_checker.py "
                        "is there; pass the tools/submission folder of a checkout of mlcommons/inference")

    def run(self, submission: Path, submitter: str, csv: Path) -> tuple[int, str]:
        argv = [sys.executable, str(self.script), "--input", str(submission), "--version", OFFICIAL_VERSION,
                "--submitter", submitter, "--csv", str(csv)]
        proc = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout + proc.stderr


@dataclass(frozen=True)
class Outcome:
    our_rc: int
    our_rules: frozenset[tuple[str, str]]   # (rule, path) of every finding
    predicted_fail: bool
    official_rc: int
    official_lines: tuple[str, ...]         # error lines, paths relative to the tree
    official_crashed: bool

    @property
    def official_fail(self) -> bool:
        return self.official_rc != 0


def run_ours(submission: Path, full_results: Path | None, json_out: Path) -> tuple[int, list[dict]]:
    json_out.unlink(missing_ok=True)     # never read the previous tree's findings
    argv = [sys.executable, "-m", "mlperf_bnas", "check", "--input", str(submission), "--json", str(json_out)]
    if full_results is not None:
        argv += ["--full-results", str(full_results)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    last_error = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode not in (0, 1) or not json_out.is_file():
        raise UserError(f"our checker stopped on {submission} (exit status {proc.returncode}): {last_error}")
    return proc.returncode, json.loads(json_out.read_text(encoding="utf-8"))["findings"]


def official_error_lines(output: str, submission: Path) -> tuple[tuple[str, ...], bool]:
    """ERROR lines without timestamps and with the copy's path replaced by <tree>; and whether it crashed."""
    lines = []
    for raw in output.splitlines():
        line = raw.replace(str(submission), "<tree>")
        m = _LOG_PREFIX.match(line)
        if m and m.group(1) == "ERROR":
            text = line[m.end():].strip()
            if not _OFFICIAL_ECHO.search(text):
                lines.append(text)
    crashed = "SUMMARY:" not in output
    if crashed:  # an uncaught exception: its last line says what it tripped on
        tail = [l for l in output.splitlines() if l.strip()]
        lines.append("crashed: " + (tail[-1].replace(str(submission), "<tree>") if tail else "no output"))
    return tuple(lines), crashed


def check_both(official: OfficialChecker, tree: Tree, full_results: Path | None, scratch: Path) -> Outcome:
    our_rc, findings = run_ours(tree.submission, full_results, scratch / "ours.json")
    rc, output = official.run(tree.submission, tree.submitter_dir.name, scratch / "official.csv")
    lines, crashed = official_error_lines(output, tree.submission)
    return Outcome(our_rc, frozenset((f["rule"], f["path"]) for f in findings),
                   any(f["official"] == "fail" for f in findings), rc, lines, crashed)


def fresh_copy(source: Tree, dest: Path, base: Callable[[Tree], None] | None) -> Tree:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source.submission, dest, symlinks=True)
    tree = source.relocated(dest)
    if base is not None:
        base(tree)
    return tree


def _verdict(fail: bool) -> str:
    return "FAIL" if fail else "PASS"


def compare(official: OfficialChecker, source: Tree, full_results: Path | None, names: list[str],
            bases: list[str], work: Path) -> list[tuple[str, str, str, str, str, bool]]:
    rows = []
    for base_name in bases:
        base_fn = BASES[base_name]
        base_tree = fresh_copy(source, work / "base" / "submission", base_fn)
        base = check_both(official, base_tree, full_results, work / "base")
        rows.append((f"[{base_name}] intact", "-", _verdict(base.predicted_fail),
                     f"{_verdict(base.official_fail)} rc={base.official_rc}: "
                     f"{base.official_lines[0] if base.official_lines else '-'}",
                     "AGREE" if base.predicted_fail == base.official_fail else "DISAGREE",
                     base.predicted_fail == base.official_fail))
        for name in names:
            corruption = CORRUPTIONS[name]
            tree = fresh_copy(source, work / "tree" / "submission", base_fn)
            label = f"[{base_name}] {name}"
            try:
                corruption.mutate(tree)
            except UserError as exc:
                rows.append((label, f"not applied: {exc}", "-", "-", "SKIPPED", True))
                continue
            out = check_both(official, tree, full_results, work / "tree")
            added = sorted({rule for rule, path in out.our_rules - base.our_rules})
            caught = ", ".join(added) if added else "nothing new"
            if corruption.rule not in added:
                caught += f" (expected {corruption.rule}: not caught)"
            new_lines = [l for l in out.official_lines if l not in base.official_lines]
            shown = (new_lines or list(out.official_lines) or ["-"])[0]
            official_text = f"{_verdict(out.official_fail)} rc={out.official_rc}: {shown}"
            agree = out.predicted_fail == out.official_fail
            rows.append((label, caught, _verdict(out.predicted_fail), official_text,
                         "AGREE" if agree else "DISAGREE", agree))
    return rows


def print_table(rows: list[tuple[str, str, str, str, str, bool]]) -> None:
    head = ("tree", "our rule caught", "predicted", "official (exit status: first new error line)", "")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(3)]
    fmt = "{:<%d}  {:<%d}  {:<%d}  {}  {}" % tuple(widths)
    print(fmt.format(*head))
    for row in rows:
        official = row[3] if len(row[3]) <= 160 else row[3][:157] + "..."
        print(fmt.format(row[0], row[1], row[2], official, row[4]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-checker", type=Path, required=True,
                        help="tools/submission folder of a checkout of mlcommons/inference")
    parser.add_argument("--tree", type=Path, required=True,
                        help="a packaged submission: the folder holding open/ (e.g. $OUTPUT_DIR/submission)")
    parser.add_argument("--full-results", type=Path, default=None,
                        help="the untruncated results ($OUTPUT_DIR/results): enables our hash/truncation rules "
                             "and the untruncated-accuracy-log corruption")
    parser.add_argument("--only", action="append", default=None, metavar="CORRUPTION",
                        help="run only this corruption (repeatable); default: all of them")
    parser.add_argument("--bases", default=",".join(BASES),
                        help=f"comma-separated bases to corrupt: {', '.join(BASES)} (default: both)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print where it is")
    args = parser.parse_args(argv)
    try:
        official = OfficialChecker.find(args.official_checker)
        if not args.tree.is_dir():
            raise UserError(f"--tree {args.tree}: not a folder; pass the submission root (the folder holding open/)")
        full = args.full_results
        if full is not None and not full.is_dir():
            raise UserError(f"--full-results {full}: not a folder")
        source = Tree.locate(args.tree.resolve(), full.resolve() if full else None)
        names = args.only or sorted(CORRUPTIONS)
        unknown = sorted(set(names) - set(CORRUPTIONS))
        if unknown:
            raise UserError(f"--only {', '.join(unknown)}: unknown corruption; known: {', '.join(sorted(CORRUPTIONS))}")
        bases = [b.strip() for b in args.bases.split(",") if b.strip()]
        if not bases or set(bases) - set(BASES):
            raise UserError(f"--bases {args.bases}: choose from {', '.join(BASES)}")
        work = Path(tempfile.mkdtemp(prefix="compare-official-"))
        try:
            rows = compare(official, source, source.full_results, names, bases, work)
        finally:
            if args.keep:
                print(f"scratch trees kept in {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"official checker: {official.script} --version {OFFICIAL_VERSION}")
    print_table(rows)
    compared = [r for r in rows if r[4] != "SKIPPED"]
    disagree = [r for r in compared if not r[5]]
    skipped = len(rows) - len(compared)
    print(f"{len(compared)} trees compared, {len(compared) - len(disagree)} agree, {len(disagree)} disagree"
          + (f", {skipped} corruption(s) not applicable to this tree" if skipped else ""))
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
