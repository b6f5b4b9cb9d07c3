#!/usr/bin/env python3
"""Benchmarks of the sub-network search (numbers for docs/bootstrapnas.md, "Search").

``resnet50``: a ResNet-50 super-network (random weights are fine for speed: latency does not
depend on weight values) -> OpenVINO INT8 latency of the maximum, the minimum and seeded
random sub-networks, measured as the search measures it (``nas/search/latency.py``: the benchmark's
``backends.openvino.build_openvino_ir`` + the ``openvino`` backend, warm, median) -> the hardware-aware
front (most MACs for the latency: sub-networks no other one beats on both) -> INT8
throughput of chosen front members relative to the full ResNet-50, side by side in one run,
with the benchmark's OpenVINO backend (THROUGHPUT hint, the Offline batch size), and with
``--loadgen`` also through the whole harness (``mlperf-bnas dataset/build/run`` Offline with
``CHECKPOINT`` = the exported sub-network).

``linas-hv``: on a trained digits super-network (the demo's), evolutionary search vs LINAS
with the same budget and seeds: hypervolume of the (accuracy, MACs) front against the
number of full evaluations, and how many evaluations each needs to reach the evolutionary
search's final hypervolume.

Usage::

    python tools/benchmark_nas_search.py resnet50 --out build/bootstrapnas/benchmark [--samples 8] [--loadgen]
    python tools/benchmark_nas_search.py linas-hv --supernet build/bootstrapnas/digits/supernet.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from mlperf_bnas.paths import REPO, OutputRoot, SearchOutputs, benchmark_dir

log = logging.getLogger("benchmark_nas_search")

RESNET50_ELASTICITY = {"available_elasticity_dims": ["width", "depth"],
                       # min_width 8: NNCF's default 32 would keep 64-channel groups at 32 (x0.5)
                       "width": {"width_multipliers": [1.0, 0.75, 0.5, 0.25], "min_width": 8}}


# --------------------------------------------------------------------------- ResNet-50

def _resnet50_supernet():
    import torch
    import torchvision

    from mlperf_bnas.nas.supernet.network import SuperNetwork

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None)
    return SuperNetwork.from_model(model.eval(), RESNET50_ELASTICITY, torch.zeros(1, 3, 224, 224))


def _throughputs(models: dict[str, Path], batch: int, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Samples/s of the benchmark's OpenVINO backend (THROUGHPUT hint, kept busy ``seconds``) per model,
    the models interleaved over ``rounds`` rounds so a busy machine slows them alike."""
    from mlperf_bnas.backends import create_backend
    from mlperf_bnas.models.resnet50 import ResNet50

    spec = ResNet50(ResNet50.Options()).preprocess_spec()
    data = np.zeros((batch, *spec.sample_shape), dtype=spec.dtype)
    backends = {name: create_backend("openvino", xml, {"performance_hint": "THROUGHPUT", "batch_size": batch},
                                     where="benchmark") for name, xml in models.items()}
    out: dict[str, list[float]] = {name: [] for name in models}
    errors: list = []
    try:
        for backend in backends.values():
            backend.warmup(data)
        for _ in range(rounds):
            for name, backend in backends.items():
                n = 0
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    backend.submit(data, batch, lambda _o, err: errors.append(err) if err else None)
                    n += batch
                backend.drain()
                out[name].append(n / (time.perf_counter() - t0))
    finally:
        for backend in backends.values():
            backend.close()
    if errors:
        raise errors[0]
    return out


def _build_int8(module, out_dir: Path) -> Path:
    from mlperf_bnas.models.resnet50 import ResNet50
    from mlperf_bnas.backends.openvino import build_openvino_ir
    from mlperf_bnas.quantize.qconfig import QuantizationConfig

    spec = ResNet50(ResNet50.Options()).preprocess_spec()
    calib = np.random.default_rng(0).integers(0, 256, size=(8, *spec.sample_shape)).astype(spec.dtype)
    return build_openvino_ir(module, spec, calib, out_dir, QuantizationConfig(subset_size=8))


def _harness_offline(name: str, checkpoint: Path | None, out: Path, target_qps: float) -> float:
    """Offline samples/s through the whole harness (dataset -> build -> LoadGen run)."""
    from mlperf_bnas.benchtools import cli
    from mlperf_bnas.loadgen.logs import read_summary

    bench = benchmark_dir("resnet50-openvino")
    root = out / "harness" / name
    common = ["--benchmark", str(bench), "--output-dir", str(root), "--system", "bench"]
    if checkpoint is not None:
        common += ["--checkpoint", str(checkpoint)]
    conf = root / "user.bench.conf"
    root.mkdir(parents=True, exist_ok=True)
    # The smoke settings, with target_qps from the backend measurement so every model runs ~10 s.
    conf.write_text((bench / "user.smoke.conf").read_text()
                    + f"\nresnet50.Offline.target_qps = {max(1.0, target_qps):.1f}\n")
    for step in (["dataset"], ["build", "--precision", "int8"],
                 ["run", "--scenario", "Offline", "--mode", "performance", "--user-conf", str(conf)]):
        cli(step[0], *common, *step[1:])
    summary = read_summary(OutputRoot(root).tree.performance_dir("bench", "resnet50", "Offline")
                           / "mlperf_log_summary.txt")
    return float(summary["Samples per second"])


def bench_resnet50(args) -> dict:
    from mlperf_bnas.nas.export import save_subnet
    from mlperf_bnas.nas.search.latency import LatencyMeter
    from mlperf_bnas.nas.search.pareto import front_indices
    from mlperf_bnas.nas.search.settings import LatencySettings
    from mlperf_bnas.models.resnet50 import ResNet50

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = ResNet50(ResNet50.Options()).preprocess_spec()
    supernet = _resnet50_supernet()
    space = supernet.space
    rng = np.random.default_rng(args.seed)
    configs = [("maximum", space.maximum()), ("minimum", space.minimum())]
    configs += [(f"random{i}", space.sample(rng)) for i in range(args.samples)]
    meter = LatencyMeter(LatencySettings(runtime="openvino", precision="int8", batch_size=1, warmup=5,
                                         iterations=args.iterations), SearchOutputs(out).latency_cache(), (3, 224, 224),
                         spec, SearchOutputs(out).latency_build)
    points = []
    for name, cfg in configs:
        t0 = time.time()
        lat = meter.measure(cfg, lambda c=cfg: supernet.extract_subnet(c))
        points.append({"name": name, "config": cfg, "macs": supernet.macs(cfg), "params": supernet.params(cfg),
                       "latency_ms": lat})
        log.info("%-9s %6.2f GMACs  %7.2f ms INT8 (%.0f s)", name, points[-1]["macs"] / 1e9, lat, time.time() - t0)
    F = np.array([[p["latency_ms"], -p["macs"]] for p in points])
    front = [points[i] for i in front_indices(F)]
    front.sort(key=lambda p: p["latency_ms"])
    for p in points:
        p["on_front"] = any(p is f for f in front)

    full = points[0]
    minimum = points[1]
    # Chosen: the front member with the most MACs whose latency is at most 1/2.5 of the full
    # model's (the goal), and the minimum sub-network (the far end of the space).
    chosen = []
    mid = [p for p in front if p["latency_ms"] <= full["latency_ms"] / 2.5 and p is not minimum and p is not full]
    if mid:
        chosen.append(max(mid, key=lambda p: p["macs"]))
    chosen.append(minimum)
    results = {"full": full, "front": front, "points": points, "throughput": []}
    models = out / "models"
    xmls = {}
    for p in [full, *chosen]:
        subnet = supernet.extract_subnet(p["config"])
        ckpt = models / f"{p['name']}.pt"
        save_subnet(subnet, p["config"], "resnet50", spec.to_dict(), ckpt)
        xmls[p["name"]] = _build_int8(subnet, models / f"{p['name']}_int8")
        results["throughput"].append({"name": p["name"], "macs": p["macs"], "latency_ms": p["latency_ms"],
                                      "checkpoint": str(ckpt)})
    rates = _throughputs(xmls, args.batch, args.seconds, args.rounds)
    for entry in results["throughput"]:
        entry["backend_rounds"] = rates[entry["name"]]
        entry["backend_samples_per_s"] = float(np.median(rates[entry["name"]]))
    if args.loadgen:
        for entry in results["throughput"]:
            ckpt = None if entry["name"] == "maximum" else Path(entry["checkpoint"])
            # The full model goes through the harness as the seeded torchvision ResNet-50 (no CHECKPOINT).
            entry["loadgen_offline_samples_per_s"] = _harness_offline(entry["name"], ckpt, out,
                                                                      entry["backend_samples_per_s"])
    base = results["throughput"][0]
    for entry in results["throughput"]:
        entry["speedup_backend"] = entry["backend_samples_per_s"] / base["backend_samples_per_s"]
        if "loadgen_offline_samples_per_s" in entry:
            entry["speedup_loadgen"] = entry["loadgen_offline_samples_per_s"] / base["loadgen_offline_samples_per_s"]
    return results


def print_resnet50(r: dict) -> None:
    print("\nOpenVINO INT8 latency (batch 1, median), ResNet-50 sub-networks (random weights):")
    print("| sub-network | GMACs | params (M) | latency (ms) | on front |")
    print("|---|---|---|---|---|")
    for p in r["points"]:
        print(f"| {p['name']} | {p['macs'] / 1e9:.3f} | {p['params'] / 1e6:.2f} | {p['latency_ms']:.2f} | "
              f"{'yes' if p['on_front'] else ''} |")
    print("\nOpenVINO INT8 throughput relative to the full ResNet-50 (same run, same machine):")
    print("| model | GMACs | backend samples/s | x full | LoadGen Offline samples/s | x full |")
    print("|---|---|---|---|---|---|")
    for t in r["throughput"]:
        lg = t.get("loadgen_offline_samples_per_s")
        print(f"| {t['name']} | {t['macs'] / 1e9:.3f} | {t['backend_samples_per_s']:.1f} | {t['speedup_backend']:.2f} | "
              f"{'' if lg is None else f'{lg:.1f}'} | {'' if lg is None else format(t['speedup_loadgen'], '.2f')} |")


# --------------------------------------------------------------------------- LINAS vs evolutionary

def _hv_curve(records, ref_macs: float, checkpoints: list[int]) -> list[float]:
    from mlperf_bnas.nas.search.pareto import hypervolume

    searched = [r for r in records if r.source != "reference"]
    ref = next(r for r in records if r.source == "reference")
    out = []
    for n in checkpoints:
        pts = [ref, *searched[:n]]
        # Objectives scaled to [0, 1]: (1 - accuracy/100, MACs / MACs of the maximum sub-network).
        F = np.array([[1 - r.metrics["accuracy"] / 100, r.metrics["macs"] / ref_macs] for r in pts])
        out.append(hypervolume(F, np.array([1.0, 1.05])))
    return out


def bench_linas_hv(args) -> dict:
    import torch

    from mlperf_bnas.nas.search.tactics import LocalPool, run_search
    from mlperf_bnas.nas.search.settings import build_settings
    from mlperf_bnas.nas.search.measure import SupernetEvaluator
    from mlperf_bnas.nas.search.targets import SEARCH_TARGETS, model_builder
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    # One thread: the measurements are counted, not timed, and one thread wastes least on a busy machine.
    torch.set_num_threads(args.threads)
    path = Path(args.supernet)
    if not path.is_file():
        sys.exit(f"{path}: trained super-network not found; run code/bootstrapnas/run_demo.sh first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    base = (ckpt.get("extra") or {}).get("base_model", "digits_resnet")
    supernet = SuperNetwork.load(path, model_builder(base, ckpt["state_dict"]))
    target = SEARCH_TARGETS.get(base)()
    bn, val = target.loaders(None, 1.0, 0)
    evaluator = SupernetEvaluator(supernet, ("accuracy", "macs", "params"), bn, val, args.bn_samples)
    cache: dict[str, dict] = {}

    class Cached:
        """Every sub-network is measured once for all runs (the search counts its own evaluations)."""
        def measure(self, cfg):
            key = json.dumps(cfg, sort_keys=True)
            if key not in cache:
                cache[key] = evaluator.measure(cfg)
            return cache[key]

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # HV after every full evaluation; the table shows whole populations.
    checkpoints = list(range(1, args.num_evals + 1))
    ref_macs = float(supernet.macs(supernet.space.maximum()))
    curves: dict[str, list[list[float]]] = {"evolutionary": [], "linas": []}
    for seed in range(args.repeats):
        for tactic in curves:
            s = build_settings({}, {"tactic": tactic, "algorithm": "nsga2", "num_evals": args.num_evals,
                                    "population": args.population, "seed": seed,
                                    "linas_inner_evals": args.inner_evals, "num_bn_samples": args.bn_samples})
            csv_path = out / f"{tactic}_seed{seed}.csv"
            if csv_path.exists():
                csv_path.unlink()   # this tool's own scratch output
            outcome = run_search(supernet.space, LocalPool(Cached()), s, csv_path)
            curves[tactic].append(_hv_curve(outcome.records, ref_macs, checkpoints))
            log.info("%s seed %d: final HV %.4f", tactic, seed, curves[tactic][-1][-1])
    mean = {t: np.mean(np.array(c), axis=0).tolist() for t, c in curves.items()}
    target_hv = mean["evolutionary"][-1]
    reach = {t: next((n for n, hv in zip(checkpoints, m) if hv >= target_hv), None) for t, m in mean.items()}
    # Per seed too: evaluations each LINAS run needs to reach its evolutionary twin's final HV.
    per_seed = []
    for evo, lin in zip(curves["evolutionary"], curves["linas"]):
        per_seed.append({"evolutionary_final_hv": evo[-1], "linas_final_hv": lin[-1],
                         "linas_evals_to_reach": next((n for n, hv in zip(checkpoints, lin) if hv >= evo[-1]), None)})
    return {"checkpoints": checkpoints, "table_at": list(range(args.population, args.num_evals + 1, args.population)),
            "mean_hv": mean, "curves": curves, "evolutionary_final_hv": target_hv,
            "evaluations_to_reach_evolutionary_final_hv": reach, "per_seed": per_seed, "settings": vars(args)}


def print_linas(r: dict) -> None:
    print("\nMean hypervolume of the (accuracy, MACs) front vs full evaluations "
          f"({len(r['curves']['linas'])} seeds):")
    at = r["table_at"]
    print("| evaluations | " + " | ".join(str(n) for n in at) + " |")
    print("|---|" + "---|" * len(at))
    for t, m in r["mean_hv"].items():
        print(f"| {t} | " + " | ".join(f"{m[n - 1]:.4f}" for n in at) + " |")
    print(f"mean curves: evaluations to reach the evolutionary search's final HV ({r['evolutionary_final_hv']:.4f}): "
          f"{r['evaluations_to_reach_evolutionary_final_hv']}")
    for seed, p in enumerate(r["per_seed"]):
        print(f"seed {seed}: evolutionary final HV {p['evolutionary_final_hv']:.4f}, LINAS final "
              f"{p['linas_final_hv']:.4f}, LINAS reaches the evolutionary final HV after {p['linas_evals_to_reach']} "
              "evaluations")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("resnet50")
    r.add_argument("--out", default=str(OutputRoot(REPO).nas_dir / "benchmark"))
    r.add_argument("--samples", type=int, default=6, help="random sub-networks besides the maximum and minimum")
    r.add_argument("--iterations", type=int, default=30, help="timed inferences per latency measurement")
    r.add_argument("--batch", type=int, default=4, help="throughput batch (the Offline config's)")
    r.add_argument("--seconds", type=float, default=5.0, help="throughput measurement time per model and round")
    r.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (median reported)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--loadgen", action="store_true", help="also run each model through the harness (Offline)")
    h = sub.add_parser("linas-hv")
    h.add_argument("--supernet", default=str(OutputRoot(REPO).nas_dir / "digits" / "supernet.pt"))
    h.add_argument("--out", default=str(OutputRoot(REPO).nas_dir / "benchmark"))
    h.add_argument("--num_evals", type=int, default=96)
    h.add_argument("--population", type=int, default=16)
    h.add_argument("--inner_evals", type=int, default=2000)
    h.add_argument("--repeats", type=int, default=3)
    h.add_argument("--bn_samples", type=int, default=256)
    h.add_argument("--threads", type=int, default=1, help="torch threads for the accuracy measurements")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    t0 = time.time()
    if args.what == "resnet50":
        result = bench_resnet50(args)
        print_resnet50(result)
    else:
        result = bench_linas_hv(args)
        print_linas(result)
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["load_average_at_end"] = os.getloadavg()
    out = Path(args.out) / f"benchmark_{args.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwritten {out} ({result['wall_seconds']} s; load average {result['load_average_at_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
