"""The system under test: LoadGen queries -> backend batches -> responses.

``OfflineSUT`` and ``ServerSUT`` differ only in how they batch: Offline receives
the whole run as one query and spreads it over the backend in batches of
``backend.batch_size``; Server dispatches each query as it arrives. With a Server
``batch_size`` above 1, ``BatchingServerSUT`` batches dynamically instead: queued
samples leave in one batch of up to ``batch_size`` whenever the backend has a free
slot, so a lightly loaded server answers every query alone and batches grow only
under load, when the extra throughput is what keeps the latency bounded.

Every sample LoadGen issues is completed exactly once. When an inference (or its
postprocessing) raises, the affected samples are completed with empty responses,
the error is counted, and ``raise_if_failed`` fails the run after LoadGen returns.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from mlperf_bnas.backends.base import Backend
from mlperf_bnas.errors import RunFailed
from mlperf_bnas.loadgen.postprocess import Postprocessor
from mlperf_bnas.loadgen.qsl import QSL

log = logging.getLogger(__name__)


class SUTBase:
    def __init__(self, backend: Backend, qsl: QSL, postprocess: Postprocessor):
        self.backend = backend
        self.qsl = qsl
        self.postprocess = postprocess
        self._lock = threading.Lock()
        self.failed_samples = 0
        self.first_error: BaseException | None = None
        self.completed_samples = 0

    # -- LoadGen callbacks -------------------------------------------------
    def issue_queries(self, query_samples) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def flush_queries(self) -> None:
        pass

    # -- dispatch ----------------------------------------------------------
    def _dispatch(self, ids: np.ndarray, indices: np.ndarray) -> None:
        def done(outputs: Any, error: BaseException | None) -> None:
            self._complete(ids, indices, outputs, error)

        try:
            batch = self.qsl.batch(indices) if self.backend.reads_input else None
            self.backend.submit(batch, len(ids), done)
        except BaseException as exc:  # noqa: BLE001 - every query must still be completed
            self._complete(ids, indices, None, exc)

    def _complete(self, ids: np.ndarray, indices: np.ndarray, outputs: Any, error: BaseException | None) -> None:
        responses = None
        if error is None:
            try:
                responses = self.postprocess(outputs, indices)
            except BaseException as exc:  # noqa: BLE001
                error = exc
        if error is not None:
            with self._lock:
                self.failed_samples += len(ids)
                if self.first_error is None:
                    self.first_error = error
                    log.error("inference failed: %r", error)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(int(i), 0, 0) for i in ids])
            return
        # ``responses`` must stay alive until QuerySamplesComplete returns: it is a
        # local of this frame, so it does.
        if isinstance(responses, np.ndarray):
            responses = np.ascontiguousarray(responses)
            base = responses.ctypes.data
            row = responses.strides[0] if responses.ndim > 1 else responses.itemsize
            nbytes = responses[0].nbytes if len(responses) else 0
            lg.QuerySamplesComplete(
                [lg.QuerySampleResponse(int(i), base + k * row, nbytes) for k, i in enumerate(ids.tolist())])
        else:
            arrays = [np.ascontiguousarray(a) for a in responses]
            lg.QuerySamplesComplete(
                [lg.QuerySampleResponse(int(i), a.ctypes.data, a.nbytes) for i, a in zip(ids.tolist(), arrays)])
        with self._lock:
            self.completed_samples += len(ids)

    # -- after the run -----------------------------------------------------
    def close(self) -> None:
        """Stop the SUT's own threads (after LoadGen has returned)."""

    def raise_if_failed(self) -> None:
        if self.failed_samples:
            raise RunFailed(
                f"{self.failed_samples} sample(s) failed during inference; first error: "
                f"{type(self.first_error).__name__}: {self.first_error}"
            )


def _ids_and_indices(query_samples) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((q.id for q in query_samples), dtype=np.uint64, count=len(query_samples))
    idx = np.fromiter((q.index for q in query_samples), dtype=np.int64, count=len(query_samples))
    return ids, idx


class OfflineSUT(SUTBase):
    """One query holds every sample: split it into backend-sized batches."""

    def issue_queries(self, query_samples) -> None:
        ids, indices = _ids_and_indices(query_samples)
        step = max(1, self.backend.batch_size)
        for start in range(0, len(ids), step):
            self._dispatch(ids[start:start + step], indices[start:start + step])


class ServerSUT(SUTBase):
    """Dispatch each sample as LoadGen issues it (backend batch size 1; larger ones batch
    dynamically in ``BatchingServerSUT``)."""

    def issue_queries(self, query_samples) -> None:
        for q in query_samples:
            self._dispatch(np.array([q.id], np.uint64), np.array([q.index], np.int64))


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
        self._changed = threading.Condition()
        self._free_slots = max(1, backend.parallelism)
        self._stopping = False
        self.batches = 0
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="server-batcher", daemon=True)
        self._dispatcher.start()

    def issue_queries(self, query_samples) -> None:
        with self._changed:
            self._waiting.extend((q.id, q.index) for q in query_samples)
            self._changed.notify()

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
            ids = np.fromiter((i for i, _ in taken), dtype=np.uint64, count=len(taken))
            indices = np.fromiter((k for _, k in taken), dtype=np.int64, count=len(taken))
            self._dispatch(ids, indices)

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


def make_sut(scenario: str, backend: Backend, qsl: QSL, postprocess: Postprocessor) -> SUTBase:
    if scenario == "Server" and backend.batch_size > 1:
        return BatchingServerSUT(backend, qsl, postprocess)
    return {"Offline": OfflineSUT, "Server": ServerSUT}[scenario](backend, qsl, postprocess)
