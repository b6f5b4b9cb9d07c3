"""A backend with a known cost model: the tuner's ground truth.

Each batch "runs" for a fixed cost plus a per-sample cost (``time.sleep`` on one
of ``workers`` threads, so requests overlap exactly ``workers`` at a time).
Beyond ``cache_batch`` samples every further sample pays ``spill_per_sample_ms``
more, as activations that no longer fit in cache do on a real CPU, so the
fastest Offline batch size is known in advance and is not simply the largest.

Analytic figures (used by the tuning tests and ``tools/benchmark_tuning.py``):

* batch time        ``t(b) = fixed_ms + per_sample_ms*b + spill_per_sample_ms*max(0, b - cache_batch)``
* Offline capacity  ``workers * b / t(b)`` samples per millisecond
* Server (b = 1)    an M/D/c queue: Poisson arrivals, deterministic service ``t(1)``, c = ``workers``.

Inputs are never read (``reads_input = False``), so no dataset is needed. The
``simulated-dataset`` variant takes the benchmark's dataset through the QSL and the SUT
like a real backend (and still ignores it), so a whole benchmark (accuracy runs, TEST01,
packaging) runs on a machine of a chosen speed; its answers are class 0 for every sample.

``requests_per_worker`` (unset: the old model, the worker's thread *is* the device, so a
batch starts only when the thread has finished answering the last one) models a device
with that many infer requests per stream, as the OpenVINO backend now runs (two): ``submit``
blocks while ``workers x requests_per_worker`` batches are in flight (OpenVINO's
``start_async`` back-pressure), and a worker's device starts batch ``n`` at
``max(submitted, end of batch n-1, answer of batch n-r returned)``, not when its Python
thread gets round to it. A late Python answer (the interpreter lock, a busy machine) then
delays that answer, not the device, unless Python falls ``r`` batches behind: what a real
device does, and what lets a 128-core simulation on a 2-core machine measure the harness
instead of the scheduler.

``hang_after`` simulates a device that stops answering: after that many batches no
batch completes any more (the run's watchdog must notice; tests use it).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from mlperf_bnas.backends.base import BACKENDS, Backend, Completion, take_queued


@dataclass(frozen=True)
class SimulatedCost:
    fixed_ms: float = 2.0
    per_sample_ms: float = 0.5
    cache_batch: int = 0                 # 0: no cache limit
    spill_per_sample_ms: float = 0.0

    def batch_ms(self, batch: int) -> float:
        spill = max(0, batch - self.cache_batch) if self.cache_batch > 0 else 0
        return self.fixed_ms + self.per_sample_ms * batch + self.spill_per_sample_ms * spill

    def offline_capacity_per_s(self, workers: int, batch: int) -> float:
        """Samples per second with ``workers`` requests always busy on batches of ``batch``."""
        return 1000.0 * workers * batch / self.batch_ms(batch)


@BACKENDS.register("simulated")
class SimulatedBackend(Backend):
    @dataclass(frozen=True)
    class Options:
        workers: int = 1
        batch_size: int = 1
        fixed_ms: float = 2.0
        per_sample_ms: float = 0.5
        cache_batch: int = 0
        spill_per_sample_ms: float = 0.0
        output_size: int = 1
        #: Stop answering after this many batches (0: never); a hung device, for the watchdog.
        hang_after: int = 0
        #: Infer requests per worker (see the module docstring); None: the thread is the device.
        requests_per_worker: int | None = None

        def __post_init__(self):
            if self.workers < 1:
                raise ValueError(f"workers must be >= 1, got {self.workers}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.requests_per_worker is not None and self.requests_per_worker < 1:
                raise ValueError(f"requests_per_worker must be >= 1 or null, got {self.requests_per_worker}")
            if self.hang_after < 0:
                raise ValueError(f"hang_after must be >= 0, got {self.hang_after}")
            if min(self.fixed_ms, self.per_sample_ms, self.spill_per_sample_ms) < 0 or self.cache_batch < 0:
                raise ValueError("fixed_ms, per_sample_ms, spill_per_sample_ms and cache_batch must be >= 0")

    reads_input = False

    def __init__(self, model_path, options: "SimulatedBackend.Options"):
        self.options = options
        self.batch_size = options.batch_size
        self.parallelism = options.workers
        self.cost = SimulatedCost(options.fixed_ms, options.per_sample_ms, options.cache_batch,
                                  options.spill_per_sample_ms)
        self._outputs = np.zeros((options.batch_size, options.output_size), np.float32)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._started = 0
        self._closed = threading.Event()
        self._idle = threading.Condition()
        rpw = options.requests_per_worker
        self._slots = threading.BoundedSemaphore(options.workers * rpw) if rpw else None
        self._threads = [threading.Thread(target=self._worker, name=f"simulated-{i}", daemon=True)
                         for i in range(options.workers)]
        for thread in self._threads:
            thread.start()

    def _worker(self) -> None:
        rpw = self.options.requests_per_worker
        device_free_at = 0.0                 # end of this worker's last batch (device clock)
        answered: collections.deque[float] = collections.deque(maxlen=rpw or 1)   # answers returned
        while True:
            item = self._queue.get()
            if item is None:
                return
            size, done, submitted = item
            with self._idle:
                self._started += 1
                hang = 0 < self.options.hang_after < self._started
            if hang:
                self._closed.wait()     # a hung device: this batch never completes
                return
            # Sleep to an absolute deadline so the service time does not depend on
            # how long this thread waited for the interpreter lock.
            if rpw:
                # The device started this batch when it was submitted, its last batch ended and
                # one of its requests was free (the answer of batch n - r had returned).
                start = max(submitted, device_free_at, answered[0] if len(answered) == rpw else 0.0)
            else:
                start = time.perf_counter()
            deadline = start + self.cost.batch_ms(size) / 1000.0
            device_free_at = deadline
            remaining = deadline - time.perf_counter()
            while remaining > 0:
                time.sleep(remaining)
                remaining = deadline - time.perf_counter()
            try:
                if size <= len(self._outputs):
                    done(self._outputs[:size], None)
                else:
                    done(np.zeros((size, self._outputs.shape[1]), np.float32), None)
            finally:
                answered.append(time.perf_counter())
                if self._slots is not None:
                    self._slots.release()
                with self._idle:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    def submit(self, batch, size: int, done: Completion) -> None:
        if self._slots is not None:
            self._slots.acquire()           # every request busy: wait, as start_async does
        with self._idle:
            self._pending += 1
        self._queue.put((size, done, time.perf_counter()))

    def drain(self) -> None:
        with self._idle:
            while self._pending:
                self._idle.wait()

    def cancel(self) -> None:
        for _size, done, _submitted in take_queued(self._queue):
            try:
                done(None, RuntimeError("cancelled: the run was stopped"))
            finally:
                if self._slots is not None:
                    self._slots.release()
                with self._idle:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    def close(self) -> None:
        self._closed.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "workers": self.options.workers,
                "requests_per_worker": self.options.requests_per_worker,
                "batch_ms": self.cost.batch_ms(self.batch_size)}


@BACKENDS.register("simulated-dataset")
class SimulatedDatasetBackend(SimulatedBackend):
    """The simulated backend behind the benchmark's real dataset path (QSL, batches, responses)."""

    reads_input = True
