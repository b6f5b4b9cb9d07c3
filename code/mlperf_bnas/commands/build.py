"""``mlperf-bnas build``: export the model, quantize it (NNCF INT8) and build it for the backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlperf_bnas import pipeline
from mlperf_bnas.backends import BACKENDS
from mlperf_bnas.commands.arguments import add_common_arguments, add_precision_argument, config_from_args
from mlperf_bnas.enums import BUILT_BY_DEFAULT
from mlperf_bnas.paths import BUILD_RECORD


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    add_precision_argument(p, extra=("all",), default="all",
                           help="which model(s) to build (default, all: int8 and fp32; bf16, the FP32 model with "
                                "bf16 float layers, only on request: it pays only on CPUs with AMX-BF16)")
    p.add_argument("--if-missing", action="store_true",
                   help="build only the model(s) not built yet (the run scripts' first step: a fresh output "
                        "folder gets what it needs, and says so)")


def run(args: argparse.Namespace) -> int:
    cfg, paths = config_from_args(args)
    precisions = [p.value for p in BUILT_BY_DEFAULT] if args.precision == "all" else [args.precision]
    if args.if_missing:
        # Cheap when there is nothing to do (no framework import, not even the backend's
        # module): the run that follows prepares (or reuses) the dataset itself.
        missing = [p for p in precisions if not (paths.model_dir(p) / BUILD_RECORD).is_file()]
        if missing and not BACKENDS.get(cfg.backend).builds_model():
            print(f"backend {cfg.backend} loads no built model: nothing to build")
            return 0
        for precision in precisions:
            if precision not in missing:
                print(f"{precision}: {paths.model_dir(precision)} (built earlier)")
        if not missing:
            return 0
        print(f"model not built yet in {paths.build_dir / 'model'}: building {' and '.join(missing)} now "
              "(what run_calibration.sh does)", flush=True)
        precisions = missing
    elif not BACKENDS.get(cfg.backend).builds_model():
        # The null and simulated backends load no model: only the dataset to prepare.
        pipeline.prepare_dataset(cfg, paths, args.data_dir, args.checkpoint)
        print(f"backend {cfg.backend} loads no built model: nothing to build")
        return 0
    for precision in precisions:
        path = pipeline.build(cfg, paths, args.data_dir, args.checkpoint, precision)
        record_path = path.parent / BUILD_RECORD
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
