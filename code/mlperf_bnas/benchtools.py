"""Helpers shared by the speed benchmarks under ``tools/`` (not used by the pipeline itself).

Every harness figure a benchmark prints comes from a real ``mlperf-bnas run`` in its own
process (LoadGen allows one ``FromConfig`` per process), with its logs in a scratch folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
