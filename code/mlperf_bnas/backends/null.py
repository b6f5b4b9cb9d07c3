"""A backend that answers instantly: it measures the harness (LoadGen + SUT) alone.

Like the reference ``backend_null.py``; its throughput is the ceiling the harness
itself puts on any real backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlperf_bnas.backends.base import BACKENDS, Backend, Completion


@BACKENDS.register("null")
class NullBackend(Backend):
    @dataclass(frozen=True)
    class Options:
        batch_size: int = 256
        # Each sample's output: this many float32 zeros (the null postprocessor answers 4 bytes).
        output_size: int = 1

    reads_input = False

    def __init__(self, model_path, options: "NullBackend.Options"):
        if options.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = options.batch_size
        self._outputs = np.zeros((options.batch_size, options.output_size), np.float32)

    def submit(self, batch, size: int, done: Completion) -> None:
        done(self._outputs[:size], None)

    def drain(self) -> None:
        pass
