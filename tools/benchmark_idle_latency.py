#!/usr/bin/env python3
"""One inference's latency after the CPU sat idle: back to back vs with gaps, side by side.

Why: at full rules on the 2-core Xeon VM, ResNet-50 Server at 30.9 QPS (12 % of the cores'
capacity) had a median latency of 15.9 ms, while the sizing probe that ran the same settings
back to back measured 8.1 ms. At that load a query almost never waits for another, so queueing
does not explain it; what changes is that the cores idle for ~30 ms between queries (sleeping
vCPUs, caches refilled by neighbours, lower clocks). This measures exactly that, with no
LoadGen and no harness: the same compiled model, one synchronous inference at a time, rounds
of each gap interleaved so that a change of the machine's speed hits every gap alike.

    .venv/bin/python tools/benchmark_idle_latency.py --model OUTPUT_DIR/build/resnet50-openvino/model/int8/model.xml

Prints per gap: median and p90 latency over all rounds, and the ratio of the medians to the
back-to-back one. Quote the CPU it prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from mlperf_bnas.backends.cpu import cpu_info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="an OpenVINO IR (model.xml)")
    p.add_argument("--gaps-ms", default="0,2,10,30,100", help="idle time before each inference (ms)")
    p.add_argument("--per-round", type=int, default=20, help="inferences per gap per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--hint", default="LATENCY", choices=["LATENCY", "THROUGHPUT"],
                   help="LATENCY: one stream on every core; THROUGHPUT: OpenVINO's streams (one inference uses one)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"error: {args.model}: not found; build the model first (code/resnet50-openvino/build.sh)")
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(args.model), "CPU", {"PERFORMANCE_HINT": args.hint,
                                                           "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    shape = [1 if d.is_dynamic else d.get_length() for d in compiled.input(0).get_partial_shape()]
    x = np.random.default_rng(0).integers(0, 256, shape).astype(compiled.input(0).get_element_type().to_dtype())
    gaps = [float(g) for g in args.gaps_ms.split(",")]
    for _ in range(20):
        request.infer({0: x})
    lat: dict[float, list[float]] = {g: [] for g in gaps}
    for _ in range(args.rounds):
        for gap in gaps:
            for _ in range(args.per_round):
                if gap:
                    time.sleep(gap / 1000.0)
                t0 = time.perf_counter()
                request.infer({0: x})
                lat[gap].append((time.perf_counter() - t0) * 1000.0)
    base = statistics.median(lat[gaps[0]])
    cpu = cpu_info().model
    print(f"CPU: {cpu}; {args.model}; hint {args.hint} ({compiled.get_property('NUM_STREAMS')} stream(s), "
          f"{compiled.get_property('INFERENCE_NUM_THREADS')} thread(s)); {args.rounds} rounds x {args.per_round}")
    print(f"{'gap ms':>8} {'median ms':>10} {'p90 ms':>8} {'x gap ' + format(gaps[0], 'g'):>9}")
    figures = {}
    for gap in gaps:
        med = statistics.median(lat[gap])
        p90 = float(np.percentile(lat[gap], 90))
        figures[str(gap)] = {"median_ms": round(med, 3), "p90_ms": round(p90, 3), "ratio": round(med / base, 3)}
        print(f"{gap:>8g} {med:>10.2f} {p90:>8.2f} {med / base:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "hint": args.hint, "figures": figures}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
