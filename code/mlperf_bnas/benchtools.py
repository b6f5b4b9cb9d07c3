"""Helpers shared by the speed benchmarks under ``tools/`` (not used by the pipeline itself).

Every harness figure a benchmark prints comes from a real ``mlperf-bnas run`` in its own
process (LoadGen allows one ``FromConfig`` per process), with its logs in a scratch folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from mlperf_bnas.loadgen.logs import read_summary


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``mlperf-bnas <args>`` in a fresh process; a failure ends the benchmark with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "mlperf_bnas", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"mlperf-bnas {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def harness_run(common: list[str], work: Path, scenario: str, conf_text: str, *extra: str) -> dict[str, str]:
    """One LoadGen performance run with ``conf_text`` as its user.conf; returns the parsed summary."""
    work.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix=f"{scenario}-", dir=work))
    conf = log_dir.with_suffix(".conf")
    conf.write_text(conf_text)
    shutil.rmtree(log_dir)          # `run` publishes into a folder that must not exist yet
    cli("run", *common, "--scenario", scenario, "--user-conf", str(conf), "--log-dir", str(log_dir), *extra)
    return read_summary(log_dir / "mlperf_log_summary.txt")


#: ``--set`` arguments of a run on the null backend: LoadGen and the Python SUT alone, no model
#: and no post-processing (the harness's own ceiling).
NULL_BACKEND = ("--set", "backend=null", "--set", "postprocess=none")


class Perf(NamedTuple):
    """What the speed benchmarks read from a performance run's summary."""

    result: str                 # LoadGen's "Result is": VALID | INVALID
    rate: float                 # samples/s: Server's completed samples/s, else "Samples per second" (nan: absent)
    p99_ms: float               # 99th percentile latency in ms (nan: absent)
    summary: dict[str, str]     # the whole parsed summary


def perf_run(common: list[str], work: Path, scenario: str, conf_text: str, *extra: str) -> Perf:
    """``harness_run`` and the figures read from its summary."""
    return perf_of(harness_run(common, work, scenario, conf_text, *extra), scenario)


def perf_of(summary: dict[str, str], scenario: str) -> Perf:
    """The figures of a parsed ``mlperf_log_summary.txt`` of ``scenario``."""
    rate_key = "Completed samples per second" if scenario == "Server" else "Samples per second"
    p99 = summary.get("99.00 percentile latency (ns)")
    return Perf(summary.get("Result is", "unknown"), float(summary.get(rate_key, "nan")),
                int(p99) / 1e6 if p99 else float("nan"), summary)


@contextmanager
def scratch(parent: Path, prefix: str) -> Iterator[Path]:
    """A scratch folder under ``parent`` for a benchmark's runs, removed when the benchmark ends
    (a failed one too)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
