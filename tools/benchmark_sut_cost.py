#!/usr/bin/env python3
"""CPU time the SUT spends per sample (issue -> batch -> backend -> completion), LoadGen stubbed.

A figure that machine load barely moves (CPU seconds, not wall time): the Python work the
harness adds per sample, which bounds the rate one process can carry (about 1 / cost per
core-second). LoadGen's ``QuerySamplesComplete`` is replaced by a counter, so LoadGen's own
per-query work is not included; the simulated backend serves instantly with two requests
per worker. Medians of ``--repeats`` runs.

    .venv/bin/python tools/benchmark_sut_cost.py [--samples 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlperf_bnas.backends.base import create_backend
from mlperf_bnas.loadgen import sut as sutmod
from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS
from mlperf_bnas.loadgen.qsl import QSL

_done = [0]


def _complete(responses) -> None:
    _done[0] += len(responses)


class _Query:
    __slots__ = ("id", "index")

    def __init__(self, i: int):
        self.id, self.index = i, i % 1024


class _Zeros:
    def __len__(self) -> int:
        return 1024

    def load(self, idx):
        return np.zeros((len(idx), 1), np.uint8)


def cost(scenario: str, batch: int, n: int, workers: int) -> tuple[float, float]:
    """(CPU µs per sample, wall µs per sample) of one run of ``n`` samples."""
    backend = create_backend("simulated", None, {"workers": workers, "batch_size": batch, "fixed_ms": 0.0,
                                                  "per_sample_ms": 0.0, "requests_per_worker": 2})
    sut = sutmod.make_sut(scenario, backend, QSL(_Zeros(), 1024), POSTPROCESSORS.get("none"))
    queries = [[_Query(i + 1)] for i in range(n)] if scenario == "Server" else [[_Query(i + 1) for i in range(n)]]
    _done[0] = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for q in queries:
        sut.issue_queries(q)
    while _done[0] < n:
        time.sleep(0.001)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sut.close()
    backend.close()
    return cpu / n * 1e6, wall / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    sutmod.lg.QuerySamplesComplete = _complete
    for scenario, batch in (("Server", 1), ("Server", 4), ("Offline", 4)):
        runs = [cost(scenario, batch, args.samples, args.workers) for _ in range(args.repeats)]
        cpu = statistics.median(r[0] for r in runs)
        print(f"{scenario} batch {batch}: {cpu:.1f} µs CPU per sample (median of {args.repeats}; "
              f"range {min(r[0] for r in runs):.1f}-{max(r[0] for r in runs):.1f}), i.e. about "
              f"{1e6 / cpu:,.0f} samples per CPU-second", flush=True)


if __name__ == "__main__":
    main()
