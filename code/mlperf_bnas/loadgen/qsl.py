"""Query sample library: the performance samples, loaded into RAM before timing starts."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class SampleSource(Protocol):
    """What a QSL needs from a preprocessed dataset (see ``mlperf_bnas.data``)."""

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int]) -> np.ndarray:
        """Preprocessed samples for ``indices``, stacked on a new leading axis."""
        ...


class QSL:
    """Holds the samples LoadGen asked for in one contiguous array.

    ``load_samples``/``unload_samples`` are LoadGen's callbacks; ``batch`` gathers
    the rows for a query (a view, without copying, for single-sample queries).
    """

    def __init__(self, source: SampleSource, performance_count: int):
        self.source = source
        self.total_count = len(source)
        self.performance_count = min(performance_count, self.total_count)
        self._data: np.ndarray | None = None
        self._row = np.full(self.total_count, -1, dtype=np.int64)

    def load_samples(self, indices: Sequence[int]) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        self._data = np.ascontiguousarray(self.source.load(indices.tolist()))
        self._row[:] = -1
        self._row[indices] = np.arange(len(indices))

    def unload_samples(self, indices: Sequence[int]) -> None:
        self._data = None
        self._row[:] = -1

    def batch(self, qsl_indices: np.ndarray) -> np.ndarray:
        rows = self._row[qsl_indices]
        if self._data is None or (rows < 0).any():
            raise RuntimeError(f"QSL: samples {qsl_indices[rows < 0].tolist()} were not loaded by LoadGen")
        if len(rows) == 1:
            r = int(rows[0])
            return self._data[r:r + 1]
        return self._data[rows]
