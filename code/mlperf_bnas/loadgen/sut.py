"""The system under test: LoadGen queries -> backend batches -> responses.

``OfflineSUT`` and ``ServerSUT`` differ only in how they batch: Offline receives
the whole run as one query and spreads it over the backend in batches of
``backend.batch_size``; Server dispatches each query as it arrives. SingleStream
(one sample per query) and MultiStream (``MULTISTREAM_SAMPLES_PER_QUERY`` per query)
send the next query only when the last one is answered, so their metric is one
query's latency: ``StreamSUT`` hands each query to the backend at once, in as few
batches as the backend's batch size allows (``check_stream_batch`` refuses a
setting that would pad every query, see there). With a Server
``batch_size`` above 1, ``BatchingServerSUT`` batches dynamically instead: queued
samples leave in one batch of up to ``batch_size`` whenever the backend has a free
slot, so a lightly loaded server answers every query alone and batches grow only
under load, when the extra throughput is what keeps the latency bounded.

Every sample LoadGen issues is completed exactly once: the SUT keeps the ids it
has issued and not yet answered, and a completion answers only those still open.
When an inference (or its postprocessing) raises, the affected samples are
completed with empty responses, the error is counted, and ``raise_if_failed``
fails the run after LoadGen returns. ``abort`` stops a run early (Ctrl-C, SIGTERM,
the watchdog: see ``loadgen/guard.py``): every open sample is answered at once with
an empty response and every later query as soon as it arrives, so LoadGen can
finish; those samples are not inference failures, and a stopped run is never
published. ``stall`` is what the watchdog reads: how long samples have waited
without any answer, against the slowest such wait seen so far.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from mlperf_bnas.backends.base import Backend
from mlperf_bnas.errors import RunFailed, UserError
from mlperf_bnas.loadgen.postprocess import Postprocessor
from mlperf_bnas.loadgen.qsl import QSL

log = logging.getLogger(__name__)


class SUTBase:
    def __init__(self, backend: Backend, qsl: QSL, postprocess: Postprocessor):
        self.backend = backend
        self.qsl = qsl
        # A backend that post-processes in its own workers (PyTorch instance processes) hands
        # back the responses; it needs each batch's sample indices for them.
        adopt = getattr(backend, "adopt_postprocess", None)     # duck-typed backends need not have it
        self._indexed = bool(adopt is not None and adopt(postprocess))
        self.postprocess = _as_is if self._indexed else postprocess
        self._lock = threading.Lock()
        self.failed_samples = 0
        self.first_error: BaseException | None = None
        self.completed_samples = 0
        self._open: set[int] = set()             # issued, not yet answered
        self.stopping: str | None = None          # why the run was stopped early (None: it was not)
        self.stopped_samples = 0                  # answered empty because the run was stopped
        self.stall_reason: str | None = None      # set when the watchdog stopped the run
        #: Seconds one batch took in the warm-up (``open_sut`` measures it): the watchdog's
        #: yardstick until the run's own first answer.
        self.expected_batch_s: float | None = None
        self._busy_since = time.monotonic()       # start of the current wait for an answer
        self.slowest_wait_s = 0.0                 # longest wait for an answer seen in this run
        self._answered = False

    # -- LoadGen callbacks -------------------------------------------------
    def issue_queries(self, query_samples) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def flush_queries(self) -> None:
        pass

    # -- bookkeeping -------------------------------------------------------
    def _open_ids(self, ids: list[int]) -> bool:
        """Register issued ids; False (and answered at once) when the run is being stopped."""
        with self._lock:
            if self.stopping is None:
                if not self._open:
                    self._busy_since = time.monotonic()
                self._open.update(ids)
                return True
            self.stopped_samples += len(ids)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(int(i), 0, 0) for i in ids])
        return False

    # -- dispatch ----------------------------------------------------------
    def _dispatch(self, ids: list[int], indices: np.ndarray) -> None:
        def done(outputs: Any, error: BaseException | None) -> None:
            self._complete(ids, indices, outputs, error)

        try:
            batch = self.qsl.batch(indices) if self.backend.reads_input else None
            if self._indexed:
                self.backend.submit(batch, len(ids), done, indices=indices)
            else:
                self.backend.submit(batch, len(ids), done)
        except Exception as exc:  # noqa: BLE001 - every query must still be completed
            self._complete(ids, indices, None, exc)
        except BaseException as exc:  # a KeyboardInterrupt here is a stop request, not a failed inference
            self.abort(f"interrupted ({type(exc).__name__})")

    def _complete(self, ids: list[int], indices: np.ndarray, outputs: Any, error: BaseException | None) -> None:
        responses = None
        if error is None:
            try:
                responses = self.postprocess(outputs, indices)
            except Exception as exc:  # noqa: BLE001
                error = exc
        id_list = ids
        now = time.monotonic()
        with self._lock:
            if self._open.issuperset(id_list):          # the usual case: every sample still open
                live = range(len(id_list))
                self._open.difference_update(id_list)
            else:                                        # the run was stopped: answer only the rest
                live = [k for k, i in enumerate(id_list) if i in self._open]
                if not live:
                    return
                self._open.difference_update(id_list[k] for k in live)
            self.slowest_wait_s = max(self.slowest_wait_s, now - self._busy_since)
            self._busy_since = now
            self._answered = True
            if error is not None:
                self.failed_samples += len(live)
                if self.first_error is None:
                    self.first_error = error
                    log.error("inference failed: %r", error)
            else:
                self.completed_samples += len(live)   # counted here: one lock round per batch
        if error is not None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(id_list[k], 0, 0) for k in live])
            return
        # ``responses`` must stay alive until QuerySamplesComplete returns: it is a
        # local of this frame, so it does.
        if isinstance(responses, np.ndarray):
            responses = np.ascontiguousarray(responses)
            base = responses.ctypes.data
            row = responses.strides[0] if responses.ndim > 1 else responses.itemsize
            nbytes = responses[0].nbytes if len(responses) else 0
            lg.QuerySamplesComplete([lg.QuerySampleResponse(id_list[k], base + k * row, nbytes) for k in live])
        else:
            arrays = [np.ascontiguousarray(a) for a in responses]
            lg.QuerySamplesComplete(
                [lg.QuerySampleResponse(id_list[k], arrays[k].ctypes.data, arrays[k].nbytes) for k in live])

    # -- stopping early ----------------------------------------------------
    def abort(self, reason: str, failed: bool = False) -> int:
        """Stop the run: answer every open sample now (empty responses) and every later one on
        arrival, and drop work the backend has not started. ``failed`` counts the open samples
        as failed (the watchdog); an interruption does not. Returns how many were answered."""
        with self._lock:
            if self.stopping is None:
                self.stopping = reason
            ids = list(self._open)
            self._open.clear()
            if failed:
                self.failed_samples += len(ids)
            else:
                self.stopped_samples += len(ids)
        if ids:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
        try:
            self.backend.cancel()
        except Exception:  # noqa: BLE001 - the samples are answered; a backend that cannot cancel just finishes
            log.exception("backend cancel failed")
        return len(ids)

    def stall(self) -> tuple[float, float] | None:
        """``(seconds the open samples have waited without any answer, the slowest such wait seen
        before)``, or None when nothing is waiting. Before the first answer the slowest wait is
        the warm-up's batch time (0 when unknown)."""
        with self._lock:
            if not self._open or self.stopping is not None:
                return None
            slowest = self.slowest_wait_s if self._answered else (self.expected_batch_s or 0.0)
            return time.monotonic() - self._busy_since, slowest

    # -- after the run -----------------------------------------------------
    def close(self) -> None:
        """Stop the SUT's own threads (after LoadGen has returned)."""

    def raise_if_failed(self) -> None:
        if self.stall_reason:
            raise RunFailed(f"{self.stall_reason}; {self.failed_samples} sample(s) were not answered")
        if self.failed_samples:
            raise RunFailed(
                f"{self.failed_samples} sample(s) failed during inference; first error: "
                f"{type(self.first_error).__name__}: {self.first_error}"
            )


def _as_is(responses: Any, _indices: np.ndarray) -> Any:
    """The postprocessor of a SUT whose backend post-processed already."""
    return responses


def _ids_and_indices(query_samples) -> tuple[list[int], np.ndarray]:
    """LoadGen's ids as Python ints (they only go back to LoadGen and into sets), the sample
    indices as an array (the QSL gathers rows with it). Plain lists: at Server rates (tens of
    thousands of one-sample queries a second) numpy's per-call overhead was most of the
    issue path's cost."""
    ids = [q.id for q in query_samples]
    return ids, np.array([q.index for q in query_samples], dtype=np.int64)


class OfflineSUT(SUTBase):
    """One query holds every sample: split it into backend-sized batches.

    A batch of more than one sample is a gathered copy of its samples (``QSL.batch``), and a
    backend whose ``submit`` only queues (pytorch) would hold a copy of every batch of the
    query at once: under the real rules that is 24,576 samples or more (RetinaNet at batch 2:
    24,576 x 1.83 MiB = 44 GiB). So at most ``IN_FLIGHT_PER_SLOT`` batches per backend slot
    are handed over before the next waits for one to complete: enough to keep every slot
    busy, few enough to stay a few batches of memory. Single-sample batches are views of
    the QSL's array (no copy) and go out at once, as do batches of a backend that reads no
    input."""

    #: Batches handed to the backend per slot (``backend.parallelism``) before the next waits.
    IN_FLIGHT_PER_SLOT = 8

    def __init__(self, backend: Backend, qsl: QSL, postprocess: Postprocessor):
        super().__init__(backend, qsl, postprocess)
        self._window = threading.Condition(threading.Lock())
        self._bounded = backend.batch_size > 1 and backend.reads_input
        self._in_flight = 0
        self.most_in_flight = 0           # the most batches handed over and not yet completed

    def issue_queries(self, query_samples) -> None:
        ids, indices = _ids_and_indices(query_samples)
        if not self._open_ids(ids):
            return
        step = max(1, self.backend.batch_size)
        limit = self.IN_FLIGHT_PER_SLOT * max(1, self.backend.parallelism)
        for start in range(0, len(ids), step):
            if self._bounded:
                with self._window:
                    while self._in_flight >= limit and self.stopping is None:
                        self._window.wait()
                    self._in_flight += 1
                    self.most_in_flight = max(self.most_in_flight, self._in_flight)
            if self.stopping is not None:
                return              # abort() answered the rest
            self._dispatch(ids[start:start + step], indices[start:start + step])

    def _complete(self, ids: list[int], indices: np.ndarray, outputs: Any, error: BaseException | None) -> None:
        try:
            super()._complete(ids, indices, outputs, error)
        finally:
            if self._bounded:
                with self._window:
                    self._in_flight -= 1
                    self._window.notify()

    def abort(self, reason: str, failed: bool = False) -> int:
        answered = super().abort(reason, failed)
        with self._window:
            self._window.notify_all()     # an issue_queries waiting for a slot sees the stop
        return answered


class ServerSUT(SUTBase):
    """Dispatch each sample as LoadGen issues it (backend batch size 1; larger ones batch
    dynamically in ``BatchingServerSUT``)."""

    def issue_queries(self, query_samples) -> None:
        for q in query_samples:
            ids = [q.id]
            if self._open_ids(ids):
                self._dispatch(ids, np.array([q.index], np.int64))


class BatchingServerSUT(SUTBase):
    """Server with dynamic batching, up to ``backend.batch_size`` samples per batch.

    LoadGen's issue thread only queues samples (it never waits for the backend); one
    dispatcher thread sends the queued samples, as one batch of at most ``batch_size``,
    each time one of the backend's ``parallelism`` slots is free. No batch waits to
    fill: waiting would add latency at low load, where batching buys nothing.
    """

    def __init__(self, backend: Backend, qsl: QSL, postprocess: Postprocessor):
        super().__init__(backend, qsl, postprocess)
        self._waiting: collections.deque[tuple[int, int]] = collections.deque()
        # A plain Lock (Condition's default is an RLock, slower on this hot path).
        self._changed = threading.Condition(threading.Lock())
        self._free_slots = max(1, backend.parallelism)
        self._stopping = False
        self.batches = 0
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="server-batcher", daemon=True)
        self._dispatcher.start()

    def issue_queries(self, query_samples) -> None:
        pairs = [(q.id, q.index) for q in query_samples]
        if not self._open_ids([i for i, _ in pairs]):
            return
        with self._changed:
            self._waiting.extend(pairs)
            self._changed.notify()

    def abort(self, reason: str, failed: bool = False) -> int:
        with self._changed:
            self._waiting.clear()     # answered by the base class's abort, never dispatched
        return super().abort(reason, failed)

    def _dispatch_loop(self) -> None:
        limit = self.backend.batch_size
        while True:
            with self._changed:
                while not self._stopping and not (self._waiting and self._free_slots):
                    self._changed.wait()
                if self._stopping:
                    return
                taken = [self._waiting.popleft() for _ in range(min(limit, len(self._waiting)))]
                self._free_slots -= 1
                self.batches += 1
            self._dispatch([i for i, _ in taken], np.array([k for _, k in taken], dtype=np.int64))

    def _complete(self, ids: np.ndarray, indices: np.ndarray, outputs: Any, error: BaseException | None) -> None:
        try:
            super()._complete(ids, indices, outputs, error)
        finally:
            with self._changed:
                self._free_slots += 1
                self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._dispatcher.join(timeout=10)
        if self.batches:
            log.info("server batching: %d samples in %d batches (mean %.2f, limit %d)", self.completed_samples,
                     self.batches, self.completed_samples / self.batches, self.backend.batch_size)


class StreamSUT(OfflineSUT):
    """SingleStream / MultiStream: LoadGen issues one query (1 or 8 samples) and waits for its
    answer before the next, so nothing queues: the query goes to the backend at once, split
    into backend-sized batches that run in parallel where the backend has several slots.
    Lowest latency comes from the backend settings (config.yaml's ``scenarios.SingleStream``
    / ``MultiStream``: one stream using every core), not from the SUT."""


#: Samples LoadGen puts into one query (LoadGen's mlperf.conf: ``*.MultiStream.samples_per_query = 8``).
SAMPLES_PER_QUERY = {"SingleStream": 1, "MultiStream": 8}


def check_stream_batch(scenario: str, batch_size: int, where: str = "config.yaml") -> None:
    """Refuse backend settings that cannot answer a SingleStream / MultiStream query at its lowest
    latency: a fixed batch larger than the query would pad every query to ``batch_size`` samples
    (a batch-of-N inference for 1 sample), so the measured latency would not be the backend's."""
    per_query = SAMPLES_PER_QUERY.get(scenario)
    if per_query is None or batch_size <= per_query:
        return
    raise UserError(
        f"{where}: backend_options.batch_size = {batch_size} cannot serve {scenario}: its queries hold "
        f"{per_query} sample(s), so every query would run as a padded batch of {batch_size} and the "
        f"latency measured would not be this backend's. Fix: set scenarios.{scenario}.backend_options.batch_size "
        f"to at most {per_query} in {where} (or --set backend_options.batch_size={per_query})")


def make_sut(scenario: str, backend: Backend, qsl: QSL, postprocess: Postprocessor, where: str = "config.yaml") -> SUTBase:
    if scenario == "Server" and backend.batch_size > 1:
        return BatchingServerSUT(backend, qsl, postprocess)
    if scenario in SAMPLES_PER_QUERY:
        check_stream_batch(scenario, backend.batch_size, where)
        return StreamSUT(backend, qsl, postprocess)
    if scenario not in ("Offline", "Server"):
        raise UserError(f"unknown scenario {scenario!r}; valid: Offline, Server, SingleStream, MultiStream")
    return {"Offline": OfflineSUT, "Server": ServerSUT}[scenario](backend, qsl, postprocess)
