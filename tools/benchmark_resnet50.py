#!/usr/bin/env python3
"""ResNet-50 / OpenVINO speed, measured side by side in one run (not a test).

Prints three comparisons, each pair measured interleaved (A B A B ...) on the same
IR so machine load hits both alike; the best round of each is reported:

1. harness Offline (mlperf-bnas run, real LoadGen) vs OpenVINO ``benchmark_app``
   with the same device settings (hint, batch, precision)      goal >= 0.97x
2. INT8 IR vs FP32 IR, both through the harness Offline         goal >= 2.0x
3. harness ceiling with the null backend: Offline samples/s     goal >= 50,000
   and the highest Server QPS tried that is VALID               goal >= 10,000

    .venv/bin/python tools/benchmark_resnet50.py [--output-dir DIR] [--seconds 20] [--rounds 2]

Builds the synthetic dataset and both IRs first when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlperf_bnas.benchtools import cli, harness_run as harness
from mlperf_bnas.paths import REPO, OutputRoot, benchmark_dir

BENCH = benchmark_dir("resnet50-openvino")


def benchmark_app(xml: Path, seconds: int, batch: int, hint: str, precision: str | None) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", hint.lower(), "-shape", f"[{batch},224,224,3]",
           "-t", str(seconds)]
    if precision:
        cmd += ["-infer_precision", precision]
    out = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"benchmark_app failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    # benchmark_app counts iterations x batch as frames.
    return float(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", default=str(REPO / "output" / "benchmark"), help="build + scratch folder")
    p.add_argument("--seconds", type=int, default=20, help="duration of each timed run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per comparison")
    p.add_argument("--offline-qps", type=float, default=40.0, help="expected Offline img/s (LoadGen target_qps)")
    p.add_argument("--null-offline-qps", type=float, default=600000,
                   help="null backend Offline target (above the harness ceiling: ~450,000 idle here)")
    p.add_argument("--null-server-qps", type=float, nargs="+", default=[10000, 20000, 40000])
    p.add_argument("--skip", nargs="*", default=[], choices=["app", "fp32", "null"])
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    out = Path(args.output_dir).resolve()
    common = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "benchmark"]
    ir = {p: OutputRoot(out).model_dir_of(BENCH.name, p) / "model.xml" for p in ("int8", "fp32")}
    if not all(xml.is_file() for xml in ir.values()):
        print("building the synthetic dataset and both IRs (once) ...", flush=True)
        cli("dataset", *common, "--no-progress")
        cli("build", *common)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    from mlperf_bnas.config import load_config
    offline_opts = load_config(BENCH, "Offline").backend_options
    batch = int(offline_opts.get("batch_size", 1))
    hint = offline_opts.get("performance_hint") or "THROUGHPUT"
    precision = offline_opts.get("inference_precision")
    ms = args.seconds * 1000
    # Offline issues target_qps * min_duration samples; ask for 1.5x so the run lasts at least `seconds`.
    offline_conf = (f"resnet50.Offline.target_qps = {args.offline_qps * 1.5}\n"
                    f"resnet50.Offline.min_duration = {ms}\n"
                    # The rules' 24,576-sample minimum would make each timed run minutes long here.
                    "resnet50.Offline.min_query_count = 1\n"
                    "resnet50.Offline.performance_sample_count_override = 64\n")
    figures: dict[str, object] = {"load_average_start": os.getloadavg(), "seconds": args.seconds,
                                  "batch": batch, "hint": hint, "inference_precision": precision}

    def best(values):
        return max(values) if values else float("nan")

    harness_int8, app_int8, harness_fp32 = [], [], []
    for r in range(args.rounds):
        s = harness(common, work, "Offline", offline_conf)
        harness_int8.append(float(s["Samples per second"]))
        print(f"round {r + 1}: harness Offline INT8 {harness_int8[-1]:.2f} samples/s ({s['Result is']})", flush=True)
        if "app" not in args.skip:
            app_int8.append(benchmark_app(ir["int8"], args.seconds, batch, hint, precision))
            print(f"round {r + 1}: benchmark_app INT8 {app_int8[-1]:.2f} FPS", flush=True)
        if "fp32" not in args.skip:
            s = harness(common, work, "Offline", offline_conf.replace(
                f"target_qps = {args.offline_qps * 1.5}", f"target_qps = {args.offline_qps * 0.6}"),
                "--precision", "fp32")
            harness_fp32.append(float(s["Samples per second"]))
            print(f"round {r + 1}: harness Offline FP32 {harness_fp32[-1]:.2f} samples/s ({s['Result is']})", flush=True)
    figures.update(harness_offline_int8=harness_int8, benchmark_app_int8=app_int8, harness_offline_fp32=harness_fp32)

    print("\n== ResNet-50 OpenVINO (synthetic data, seeded weights: speed does not depend on them) ==")
    print(f"settings: batch {batch}, hint {hint}, inference precision {precision}, {args.seconds}s per run, "
          f"best of {args.rounds} interleaved rounds; load average at start {figures['load_average_start'][0]:.2f}")
    if app_int8:
        ratio = best(harness_int8) / best(app_int8)
        figures["harness_vs_benchmark_app"] = ratio
        print(f"harness Offline {best(harness_int8):.2f} vs benchmark_app {best(app_int8):.2f} samples/s: "
              f"{ratio:.3f}x (goal >= 0.97x)")
    if harness_fp32:
        ratio = best(harness_int8) / best(harness_fp32)
        figures["int8_vs_fp32"] = ratio
        print(f"INT8 {best(harness_int8):.2f} vs FP32 {best(harness_fp32):.2f} samples/s: {ratio:.2f}x (goal >= 2.0x)")

    if "null" not in args.skip:
        null = ["--set", "backend=null", "--set", "postprocess=none"]
        # target_qps above what the harness can do, so the run lasts min_duration (VALID).
        s = harness(common, work, "Offline", f"resnet50.Offline.target_qps = {args.null_offline_qps}\n"
                    f"resnet50.Offline.min_duration = {ms}\n"
                    "resnet50.Offline.performance_sample_count_override = 1024\n", *null)
        figures["null_offline"] = float(s["Samples per second"])
        print(f"null backend Offline: {figures['null_offline']:.0f} samples/s ({s['Result is']}) (goal >= 50,000)")
        server = {}
        for qps in args.null_server_qps:
            s = harness(common, work, "Server", f"resnet50.Server.target_qps = {qps}\n"
                        f"resnet50.Server.min_duration = {ms}\n", *null)
            server[qps] = (s["Result is"], float(s.get("Completed samples per second", "nan")),
                           s.get("99.00 percentile latency (ns)"))
            print(f"null backend Server target {qps:.0f} QPS: {s['Result is']}, completed "
                  f"{server[qps][1]:.0f}/s, p99 {int(server[qps][2]) / 1e6:.2f} ms", flush=True)
        valid = [q for q, v in server.items() if v[0] == "VALID"]
        figures["null_server"] = {str(k): v for k, v in server.items()}
        print(f"null backend Server: highest VALID target tried {max(valid) if valid else 'none'} QPS (goal >= 10,000)")
    figures["load_average_end"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    start = time.time()
    rc = main()
    print(f"(benchmark took {time.time() - start:.0f}s)")
    sys.exit(rc)
