#!/usr/bin/env python3
"""PyTorch instances as processes vs threads, side by side through the harness (LoadGen Offline).

    tools/benchmark_instances.py --output-dir /tmp/instances-bench [--images 8] [--queries 24] [--rounds 3]
        [--layouts 1x2+c1,2x1+c1] [--set model_options.image_size=256 ...]

For each layout (``instances x threads`` per instance, ``+cN``: N completion threads running the
post-processing) it runs the INT8 program of ``retinanet-pytorch-cpu`` (or ``--benchmark``) with
``backend_options.mode`` thread and process, one real ``mlperf-bnas run`` each, in interleaved
rounds (a round runs every setting once, so a slow minute hits all of them), and prints each
setting's median and range, and per layout the process/thread ratio of the medians and the
median of the per-round ratios. Builds (synthetic data, seeded weights) come first, with the
normal commands, unless they are already in --output-dir. Writes ``benchmark_instances.json``
there. On a shared machine only the ratios of one run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.benchtools import cli, harness_run
from mlperf_bnas.paths import OutputRoot, benchmark_dir

SYSTEM = "bench"


def _layout(text: str) -> tuple[int, int, int]:
    try:
        body, _, completions = text.partition("+c")
        instances, threads = body.split("x")
        return int(instances), int(threads), int(completions or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"layout {text!r}: write INSTANCESxTHREADS[+cCOMPLETION_THREADS], "
                                         "e.g. 2x1+c1") from None


def overhead(rounds: int, batches: int) -> dict:
    """Per-batch cost of each mode on a program that does almost nothing (a 1x1 convolution on
    a 3x8x8 input): what an instance process adds per batch (slot copy, two socket messages,
    two threads) beside a thread's queue hand-off. 1 instance of 1 thread, batches submitted
    all at once (Offline-like) and one at a time (SingleStream-like)."""
    import tempfile

    import numpy as np
    import torch

    from mlperf_bnas.backends.pytorch import PROGRAM_NAME, PyTorchBackend, export_program

    folder = Path(tempfile.mkdtemp(prefix="instances-overhead-"))
    model = torch.nn.Conv2d(3, 4, 1).eval()
    torch.export.save(export_program(model, torch.zeros(1, 3, 8, 8)), str(folder / PROGRAM_NAME))
    (folder / "quantization.json").write_text(json.dumps({"batch_size": 1, "precision": "fp32"}))
    x = np.zeros((1, 3, 8, 8), np.float32)
    backends = {mode: PyTorchBackend(folder, PyTorchBackend.Options(engine="eager", instances=1, threads=1,
                                                                     mode=mode)) for mode in ("thread", "process")}
    us: dict[str, list[float]] = {}
    try:
        for b in backends.values():
            b.warmup(x)
        for _ in range(rounds):
            for mode, b in backends.items():
                t0 = time.perf_counter()
                for _ in range(batches):
                    b.submit(x, 1, lambda out, err: None)
                b.drain()
                us.setdefault(f"{mode} queued", []).append((time.perf_counter() - t0) / batches * 1e6)
                t0 = time.perf_counter()
                for _ in range(batches // 4):
                    b.submit(x, 1, lambda out, err: None)
                    b.drain()
                us.setdefault(f"{mode} one at a time", []).append((time.perf_counter() - t0) / (batches // 4) * 1e6)
    finally:
        for b in backends.values():
            b.close()
    print("per-batch time of a near-empty program, microseconds (median of rounds; min - max):")
    for key, values in us.items():
        print(f"  {key:<24} {statistics.median(values):8.1f}  ({min(values):.1f} - {max(values):.1f})")
    return {k: {"runs_us": v, "median_us": statistics.median(v)} for k, v in us.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--benchmark", default="retinanet-pytorch-cpu")
    p.add_argument("--images", type=int, default=8, help="synthetic images (the performance sample set)")
    p.add_argument("--queries", type=int, default=24, help="samples of each Offline run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--layouts", default="1x2+c1,2x1+c1", help="comma-separated INSTANCESxTHREADS[+cN]")
    p.add_argument("--modes", default="thread,process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every command")
    p.add_argument("--overhead-only", action="store_true",
                   help="only the per-batch cost of each mode on a near-empty program (no build, seconds)")
    args = p.parse_args()
    out = args.output_dir.resolve()
    if args.overhead_only:
        out.mkdir(parents=True, exist_ok=True)
        result = overhead(args.rounds, 2000)
        (out / "benchmark_instances_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0
    bench = benchmark_dir(args.benchmark)
    loadgen_model = {"retinanet-pytorch-cpu": "retinanet"}.get(args.benchmark, "*")
    common = ["--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM,
              "--set", f"dataset_options.synthetic_count={args.images}",
              *[a for s in args.set for a in ("--set", s)]]
    layouts = [_layout(x) for x in args.layouts.split(",")]
    modes = args.modes.split(",")
    cpu = cpu_info().model
    print(f"CPU: {cpu}; {len(os.sched_getaffinity(0))} usable CPUs; load average {os.getloadavg()}", flush=True)
    if not (OutputRoot(out).model_dir_of(bench.name, "int8") / "model.pt2").is_file():
        print("building (dataset, INT8) ...", flush=True)
        cli("build", *common, "--precision", "int8")
    rates: dict[str, list[float]] = {}
    conf = (f"{loadgen_model}.*.performance_sample_count_override = {args.images}\n"
            f"{loadgen_model}.Offline.min_query_count = {args.queries}\n{loadgen_model}.Offline.min_duration = 1000\n"
            f"{loadgen_model}.Offline.target_qps = 0.1\n")
    for round_no in range(1, args.rounds + 1):
        for instances, threads, completions in layouts:
            for mode in modes:
                key = f"{instances}x{threads}+c{completions} {mode}"
                started = time.monotonic()
                summary = harness_run(common, out / "runs", "Offline", conf,
                                      "--set", f"backend_options.instances={instances}",
                                      "--set", f"backend_options.threads={threads}",
                                      "--set", f"backend_options.completion_threads={completions}",
                                      "--set", f"backend_options.mode={mode}")
                rate = float(summary["Samples per second"])
                rates.setdefault(key, []).append(rate)
                print(f"round {round_no}: {key}: {rate:.3f} samples/s ({time.monotonic() - started:.0f} s wall)",
                      flush=True)
    results: dict = {"cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "images": args.images,
                     "queries": args.queries, "rounds": args.rounds, "settings": {}, "ratios": {}}
    print("\nsetting                    median   (min - max) samples/s")
    for key, values in rates.items():
        results["settings"][key] = {"runs": values, "median": statistics.median(values)}
        print(f"  {key:<24} {statistics.median(values):7.3f}  ({min(values):.3f} - {max(values):.3f})")
    if {"thread", "process"} <= set(modes):
        print("process / thread")
        for instances, threads, completions in layouts:
            name = f"{instances}x{threads}+c{completions}"
            t, q = rates[f"{name} thread"], rates[f"{name} process"]
            per_round = [b / a for a, b in zip(t, q)]
            ratio = {"of_medians": statistics.median(q) / statistics.median(t),
                     "median_of_rounds": statistics.median(per_round), "rounds": per_round}
            results["ratios"][name] = ratio
            print(f"  {name:<10} {ratio['of_medians']:.3f}x (of medians), {ratio['median_of_rounds']:.3f}x "
                  f"(median of per-round ratios {', '.join(f'{r:.3f}' for r in per_round)})")
    (out / "benchmark_instances.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'benchmark_instances.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
