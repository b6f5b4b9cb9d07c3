"""Drive the core LoadGen runner with an in-memory sample source (one process per test).

Used by tests/test_loadgen_core.py to exercise the SUT/QSL/runner contract without a
model: ``python tests/loadgen_driver.py <scenario> <user.conf> <log_dir> [--fail-every N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mlperf_bnas.backends import create_backend
from mlperf_bnas.backends.base import Backend
from mlperf_bnas.errors import RunFailed
from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS
from mlperf_bnas.loadgen.qsl import QSL
from mlperf_bnas.loadgen.runner import RunRequest, run_test
from mlperf_bnas.loadgen.sut import make_sut


class CountingSource:
    """Sample i is the vector [i, i, i, i]: responses echo it, so tests can check routing."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, indices):
        return np.repeat(np.asarray(indices, np.float32)[:, None], 4, axis=1)


class EchoBackend(Backend):
    """Answers each sample with its own value; raises on every Nth batch when asked."""

    class Options:  # not used through create_backend
        pass

    def __init__(self, batch_size: int, fail_every: int):
        self.batch_size = batch_size
        self.fail_every = fail_every
        self.calls = 0

    def submit(self, batch, size, done):
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError(f"injected failure in batch {self.calls}")
        time.sleep(0.001)  # a real-ish service time, so short runs still span min_duration
        done(batch[:, :1].copy(), None)

    def drain(self):
        pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("user_conf")
    p.add_argument("log_dir")
    p.add_argument("--mode", default="performance")
    p.add_argument("--backend", default="echo", choices=["echo", "null", "simulated"])
    p.add_argument("--batch-size", type=int, default=8, help="simulated backend: largest batch")
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--samples", type=int, default=256)
    a = p.parse_args()
    if a.backend == "null":
        backend = create_backend("null", None, {})
        post = POSTPROCESSORS.get("none")
    elif a.backend == "simulated":
        # One worker; a batch of b takes 5 + 0.5*b ms: 182 samples/s at batch 1, 889 at batch 8.
        backend = create_backend("simulated", None, {"workers": 1, "batch_size": a.batch_size,
                                                     "fixed_ms": 5.0, "per_sample_ms": 0.5})
        post = POSTPROCESSORS.get("none")
    else:
        backend = EchoBackend(8, a.fail_every)
        post = lambda out, idx: out.astype(np.float32)  # noqa: E731
    qsl = QSL(CountingSource(a.samples), 64)
    sut = make_sut(a.scenario, backend, qsl, post)
    log_dir = Path(a.log_dir)
    req = RunRequest("resnet50", a.scenario, a.mode, Path(a.user_conf), log_dir, log_dir.parent / "archive")
    try:
        summary = run_test(req, sut, qsl)
    except RunFailed as exc:
        print(json.dumps({"failed": str(exc), "failed_samples": sut.failed_samples,
                          "completed": sut.completed_samples}))
        return 1
    print(json.dumps({"summary": summary, "completed": sut.completed_samples,
                      "batches": getattr(sut, "batches", None)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
