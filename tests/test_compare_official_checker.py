"""tools/compare_with_official_checker.py: its arguments and its plumbing, without the official checker.

The official MLPerf checker is not part of this repository (docs/submission.md says how the
comparison was run against it). Here a *test double* stands in for it: a tiny script named
like the official single-file checker, which only exits with a fixed status. It exercises
the tool's own work -- copying, corrupting, running both checkers as subprocesses,
comparing verdicts, the exit status -- and says nothing about the official rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TOOL = REPO / "tools" / "compare_with_official_checker.py"

# Test double only (see the module docstring): accepts the official checker's arguments,
# prints an ERROR line in its log format, and exits with the status it was written with.
FAKE_OFFICIAL = """\
import argparse, sys
p = argparse.ArgumentParser()
for flag in ("--input", "--version", "--submitter", "--csv"):
    p.add_argument(flag)
a = p.parse_args()
assert a.version == "v5.1", a.version
print("[fake-official ERROR] " + a.input + " looked at by the test double", file=sys.stderr)
print("SUMMARY: done", file=sys.stderr)
sys.exit({status})
"""


def _fake_official(tmp_path: Path, status: int) -> Path:
    folder = tmp_path / f"official-exits-{status}"
    folder.mkdir()
    (folder / "submission_checker.py").write_text(FAKE_OFFICIAL.format(status=status))
    return folder


def _minimal_tree(tmp_path: Path) -> Path:
    """A skeleton our checker can read (it finds plenty wrong with it: no logs, no measurements)."""
    sub = tmp_path / "submission" / "open" / "Org"
    (sub / "results" / "sys1" / "resnet50" / "Offline").mkdir(parents=True)
    (sub / "systems").mkdir()
    (sub / "systems" / "sys1.json").write_text(json.dumps({"division": "open", "submitter": "Org", "status": "rdi"}))
    return tmp_path / "submission"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300)


def test_agreeing_official_exits_zero(tmp_path):
    # Our checker predicts FAIL for the skeleton and its corrupted copy; the double fails both.
    proc = _run("--official-checker", str(_fake_official(tmp_path, 1)), "--tree", str(_minimal_tree(tmp_path)),
                "--only", "invalid-status", "--bases", "packaged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [l for l in proc.stdout.splitlines() if l.startswith("[packaged]")]
    assert len(rows) == 2 and all(r.endswith("AGREE") for r in rows), proc.stdout
    assert "system-status" in rows[1] and "FAIL rc=1" in rows[1]
    assert "2 trees compared, 2 agree, 0 disagree" in proc.stdout


def test_disagreeing_official_exits_one(tmp_path):
    proc = _run("--official-checker", str(_fake_official(tmp_path, 0)), "--tree", str(_minimal_tree(tmp_path)),
                "--only", "invalid-status", "--bases", "packaged")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("DISAGREE") == 2 and "PASS rc=0" in proc.stdout
    assert "2 trees compared, 0 agree, 2 disagree" in proc.stdout


def test_corruption_that_does_not_fit_the_tree_is_reported_not_run(tmp_path):
    # The skeleton has no full results, so the untruncated-log corruption cannot be made.
    proc = _run("--official-checker", str(_fake_official(tmp_path, 1)), "--tree", str(_minimal_tree(tmp_path)),
                "--only", "untruncated-accuracy-log", "--bases", "packaged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIPPED" in proc.stdout and "--full-results" in proc.stdout
    assert "1 trees compared, 1 agree, 0 disagree, 1 corruption(s) not applicable" in proc.stdout


@pytest.mark.parametrize("case", ["missing-folder", "folder-without-checker", "missing-tree", "unknown-corruption"])
def test_bad_arguments_are_one_line(tmp_path, case):
    official, tree, extra = str(_fake_official(tmp_path, 1)), str(_minimal_tree(tmp_path)), []
    if case == "missing-folder":
        official = str(tmp_path / "nowhere")
    elif case == "folder-without-checker":
        official = str(tmp_path)
    elif case == "missing-tree":
        tree = str(tmp_path / "no-tree")
    else:
        extra = ["--only", "no-such-corruption"]
    proc = _run("--official-checker", official, "--tree", tree, *extra)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert proc.stdout == ""


def test_checker_from_git_is_extracted_outside_the_repository(tmp_path):
    """--from-git REPO@REF runs that ref's tools/submission (here a test double committed to a scratch repo)."""
    repo = tmp_path / "inference"
    folder = repo / "tools" / "submission"
    folder.mkdir(parents=True)
    (folder / "submission_checker.py").write_text(FAKE_OFFICIAL.format(status=1))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "checker"], ["tag", "v5.1.1"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    proc = _run("--from-git", f"{repo}@v5.1.1", "--tree", str(_minimal_tree(tmp_path)), "--only", "invalid-status",
                "--bases", "packaged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "inference@v5.1.1 (submission_checker.py)" in proc.stdout and "our 'release' predictions" in proc.stdout
    assert "2 trees compared, 2 agree, 0 disagree" in proc.stdout
    # Nothing extracted into this repository.
    assert not list(REPO.glob("checker-*")) and not (REPO / "tools" / "submission").exists()
    bad = _run("--from-git", f"{repo}@no-such-tag", "--tree", str(_minimal_tree(tmp_path / "b")))
    assert bad.returncode == 2 and "no tools/submission at no-such-tag" in bad.stderr


def test_two_checkers_that_differ_are_listed(tmp_path):
    proc = _run("--official-checker", str(_fake_official(tmp_path, 1)), "--official-checker",
                str(_fake_official(tmp_path, 0)), "--tree", str(_minimal_tree(tmp_path)), "--only", "invalid-status",
                "--bases", "packaged")
    assert proc.returncode == 1          # the second double disagrees with our prediction
    assert "where the official checkers differ (2 of 2 trees):" in proc.stdout
    assert "[packaged] invalid-status:" in proc.stdout
