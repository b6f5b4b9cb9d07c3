"""The precision policy of OpenVINO builds: in which precision a build's float layers run.

OpenVINO's CPU plugin, left to itself, runs float layers in bf16 wherever the CPU has
bf16 support, so an "FP32" build would not be FP32 and an INT8 build's float layers
(first convolution, softmax, the parts NNCF leaves in float) would lose precision
nobody chose. Here the choice is explicit, made once at build time, and recorded in
the build record (``precision_policy``), which the backend then applies
(``INFERENCE_PRECISION_HINT``) and the submission's measurements file repeats:

* ``fp32`` build: f32, always (true FP32 is what the name promises).
* ``bf16`` build: bf16 (the FP32 IR with bf16 float layers, a build of its own). On a CPU
  without bf16 hardware OpenVINO may run it in f32; the record says what it really ran.
* ``int8`` build: f32, unless the CPU has AMX-BF16 (``amx_bf16`` in /proc/cpuinfo) *and*
  bf16 measured faster here (median of interleaved rounds, by ``min_speedup``) *and* the
  INT8 model's answers kept (top-1 agreement with its own f32 run on the calibration
  samples >= ``min_agreement``). Without AMX-BF16 nothing is measured: bf16 emulated or on
  AVX512-BF16 alone does not pay for its loss, and the record says so.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from mlperf_bnas.backends.cpu import CpuInfo, cpu_info

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.05
MIN_AGREEMENT = 0.99


_core: ov.Core | None = None


def _compile(xml: Path, precision: str, batch: int) -> ov.CompiledModel:
    # Its own Core (backends/openvino.py imports this module, not the other way round).
    global _core
    _core = _core or ov.Core()
    model = _core.read_model(str(xml))
    shape = model.input(0).get_partial_shape()
    model.reshape({model.input(0): ov.PartialShape([ov.Dimension(batch), *list(shape)[1:]])})
    return _core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision})


def effective_precision(compiled: ov.CompiledModel) -> str:
    """What the plugin really runs (it may ignore a bf16 hint on a CPU without bf16)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _throughput(compiled: ov.CompiledModel, batch_input: np.ndarray, seconds: float) -> float:
    """Samples per second with every infer request busy for ``seconds`` (an Offline-like load)."""
    n = 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, n)
    for _ in range(n):                                  # warm-up
        queue.start_async({0: batch_input})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: batch_input})
        done += 1
    queue.wait_all()
    return done * len(batch_input) / (time.perf_counter() - start)


def _outputs(compiled: ov.CompiledModel, samples: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    batch = compiled.input(0).get_partial_shape()[0].get_length()
    rows = []
    for i in range(0, len(samples) - len(samples) % batch, batch):
        rows.append(np.array(request.infer({0: samples[i:i + batch]})[compiled.output(0)]).reshape(batch, -1))
    return np.concatenate(rows) if rows else np.zeros((0, 1))


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Top-1 agreement of two runs' outputs (classification logits, one row per sample)."""
    if len(reference) == 0:
        return float("nan")
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1)))


def choose(xml: Path, precision: str, samples: np.ndarray | None = None, *, batch: int = 4,
           seconds: float = 2.0, rounds: int = 3, cpu: CpuInfo | None = None,
           min_speedup: float = MIN_SPEEDUP, min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """The ``precision_policy`` record of the build at ``xml`` (see the module docstring)."""
    xml = Path(xml)
    cpu = cpu or cpu_info()
    record: dict[str, Any] = {"cpu": cpu.describe(), "measured": None}
    if precision == "fp32":
        return {**record, "inference_precision": "f32",
                "reason": "FP32 build: float layers in true f32 (INFERENCE_PRECISION_HINT f32), never OpenVINO's "
                          "bf16 default"}
    if precision == "bf16":
        runs_as = effective_precision(_compile(xml, "bf16", 1))
        reason = "bf16 build: the FP32 IR with its float layers in bf16"
        if not cpu.native_bf16:
            reason += (f"; this CPU ({cpu.model}) has no amx_bf16 flag, and OpenVINO runs it as {runs_as} here, "
                       "so this build is only meaningful on an AMX Xeon")
        return {**record, "inference_precision": "bf16", "runs_as_here": runs_as, "reason": reason}
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}")
    if not cpu.native_bf16:
        return {**record, "inference_precision": "f32",
                "reason": f"INT8 build on a CPU without AMX-BF16 (no amx_bf16 flag in /proc/cpuinfo: {cpu.model}): "
                          "float layers stay f32; bf16 is only considered, and measured, on AMX-BF16 CPUs"}
    compiled = {p: _compile(xml, p, batch) for p in ("f32", "bf16")}
    dtype = compiled["f32"].input(0).get_element_type().to_dtype()
    shape = [d.get_length() for d in list(compiled["f32"].input(0).get_partial_shape())]
    batch_input = (samples[:batch] if samples is not None and len(samples) >= batch
                   else np.zeros(shape, dtype)).astype(dtype, copy=False)
    speed: dict[str, list[float]] = {"f32": [], "bf16": []}
    for _ in range(rounds):                      # interleaved, so machine load hits both alike
        for p in speed:
            speed[p].append(_throughput(compiled[p], batch_input, seconds))
    speedup = statistics.median(speed["bf16"]) / statistics.median(speed["f32"])
    agree = float("nan")
    if samples is not None and len(samples) >= batch:
        agree = agreement(_outputs(compiled["f32"], samples.astype(dtype, copy=False)),
                          _outputs(compiled["bf16"], samples.astype(dtype, copy=False)))
    fidelity_ok = agree == agree and agree >= min_agreement
    chosen = "bf16" if speedup >= min_speedup and fidelity_ok else "f32"
    measured = {"samples_per_s": speed, "bf16_speedup_median": round(speedup, 4), "rounds": rounds,
                "seconds_per_run": seconds, "batch": batch, "top1_agreement_bf16_vs_f32": agree,
                "agreement_samples": 0 if samples is None else len(samples) - len(samples) % batch,
                "min_speedup": min_speedup, "min_agreement": min_agreement}
    why = (f"bf16 {speedup:.2f}x f32 (median of {rounds} interleaved rounds; needs >= {min_speedup}), top-1 "
           f"agreement with f32 {agree:.4f} (needs >= {min_agreement})")
    log.info("precision policy (INT8 float layers): %s: %s", chosen, why)
    return {**record, "inference_precision": chosen, "measured": measured,
            "reason": f"INT8 build on an AMX-BF16 CPU ({cpu.model}): {chosen}: {why}"}
