#!/usr/bin/env python3
"""RetinaNet PyTorch CPU speed, measured side by side in one run (same machine, same session).

    tools/benchmark_retinanet.py --output-dir /tmp/retinanet-bench [--images 8] [--repeats 2] [--rounds 2]

1. per-image latency: INT8 program compiled with Inductor vs the FP32 program run eagerly
   (goal >= 1.9x);
2. the same INT8 latency vs OpenVINO INT8 of the same tensor part (NNCF on the OpenVINO
   model, built with the pipeline's ``build_openvino_ir``; goal within 1.15x);
3. harness Offline throughput (``mlperf-bnas run``, LoadGen) vs a bare loop over the compiled
   INT8 program doing the same work (inference + the same post-processing; goal >= 0.95x);
   the inference-only loop is printed too;
4. Offline throughput with 1 instance x 2 threads vs 2 instances x 1 thread, and 1 x 2 with the
   post-processing on a completion thread (``backend_options.completion_threads=1``);
5. with the IPEX environment (./prepare_env.sh --ipex; --skip-ipex to leave it out): the IPEX
   TorchScript INT8 build of the same tensor part (``engine: ipex``, same calibration images) per
   image beside Inductor and OpenVINO, and through the harness Offline (1 x 2 + completion thread,
   as the Inductor figure), plus its calibration time per image. IPEX was made for Xeons with
   AMX / AVX-512 VNNI; on an AVX2-only CPU it runs oneDNN's AVX2 INT8 kernels. Say which CPU.

Every measurement runs in its own process, one after the other, and a round runs all of them
(``--rounds`` rounds; the best round of each counts, and the engine ratios are also taken within
each round -- measurements minutes apart -- with their median, which a changing machine load
distorts less). Two runtimes in one process distort each
other: each keeps its own spinning thread pool. Builds (synthetic data at 800x800, seeded
weights unless --checkpoint) come first, with the normal commands. Prints a table and writes
``benchmark_retinanet.json`` in --output-dir. On a shared machine only one run's figures compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.benchtools import cli, harness_run
from mlperf_bnas.paths import BUILD_RECORD, OutputRoot, benchmark_dir

BENCH = benchmark_dir("retinanet-pytorch-cpu")
SYSTEM = "bench"
MEASUREMENTS = ("int8-inductor", "fp32-eager", "int8-inductor+postprocess", "openvino-int8", "ipex-int8")
#: Measurements whose worker runs in the IPEX environment.
IPEX_MEASUREMENTS = ("ipex-int8",)


def common_args(out: Path, images: int, checkpoint: str | None) -> list[str]:
    common = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", SYSTEM,
              "--set", f"dataset_options.synthetic_count={images}"]
    return common + (["--checkpoint", checkpoint] if checkpoint else [])


# ---------------------------------------------------------------------------
# worker processes: one measurement each, JSON on the last line of stdout
# ---------------------------------------------------------------------------
def _context(args):
    from mlperf_bnas import pipeline
    from mlperf_bnas.config import load_config, parse_set_options
    from mlperf_bnas.paths import OutputPaths

    cfg = load_config(BENCH, "Offline", parse_set_options([f"dataset_options.synthetic_count={args.images}"]))
    paths = OutputPaths.of(cfg, args.output_dir.resolve(), SYSTEM)
    dataset, cache = pipeline.prepare_dataset(cfg, paths, None, args.checkpoint, progress=False)
    return cfg, paths, dataset, cache


def _openvino_dir(paths) -> Path:
    return paths.model_variant_dir("openvino-int8")


def _ipex_dir(out: Path) -> Path:
    """The IPEX TorchScript build, moved aside so the Inductor build can use model/int8."""
    return OutputRoot(out).model_dir_of(BENCH.name, "int8").parent / "ipex-int8"


def build_openvino(args) -> dict:
    from mlperf_bnas import pipeline
    from mlperf_bnas.backends.openvino import build_openvino_ir

    cfg, paths, dataset, cache = _context(args)
    module, _weights = pipeline.load_torch_model(cfg, paths, args.checkpoint)
    # Same calibration images; NNCF's defaults for OpenVINO (fast bias correction): the exact
    # BiasCorrection would re-run the 800x800 model per layer.
    qcfg = dataclasses.replace(pipeline.quantization_config(cfg), fast_bias_correction=True)
    calibration = dataset.calibration_set(cache, qcfg.subset_size, paths.calibration_dir, progress=False)
    started = time.time()
    build_openvino_ir(module, cache.spec, calibration.samples, _openvino_dir(paths), qcfg,
                      {"note": "benchmark_retinanet.py comparison build", "calibration": calibration.record()})
    return {"seconds": round(time.time() - started, 1)}


def measure(args) -> dict:
    """Median per-image latency and images/s over ``repeats`` passes, after warm-up."""
    import torch

    cfg, paths, _dataset, cache = _context(args)
    samples = [cache.load([i]) for i in range(len(cache))]
    torch.set_num_threads(os.cpu_count() or 1)
    what = args.worker
    compile_s = 0.0
    if what == "openvino-int8":
        from mlperf_bnas.backends import create_backend

        backend = create_backend("openvino", _openvino_dir(paths),
                                 {"batch_size": 1, "performance_hint": "LATENCY", "inference_precision": "f32"})
        backend.warmup(samples[0])

        def run(x):
            backend.submit(x, 1, lambda _o, _e: None)
            backend.drain()
    elif what == "ipex-int8":
        from mlperf_bnas.backends import ipex_env

        ipex_env.import_ipex()
        model = torch.jit.load(str(_ipex_dir(args.output_dir.resolve()) / "model.torchscript.pt"))

        def run(x):
            with torch.no_grad():
                model(torch.from_numpy(x))

        started = time.time()
        for _ in range(3):                  # the profiling executor fuses the graph on the early calls
            run(samples[0])
        compile_s = time.time() - started
    else:
        from mlperf_bnas.backends.pytorch import compile_program, load_program
        from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS

        precision = "fp32" if what == "fp32-eager" else "int8"
        program = load_program(paths.model_dir(precision) / "model.pt2")
        model = compile_program(program, "eager" if what == "fp32-eager" else "inductor")
        post = POSTPROCESSORS.get(cfg.postprocess) if what.endswith("+postprocess") else None
        index = torch.zeros(1, dtype=torch.int64).numpy()

        def run(x):
            with torch.no_grad():
                outputs = model(torch.from_numpy(x))
            if post is not None:
                post(outputs, index)

        started = time.time()
        run(samples[0])                     # Inductor compiles here, in this (main) thread
        compile_s = time.time() - started
    run(samples[0])
    latencies = []
    started = time.perf_counter()
    for _ in range(args.repeats):
        for x in samples:
            t = time.perf_counter()
            run(x)
            latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    return {"latency_s": statistics.median(latencies), "images_per_s": len(latencies) / elapsed,
            "first_call_s": round(compile_s, 1), "load_average": os.getloadavg()[0]}


def worker(out: Path, what: str, args) -> dict:
    python, env = sys.executable, None
    if what in IPEX_MEASUREMENTS:
        from mlperf_bnas.backends import ipex_env

        python = str(ipex_env.find_python())
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ipex_env.CODE_DIR), os.environ.get("PYTHONPATH", "")]))
    cmd = [python, str(Path(__file__).resolve()), "--worker", what, "--output-dir", str(out),
           "--images", str(args.images), "--repeats", str(args.repeats)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"measurement {what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
def harness_offline(common: list[str], work: Path, instances: int, threads: int, completion_threads: int,
                    queries: int, qps: float, *extra: str) -> float:
    """Samples per second of a LoadGen Offline performance run of the INT8 program."""
    summary = harness_run(common, work, "Offline",
                          f"retinanet.*.performance_sample_count_override = 8\n"
                          f"retinanet.Offline.min_query_count = {queries}\nretinanet.Offline.min_duration = 1000\n"
                          f"retinanet.Offline.target_qps = {qps}\n",
                          "--set", f"backend_options.instances={instances}",
                          "--set", f"backend_options.threads={threads}",
                          "--set", f"backend_options.completion_threads={completion_threads}", *extra)
    return float(summary["Samples per second"])


def build_ipex(out: Path, common: list[str]) -> dict:
    """The IPEX TorchScript INT8 build (the normal command, in the IPEX environment), moved to model/ipex-int8."""
    import shutil

    started = time.time()
    cli("build", *common, "--precision", "int8", "--set", "backend_options.engine=ipex")
    seconds = time.time() - started
    target = _ipex_dir(out)
    if target.exists():
        shutil.rmtree(target)
    OutputRoot(out).model_dir_of(BENCH.name, "int8").rename(target)
    record = json.loads((target / BUILD_RECORD).read_text())
    q = record["quantization"]
    return {"build_s": round(seconds, 1), "calibration_s": q["calibration_seconds"],
            "calibration_images": q["calibration_samples_used"],
            "calibration_s_per_image": q["calibration_seconds"] / max(1, q["calibration_samples_used"]),
            "cpu": record["cpu"], "torch": record["torch_version"], "ipex": record["ipex_version"],
            "int8_convolutions": record["int8_convolutions"], "llga_fusion_groups": record["llga_fusion_groups"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--images", type=int, default=8, help="synthetic images (timed samples)")
    p.add_argument("--repeats", type=int, default=2, help="passes over the images per measurement")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every measurement (best counts)")
    p.add_argument("--build-only", action="store_true",
                   help="make the builds (for a later --reuse-builds run, e.g. while the machine is busy) and exit")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--skip-openvino", action="store_true")
    p.add_argument("--skip-ipex", action="store_true", help="leave out the IPEX TorchScript measurements")
    p.add_argument("--reuse-builds", action="store_true",
                   help="keep the builds an earlier run left in --output-dir (same --images and --checkpoint)")
    p.add_argument("--measurements", default=None, metavar="A,B",
                   help=f"only these per-image measurements (of {', '.join(MEASUREMENTS)})")
    p.add_argument("--harness", default=None, metavar="A,B",
                   help="only these harness Offline settings (of 1x2, 2x1, 1x2+c1, 'ipex 1x2+c1')")
    p.add_argument("--worker", choices=(*MEASUREMENTS, "build-openvino"), help=argparse.SUPPRESS)
    args = p.parse_args()
    out = args.output_dir.resolve()
    if args.rounds < 1 and not args.build_only:
        sys.exit(f"--rounds {args.rounds}: must be >= 1 (--build-only makes the builds alone)")
    if args.worker:
        result = build_openvino(args) if args.worker == "build-openvino" else measure(args)
        print(json.dumps(result))
        return 0

    common = common_args(out, args.images, args.checkpoint)
    from mlperf_bnas.backends import ipex_env
    from mlperf_bnas.errors import UserError

    if not args.skip_ipex:
        try:
            ipex_env.find_python()
        except UserError as exc:
            sys.exit(f"{exc}; or pass --skip-ipex")
    results: dict = {"machine": {"cpus": os.cpu_count(), "cpu": cpu_info().model,
                                 "isa_flags": [f for f in ipex_env.ISA_FLAGS if f in cpu_info().flags],
                                 "load_average_at_start": os.getloadavg()},
                     "images": args.images, "repeats": args.repeats, "rounds": args.rounds}
    print(f"CPU: {results['machine']['cpu']} ({', '.join(results['machine']['isa_flags'])})", flush=True)
    model_dir = OutputRoot(out).model_dir_of(BENCH.name, "int8").parent
    if not args.skip_ipex:
        if args.reuse_builds and (_ipex_dir(out) / BUILD_RECORD).is_file():
            print(f"reusing the IPEX build in {_ipex_dir(out)}", flush=True)
        else:
            print("building the IPEX TorchScript INT8 program (engine ipex, IPEX environment) ...", flush=True)
            cli("dataset", *common)
            results["ipex_build"] = build_ipex(out, common)
    if args.reuse_builds and all((model_dir / p / "model.pt2").is_file() for p in ("int8", "fp32")):
        print(f"reusing the FP32 and INT8 builds in {model_dir}", flush=True)
    else:
        print("building (dataset, FP32, INT8) ...", flush=True)
        cli("build", *common, "--precision", "all")
    chosen = set(args.measurements.split(",")) if args.measurements else set(MEASUREMENTS)
    unknown = chosen - set(MEASUREMENTS)
    if unknown:
        sys.exit(f"--measurements: unknown {', '.join(sorted(unknown))}; valid: {', '.join(MEASUREMENTS)}")
    chosen |= {"int8-inductor", "int8-inductor+postprocess"}      # every ratio below needs them
    measurements = [m for m in MEASUREMENTS if m in chosen and not (args.skip_openvino and m == "openvino-int8")
                    and not (args.skip_ipex and m in IPEX_MEASUREMENTS)]
    reuse_openvino = args.reuse_builds and (model_dir / "openvino-int8" / "model.xml").is_file()
    if "openvino-int8" in measurements and not reuse_openvino:
        print("building the OpenVINO INT8 IR of the same tensor part ...", flush=True)
        results["openvino_build_s"] = worker(out, "build-openvino", args)["seconds"]
    if args.build_only:
        print(f"builds ready in {out}: measure with the same arguments plus --reuse-builds", flush=True)
        return 0

    rounds: dict[str, list[dict]] = {m: [] for m in measurements}
    # instances x threads (+ completion threads running the post-processing beside the instance)
    settings = {"1x2": (1, 2, 0), "2x1": (2, 1, 0), "1x2+c1": (1, 2, 1)}
    ipex_extra = ("--set", "backend_options.engine=ipex", "--model-path", str(_ipex_dir(out)))
    if not args.skip_ipex:
        settings["ipex 1x2+c1"] = (1, 2, 1)
    if args.harness:
        wanted = set(args.harness.split(",")) | {"1x2"}       # harness_over_bare_loop needs 1x2
        if wanted - set(settings):
            sys.exit(f"--harness: unknown {', '.join(sorted(wanted - set(settings)))}; valid: {', '.join(settings)}")
        settings = {k: v for k, v in settings.items() if k in wanted}
    harness: dict[str, list[float]] = {name: [] for name in settings}
    work = out / "harness-runs"
    for r in range(args.rounds):
        for m in measurements:
            rounds[m].append(worker(out, m, args))
            print(f"round {r + 1}: {m:28s} {rounds[m][-1]['latency_s']:.3f} s/image "
                  f"(load {rounds[m][-1]['load_average']:.1f})", flush=True)
        bare = rounds["int8-inductor+postprocess"][-1]["images_per_s"]
        queries = args.repeats * args.images
        for name, setting in settings.items():
            extra = ipex_extra if name.startswith("ipex") else ()
            harness[name].append(harness_offline(common, work, *setting, queries, max(0.1, bare), *extra))
            print(f"round {r + 1}: harness Offline {name:16s} {harness[name][-1]:.3f} images/s", flush=True)

    def best_latency(m: str) -> float:
        return min(x["latency_s"] for x in rounds[m])

    def best_rate(m: str) -> float:
        return max(x["images_per_s"] for x in rounds[m])

    def per_round(a: list[float], b: list[float]) -> dict:
        ratios = [x / y for x, y in zip(a, b)]
        return {"per_round": [round(r, 3) for r in ratios], "median": statistics.median(ratios)}

    lat = {m: [x["latency_s"] for x in rounds[m]] for m in rounds}
    same_round: dict = {}
    if "ipex-int8" in lat:
        same_round["ipex_int8_over_inductor_int8"] = per_round(lat["ipex-int8"], lat["int8-inductor"])
        if "openvino-int8" in lat:
            same_round["ipex_int8_over_openvino_int8"] = per_round(lat["ipex-int8"], lat["openvino-int8"])
    if "openvino-int8" in lat:
        same_round["inductor_int8_over_openvino_int8"] = per_round(lat["int8-inductor"], lat["openvino-int8"])
    if "ipex 1x2+c1" in harness and "1x2+c1" in harness:
        same_round["harness_offline_ipex_over_inductor"] = per_round(harness["ipex 1x2+c1"], harness["1x2+c1"])
    results["same_round_ratios"] = same_round
    results["first_call_s_int8_inductor"] = rounds["int8-inductor"][0]["first_call_s"]
    results["int8_inductor_latency_s"] = best_latency("int8-inductor")
    if "fp32-eager" in rounds:
        results["fp32_eager_latency_s"] = best_latency("fp32-eager")
        results["int8_speedup_vs_fp32_eager"] = results["fp32_eager_latency_s"] / results["int8_inductor_latency_s"]
    if "openvino-int8" in rounds:
        results["openvino_int8_latency_s"] = best_latency("openvino-int8")
        results["pytorch_int8_over_openvino_int8"] = results["int8_inductor_latency_s"] / results["openvino_int8_latency_s"]
    if "ipex-int8" in rounds:
        results["ipex_int8_latency_s"] = best_latency("ipex-int8")
        results["ipex_int8_over_inductor_int8"] = results["ipex_int8_latency_s"] / results["int8_inductor_latency_s"]
        if "openvino-int8" in rounds:
            results["ipex_int8_over_openvino_int8"] = results["ipex_int8_latency_s"] / results["openvino_int8_latency_s"]
        results["harness_offline_ipex_1x2_completion_thread_images_per_s"] = max(harness["ipex 1x2+c1"])
        if "1x2+c1" in harness:
            results["harness_offline_ipex_over_inductor"] = (
                results["harness_offline_ipex_1x2_completion_thread_images_per_s"] / max(harness["1x2+c1"]))
    results["bare_loop_inference_images_per_s"] = best_rate("int8-inductor")
    results["bare_loop_with_postprocess_images_per_s"] = best_rate("int8-inductor+postprocess")
    results["harness_offline_1x2_images_per_s"] = max(harness["1x2"])
    if "2x1" in harness:
        results["harness_offline_2x1_images_per_s"] = max(harness["2x1"])
    if "1x2+c1" in harness:
        results["harness_offline_1x2_completion_thread_images_per_s"] = max(harness["1x2+c1"])
    results["harness_over_bare_loop"] = (results["harness_offline_1x2_images_per_s"]
                                         / results["bare_loop_with_postprocess_images_per_s"])
    results["rounds_detail"] = {"workers": rounds, "harness": harness}
    results["load_average_at_end"] = os.getloadavg()
    (out / "benchmark_retinanet.json").write_text(json.dumps(results, indent=1))
    for key, value in results.items():
        if key not in ("rounds_detail", "machine"):
            print(f"{key:45s} {value:.3f}" if isinstance(value, float) else f"{key:45s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
