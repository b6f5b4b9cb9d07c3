"""Re-run ``run``/``compliance`` with the allocator and OpenMP settings the backend asks for.

``LD_PRELOAD`` and OpenMP's environment (``OMP_*``, ``KMP_*``) are read when a process
starts, so a PyTorch ``run`` whose ``backend_options.allocator`` names jemalloc or
tcmalloc, or whose ``openmp_env`` sets variables, is re-executed once (``exec``: same
process id, exit status and signals) with them set. A missing allocator library is a
warning naming the package to install (``backends/allocator.py``); the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from mlperf_bnas.commands.engine_env import COMMANDS

log = logging.getLogger(__name__)

GUARD = "MLPERF_BNAS_ALLOCATOR_ENV"


def _backend_options(args: argparse.Namespace) -> dict | None:
    from mlperf_bnas.commands import arguments

    scenario = getattr(args, "scenario", None)
    if getattr(args, "user_conf", None) and scenario:
        # A conf written by `mlperf-bnas tune` may carry backend options of its own.
        cfg, _paths = arguments.run_config_from_args(args, scenario)
    else:
        cfg, _paths = arguments.config_from_args(args, scenario)
    return dict(cfg.backend_options) if cfg.backend == "pytorch" else None


def run_with_allocator(command: str, args: argparse.Namespace, argv: list[str], replace_process: bool) -> int | None:
    """None: go on in this process (nothing to set, already set, or the library is missing)."""
    if command not in COMMANDS - {"build"} or not hasattr(args, "benchmark") or os.environ.get(GUARD):
        return None
    options = _backend_options(args)
    if not options:
        return None
    from mlperf_bnas.backends import allocator

    env = dict(os.environ)
    name = options.get("allocator")
    if name:
        lib = allocator.library(str(name))
        if lib is None:
            log.warning("%s", allocator.missing_message(str(name)))
        elif not allocator.preloaded(lib):
            env["LD_PRELOAD"] = " ".join(filter(None, [str(lib), env.get("LD_PRELOAD")]))
            for key, value in allocator.ALLOCATORS.get(str(name), ((), "", {}))[2].items():
                env.setdefault(key, value)
    for key, value in (options.get("openmp_env") or {}).items():
        env[str(key)] = str(value)
    if all(env.get(k) == os.environ.get(k) for k in set(env) | set(os.environ)):
        return None
    env[GUARD] = "1"
    cmd = [sys.executable, "-m", "mlperf_bnas", *argv]
    log.info("re-running with allocator/OpenMP settings: %s",
             {k: env[k] for k in env if env.get(k) != os.environ.get(k) and k != GUARD})
    sys.stdout.flush()
    sys.stderr.flush()
    if replace_process:
        os.execve(cmd[0], cmd, env)
    return subprocess.run(cmd, env=env).returncode
