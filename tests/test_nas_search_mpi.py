"""Distributed search under a real MPI launcher (DyNAS-T's documented way: ``mpirun -np N dynast
--distributed``): the ranks form one torch.distributed group, rank 0 alone writes, and the
results are those of one process with the same seed.

Needs ``mpirun`` (Debian: ``apt-get install openmpi-bin``). Without it the test skips, unless
``MLPERF_BNAS_REQUIRE_MPI=1`` (set by .ci/run, which installs openmpi-bin): then it fails.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from mlperf_bnas.nas.search.distributed import detect_launch, free_port

MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
SMALL = ["--search_tactic", "evolutionary", "--num_evals", "8", "--population", "4", "--seed", "11",
         "--measurements", "accuracy_top1", "macs", "params", "--test_fraction", "0.5", "--num_bn_samples", "64",
         "--acc_delta", "60", "--eval_batch_size", "32"]


def mpirun_or_skip() -> str:
    if MPIRUN is None:
        if os.environ.get("MLPERF_BNAS_REQUIRE_MPI") == "1":
            pytest.fail("MLPERF_BNAS_REQUIRE_MPI=1 but there is no mpirun on PATH: install openmpi-bin")
        pytest.skip("no mpirun on PATH (Debian: apt-get install openmpi-bin); CI requires it "
                    "(MLPERF_BNAS_REQUIRE_MPI=1)")
    return MPIRUN


def dynast_cmd(supernet: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "mlperf_bnas.commands.dynast", "--supernet", str(supernet),
            "--results_path", str(results), *SMALL]


def csv_rows(path: Path, drop: str | None = None) -> list[list[str]]:
    with open(path, newline="") as fh:
        table = list(csv.reader(fh))
    if drop is None:
        return table
    i = table[0].index(drop)
    return [row[:i] + row[i + 1:] for row in table]


def test_mpi_environments_are_recognised():
    ompi = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    launch = detect_launch(ompi)
    assert (launch.launcher, launch.rank, launch.world_size, launch.local_rank, launch.local_size) == \
        ("Open MPI", 1, 4, 1, 2)
    mpich = {"PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2"}
    assert detect_launch(mpich).launcher == "MPICH/PMI" and detect_launch(mpich).world_size == 2
    torchrun = {**ompi, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    assert detect_launch(torchrun).launcher == "torchrun"
    assert detect_launch({}) is None


@pytest.mark.slow
@pytest.mark.parametrize("rendezvous", ["MASTER_ADDR", "file"], ids=["master-addr", "one-machine"])
def test_mpirun_gives_the_single_process_results(digits_supernet, tmp_path, rendezvous):
    mpirun = mpirun_or_skip()
    single = tmp_path / "single"
    single.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI_", "PMIX_", "MASTER_")) and k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.run(dynast_cmd(digits_supernet, single / "results.csv"), capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    mpi = tmp_path / "mpi"
    mpi.mkdir()
    launcher = [mpirun, "-np", "2"]
    openmpi = "Open MPI" in subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    if openmpi:
        launcher.append("--oversubscribe")       # two ranks on a 2-core machine count as oversubscribed
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if rendezvous == "MASTER_ADDR":               # DyNAS-T's README: mpirun -x MASTER_ADDR=... -x MASTER_PORT=...
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
        if openmpi:
            launcher += ["-x", "MASTER_ADDR", "-x", "MASTER_PORT"]
    proc = subprocess.run([*launcher, *dynast_cmd(digits_supernet, mpi / "results.csv"), "--distributed"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Open MPI rank 0 of 2" in proc.stderr or "MPICH/PMI rank 0 of 2" in proc.stderr, proc.stderr[-3000:]

    # One group, one writer: exactly the files a single process writes, and the same results.
    assert sorted(p.name for p in mpi.iterdir()) == sorted(p.name for p in single.iterdir())
    assert (mpi / "search_results.csv").read_bytes() == (single / "search_results.csv").read_bytes()
    assert (mpi / "pareto.csv").read_bytes() == (single / "pareto.csv").read_bytes()
    assert csv_rows(mpi / "results.csv", drop="Date") == csv_rows(single / "results.csv", drop="Date")
    record = json.loads((mpi / "nas_record.json").read_text())
    assert record["search"]["distributed_processes"] == 2
    assert record["subnet_config"] == json.loads((single / "nas_record.json").read_text())["subnet_config"]
