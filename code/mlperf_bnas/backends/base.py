"""The backend contract: asynchronous inference on batches of preprocessed samples.

A backend owns its parallelism (OpenVINO infer requests, PyTorch instances, ...).
The SUT hands it a batch and a completion callback; the backend calls the
callback exactly once per batch, from any thread, with either the outputs or
the exception that stopped the inference. Compilation and warm-up happen in
``load``/``warmup``, before LoadGen starts, never on the first query.

A backend also builds what it runs (``Backend.build``, as NVIDIA's harness gives each
benchmark its builder): ``mlperf-bnas build`` prepares a ``BuildContext`` (the FP32 torch
module, the preprocessing, the calibration samples) and the backend turns it into its
model folder with a ``quantization.json`` build record.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from mlperf_bnas.config import check_options
from mlperf_bnas.errors import UserError
from mlperf_bnas.registry import Registry

if TYPE_CHECKING:
    from mlperf_bnas.config import BenchmarkConfig
    from mlperf_bnas.data import CalibrationSet, PreprocessSpec
    from mlperf_bnas.models import ModelEntry
    from mlperf_bnas.quantize import QuantizationConfig

# done(outputs, error): exactly one of them is None.
Completion = Callable[[Any, "BaseException | None"], None]

log = logging.getLogger(__name__)


class InFlight:
    """The batches a backend accepted and has not completed yet, for its ``drain``.

    ``complete`` hands a batch's result to the SUT's completion, exactly once, and counts the
    batch done even when the completion raises (the SUT completes its samples itself: the
    backend logs it and keeps serving). ``lock``: a lock the backend also guards other state
    with, when counting must be atomic with it.
    """

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._idle = threading.Condition(lock)
        self._pending = 0

    def add(self) -> None:
        with self._idle:
            self._pending += 1

    def complete(self, done: Completion, outputs: Any, error: BaseException | None) -> None:
        try:
            done(outputs if error is None else None, error)
        except BaseException:  # noqa: BLE001 - the SUT completes its samples itself; keep serving
            log.exception("completion callback raised")
        finally:
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()

    def drain(self) -> None:
        with self._idle:
            while self._pending:
                self._idle.wait()


def take_queued(work: queue.SimpleQueue | queue.Queue) -> Iterator[Any]:
    """Remove and yield what is still queued for a backend's workers (``cancel``); a ``None``
    met is their stop marker (``close``) and is put back for them."""
    while True:
        try:
            item = work.get_nowait()
        except queue.Empty:
            return
        if item is None:
            work.put(None)
            return
        yield item


@dataclass(frozen=True)
class BuildContext:
    """Everything a backend's ``build`` needs for one precision (``pipeline.build`` fills it in)."""

    cfg: BenchmarkConfig
    entry: ModelEntry                   # the model's descriptor (example input, quantization hooks)
    precision: str                      # "int8" | "fp32"
    torch_model: Any                    # the FP32 module, eval mode
    spec: PreprocessSpec                # what one cached sample is (the built model's input)
    out_dir: Path                       # build/<benchmark>/model/<precision>/, swapped in when finished
    quantization: QuantizationConfig
    #: The build record's common part (benchmark, model, weights, dataset, calibration); the
    #: backend adds what it did and writes it as ``quantization.json`` beside the model.
    record: dict[str, Any]
    calibration: CalibrationSet | None = None   # INT8: samples chosen by the dataset from its calibration set

    @property
    def where(self) -> str:
        return f"{self.cfg.benchmark_dir / 'config.yaml'} (backend_options)"


class Backend(ABC):
    #: Options dataclass (frozen); ``config.yaml``'s ``backend_options`` is checked against it.
    Options: type
    #: Largest batch the compiled model accepts; the Offline SUT splits queries into batches of this size.
    batch_size: int = 1
    #: Batches it runs at once (infer requests, instances, workers): the batching Server SUT
    #: keeps at most this many in flight, so samples wait in its queue, where they can still
    #: join a larger batch, instead of in the backend's.
    parallelism: int = 1
    #: False for backends that never look at the input (the null backend), so the
    #: SUT skips gathering samples and the harness overhead is measured alone.
    reads_input: bool = True
    #: Options baked into the built model: a run (and so a tuning trial) must use the value the
    #: model was built with, so a tuning grid may not vary them (the tuner does not rebuild).
    BUILD_OPTIONS: tuple[str, ...] = ()

    @classmethod
    def build_identity(cls, options: Any) -> dict[str, Any]:
        """What of ``options`` the built model depends on (``BUILD_OPTIONS``' values by default):
        two option sets with the same identity run on the same build."""
        return {key: getattr(options, key) for key in cls.BUILD_OPTIONS}

    @classmethod
    def from_options(cls, model_path: Path | None, options: Any) -> "Backend":
        return cls(model_path, options)

    @classmethod
    def build(cls, ctx: BuildContext) -> Path:
        """Build the model this backend runs into ``ctx.out_dir`` (a private folder swapped in
        when complete, with ``quantization.json``); returns the path ``create_backend`` takes."""
        raise UserError(f"backend {ctx.cfg.backend!r} runs no built model, so there is nothing to build; "
                        "build with the benchmark's own backend (without --set backend=...)")

    @classmethod
    def builds_model(cls) -> bool:
        """Whether this backend runs a model it builds (``build`` overridden): the null and simulated
        backends do not, so ``mlperf-bnas build`` has nothing to build and a run no build to check."""
        return cls.build.__func__ is not Backend.build.__func__

    @abstractmethod
    def submit(self, batch: np.ndarray | None, size: int, done: Completion) -> None:
        """Start inference on ``batch`` (``size`` samples, leading axis) and return.

        ``batch`` is None when ``reads_input`` is False. Call ``done`` once when finished.
        """

    @abstractmethod
    def drain(self) -> None:
        """Block until every submitted batch has called its completion."""

    def warmup(self, batch: np.ndarray | None, iterations: int = 2) -> None:
        """Run a few synchronous inferences so the first query sees a warm model."""
        errors: list[BaseException] = []
        for _ in range(iterations):
            self.submit(batch, 1 if batch is None else len(batch), lambda _out, err: errors.append(err) if err else None)
            self.drain()
        if errors:
            raise errors[0]

    def adopt_postprocess(self, postprocess: Callable[[Any, np.ndarray], Any]) -> bool:
        """Whether the backend runs ``postprocess`` itself. When it does, the SUT passes each batch's
        sample indices to ``submit`` (``indices=``) and takes what ``done`` gets as the responses.
        PyTorch instance processes do (backends/instances.py): their raw outputs would have to
        cross a process boundary, the responses are small."""
        return False

    def check_build(self, model: str, model_options: Any, precision: str) -> None:
        """Refuse a built model made for another model, other model options or another precision.

        Called once the backend has loaded it, before warm-up; backends whose build
        records say so (the IPEX TorchScript build) check them here.
        """

    def cancel(self) -> None:
        """Drop batches submitted but not started (the run is being stopped). Their completions
        may still be called, with an error or without; the SUT has answered their samples already.
        Backends without a queue of their own (OpenVINO: at most one batch per infer request)
        need nothing here."""

    def close(self) -> None:
        """Release runtime resources."""

    def describe(self) -> dict[str, Any]:
        """Settings actually in effect (streams, requests, threads...), for logs and reports."""
        return {"batch_size": self.batch_size}


BACKENDS: Registry[type[Backend]] = Registry("backend")


def create_backend(name: str, model_path: Path | None, options: dict[str, Any], where: str = "backend_options",
                   sources: dict[str, str] | None = None) -> Backend:
    cls = BACKENDS.get(name)
    opts = check_options("backend_options", options, cls.Options, where, sources)
    return cls.from_options(model_path, opts)
