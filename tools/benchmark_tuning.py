#!/usr/bin/env python3
"""Server/Offline efficiency of the tuner: tuned Server QPS / tuned Offline samples/s.

Runs ``mlperf-bnas tune`` (real LoadGen trials, one process each) on a benchmark, by default
ResNet-50 INT8 on OpenVINO with ``user.smoke.conf``'s latency bound, and prints the two tuned
figures, their ratio and the trials. Build the model first (code/resnet50-openvino/run_calibration.sh
with the same OUTPUT_DIR).

With ``--simulated`` it also tunes the simulated backend of the tests (known service time,
2 workers) and compares the Server QPS found with the analytic M/D/c maximum at the same bound:
that separates the tuner's own loss from the machine's.

With ``--nas-subnet NAME`` (or ``--checkpoint FILE``) it tunes a BootstrapNAS sub-network of
ResNet-50 instead of the full model: the sub-network is exported from the seeded ResNet-50
super-network (the space and names of tools/benchmark_nas_subnets.py; speed does not depend on
the weights), built to INT8 with the benchmark's own ``dataset``/``build`` steps in a folder of
its own under the output directory, and tuned exactly like the full model.

Usage:
  tools/benchmark_tuning.py [--benchmark code/resnet50-openvino] [--output-dir DIR] [--system NAME]
                            [--user-conf FILE] [--simulated] [--json OUT.json]
                            [--nas-subnet width75 | --checkpoint SUBNET.pt] [-- TUNE ARGS]
Timings depend on the machine's load: say whether it was shared when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlperf_bnas.paths import REPO, OutputRoot, benchmark_dir

# --nas-subnet names -> the sub-network names of tools/benchmark_nas_subnets.py.
NAS_SUBNETS = {"depth1": "depth -1/group", "width75": "width 75%", "width75-depth1": "width 75%, depth -1/group",
               "width50-depth2": "width 50%, depth -2/group", "min": "minimum"}


def export_nas_subnet(slug: str, out_dir: Path) -> Path:
    """A sub-network of the seeded ResNet-50 super-network, as `mlperf-bnas nas export` writes it."""
    ckpt = out_dir / f"resnet50_{slug}.pt"
    if ckpt.is_file():  # the export is deterministic (seed 0): keep an earlier one
        return ckpt
    from benchmark_nas_subnets import chosen_subnets, seeded_supernet  # tools/ is on sys.path

    from mlperf_bnas.models.resnet50 import ResNet50
    from mlperf_bnas.nas.export import save_subnet

    _model, supernet = seeded_supernet()
    config = chosen_subnets(supernet)[NAS_SUBNETS[slug]]
    spec = ResNet50(ResNet50.Options()).preprocess_spec()
    save_subnet(supernet.extract_subnet(config), config, "resnet50", spec.to_dict(), ckpt)
    print(f"exported {NAS_SUBNETS[slug]!r}: {supernet.macs(config) / 1e9:.2f} GMACs "
          f"(full model {supernet.macs(supernet.space.maximum()) / 1e9:.2f}) -> {ckpt}", flush=True)
    return ckpt


def build_int8(benchmark: Path, output_dir: Path, system: str, checkpoint: Path) -> None:
    """The benchmark's own steps (run_calibration.sh, INT8 only) for these weights."""
    from mlperf_bnas.benchtools import cli

    common = ["--benchmark", str(benchmark), "--output-dir", str(output_dir), "--system", system,
              "--checkpoint", str(checkpoint)]
    for step in (["dataset"], ["build", "--precision", "int8"]):
        print(f"mlperf-bnas {step[0]} {' '.join(common + step[1:])}", flush=True)
        cli(step[0], *common, *step[1:])


def tune(benchmark: Path, output_dir: Path, system: str, user_conf: Path, conf_out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "mlperf_bnas", "tune", "--benchmark", str(benchmark), "--output-dir",
           str(output_dir), "--system", system, "--user-conf", str(user_conf), "--conf-out", str(conf_out), *extra]
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    rc = subprocess.run(cmd).returncode
    evidence = conf_out.with_suffix(".json")
    if not evidence.is_file():
        raise SystemExit(f"mlperf-bnas tune exited {rc} before tuning any scenario; see its output above")
    record = json.loads(evidence.read_text())
    record["_wall_s"] = round(time.monotonic() - start, 1)
    if rc != 0:
        # tune saves the Offline result before the Server search; a failed Server search
        # (no QPS VALID at the bound) counts as 0 QPS, with the reason from its output above.
        record["_server_failed"] = f"mlperf-bnas tune exited {rc}: no Server target_qps was VALID (see above)"
    return record


def efficiency(record: dict) -> tuple[float, float, float]:
    offline = record["scenarios"]["Offline"]["samples_per_s"]
    server = record["scenarios"]["Server"]["target_qps"] if "Server" in record["scenarios"] else 0.0
    return server, offline, server / offline


def queueing_ceiling(record: dict, parallel_key: str) -> dict | None:
    """What an ideal tuner could reach on this machine: the M/D/c maximum at the same bound.

    Server queries are single samples on ``c`` parallel infer requests/streams; with the
    capacity ``C`` measured by the tuner's capacity trial, each takes about ``D = c / C``.
    Deterministic service is an idealisation (real service times vary, which only lowers
    the maximum), so this is an upper bound for any Server setting without batching."""
    from mlperf_bnas.tune.queueing import max_server_qps

    server = record["scenarios"]["Server"]
    if server["backend_options"].get("batch_size", 1) != 1:
        return None  # batches of varying size: not an M/D/c queue
    c = server["backend_options"].get(parallel_key)
    bound = server.get("latency_bound_ms")
    if not isinstance(c, int) or not bound:
        return None
    capacity = server["capacity_samples_per_s"]
    qps = max_server_qps(c / capacity, c, bound / 1000)
    return {"parallel": c, "service_ms": 1000 * c / capacity, "max_server_qps": qps,
            "efficiency_ceiling": qps / record["scenarios"]["Offline"]["samples_per_s"],
            "tuned_vs_ceiling": server["target_qps"] / qps}


def simulated(output_dir: Path) -> dict:
    from mlperf_bnas.backends.simulated import SimulatedCost
    from mlperf_bnas.tune.queueing import max_server_qps

    cost = SimulatedCost(fixed_ms=5.5, per_sample_ms=0.5, cache_batch=8, spill_per_sample_ms=1.5)
    bound_ms = 50
    bench = output_dir / "simulated-bench"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "config.yaml").write_text(
        "benchmark: simulated-bench\nloadgen_model: resnet50\nmodel: resnet50\ndataset: imagenet\n"
        "backend: simulated\naccuracy: imagenet\npostprocess: none\n"
        f"backend_options: {{fixed_ms: {cost.fixed_ms}, per_sample_ms: {cost.per_sample_ms}, "
        f"cache_batch: {cost.cache_batch}, spill_per_sample_ms: {cost.spill_per_sample_ms}, workers: 2, batch_size: 1}}\n"
        "tuning:\n  trial_duration_ms: 2000\n  server_min_queries: 1500\n  qps_precision: 0.02\n"
        "  Offline: {backend_options: {workers: [2], batch_size: [1, 4, 8, 16]}}\n")
    (bench / "user.conf").write_text(f"resnet50.*.performance_sample_count_override = 64\n"
                                     f"resnet50.Server.target_latency = {bound_ms}\n")
    record = tune(bench, output_dir, "simulated", bench / "user.conf", bench / "user.simulated.tuned.conf", [])
    analytic = max_server_qps(cost.batch_ms(1) / 1000, 2, bound_ms / 1000)
    record["_analytic_server_qps"] = analytic
    record["_analytic_offline"] = cost.offline_capacity_per_s(2, 8)
    return record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmark", type=Path, default=benchmark_dir("resnet50-openvino"))
    p.add_argument("--output-dir", type=Path, default=Path(os.environ.get("OUTPUT_DIR") or REPO))
    p.add_argument("--system", default=os.environ.get("SYSTEM") or "local_cpu")
    p.add_argument("--user-conf", type=Path, help="default: <benchmark>/user.smoke.conf")
    p.add_argument("--simulated", action="store_true", help="also tune the simulated backend (analytic check)")
    p.add_argument("--skip-benchmark", action="store_true", help="only the simulated backend")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--parallel-key", default="num_streams",
                   help="backend option that counts parallel Server requests (for the analytic ceiling)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--nas-subnet", choices=sorted(NAS_SUBNETS),
                       help="tune this BootstrapNAS sub-network of the seeded ResNet-50 instead of the full model")
    which.add_argument("--checkpoint", type=Path, help="tune the benchmark built from these weights "
                       "(e.g. an exported sub-network); built into <output-dir>/checkpoint-<name>/")
    p.add_argument("tune_args", nargs="*", help="extra arguments for mlperf-bnas tune (after --)")
    a = p.parse_args()
    out: dict = {"load_average_at_start": os.getloadavg(), "cpus": os.cpu_count(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if a.simulated or a.skip_benchmark:
        with tempfile.TemporaryDirectory(prefix="bench-tune-sim-") as tmp:
            sim = simulated(Path(tmp))
        server, offline, eff = efficiency(sim)
        out["simulated"] = {"server_qps": server, "offline_samples_per_s": offline, "efficiency": eff,
                            "analytic_server_qps": sim["_analytic_server_qps"],
                            "analytic_offline_samples_per_s": sim["_analytic_offline"],
                            "analytic_efficiency": sim["_analytic_server_qps"] / sim["_analytic_offline"],
                            "server_vs_analytic": server / sim["_analytic_server_qps"],
                            "server_vs_same_settings_offline": server / sim["scenarios"]["Server"]["capacity_samples_per_s"],
                            "wall_s": sim["_wall_s"]}
    if not a.skip_benchmark:
        bench = a.benchmark.resolve()
        user_conf = (a.user_conf or bench / "user.smoke.conf").resolve()
        output_dir = a.output_dir.resolve()
        tune_args = list(a.tune_args)
        checkpoint = a.checkpoint.resolve() if a.checkpoint else None
        if a.nas_subnet:
            output_dir = output_dir / f"nas-subnet-{a.nas_subnet}"
            checkpoint = export_nas_subnet(a.nas_subnet, output_dir)
        elif checkpoint:
            if not checkpoint.is_file():
                raise SystemExit(f"{checkpoint}: checkpoint not found")
            output_dir = output_dir / f"checkpoint-{checkpoint.stem}"
        if checkpoint:
            # Its own output folder: the full model's build, data and tuning stay as they are.
            build_int8(bench, output_dir, a.system, checkpoint)
            tune_args = ["--checkpoint", str(checkpoint), *tune_args]
            out["checkpoint"] = str(checkpoint)
        work = OutputRoot(output_dir).benchmark_build_dir(bench.name) / "tuning-benchmark"
        work.mkdir(parents=True, exist_ok=True)
        # The tuned conf goes beside the trials, not into the benchmark directory.
        record = tune(bench, output_dir, a.system, user_conf, work / f"user.{a.system}.tuned.conf", tune_args)
        server, offline, eff = efficiency(record)
        ceiling = queueing_ceiling(record, a.parallel_key) if "Server" in record["scenarios"] else None
        out["benchmark"] = {"analytic_ceiling": ceiling, "benchmark": bench.name, "nas_subnet": a.nas_subnet,
                            "user_conf": str(user_conf), "server_qps": server,
                            "offline_samples_per_s": offline, "efficiency": eff,
                            "server_failed": record.get("_server_failed"),
                            "server_vs_same_settings_offline": (server / record["scenarios"]["Server"]["capacity_samples_per_s"]
                                                                if "Server" in record["scenarios"] else None),
                            "latency_bound_ms": record["scenarios"].get("Server", {}).get("latency_bound_ms"),
                            "offline_backend_options": record["scenarios"]["Offline"]["backend_options"],
                            "server_backend_options": record["scenarios"].get("Server", {}).get("backend_options"),
                            "wall_s": record["_wall_s"], "record": record["tuned_conf"]}
    out["load_average_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    for name in ("simulated", "benchmark"):
        if name in out:
            r = out[name]
            print(f"{name}: Server {r['server_qps']:.1f} QPS / Offline {r['offline_samples_per_s']:.1f} samples/s "
                  f"= efficiency {r['efficiency']:.3f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
