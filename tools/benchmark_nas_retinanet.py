#!/usr/bin/env python3
"""A RetinaNet BootstrapNAS sub-network against the full RetinaNet, side by side in one run (not a test).

    tools/benchmark_nas_retinanet.py --subnet build/bootstrapnas/search/best_subnet.pt \\
        --output-dir /tmp/retinanet-nas-bench [--checkpoint FULL.pt] [--image-size 800] [--images 8] [--rounds 3] \\
        [--reuse-builds]

1. Builds both with the benchmark's own commands (``code/retinanet-pytorch-cpu``, synthetic
   images, INT8: NNCF quantize_pt2e, the seed's settings): the full model from ``--checkpoint``
   (default: the seeded weights) and the sub-network from ``--subnet`` (an exported
   ``mlperf-bnas-subnet`` checkpoint, as CHECKPOINT= takes it).
2. Offline throughput through the harness (``mlperf-bnas run``, LoadGen, Inductor), full and
   sub-network interleaved over ``--rounds`` rounds; the median of each and their ratio
   (goal: >= 1.5x, Intel's seed: 1.52x).
3. The sub-network's FP32 mAP against the full FP32 model's detections on the same images
   (pycocotools; the full model scores 100 % by construction) and both models' MACs (conv and
   linear layers, counted on a forward pass).

Prints a table and writes ``benchmark_nas_retinanet.json`` in --output-dir. On a shared
machine only figures of one run compare; say which CPU they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.benchtools import cli, harness_run
from mlperf_bnas.paths import benchmark_dir

BENCH = benchmark_dir("retinanet-pytorch-cpu")
SYSTEM = "bench"


def common_args(out: Path, size: int, images: int, checkpoint: str | None) -> list[str]:
    args = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", SYSTEM,
            "--set", f"model_options.image_size={size}", "--set", f"dataset_options.synthetic_count={images}"]
    return args + (["--checkpoint", checkpoint] if checkpoint else [])


def count_macs(module, example) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one ``example`` forward pass."""
    import torch
    from torch import nn

    total = [0]

    def hook(mod, inputs, output):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += output.numel() // output.shape[0] * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total[0] += output.numel() // output.shape[0] * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def accuracy_and_macs(args, out: Path) -> dict:
    """The sub-network's mAP against the full model's detections, and both models' MACs (FP32)."""
    import torch

    from mlperf_bnas import pipeline
    from mlperf_bnas.config import load_config, parse_set_options
    from mlperf_bnas.models.retinanet_nas import DetectionSet, _synthetic, detection_map
    from mlperf_bnas.paths import OutputPaths

    cfg = load_config(BENCH, "Offline", parse_set_options([f"model_options.image_size={args.image_size}"]))
    paths = OutputPaths.of(cfg, (out / "full").resolve(), SYSTEM)
    full, _ = pipeline.load_torch_model(cfg, paths, args.checkpoint)
    sub, _ = pipeline.load_torch_model(cfg, OutputPaths.of(cfg, (out / "subnet").resolve(), SYSTEM), args.subnet)
    entry = pipeline.model_entry(cfg)
    # Held-out images the search never saw (another seed than training's and the search's).
    source = _synthetic(1000 + args.seed, args.map_images, entry.preprocess_spec())
    data = DetectionSet(source, range(len(source)), full, entry.detection_settings(), entry.options.num_classes)
    example = data.images()[:1]
    with torch.no_grad():
        return {"map_vs_full_pct": detection_map(sub, data), "map_images": args.map_images,
                "macs_full": count_macs(full, example), "macs_subnet": count_macs(sub, example)}


def offline(common: list[str], work: Path, queries: int) -> float:
    summary = harness_run(common, work, "Offline",
                          f"retinanet.*.performance_sample_count_override = {queries}\n"
                          f"retinanet.Offline.min_query_count = {queries}\nretinanet.Offline.min_duration = 1000\n"
                          "retinanet.Offline.target_qps = 1\n")
    return float(summary["Samples per second"])


def built_program_dir(out: Path, size: int) -> Path:
    """Where ``mlperf-bnas build`` puts the INT8 program for ``--output-dir out`` (OutputPaths decides)."""
    from mlperf_bnas.config import load_config, parse_set_options
    from mlperf_bnas.paths import OutputPaths

    cfg = load_config(BENCH, "Offline", parse_set_options([f"model_options.image_size={size}"]))
    return OutputPaths.of(cfg, out.resolve(), SYSTEM).model_dir("int8")



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subnet", required=True, help="exported RetinaNet sub-network (mlperf-bnas nas search/export)")
    p.add_argument("--checkpoint", default=None, help="the full RetinaNet's weights (default: seeded)")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--image-size", type=int, default=800)
    p.add_argument("--images", type=int, default=8, help="synthetic images (queries per Offline run)")
    p.add_argument("--map-images", type=int, default=8, help="held-out images for the mAP comparison")
    p.add_argument("--rounds", type=int, default=3, help="interleaved Offline runs of each model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-builds", action="store_true",
                   help="keep the INT8 builds an earlier call left in --output-dir (every run still checks "
                        "that its build matches the model, options and data; a stale one is an error)")
    args = p.parse_args()
    if not Path(args.subnet).is_file():
        sys.exit(f"--subnet {args.subnet}: not found; export one with `mlperf-bnas nas search` or `nas export`")
    out = args.output_dir.resolve()
    models = {"full": common_args(out / "full", args.image_size, args.images, args.checkpoint),
              "subnet": common_args(out / "subnet", args.image_size, args.images, str(Path(args.subnet).resolve()))}
    for name, common in models.items():
        program = built_program_dir(out / name, args.image_size)
        if args.reuse_builds and program.is_dir():
            print(f"reusing the {name} INT8 build in {program}", flush=True)
            continue
        print(f"building {name} (dataset, INT8) ...", flush=True)
        cli("dataset", *common, "--no-progress")
        cli("build", *common, "--precision", "int8")
    results: dict = {"cpu": cpu_info().model, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                     "image_size": args.image_size, "images": args.images, "rounds": args.rounds,
                     "subnet": str(Path(args.subnet).resolve()), "checkpoint": args.checkpoint or "seeded weights"}
    runs: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, common in models.items():
            runs[name].append(offline(common, out / "harness-runs" / name, args.images))
            print(f"round {r + 1}: {name:6s} Offline {runs[name][-1]:.3f} samples/s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    median = {name: statistics.median(v) for name, v in runs.items()}
    results["offline_samples_per_s"] = runs
    results["offline_median"] = median
    results["speedup"] = median["subnet"] / median["full"]
    print("measuring the sub-network's mAP against the full model's detections ...", flush=True)
    results.update(accuracy_and_macs(args, out))
    results["macs_ratio"] = results["macs_full"] / results["macs_subnet"]
    print(f"\nCPU: {results['cpu']} ({results['cpus']} cpus), image size {args.image_size}, INT8 Inductor")
    print(f"Offline samples/s (median of {args.rounds}): full {median['full']:.3f}, sub-network "
          f"{median['subnet']:.3f} -> {results['speedup']:.2f}x (goal >= 1.5x)")
    print(f"MACs: full {results['macs_full'] / 1e9:.2f} G, sub-network {results['macs_subnet'] / 1e9:.2f} G "
          f"({results['macs_ratio']:.2f}x fewer)")
    print(f"sub-network FP32 mAP vs the full FP32 model's detections on {args.map_images} images: "
          f"{results['map_vs_full_pct']:.2f} %")
    path = out / "benchmark_nas_retinanet.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
