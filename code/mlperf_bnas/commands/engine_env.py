"""Run a command in the environment its engine needs: ``engine: ipex`` -> the IPEX environment.

IPEX 2.8 needs torch 2.8, so it lives in an environment of its own
(``./prepare_env.sh --ipex``) and the main one keeps its newer torch. The
commands that load or build a model (``build``, ``run``, ``compliance``)
resolve the benchmark's configuration first; when its pytorch backend
runs ``engine: ipex`` and this interpreter has no IPEX, the same command line is
re-executed by the IPEX environment's interpreter with *this* package first on
``PYTHONPATH``, so both environments run the same code. ``exec`` keeps the
process id, so Ctrl-C, exit status and output behave as if nothing happened.
Everything else (dataset, accuracy, package, check, report) stays in the main
environment; ``tune`` too, since each of its trials is a ``run`` process of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from mlperf_bnas.errors import UserError

log = logging.getLogger(__name__)

#: Commands that build or load the model in their own process.
COMMANDS = frozenset({"build", "run", "compliance"})
#: Set in the re-executed process: a second hop would mean the environment lacks IPEX.
GUARD = "MLPERF_BNAS_IN_IPEX_ENV"


def engine(args: argparse.Namespace) -> str | None:
    """The pytorch backend's engine this command would use (None for other backends)."""
    from mlperf_bnas.commands import arguments

    scenario = getattr(args, "scenario", None)
    if getattr(args, "user_conf", None) and scenario:
        # A conf written by `mlperf-bnas tune` may carry backend options of its own.
        cfg, _paths = arguments.run_config_from_args(args, scenario)
    else:
        cfg, _paths = arguments.config_from_args(args, scenario)
    if cfg.backend != "pytorch":
        return None
    return str(cfg.backend_options.get("engine", "inductor"))


def run_in_engine_env(command: str, args: argparse.Namespace, argv: list[str], replace_process: bool) -> int | None:
    """Re-run ``argv`` in the IPEX environment when it is needed; None: go on in this process.

    ``replace_process``: ``exec`` (the command-line entry point); otherwise a child
    process whose exit status is returned (``main(argv)`` called from Python).
    """
    if command not in COMMANDS or not hasattr(args, "benchmark") or engine(args) != "ipex":
        return None
    from mlperf_bnas.backends import ipex_env   # only here: `check` and friends stay lean

    if ipex_env.importable():
        return None
    if os.environ.get(GUARD):
        raise UserError(f"{sys.executable}: this environment was chosen for engine ipex but has no "
                        f"intel-extension-for-pytorch; {ipex_env.HOW_TO_CREATE}")
    python = ipex_env.find_python()
    env = dict(os.environ)
    env[GUARD] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ipex_env.CODE_DIR), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [str(python), "-m", "mlperf_bnas", *argv]
    log.info("engine ipex: running in the IPEX environment (%s)", Path(python).parents[1])
    sys.stdout.flush()
    sys.stderr.flush()
    if replace_process:
        os.execve(cmd[0], cmd, env)
    return subprocess.run(cmd, env=env).returncode
