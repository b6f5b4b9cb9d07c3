#!/usr/bin/env python3
"""RetinaNet PyTorch CPU speed, measured side by side in one run (same machine, same moment).

    tools/benchmark_retinanet.py --output-dir /tmp/retinanet-bench [--images 8] [--repeats 3]

1. per-image latency: INT8 program compiled with Inductor vs the FP32 program run eagerly
   (goal >= 1.9x), interleaved image by image;
2. the same INT8 latency vs OpenVINO INT8 of the same tensor part (NNCF on the OpenVINO
   model, built with the pipeline's ``build_openvino_ir``; goal within 1.15x);
3. harness Offline throughput (``mlperf-bnas run``, LoadGen, its own process) vs a bare
   loop over the compiled INT8 program (goal >= 0.95x);
4. Offline throughput with 1 instance x 2 threads vs 2 instances x 1 thread.

Builds (synthetic data at 800x800, seeded weights unless --checkpoint) are made first with
the normal commands. Prints a table and writes ``benchmark_retinanet.json`` in --output-dir.
Numbers measured on a shared machine are only comparable within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "code" / "retinanet-pytorch-cpu"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mlperf_bnas", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"mlperf-bnas {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def timed(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def harness_offline(common: list[str], instances: int, threads: int, queries: int, qps: float) -> float:
    """Samples per second of a LoadGen Offline performance run of the INT8 program."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
        fh.write(f"retinanet.*.performance_sample_count_override = 8\n"
                 f"retinanet.Offline.min_query_count = {queries}\nretinanet.Offline.min_duration = 1000\n"
                 f"retinanet.Offline.target_qps = {qps}\n")
        conf = fh.name
    try:
        cli("run", *common, "--scenario", "Offline", "--mode", "performance", "--user-conf", conf,
            "--set", f"backend_options.instances={instances}", "--set", f"backend_options.threads={threads}")
    finally:
        os.unlink(conf)
    out = Path(common[common.index("--output-dir") + 1])
    summary = (out / "results" / "bench" / "retinanet" / "Offline" / "performance" / "run_1" /
               "mlperf_log_summary.txt").read_text()
    return float(re.search(r"Samples per second\s*:\s*([\d.]+)", summary).group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--images", type=int, default=8, help="synthetic images (timed samples)")
    p.add_argument("--repeats", type=int, default=2, help="passes over the images per measurement")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--skip-openvino", action="store_true")
    args = p.parse_args()
    out = args.output_dir.resolve()
    common = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "bench",
              "--set", f"dataset_options.synthetic_count={args.images}"]
    if args.checkpoint:
        common += ["--checkpoint", args.checkpoint]
    print("building (dataset, FP32, INT8) ...", flush=True)
    cli("build", *common, "--precision", "all")

    import torch

    from mlperf_bnas import pipeline
    from mlperf_bnas.backends.pytorch import compile_program, load_program
    from mlperf_bnas.config import load_config, parse_set_options

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = load_config(BENCH, "Offline", parse_set_options([f"dataset_options.synthetic_count={args.images}"]))
    paths = pipeline.output_paths(cfg, out, "bench")
    dataset, cache = pipeline.prepare_dataset(cfg, paths, None, args.checkpoint, progress=False)
    samples = [cache.load([i]) for i in range(len(cache))]
    model_dir = paths.model_dir
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                     "images": len(samples), "repeats": args.repeats, "torch": torch.__version__}

    # 1. INT8 compiled vs FP32 eager, interleaved.
    fp32 = load_program(model_dir("fp32") / "model.pt2")
    int8 = compile_program(load_program(model_dir("int8") / "model.pt2"), "inductor")
    t0 = time.time()
    with torch.no_grad():
        int8(torch.from_numpy(samples[0]))              # compilation
        results["int8_compile_seconds"] = round(time.time() - t0, 1)
        int8(torch.from_numpy(samples[0]))
        fp32(torch.from_numpy(samples[0]))
        lat_fp32, lat_int8 = [], []
        for _ in range(args.repeats):
            for s in samples:
                x = torch.from_numpy(s)
                lat_fp32.append(timed(fp32, x))
                lat_int8.append(timed(int8, x))
        # 3b. bare loop over the compiled INT8 program (what the harness is compared with).
        start = time.perf_counter()
        for _ in range(args.repeats):
            for s in samples:
                int8(torch.from_numpy(s))
        bare_qps = args.repeats * len(samples) / (time.perf_counter() - start)
    results["fp32_eager_latency_s"] = statistics.median(lat_fp32)
    results["int8_inductor_latency_s"] = statistics.median(lat_int8)
    results["int8_speedup_vs_fp32_eager"] = results["fp32_eager_latency_s"] / results["int8_inductor_latency_s"]
    results["bare_loop_int8_samples_per_s"] = bare_qps

    # 2. OpenVINO INT8 of the same tensor part.
    if not args.skip_openvino:
        from mlperf_bnas.backends import create_backend

        entry = pipeline.model_entry(cfg)
        module, _weights = pipeline.load_torch_model(cfg, paths, args.checkpoint)
        spec = entry.preprocess_spec()
        ov_dir = out / "build" / "retinanet-pytorch-cpu" / "model" / "openvino-int8"
        calib = cache.load(list(range(len(cache))))
        # Same calibration images; NNCF's defaults for OpenVINO (fast bias correction) -- the
        # exact BiasCorrection would re-run the 800x800 model per layer.
        qcfg = dataclasses.replace(pipeline.quantization_config(cfg), fast_bias_correction=True)
        pipeline.build_openvino_ir(module, spec, calib, ov_dir, qcfg,
                                   {"note": "benchmark_retinanet.py comparison build"})
        ov = create_backend("openvino", ov_dir, {"batch_size": 1, "performance_hint": "LATENCY",
                                                 "inference_precision": "f32"})
        done = lambda _o, e: None  # noqa: E731
        ov.warmup(samples[0])
        lat_ov, lat_int8b = [], []
        with torch.no_grad():
            for _ in range(args.repeats):
                for s in samples:
                    t = time.perf_counter()
                    ov.submit(s, 1, done)
                    ov.drain()
                    lat_ov.append(time.perf_counter() - t)
                    lat_int8b.append(timed(int8, torch.from_numpy(s)))
        ov.close()
        results["openvino_int8_latency_s"] = statistics.median(lat_ov)
        results["int8_inductor_latency_s_beside_openvino"] = statistics.median(lat_int8b)
        results["pytorch_int8_over_openvino_int8"] = statistics.median(lat_int8b) / statistics.median(lat_ov)
    del int8, fp32

    # 3a/4. LoadGen Offline through the harness, each in its own process.
    queries = args.repeats * len(samples)
    qps = max(0.1, bare_qps)
    results["harness_offline_1x2_samples_per_s"] = harness_offline(common, 1, 2, queries, qps)
    results["harness_offline_2x1_samples_per_s"] = harness_offline(common, 2, 1, queries, qps)
    results["harness_over_bare_loop"] = results["harness_offline_1x2_samples_per_s"] / bare_qps
    results["load_average_at_end"] = os.getloadavg()

    (out / "benchmark_retinanet.json").write_text(json.dumps(results, indent=1))
    for key, value in results.items():
        print(f"{key:45s} {value:.3f}" if isinstance(value, float) else f"{key:45s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
