#!/usr/bin/env python3
"""A 2 x 64-core Xeon on paper, run through the harness with the simulated backend (not a test).

Can the harness (Python SUT + LoadGen) carry Intel's whole-machine ResNet-50 rates? The
simulated backend stands in for the model: ``instances`` workers, each serving a batch of
``b`` samples in ``b / (cores_per_instance x per_core)`` seconds, Intel's per-core service
rate. Nothing else is simulated: the run is a real ``mlperf-bnas run`` (real LoadGen, the
real Offline / batching Server SUT, one process), so every loss against the analytic
figure is the harness's own.

Analytic figures (no harness):
* Offline: ``instances x b / t(b)`` = cores x per_core (Intel 8592+, v4.0: 128 x 197.6 = 25,290).
* Server: the highest Poisson rate whose p99 stays within the bound under the batching
  SUT's policy (``tune.queueing.max_batching_server_qps``, a discrete-event simulation of
  the policy without the harness); Intel's published 22,500 QPS must lie below it.

Goals: Offline samples/s >= 0.97x analytic; Server VALID at Intel's 22,500 QPS (15 ms) with
completed QPS >= 0.97x the target. ``--scale 0.125`` runs the same layout at 1/8 of the
cores (a quick look; the test suite runs its own small-scale check).

The simulated instances run ``--requests-per-instance`` batches in flight (2, as the
OpenVINO backend does: see backends/simulated.py), so a Python answer that comes late
delays that answer, not the instance. Also prints where the time goes when the harness
falls short: the null backend's Offline ceiling (Python + LoadGen alone) in the same run,
and how many CPUs the harness process used on average.

    .venv/bin/python tools/benchmark_scale.py [--scale 1] [--seconds 15] [--rounds 1] [--json OUT]

Runs on any machine (no model, no dataset); the figures depend on the machine's load:
quote the CPU and the load average it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from mlperf_bnas.benchtools import NULL_BACKEND, perf_run, scratch
from mlperf_bnas.paths import REPO, benchmark_dir
from mlperf_bnas.tune.queueing import batching_server_latencies, max_batching_server_qps

BENCH = benchmark_dir("resnet50-openvino")


def layout(cores: int, cores_per_instance: int) -> int:
    if cores % cores_per_instance:
        sys.exit(f"--cores-per-instance {cores_per_instance} does not divide {cores} cores")
    return cores // cores_per_instance


def simulated_sets(instances: int, batch: int, per_sample_ms: float, requests: int) -> list[str]:
    sets = {"backend": "simulated", "postprocess": "none", "backend_options.workers": instances,
            "backend_options.requests_per_worker": requests,
            "backend_options.batch_size": batch, "backend_options.fixed_ms": 0,
            "backend_options.per_sample_ms": round(per_sample_ms, 6)}
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sockets", type=int, default=2)
    p.add_argument("--cores-per-socket", type=int, default=64)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the cores to simulate")
    p.add_argument("--per-core", type=float, default=197.6,
                   help="samples/s per core of one instance (Intel 8592+, v4.0, ResNet-50 Offline)")
    p.add_argument("--offline-cores-per-instance", type=int, default=2)
    p.add_argument("--offline-batch", type=int, default=4)
    p.add_argument("--server-cores-per-instance", type=int, default=2, help="Intel's Server instance: 2 cores")
    p.add_argument("--server-batch", type=int, default=4, help="Intel's Server instance: batch 4")
    p.add_argument("--server-qps", type=float, default=22500.0, help="Intel's published Server QPS (scaled)")
    p.add_argument("--server-bound-ms", type=float, default=15.0)
    p.add_argument("--requests-per-instance", type=int, default=2,
                   help="in-flight batches per instance (the OpenVINO backend's requests_per_stream)")
    p.add_argument("--coalesce", type=int, nargs="+", default=[0, 1], choices=[0, 1],
                   help="Server runs with LoadGen's coalesce_queries off and/or on")
    p.add_argument("--seconds", type=int, default=15, help="min_duration of each run")
    p.add_argument("--rounds", type=int, default=1, help="repeats of each run (medians reported)")
    p.add_argument("--skip", nargs="*", default=[], choices=["offline", "server", "null"])
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark-scale"))
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    out = Path(args.output_dir).resolve()
    with scratch(out, "scale-") as work:
        figures = measure(args, out, work)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


def measure(args: argparse.Namespace, out: Path, work: Path) -> dict[str, object]:
    """The runs, in ``work``; the figures."""
    cores = max(1, round(args.sockets * args.cores_per_socket * args.scale))
    common = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "scale"]
    ms = args.seconds * 1000
    figures: dict[str, object] = {"cores": cores, "per_core": args.per_core, "cpu_count_here": os.cpu_count(),
                                  "load_average_start": os.getloadavg()}
    print(f"simulated machine: {cores} cores ({args.sockets} x {args.cores_per_socket} x scale {args.scale}), "
          f"{args.per_core} samples/s per core; this machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    if "offline" not in args.skip:
        inst = layout(cores, args.offline_cores_per_instance)
        per_sample_ms = 1000.0 / (args.offline_cores_per_instance * args.per_core)
        analytic = inst * 1000.0 / per_sample_ms
        conf = (f"resnet50.Offline.target_qps = {analytic * 1.1:.0f}\n"
                f"resnet50.Offline.min_duration = {ms}\n")
        measured, cpu = [], []
        for r in range(args.rounds):
            before, started = children_cpu_s(), time.monotonic()
            s = perf_run(common, work, "Offline", conf, *simulated_sets(inst, args.offline_batch, per_sample_ms,
                                                                           args.requests_per_instance))
            measured.append(s.rate)
            cpu.append((children_cpu_s() - before) / (time.monotonic() - started))
            print(f"Offline round {r + 1}: {measured[-1]:.0f} samples/s ({s.result}); the harness "
                  f"process used {cpu[-1]:.2f} CPUs on average (start-up included)", flush=True)
        ratio = statistics.median(measured) / analytic
        figures["offline"] = {"instances": inst, "cores_per_instance": args.offline_cores_per_instance,
                              "batch": args.offline_batch, "batch_ms": per_sample_ms * args.offline_batch,
                              "analytic": analytic, "measured": measured, "ratio": ratio,
                              "harness_cpus_used": cpu}
        print(f"Offline: {inst} instances x {args.offline_cores_per_instance} cores, batch {args.offline_batch} "
              f"({per_sample_ms * args.offline_batch:.2f} ms): analytic {analytic:.0f}, harness median "
              f"{statistics.median(measured):.0f} samples/s = {ratio:.3f}x (goal >= 0.97x)", flush=True)

    if "server" not in args.skip:
        inst = layout(cores, args.server_cores_per_instance)
        per_sample_s = 1.0 / (args.server_cores_per_instance * args.per_core)
        target = args.server_qps * args.scale
        bound = args.server_bound_ms / 1000
        analytic = max_batching_server_qps(inst, args.server_batch, lambda k: k * per_sample_s, bound,
                                           queries=60_000, rel_tol=5e-3)
        model_p99 = float(statistics.quantiles(
            batching_server_latencies(target, 100_000, inst, args.server_batch, lambda k: k * per_sample_s),
            n=100)[98])
        print(f"Server: {inst} instances x {args.server_cores_per_instance} cores, dynamic batch <= "
              f"{args.server_batch}: analytic max {analytic:.0f} QPS at p99 <= {args.server_bound_ms:g} ms "
              f"(p99 without the harness at {target:.0f} QPS: {model_p99 * 1000:.2f} ms)", flush=True)
        figures["server"] = {"instances": inst, "batch": args.server_batch, "target": target,
                             "bound_ms": args.server_bound_ms, "analytic_max_qps": analytic,
                             "model_p99_ms_at_target": model_p99 * 1000}
        # coalesce_queries (a LoadGen user.conf key): LoadGen hands every query whose issue time
        # has passed to the SUT in one call instead of one call each. Latency still counts from
        # each query's scheduled time, so nothing is hidden; it saves a Python call (and a GIL
        # hand-over) per query when the issue thread falls behind.
        runs: dict[int, list] = {c: [] for c in args.coalesce}
        for r in range(args.rounds):
            for coalesce in args.coalesce:          # interleaved
                conf = (f"resnet50.Server.target_qps = {target:.0f}\n"
                        f"resnet50.Server.target_latency = {args.server_bound_ms:g}\n"
                        f"resnet50.Server.min_duration = {ms}\n"
                        f"resnet50.Server.coalesce_queries = {coalesce}\n")
                s = perf_run(common, work, "Server", conf, *simulated_sets(inst, args.server_batch,
                                                                           per_sample_s * 1000,
                                                                           args.requests_per_instance))
                runs[coalesce].append((s.result, s.rate, s.p99_ms))
                print(f"Server round {r + 1}, coalesce_queries {coalesce}: target {target:.0f} QPS: "
                      f"{runs[coalesce][-1][0]}, completed {runs[coalesce][-1][1]:.0f}/s, "
                      f"p99 {runs[coalesce][-1][2]:.2f} ms", flush=True)
        for coalesce, results in runs.items():
            completed = statistics.median(v[1] for v in results)
            figures["server"][f"coalesce_{coalesce}"] = {"runs": results, "completed_vs_target": completed / target}
            print(f"Server, coalesce_queries {coalesce}: {sum(v[0] == 'VALID' for v in results)}/{len(results)} "
                  f"VALID at {target:.0f} QPS, completed {completed / target:.3f}x the target, p99 "
                  f"{statistics.median(v[2] for v in results):.2f} ms (goal: VALID, >= 0.97x)", flush=True)

    if "null" not in args.skip:
        s = perf_run(common, work, "Offline", f"resnet50.Offline.target_qps = 600000\n"
                     f"resnet50.Offline.min_duration = {min(ms, 10000)}\n",
                     *NULL_BACKEND, "--set", f"backend_options.batch_size={args.offline_batch}")
        figures["null_offline"] = s.rate
        print(f"harness ceiling (null backend, batch {args.offline_batch}, no service time): "
              f"{figures['null_offline']:.0f} samples/s", flush=True)
    figures["load_average_end"] = os.getloadavg()
    return figures


if __name__ == "__main__":
    start = time.time()
    rc = main()
    print(f"(benchmark took {time.time() - start:.0f}s)")
    sys.exit(rc)
