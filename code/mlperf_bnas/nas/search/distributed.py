"""Distributed evaluation: rank 0 owns the algorithm, workers measure (torch.distributed, gloo).

Launch under torchrun (``torchrun --nproc_per_node N -m mlperf_bnas nas search --distributed
...``) or let ``mlperf-bnas nas search --distributed --nproc N`` start N local processes
itself (torch.multiprocessing, a free localhost port). Every rank builds the same
super-network and evaluator; rank 0 runs the search. For each batch of new sub-networks
rank 0 scatters contiguous chunks (``scatter_object_list``), every rank measures its
chunk, and rank 0 gathers the results (``gather_object``) in the original order, so the
search sees exactly what one process would see: the same seed gives the same front.

A worker that fails sends its error back instead of hanging the group; rank 0 raises it.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable

import torch.distributed as dist

from mlperf_bnas.errors import RunFailed

log = logging.getLogger(__name__)

_STOP = "stop"


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init(timeout_s: float = 1800) -> tuple[int, int]:
    """Join the process group described by the torchrun environment; returns (rank, world size)."""
    import datetime
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
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
    if dist.is_initialized():
        dist.destroy_process_group()
