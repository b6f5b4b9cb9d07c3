"""run.sh's answer to a machine whose speed changed between a reference run and its compliance
tests: when compliance exits 4 (only performance checks failed), the embedded default makes
the scenario's performance run and the tests again, back to back, once, and says so.

The benchmark here is a directory of stub run scripts that log their calls (what run.sh
orchestrates is under test, not the runs): the first compliance call exits 4, the second 0.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import throwaway_checkout

STUB = """#!/usr/bin/env bash
set -euo pipefail
echo "$(basename "$0") $*" >> "$CALLS"
{body}
"""


def _checkout(root: Path, compliance_rcs: list[int]) -> tuple[Path, Path]:
    top, bench = throwaway_checkout(root, "stubbench")
    (bench / "config.yaml").write_text("benchmark: stubbench\n")
    rcs = " ".join(str(rc) for rc in compliance_rcs)
    bodies = {
        "run_calibration": "",
        "run_offline": 'echo "SIZE_FORCE=${SIZE_FORCE:-}" >> "$CALLS"',
        "run_offline_accuracy": "",
        # The n-th call exits with the n-th status.
        "run_compliance": f'rcs=({rcs}); n=$(grep -c "^run_compliance.sh" "$CALLS"); exit "${{rcs[$((n - 1))]}}"',
    }
    for name, body in bodies.items():
        script = bench / f"{name}.sh"
        script.write_text(STUB.format(body=body))
        script.chmod(0o755)
    return top, root / "calls.txt"


def _run(tmp_path: Path, compliance_rcs: list[int], **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    top, calls = _checkout(tmp_path, compliance_rcs)
    env = {k: v for k, v in os.environ.items() if k not in ("USER_CONF", "DATA_DIR", "CHECKPOINT")}
    env.update(OUTPUT_DIR=str(tmp_path / "out"), SYSTEM="stubsys", BENCHMARKS="stubbench", SCENARIOS="Offline",
               CALLS=str(calls), **extra)
    proc = subprocess.run(["bash", str(top / "run.sh")], cwd=top, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc, calls.read_text().splitlines()


def test_compliance_performance_failure_remakes_reference_and_tests_once(tmp_path):
    proc, calls = _run(tmp_path, [4, 0])
    # The second reference run is re-sized first (SIZE_FORCE=1 for tools/env.sh's prepare_conf).
    assert calls == ["run_calibration.sh ", "run_offline.sh ", "SIZE_FORCE=", "run_offline_accuracy.sh ",
                     "run_compliance.sh Offline", "run_offline.sh ", "SIZE_FORCE=1", "run_compliance.sh Offline"], \
        proc.stdout[-3000:]
    assert "only the performance check failed: re-sizing, then running Offline's performance run and the tests " \
        "again" in proc.stdout
    assert (tmp_path / "out" / "logs" / "stubbench.run_offline.again.log").is_file()
    assert (tmp_path / "out" / "logs" / "stubbench.run_compliance.Offline.again.log").is_file()


def test_a_second_failure_is_reported_not_retried_again(tmp_path):
    proc, calls = _run(tmp_path, [4, 4])
    assert [c for c in calls if c.startswith("run_compliance")] == ["run_compliance.sh Offline"] * 2
    assert "compliance reported a failure again" in proc.stdout


def test_accuracy_failures_and_user_confs_are_not_retried(tmp_path):
    proc, calls = _run(tmp_path, [1])
    assert calls.count("run_offline.sh ") == 1 and "compliance reported a failure:" in proc.stdout
    (tmp_path / "again").mkdir()
    conf = tmp_path / "mine.conf"
    conf.write_text("")
    proc, calls = _run(tmp_path / "again", [4], USER_CONF=str(conf))
    assert calls.count("run_offline.sh ") == 1 and "compliance reported a failure:" in proc.stdout


def test_an_interrupted_compliance_step_stops_the_main_job(tmp_path):
    """Exit 143 (SIGTERM) or 130 (Ctrl-C) is not a verdict: run.sh stops with it."""
    proc, calls = _run(tmp_path, [143])
    assert proc.returncode == 143, proc.stdout[-2000:]
    assert calls[-1] == "run_compliance.sh Offline" and "compliance reported a failure" not in proc.stdout
