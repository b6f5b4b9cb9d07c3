#!/usr/bin/env python3
"""Run the official MLPerf submission checkers beside ours, on a packaged tree and on corrupted copies.

    tools/compare_with_official_checker.py --tree $OUTPUT_DIR/submission [--full-results $OUTPUT_DIR/results] \\
        --from-git /path/to/inference.git@v5.1.1 [--from-git /path/to/inference.git@master] \\
        [--official-checker ~/inference/tools/submission]

Each checker is the ``tools/submission`` folder of mlcommons/inference: ``--official-checker``
names a checkout's folder, ``--from-git REPO@REF`` extracts that ref's folder from a git
repository into a temporary directory outside this repository (removed afterwards; nothing
of it is ever copied here). A folder with the ``submission_checker/`` package runs the
package (our ``official`` predictions); one with only the single-file
``submission_checker.py`` -- the v5.1 release, tag ``v5.1.1``, the checker a submitter is
judged by -- runs that (our ``release`` predictions). Each is run as it is, from its own
folder, with ``--version v5.1``.

Every tree is a throw-away copy of ``--tree``: the tree as packaged, then that tree with
each corruption of ``mlperf_bnas.submission.corruptions`` (the list the tests use). The
same is repeated on a second base, the copy with ``fake_full_run_values`` applied: a smoke
tree fails the official checker on duration, sample counts and latency whatever else is
wrong with it, so only on a base that passes can a corruption change the official verdict.
That base is a fixture for comparing checkers, never a submission.

For each checker, a table shows per tree the rules of ours that the corruption added, our
prediction of that checker's verdict (FAIL when a finding's rule is one it fails on), the
checker's exit status with its first error line that the uncorrupted base did not have,
and AGREE/DISAGREE; with two or more checkers, the trees on which they disagree with each
other are listed last (docs/submission.md records them).
Exit status 1 on any disagreement with our predictions, 2 on bad arguments (one line), 0 when all agree.
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

from mlperf_bnas.cli import run_command
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
    kind: str        # "official" (the submission_checker package) or "release" (single-file submission_checker.py)
    label: str

    @classmethod
    def find(cls, folder: Path, label: str | None = None) -> "OfficialChecker":
        folder = folder.expanduser()
        if not folder.is_dir():
            raise UserError(f"--official-checker {folder}: not a folder; pass the tools/submission folder of a "
                            "checkout of mlcommons/inference")
        package, single = folder / "submission_checker" / "main.py", folder / "submission_checker.py"
        if package.is_file():
            return cls(folder.resolve(), package.resolve(), "official", label or f"{folder} (package)")
        if single.is_file():
            return cls(folder.resolve(), single.resolve(), "release", label or f"{folder} (submission_checker.py)")
        raise UserError(f"--official-checker {folder}: neither submission_checker/main.py nor submission_checker.py "
                        "is there; pass the tools/submission folder of a checkout of mlcommons/inference")

    @classmethod
    def from_git(cls, spec: str, scratch: Path) -> "OfficialChecker":
        """``REPO@REF``: that ref's tools/submission, extracted file by file into ``scratch``."""
        repo, sep, ref = spec.rpartition("@")
        if not sep or not repo or not ref:
            raise UserError(f"--from-git {spec}: expected REPO@REF, e.g. ~/inference@v5.1.1")
        git = ["git", "-C", str(Path(repo).expanduser())]
        listing = subprocess.run([*git, "ls-tree", "-r", "--name-only", ref, "tools/submission"],
                                 capture_output=True, text=True, timeout=120)
        # The checker's code and data only (not the sample submission trees kept beside it).
        names = [n for n in listing.stdout.splitlines()
                 if n.endswith((".py", ".json")) and "directory_structure_samples" not in n]
        if listing.returncode != 0 or not names:
            raise UserError(f"--from-git {spec}: no tools/submission at {ref} in {repo} "
                            f"({(listing.stderr.strip().splitlines() or ['empty'])[-1]})")
        dest = scratch / f"checker-{len(list(scratch.glob('checker-*')))}"
        for name in names:
            blob = subprocess.run([*git, "show", f"{ref}:{name}"], capture_output=True, timeout=120)
            if blob.returncode != 0:
                raise UserError(f"--from-git {spec}: cannot read {name} at {ref}")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.stdout)
        checker = cls.find(dest / "tools" / "submission")
        kind = "package" if checker.kind == "official" else "submission_checker.py"
        return cls(checker.folder, checker.script, checker.kind, f"{Path(repo).name}@{ref} ({kind})")

    def run(self, submission: Path, submitter: str, csv: Path) -> tuple[int, str]:
        argv = [sys.executable, str(self.script), "--input", str(submission), "--version", OFFICIAL_VERSION,
                "--submitter", submitter, "--csv", str(csv)]
        proc = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout + proc.stderr


@dataclass(frozen=True)
class Outcome:
    predicted_fail: bool
    official_rc: int
    official_lines: tuple[str, ...]         # error lines, paths relative to the tree
    official_crashed: bool

    @property
    def official_fail(self) -> bool:
        return self.official_rc != 0


@dataclass(frozen=True)
class Checked:
    our_rules: frozenset[tuple[str, str]]   # (rule, path) of every finding
    outcomes: tuple[Outcome, ...]           # one per official checker


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


def check_all(officials: list[OfficialChecker], tree: Tree, full_results: Path | None, scratch: Path) -> Checked:
    _rc, findings = run_ours(tree.submission, full_results, scratch / "ours.json")
    outcomes = []
    for official in officials:
        rc, output = official.run(tree.submission, tree.submitter_dir.name, scratch / "official.csv")
        lines, crashed = official_error_lines(output, tree.submission)
        outcomes.append(Outcome(any(f.get(official.kind) == "fail" for f in findings), rc, lines, crashed))
    return Checked(frozenset((f["rule"], f["path"]) for f in findings), tuple(outcomes))


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


@dataclass(frozen=True)
class Row:
    tree: str
    caught: str
    cells: tuple[tuple[str, str, bool], ...]     # per checker: (predicted, official text, agree)
    verdicts: tuple[bool, ...] = ()              # per checker: its own FAIL/PASS
    skipped: bool = False


def _cells(out: Checked, base: Checked | None) -> tuple[tuple[tuple[str, str, bool], ...], tuple[bool, ...]]:
    cells = []
    for i, o in enumerate(out.outcomes):
        known = base.outcomes[i].official_lines if base is not None else ()
        new_lines = [l for l in o.official_lines if l not in known]
        shown = (new_lines or list(o.official_lines) or ["-"])[0]
        cells.append((_verdict(o.predicted_fail), f"{_verdict(o.official_fail)} rc={o.official_rc}: {shown}",
                      o.predicted_fail == o.official_fail))
    return tuple(cells), tuple(o.official_fail for o in out.outcomes)


def compare(officials: list[OfficialChecker], source: Tree, full_results: Path | None, names: list[str],
            bases: list[str], work: Path) -> list[Row]:
    rows = []
    for base_name in bases:
        base_fn = BASES[base_name]
        base_tree = fresh_copy(source, work / "base" / "submission", base_fn)
        base = check_all(officials, base_tree, full_results, work / "base")
        rows.append(Row(f"[{base_name}] intact", "-", *_cells(base, None)))
        for name in names:
            corruption = CORRUPTIONS[name]
            tree = fresh_copy(source, work / "tree" / "submission", base_fn)
            label = f"[{base_name}] {name}"
            try:
                corruption.mutate(tree)
            except (UserError, OSError) as exc:      # e.g. a tree without the Server result it edits
                rows.append(Row(label, f"not applied: {exc}", (), skipped=True))
                continue
            out = check_all(officials, tree, full_results, work / "tree")
            added = sorted({rule for rule, path in out.our_rules - base.our_rules})
            caught = ", ".join(added) if added else "nothing new"
            if corruption.rule not in added:
                caught += f" (expected {corruption.rule}: not caught)"
            rows.append(Row(label, caught, *_cells(out, base)))
    return rows


def print_table(rows: list[Row], officials: list[OfficialChecker]) -> None:
    for i, official in enumerate(officials):
        print(f"\n{official.label}: {official.script} --version {OFFICIAL_VERSION} "
              f"(our '{official.kind}' predictions)")
        head = ("tree", "our rule caught", "predicted", "official (exit status: first new error line)", "")
        table = [(r.tree, r.caught, "-", "-", "SKIPPED") if r.skipped else
                 (r.tree, r.caught, r.cells[i][0], r.cells[i][1], "AGREE" if r.cells[i][2] else "DISAGREE")
                 for r in rows]
        widths = [max(len(head[k]), *(len(t[k]) for t in table)) for k in range(3)]
        fmt = "{:<%d}  {:<%d}  {:<%d}  {}  {}" % tuple(widths)
        print(fmt.format(*head))
        for t in table:
            official_text = t[3] if len(t[3]) <= 160 else t[3][:157] + "..."
            print(fmt.format(t[0], t[1], t[2], official_text, t[4]))
        compared = [r for r in rows if not r.skipped]
        disagree = [r for r in compared if not r.cells[i][2]]
        skipped = len(rows) - len(compared)
        print(f"{official.label}: {len(compared)} trees compared, {len(compared) - len(disagree)} agree, "
              f"{len(disagree)} disagree" + (f", {skipped} corruption(s) not applicable to this tree" if skipped else ""))
    if len(officials) > 1:
        differ = [r for r in rows if not r.skipped and len(set(r.verdicts)) > 1]
        print(f"\nwhere the official checkers differ ({len(differ)} of {sum(not r.skipped for r in rows)} trees):")
        for r in differ:
            print(f"  {r.tree}: " + "; ".join(f"{o.label} {c[1][:140]}" for o, c in zip(officials, r.cells)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-checker", type=Path, action="append", default=[],
                        help="tools/submission folder of a checkout of mlcommons/inference (repeatable)")
    parser.add_argument("--from-git", action="append", default=[], metavar="REPO@REF",
                        help="extract REF's tools/submission from the git repository REPO into a temporary folder "
                             "and run it (repeatable), e.g. ~/inference@v5.1.1 for the v5.1 release checker")
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
    return run_command(lambda: _compare(args))


def _compare(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="compare-official-"))
    try:
        if not args.official_checker and not args.from_git:
            raise UserError("name at least one official checker: --from-git REPO@REF (e.g. ~/inference@v5.1.1) "
                            "or --official-checker DIR")
        officials = [OfficialChecker.find(folder) for folder in args.official_checker]
        officials += [OfficialChecker.from_git(spec, work) for spec in args.from_git]
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
        rows = compare(officials, source, source.full_results, names, bases, work / "trees")
    finally:
        if args.keep:
            print(f"scratch trees kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, officials)
    disagree = any(not c[2] for r in rows if not r.skipped for c in r.cells)
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
