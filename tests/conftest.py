"""Shared test helpers: run the real command line and find the repository.

``run_cli`` runs a command in this process unless it needs its own: LoadGen allows one
``FromConfig`` per process (``run``, ``compliance``) and a distributed search starts
processes of its own. Everything else (dataset, build, accuracy, package, check, report,
tune, nas ...) runs in-process, which saves the seconds a fresh interpreter spends importing
torch and OpenVINO for every call.

Markers: ``slow`` marks tests that build or run full-size models (minutes);
``./test.sh --fast`` leaves them out (``-m "not slow"``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Commands that must run in a process of their own (LoadGen: one FromConfig per process).
OWN_PROCESS = {"run", "compliance"}
#: The shared ResNet-50 build: synthetic images (labelled by the seeded FP32 model).
RN50_BENCH = REPO / "code" / "resnet50-openvino"
RN50_IMAGES = 32


def throwaway_checkout(root: Path, benchmark: str) -> tuple[Path, Path]:
    """(top, benchmark dir): a checkout under ``root`` whose only benchmark is ``code/<benchmark>``
    (empty, for the test to fill), with this repository's tools/, package and environment linked
    in and a copy of run.sh: run scripts and run.sh find everything as in a real checkout."""
    import shutil

    top = root / "checkout"
    (top / "code").mkdir(parents=True)
    for name in ("tools", ".venv", ".conda-env"):
        if (REPO / name).exists():
            (top / name).symlink_to(REPO / name)
    (top / "code" / "mlperf_bnas").symlink_to(REPO / "code" / "mlperf_bnas")
    shutil.copy2(REPO / "run.sh", top / "run.sh")
    bench = top / "code" / benchmark
    bench.mkdir()
    return top, bench


def run_cli(*args: str, check: bool = True, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 1800, subprocess_only: bool = False) -> subprocess.CompletedProcess:
    """``mlperf-bnas <args>``; returns a CompletedProcess (in-process runs fill in the same fields)."""
    own = subprocess_only or (args and args[0] in OWN_PROCESS) or "--distributed" in args
    proc = _in_subprocess(args, env, cwd, timeout) if own else _in_process(args, env, cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlperf-bnas {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _in_subprocess(args, env, cwd, timeout) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mlperf_bnas", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


@contextlib.contextmanager
def _environment(env: dict | None, cwd: Path | None):
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env or {})
    os.chdir(cwd or REPO)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _in_process(args, env, cwd) -> subprocess.CompletedProcess:
    """``cli.main(args)`` with its stdout, stderr and log records captured as a subprocess's would be."""
    from mlperf_bnas import cli

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if "-v" in args or "--verbose" in args else logging.INFO)
    try:
        with _environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:            # argparse errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:                    # what a subprocess would print before exiting 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        for added in [h for h in root.handlers if h not in handlers]:   # ours, and any basicConfig made
            root.removeHandler(added)
        root.setLevel(level)
    return subprocess.CompletedProcess(["mlperf-bnas", *args], int(code or 0), out.getvalue(), err.getvalue())


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: builds or runs full-size models (minutes); ./test.sh --fast skips it")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def resnet50_build(tmp_path_factory) -> Path:
    """One ResNet-50 build for the whole session: the synthetic dataset (``RN50_IMAGES`` images), its
    cache and the FP32 and INT8 OpenVINO IR, under ``build/`` of the returned output folder. Tests
    add their own ``results/<system>/`` beside it (a system name of their own) and never rebuild."""
    out = tmp_path_factory.mktemp("rn50")
    common = ["--benchmark", str(RN50_BENCH), "--output-dir", str(out), "--system", "build",
              "--set", f"dataset_options.synthetic_count={RN50_IMAGES}"]
    run_cli("dataset", *common, "--no-progress")
    run_cli("build", *common)
    return out


#: Offline: LoadGen issues 1.1 x target_qps x min_duration samples in one query, and the run is
#: VALID only if they take >= min_duration, so a test's target_qps must be above this machine's
#: speed, which differs 3x between our two 2-core CPUs alone (and 2x within hours on one).
#: Tests write OFFLINE_MARGIN x the measured rate: VALID unless the run is 1.1 x 3 = 3.3x faster.
OFFLINE_MARGIN = 3.0


@pytest.fixture(scope="session")
def resnet50_offline_qps(resnet50_build, tmp_path_factory) -> float:
    """An Offline ``target_qps`` for tests on the session's ResNet-50 INT8 build: OFFLINE_MARGIN x
    the rate a probe run measured here (exactly 4 x RN50_IMAGES samples in one query; the
    probe's own verdict is ignored), never a constant."""
    from mlperf_bnas.loadgen.logs import read_summary

    root = tmp_path_factory.mktemp("rn50probe")
    conf = root / "user.probe.conf"
    conf.write_text(f"resnet50.*.performance_sample_count_override = {RN50_IMAGES}\n"
                    "resnet50.Offline.min_duration = 1\n"
                    f"resnet50.Offline.min_query_count = {4 * RN50_IMAGES}\n"
                    "resnet50.Offline.target_qps = 1\n")
    run_cli("run", "--benchmark", str(RN50_BENCH), "--output-dir", str(resnet50_build), "--system", "probe",
            "--set", f"dataset_options.synthetic_count={RN50_IMAGES}", "--scenario", "Offline",
            "--mode", "performance", "--user-conf", str(conf), "--log-dir", str(root / "logs"))
    rate = float(read_summary(root / "logs" / "mlperf_log_summary.txt")["Samples per second"])
    return round(OFFLINE_MARGIN * rate, 1)


@pytest.fixture(scope="session")
def digits_supernet(tmp_path_factory) -> Path:
    """The demo's super-network (the digits CNN pre-trained one epoch, untrained as a super-network),
    saved as `nas train` saves one: for search tests, which need a checkpoint, not a good one."""
    import json

    import torch

    from mlperf_bnas.nas.demo import DIGITS_PREPROCESS, DIGITS_SIZE, pretrain_digits_model
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    config = REPO / "code" / "bootstrapnas" / "configs" / "digits_progressive_shrinking.json"
    cfg = json.loads(config.read_text())
    model, _ = pretrain_digits_model(epochs=1, seed=0)
    supernet = SuperNetwork.from_model(model, cfg["bootstrapNAS"]["training"]["elasticity"],
                                       torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    path = tmp_path_factory.mktemp("digits_supernet") / "supernet.pt"
    supernet.save(path, extra={"base_model": "digits_resnet", "preprocess": dict(DIGITS_PREPROCESS),
                               "config": str(config)})
    return path
