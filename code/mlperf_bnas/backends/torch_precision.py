"""The precision policy of PyTorch builds: whether the float parts run in bf16 (``torch.autocast``).

The same policy as OpenVINO's (``backends/openvino.py``, "Precision policy"), for the
PyTorch backend, where an INT8 program still has float parts (RetinaNet: the input
normalisation, the heads' outputs, whatever the quantizer leaves in float). Decided once
at build time and recorded in the build record (``precision_policy``); the backend applies
it at run time (``torch.autocast("cpu", torch.bfloat16)`` around the compiled program) unless
``backend_options.float_precision`` says otherwise:

* ``fp32`` build: f32, always.
* ``int8`` build: f32, unless the CPU has AMX-BF16 (``amx_bf16`` in /proc/cpuinfo) *and* the
  program under bf16 autocast measured faster here (median of interleaved rounds, by
  ``MIN_SPEEDUP``) *and* its outputs stayed close to f32's (relative L2 error of every output
  <= ``MAX_RELATIVE_ERROR`` on the calibration batches). Without AMX-BF16 nothing is
  measured (bf16 on AVX2 or AVX512-BF16 alone does not pay for its loss) and the record says so.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from mlperf_bnas.backends.cpu import CpuInfo, cpu_info

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.05
MAX_RELATIVE_ERROR = 0.02
PRECISIONS = ("f32", "bf16")


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """The context a batch runs in: bf16 autocast, or nothing (f32)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _outputs(result: Any) -> tuple[torch.Tensor, ...]:
    return (result,) if isinstance(result, torch.Tensor) else tuple(result)


def relative_error(reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor]) -> float:
    """The largest ``|other - reference|_2 / |reference|_2`` over the float outputs."""
    worst = 0.0
    for a, b in zip(reference, other):
        if not a.is_floating_point() or a.numel() == 0:
            continue
        a, b = a.float(), b.float()
        worst = max(worst, float((b - a).norm() / a.norm().clamp_min(1e-12)))
    return worst


def choose(precision: str, make_runner: Callable[[str], Callable[[torch.Tensor], Any]] | None = None,
           batches: Sequence[torch.Tensor] = (), *, rounds: int = 3, cpu: CpuInfo | None = None,
           min_speedup: float = MIN_SPEEDUP, max_error: float = MAX_RELATIVE_ERROR) -> dict[str, Any]:
    """The ``precision_policy`` record of a PyTorch build (see the module docstring).

    ``make_runner(p)`` gives a callable running one batch at float precision ``p`` (compiled
    as a run would); ``batches`` are the calibration inputs it is timed and compared on."""
    cpu = cpu or cpu_info()
    record: dict[str, Any] = {"cpu": cpu.describe(), "measured": None, "applied_with": "torch.autocast(cpu, bfloat16)"}
    if precision == "fp32":
        return {**record, "float_precision": "f32", "reason": "FP32 build: float parts in true f32"}
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}")
    if not cpu.native_bf16:
        return {**record, "float_precision": "f32",
                "reason": f"INT8 build on a CPU without AMX-BF16 (no amx_bf16 flag in /proc/cpuinfo: {cpu.model}): "
                          "float parts stay f32; bf16 autocast is only considered, and measured, on AMX-BF16 CPUs"}
    if make_runner is None or not batches:
        return {**record, "float_precision": "f32", "reason": "INT8 build: no calibration batch to measure bf16 on"}
    runners = {p: make_runner(p) for p in PRECISIONS}
    with torch.no_grad():
        reference = {p: [_outputs(runners[p](x)) for x in batches] for p in PRECISIONS}     # also compiles
        seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for _ in range(rounds):                        # interleaved, so machine load hits both alike
            for p in PRECISIONS:
                start = time.perf_counter()
                for x in batches:
                    runners[p](x)
                seconds[p].append(time.perf_counter() - start)
    speedup = statistics.median(seconds["f32"]) / statistics.median(seconds["bf16"])
    error = max(relative_error(a, b) for a, b in zip(reference["f32"], reference["bf16"]))
    chosen = "bf16" if speedup >= min_speedup and error <= max_error else "f32"
    why = (f"bf16 autocast {speedup:.2f}x f32 (median of {rounds} interleaved rounds over {len(batches)} batch(es); "
           f"needs >= {min_speedup}), largest relative L2 error of the outputs {error:.4f} (needs <= {max_error})")
    log.info("precision policy (INT8 float parts): %s: %s", chosen, why)
    measured = {"seconds": seconds, "bf16_speedup_median": round(speedup, 4), "rounds": rounds,
                "batches": len(batches), "relative_error_bf16_vs_f32": round(error, 6),
                "min_speedup": min_speedup, "max_relative_error": max_error}
    return {**record, "float_precision": chosen, "measured": measured,
            "reason": f"INT8 build on an AMX-BF16 CPU ({cpu.model}): {chosen}: {why}"}


def in_effect(option: str | None, build_record: dict[str, Any]) -> tuple[str, str]:
    """``(float precision, where it came from)``: the option when set, else the build record's
    policy, else f32 (a build made before the policy existed)."""
    if option is not None:
        return option, "backend_options.float_precision"
    policy = build_record.get("precision_policy")
    chosen = policy.get("float_precision") if isinstance(policy, dict) else None
    if chosen in PRECISIONS:
        return chosen, "the build's precision_policy"
    return "f32", "default (the build record has no precision_policy)"
