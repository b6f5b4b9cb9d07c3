"""Shared test helpers: run the real command line in its own process (LoadGen allows one
FromConfig per process) and find the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, check: bool = True, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 1800) -> subprocess.CompletedProcess:
    """``mlperf-bnas <args>`` in a fresh Python process; returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "mlperf_bnas", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlperf-bnas {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
