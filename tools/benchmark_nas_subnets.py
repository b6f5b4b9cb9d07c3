#!/usr/bin/env python3
"""ResNet-50 BootstrapNAS search space: MACs and OpenVINO INT8 throughput of sub-networks
relative to the original model, measured side by side in one run (not a test).

The super-network is generated from torchvision ResNet-50 with random weights (speed does
not depend on the weights). For the original model and each chosen sub-network it
extracts the plain sub-network, converts and quantizes it to an INT8 IR with the spine's
``backends.openvino.build_openvino_ir`` (NNCF, random calibration images), compiles it with the
OpenVINO backend and counts images per second over ``--seconds``, interleaving the
models over ``--rounds`` rounds (the best round of each is kept, so machine load hits all
alike). Goal: the space holds sub-networks >= 2.5x faster than the original.

    .venv/bin/python tools/benchmark_nas_subnets.py [--size 224] [--seconds 10] [--rounds 2]
        [--batch 8] [--output build/bootstrapnas/benchmark_nas_subnets.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from mlperf_bnas.backends.openvino import OpenVINOBackend, build_openvino_ir
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.models.resnet50 import MEAN_RGB, SCALE_RGB
from mlperf_bnas.nas.supernet.network import SuperNetwork
from mlperf_bnas.paths import REPO, OutputRoot
from mlperf_bnas.quantize.qconfig import QuantizationConfig

# The ResNet-50 search space: every width group at 100/75/50 % (multiples of 8), every
# non-first Bottleneck skippable (NNCF's automatic blocks).
ELASTICITY = {"available_elasticity_dims": ["width", "depth"], "width": {"width_multipliers": [1.0, 0.75, 0.5]}}


def seeded_supernet(size: int = 224) -> tuple[torch.nn.Module, SuperNetwork]:
    """torchvision ResNet-50 with seed-0 random weights, and its super-network."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    return model, SuperNetwork.from_model(model, ELASTICITY, torch.zeros(1, 3, size, size))


def chosen_subnets(supernet: SuperNetwork) -> dict[str, dict]:
    space = supernet.space
    maximum, minimum = space.maximum(), space.minimum()
    n_width = len(maximum["width"])

    def at(width_index: int, skip_per_group: int) -> dict:
        x = []
        for gene in space.genes:
            if gene.name.startswith("width/"):
                x.append(min(width_index, len(gene.choices) - 1))
            else:
                x.append(min(skip_per_group, len(gene.choices) - 1))
        return space.decode(x)

    assert n_width > 0
    return {
        "original (max)": maximum,
        "depth -1/group": at(0, 1),
        "width 75%": at(1, 0),
        "width 75%, depth -1/group": at(1, 1),
        "width 50%, depth -2/group": at(2, 2),
        "minimum": minimum,
    }


def throughput(backend: OpenVINOBackend, batch: np.ndarray, seconds: float) -> float:
    done = 0

    def count(_outputs, error):
        nonlocal done
        if error is not None:
            raise error
        done += len(batch)

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.submit(batch, len(batch), count)
    backend.drain()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input resolution")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing window per model and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calibration", type=int, default=16, help="random calibration images for NNCF")
    parser.add_argument("--only", nargs="*", help="names of the sub-networks to time (default: all)")
    parser.add_argument("--output", type=Path, default=OutputRoot(REPO).nas_dir / "benchmark_nas_subnets.json")
    args = parser.parse_args()

    model, supernet = seeded_supernet(args.size)
    resize = int(round(args.size / 0.875))
    spec = PreprocessSpec(size=args.size, resize=resize, layout="NHWC", dtype="uint8", channel_order="BGR",
                          mean=MEAN_RGB, scale=SCALE_RGB, normalize="graph")
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (args.calibration, *spec.sample_shape), dtype=np.uint8)
    batch = rng.integers(0, 256, (args.batch, *spec.sample_shape), dtype=np.uint8)
    subnets = chosen_subnets(supernet)
    if args.only:
        subnets = {k: v for k, v in subnets.items() if k in args.only or k == "original (max)"}
    backends: dict[str, OpenVINOBackend] = {}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        for name, config in subnets.items():
            # The original is timed as the torchvision model itself, not as an extracted sub-network.
            torch_model = model if name == "original (max)" else supernet.extract_subnet(config)
            started = time.time()
            xml = build_openvino_ir(torch_model, spec, calibration, Path(tmp) / f"m{len(backends)}",
                                    QuantizationConfig(subset_size=args.calibration))
            backends[name] = OpenVINOBackend(xml, OpenVINOBackend.Options(batch_size=args.batch))
            backends[name].warmup()
            rows[name] = {"config": config, "macs": supernet.macs(config), "params": supernet.params(config),
                          "build_seconds": round(time.time() - started, 1), "ips": []}
            print(f"built {name}: {rows[name]['macs'] / 1e9:.2f} GMACs in {rows[name]['build_seconds']} s", flush=True)
        for r in range(args.rounds):
            for name, backend in backends.items():
                rows[name]["ips"].append(throughput(backend, batch, args.seconds))
                print(f"round {r + 1} {name}: {rows[name]['ips'][-1]:.1f} img/s", flush=True)
    base = rows["original (max)"]
    print(f"\n| sub-network | GMACs | MACs ratio | params (M) | INT8 img/s | speed-up |\n|---|---|---|---|---|---|")
    for name, row in rows.items():
        row["best_ips"] = max(row["ips"])
        row["macs_ratio"] = base["macs"] / row["macs"]
        row["speedup"] = row["best_ips"] / max(base["ips"])
        print(f"| {name} | {row['macs'] / 1e9:.2f} | {row['macs_ratio']:.2f}x | {row['params'] / 1e6:.1f} | "
              f"{row['best_ips']:.1f} | {row['speedup']:.2f}x |")
    result = {"input_size": args.size, "batch": args.batch, "seconds": args.seconds, "rounds": args.rounds,
              "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "space_size": supernet.space.size(), "subnets": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.output.with_name(args.output.name + ".tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    os.replace(tmp_out, args.output)
    print(f"\nwritten {args.output}")


if __name__ == "__main__":
    main()
