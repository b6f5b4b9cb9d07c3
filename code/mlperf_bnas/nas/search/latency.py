"""Hardware-aware latency: measured on the runtime the benchmark uses, warm, median, cached.

``LatencyMeter.measure(config, build)`` extracts the sub-network (``build()``), turns it
into what the benchmark runs and times single inferences after a warm-up, reporting the
median in milliseconds:

* ``openvino`` + ``int8``: the spine's ``backends.openvino.build_openvino_ir`` (torch -> OpenVINO IR,
  NNCF INT8 on seeded calibration images: INT8 latency does not depend on calibration
  values) and the ``openvino`` backend with the LATENCY hint, one infer request;
* ``openvino`` + ``fp32``: the same without quantization;
* ``pytorch`` + ``int8``/``fp32``: the benchmark's own PyTorch path (RetinaNet): the sub-network
  rebuilt as the model's own module class (``ModelEntry.build_subnet``), built by the
  benchmark's builder (``PyTorchBackend.build``: NNCF ``quantize_pt2e`` with the benchmark's
  quantization settings on seeded calibration images, ``torch.export``) and run by its backend
  (Inductor-compiled, one instance, the benchmark's ``backend_options`` otherwise);
* ``torch`` + ``fp32``: eager PyTorch (fast; for development and the digits demo).

Results are cached in a JSON file keyed by the sub-network config, runtime, precision,
batch size, input shape and the CPU, so a resumed or repeated search never re-measures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.nas.search.tactics import config_key
from mlperf_bnas.nas.search.settings import LatencySettings

log = logging.getLogger(__name__)



class LatencyMeter:
    """Measures and caches sub-network latency (ms) for one runtime/precision/input."""

    def __init__(self, settings: LatencySettings, cache_path: Path, input_shape: tuple[int, ...],
                 preprocess_spec=None, work_dir: Path | None = None, target=None):
        """``input_shape``: one input sample for the torch model (e.g. (3, 224, 224)).

        ``preprocess_spec`` (data.spec.PreprocessSpec): required for openvino and pytorch, whose
        built models take the samples as the benchmark caches them. ``target``
        (``targets.SearchTarget``): required for pytorch (the model's descriptor and benchmark).
        """
        if settings.runtime in ("openvino", "pytorch") and preprocess_spec is None:
            raise ValueError(f"{settings.runtime} latency needs the model's PreprocessSpec")
        if settings.runtime == "pytorch" and (target is None or not target.entry.nas_benchmark):
            raise UserError("latency.runtime pytorch: this model names no benchmark whose PyTorch backend could "
                            "time it; use --latency_runtime torch")
        self.target = target
        self.settings = settings
        self.cache_path = Path(cache_path)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.preprocess_spec = preprocess_spec
        self.work_dir = Path(work_dir) if work_dir else self.cache_path.parent / "latency_build"
        self.cpu = cpu_info().model   # part of the cache key: latency measured on another CPU is not reused
        self._cache: dict[str, dict] = {}
        if self.cache_path.is_file():
            try:
                self._cache = json.loads(self.cache_path.read_text())
            except json.JSONDecodeError:
                # A damaged cache only costs re-measuring; keep it aside rather than lose it.
                aside = self.cache_path.with_suffix(".damaged.json")
                os.replace(self.cache_path, aside)
                log.warning("latency cache %s unreadable; moved to %s", self.cache_path, aside)
        self.measured = 0

    def key(self, config: dict) -> str:
        s = self.settings
        blob = json.dumps({"config": config_key(config), "runtime": s.runtime, "precision": s.precision,
                           "batch_size": s.batch_size, "input_shape": self.input_shape,
                           "num_threads": s.num_threads, "cpu": self.cpu}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def cached(self, config: dict) -> float | None:
        hit = self._cache.get(self.key(config))
        return None if hit is None else float(hit["latency_ms"])

    def measure(self, config: dict, build: Callable[[], torch.nn.Module]) -> float:
        hit = self.cached(config)
        if hit is not None:
            return hit
        model = build().eval()
        if self.settings.runtime == "torch":
            times = self._time_torch(model)
        elif self.settings.runtime == "pytorch":
            times = self._time_pytorch(model, config)
        else:
            times = self._time_openvino(model)
        latency = float(statistics.median(times))
        self._cache[self.key(config)] = {
            "latency_ms": latency, "config": config, "runtime": self.settings.runtime,
            "precision": self.settings.precision, "batch_size": self.settings.batch_size,
            "input_shape": list(self.input_shape), "cpu": self.cpu, "iterations": len(times),
            "min_ms": float(min(times)), "max_ms": float(max(times))}
        write_atomic(self.cache_path, json.dumps(self._cache, indent=1, sort_keys=True))
        self.measured += 1
        return latency

    # -- runtimes ------------------------------------------------------------------------
    def _time_torch(self, model: torch.nn.Module) -> list[float]:
        s = self.settings
        x = torch.zeros((s.batch_size, *self.input_shape))
        times = []
        with torch.inference_mode():
            for _ in range(s.warmup):
                model(x)
            for _ in range(s.iterations):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1000)
        return times

    def _time_backend(self, backend, batch: np.ndarray) -> list[float]:
        """Warm, then ``iterations`` single batches through ``backend``: submit, wait, time."""
        s = self.settings
        backend.warmup(batch, iterations=max(1, s.warmup))
        times: list[float] = []
        errors: list[BaseException] = []
        for _ in range(s.iterations):
            t0 = time.perf_counter()
            backend.submit(batch, s.batch_size, lambda _out, err: errors.append(err) if err else None)
            backend.drain()
            times.append((time.perf_counter() - t0) * 1000)
        if errors:
            raise errors[0]
        return times

    def _time_pytorch(self, model: torch.nn.Module, config: dict) -> list[float]:
        """The benchmark's PyTorch build and backend on the sub-network (``nas_benchmark``)."""
        from mlperf_bnas.backends.base import BuildContext
        from mlperf_bnas.backends.pytorch import PyTorchBackend
        from mlperf_bnas.config import check_options, load_config
        from mlperf_bnas.data.dataset_base import CalibrationSet
        from mlperf_bnas.nas.export import subnet_payload
        from mlperf_bnas.paths import benchmark_dir
        from mlperf_bnas.quantize.qconfig import QuantizationConfig

        s = self.settings
        target = self.target
        spec = self.preprocess_spec
        bench = load_config(benchmark_dir(target.entry.nas_benchmark))
        # One instance on every core the measurement may use, the benchmark's options otherwise.
        options = {**bench.backend_options, "batch_size": s.batch_size, "instances": 1, "completion_threads": 0,
                   "warmup_iterations": max(1, s.warmup)}
        if s.num_threads:
            options["threads"] = s.num_threads
        bench = bench.with_overrides({"backend_options": options}, "nas search latency")
        entry = target.entry
        payload = subnet_payload(model, config, target.base_model, target.preprocess, target.model_options,
                                 target.input_size)
        module = entry.build_subnet(payload, "search latency") or model
        rng = np.random.default_rng(0)
        calibration = quantization = None
        precision = s.precision
        if precision == "int8":
            # Seeded random images: INT8 latency depends on the graph, not on the calibrated ranges.
            samples = rng.integers(0, 256, size=(4, *spec.sample_shape)).astype(spec.dtype)
            calibration = CalibrationSet(samples, [f"random-{i}" for i in range(len(samples))], "seeded random images")
            qcfg = QuantizationConfig.from_options(bench.quantization, where="search latency")
            quantization = dataclasses.replace(qcfg, subset_size=len(samples))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        out_dir = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="subnet-"))
        try:
            ctx = BuildContext(cfg=bench, entry=entry, precision=precision, torch_model=module, spec=spec,
                               out_dir=out_dir / "model", quantization=quantization or QuantizationConfig(),
                               record={"purpose": "nas search latency"}, calibration=calibration)
            program = PyTorchBackend.build(ctx)
            backend = PyTorchBackend(program, check_options("backend_options", bench.backend_options,
                                                            PyTorchBackend.Options, "search latency"))
            try:
                batch = rng.integers(0, 256, size=(s.batch_size, *spec.sample_shape)).astype(spec.dtype)
                return self._time_backend(backend, batch)
            finally:
                backend.close()
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _time_openvino(self, model: torch.nn.Module) -> list[float]:
        # The spine's build step and backend: the same path the benchmark's model takes.
        from mlperf_bnas.backends import create_backend
        from mlperf_bnas.backends.openvino import build_openvino_ir
        from mlperf_bnas.quantize.qconfig import QuantizationConfig

        s = self.settings
        spec = self.preprocess_spec
        rng = np.random.default_rng(0)
        calibration = None
        quantization = None
        if s.precision == "int8":
            # Seeded random images: INT8 latency depends on the graph, not on the calibrated ranges.
            calibration = rng.integers(0, 256, size=(4, *spec.sample_shape)).astype(spec.dtype)
            quantization = QuantizationConfig(subset_size=len(calibration))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        out_dir = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="subnet-"))
        try:
            model_path = build_openvino_ir(model, spec, calibration, out_dir / "ir", quantization,
                                           precision=s.precision)
            options = {"performance_hint": "LATENCY", "num_requests": 1, "batch_size": s.batch_size,
                       "warmup_iterations": max(1, s.warmup)}
            if s.num_threads:
                options["inference_num_threads"] = s.num_threads
            backend = create_backend("openvino", model_path, options, where="search latency")
            try:
                times = self._time_backend(backend, np.zeros((s.batch_size, *spec.sample_shape), dtype=spec.dtype))
            finally:
                backend.close()
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return times
