"""Distributed evaluation: rank 0 owns the algorithm, workers measure (torch.distributed, gloo).

Launch under torchrun (``torchrun --nproc_per_node N -m mlperf_bnas nas search ...``), under
an MPI launcher (``mpirun -np N dynast ...``: Open MPI's ``OMPI_COMM_WORLD_*``, MPICH/Hydra's
``PMI_RANK``/``PMI_SIZE``, MVAPICH2's ``MV2_COMM_WORLD_*``, mapped onto one torch.distributed
group), or let ``--distributed --nproc N`` start N local processes itself
(torch.multiprocessing, a free localhost port). Every rank builds the same super-network and
evaluator; rank 0 runs the search and alone writes the results. For each batch of new
sub-networks rank 0 scatters contiguous chunks (``scatter_object_list``), every rank
measures its chunk, and rank 0 gathers the results (``gather_object``) in the original order,
so the search sees exactly what one process would see: the same seed gives the same front.

Rendezvous under MPI: ``MASTER_ADDR``/``MASTER_PORT`` when exported (DyNAS-T's documented
``mpirun -x MASTER_ADDR=... -x MASTER_PORT=...``; required across machines); otherwise, when
every rank runs on this machine, a file store in the temporary folder named after the MPI job.

A worker that fails sends its error back instead of hanging the group; rank 0 raises it.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch.distributed as dist

from mlperf_bnas.errors import RunFailed, UserError

log = logging.getLogger(__name__)

_STOP = "stop"

#: MPI launchers' environment: (rank, size, local rank, local size) variables, by launcher.
MPI_ENVIRONMENTS = {
    "Open MPI": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "OMPI_COMM_WORLD_LOCAL_SIZE"),
    "MPICH/PMI": ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    "MVAPICH2": ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK",
                 "MV2_COMM_WORLD_LOCAL_SIZE"),
}
#: Variables that name one MPI job (the file-store rendezvous of a one-machine job).
_JOB_IDS = ("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid", "OMPI_MCA_orte_hnp_uri",
            "PMI_JOBID", "PMI_KVSNAME", "PMI_PORT", "MPIRUN_ID")


@dataclass(frozen=True)
class Launch:
    """How this process was started: by whom, and its place in the group."""
    launcher: str          # "torchrun", "Open MPI", "MPICH/PMI", "MVAPICH2"
    rank: int
    world_size: int
    local_rank: int
    local_size: int | None


def detect_launch(env: dict | None = None) -> Launch | None:
    """The launcher this process runs under (torchrun first, then MPI), or None."""
    env = os.environ if env is None else env
    if all(k in env for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        local = env.get("LOCAL_WORLD_SIZE")
        return Launch("torchrun", int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                      int(local) if local else None)
    for name, (rank, size, local_rank, local_size) in MPI_ENVIRONMENTS.items():
        if rank in env and size in env:
            try:
                return Launch(name, int(env[rank]), int(env[size]), int(env.get(local_rank, 0)),
                              int(env[local_size]) if env.get(local_size) else None)
            except ValueError:
                raise UserError(f"{name} environment: {rank}={env[rank]!r}, {size}={env[size]!r} are not "
                                "integers") from None
    return None


def _mpi_job_key(launch: Launch, env) -> str:
    ids = [f"{k}={env[k]}" for k in _JOB_IDS if env.get(k)]
    # Without a job id, the launcher process (every local rank's parent) names the job.
    key = ";".join(ids) if ids else f"ppid={os.getppid()}"
    return hashlib.sha256(f"{key};size={launch.world_size}".encode()).hexdigest()[:16]


def _mpi_rendezvous(launch: Launch, env) -> str:
    """The init_method of an MPI-launched group (and sets RANK/WORLD_SIZE/LOCAL_RANK for torch)."""
    os.environ.update(RANK=str(launch.rank), WORLD_SIZE=str(launch.world_size), LOCAL_RANK=str(launch.local_rank))
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return "env://"
    if launch.local_size is not None and launch.local_size == launch.world_size:
        path = Path(tempfile.gettempdir()) / f"mlperf-bnas-dist-{_mpi_job_key(launch, env)}"
        return f"file://{path}"
    raise UserError(f"{launch.launcher}: {launch.world_size} ranks on more than one machine need a rendezvous: "
                    "export MASTER_ADDR (rank 0's host) and MASTER_PORT, e.g. mpirun -x MASTER_ADDR=host0 "
                    "-x MASTER_PORT=29500 ...")


def init(timeout_s: float = 1800, launch: Launch | None = None) -> tuple[int, int]:
    """Join the process group of this launch (torchrun's environment, or an MPI launcher's);
    returns (rank, world size)."""
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        launch = launch or detect_launch()
        if launch is not None and launch.launcher != "torchrun":
            method = _mpi_rendezvous(launch, os.environ)
            log.info("%s rank %d of %d: torch.distributed (gloo) via %s", launch.launcher, launch.rank,
                     launch.world_size, method.split(":")[0])
            dist.init_process_group("gloo", init_method=method, rank=launch.rank, world_size=launch.world_size,
                                    timeout=timeout)
        else:
            dist.init_process_group("gloo", timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split(items: list, parts: int) -> list[list]:
    """Contiguous, nearly equal chunks (the first ``len % parts`` chunks one longer)."""
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _measure_chunk(measure_one: Callable[[dict], dict], chunk: list[dict]) -> tuple[str, object]:
    try:
        return "ok", [measure_one(c) for c in chunk]
    except Exception as exc:  # noqa: BLE001 - forwarded to rank 0, which raises it; never swallowed
        log.exception("worker %d failed measuring a sub-network", dist.get_rank())
        return "error", f"{type(exc).__name__}: {exc}"


class DistributedPool:
    """Rank 0's view: ``measure(configs)`` spreads a batch over every rank (itself included)."""

    def __init__(self, measure_one: Callable[[dict], dict]):
        self.measure_one = measure_one
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        if self.rank != 0:
            raise RuntimeError("DistributedPool belongs to rank 0; other ranks call serve()")

    def measure(self, configs: list[dict]) -> list[dict]:
        chunks = split(list(configs), self.world)
        mine: list = [None]
        dist.scatter_object_list(mine, chunks, src=0)
        result = _measure_chunk(self.measure_one, mine[0])
        gathered: list = [None] * self.world
        dist.gather_object(result, gathered, dst=0)
        out: list[dict] = []
        for rank, (status, payload) in enumerate(gathered):
            if status != "ok":
                raise RunFailed(f"distributed worker {rank} failed: {payload}")
            out.extend(payload)
        return out

    def close(self) -> None:
        dist.scatter_object_list([None], [_STOP] * self.world, src=0)


def serve(measure_one: Callable[[dict], dict]) -> int:
    """A worker's loop (rank > 0): measure what rank 0 scatters until it says stop."""
    rank = dist.get_rank()
    count = 0
    while True:
        mine: list = [None]
        dist.scatter_object_list(mine, None, src=0)
        if mine[0] == _STOP:
            log.info("worker %d: measured %d sub-network(s)", rank, count)
            return count
        result = _measure_chunk(measure_one, mine[0])
        count += len(mine[0])
        dist.gather_object(result, None, dst=0)


def shutdown() -> None:
    # A file-store rendezvous file is removed by torch when the last rank leaves.
    if dist.is_initialized():
        dist.destroy_process_group()
