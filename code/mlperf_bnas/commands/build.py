"""``mlperf-bnas build``: export the model, quantize it (NNCF INT8) and build it for the backend."""

from __future__ import annotations

import argparse
from pathlib import Path
import json

from mlperf_bnas import pipeline


def add_arguments(p: argparse.ArgumentParser) -> None:
    pipeline.add_common_arguments(p)
    p.add_argument("--precision", choices=["int8", "fp32", "bf16", "all"], default="all",
                   help="which model(s) to build (default, all: int8 and fp32; bf16, the FP32 model with "
                        "bf16 float layers, only on request: it pays only on CPUs with AMX-BF16)")
    p.add_argument("--if-missing", action="store_true",
                   help="build only the model(s) not built yet (the run scripts' first step: a fresh output "
                        "folder gets what it needs, and says so)")


def run(args: argparse.Namespace) -> int:
    cfg, paths = pipeline.config_from_args(args)
    precisions = ["int8", "fp32"] if args.precision == "all" else [args.precision]
    builds = cfg.backend in pipeline.BUILDERS
    if args.if_missing:
        # Cheap when there is nothing to do (no framework import): the run that follows
        # prepares (or reuses) the dataset itself.
        if not builds:
            print(f"backend {cfg.backend} loads no built model: nothing to build")
            return 0
        missing = [p for p in precisions if not (paths.model_dir(p) / "quantization.json").is_file()]
        for precision in precisions:
            if precision not in missing:
                print(f"{precision}: {paths.model_dir(precision)} (built earlier)")
        if not missing:
            return 0
        print(f"model not built yet in {paths.build_dir / 'model'}: building {' and '.join(missing)} now "
              "(what run_calibration.sh does)", flush=True)
        precisions = missing
    elif not builds:
        # The null and simulated backends load no model: only the dataset to prepare.
        pipeline.prepare_dataset(cfg, paths, args.data_dir, args.checkpoint)
        print(f"backend {cfg.backend} loads no built model: nothing to build")
        return 0
    for precision in precisions:
        path = pipeline.build(cfg, paths, args.data_dir, args.checkpoint, precision)
        record_path = path.parent / "quantization.json"
        summary = ""
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            summary = f" (FakeQuantize ops: {record.get('fake_quantize_ops')}"
            if record.get("calibration"):
                summary += f", calibration samples: {record['calibration']['count']}"
            summary += ")"
        print(f"{precision}: {path}{summary}")
    return 0


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
