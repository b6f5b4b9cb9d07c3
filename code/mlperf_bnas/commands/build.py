"""``mlperf-bnas build``: export the model, quantize it (NNCF INT8) and build it for the backend."""

from __future__ import annotations

import argparse
from pathlib import Path
import json

from mlperf_bnas import pipeline


def add_arguments(p: argparse.ArgumentParser) -> None:
    pipeline.add_common_arguments(p)
    p.add_argument("--precision", choices=["int8", "fp32", "all"], default="all",
                   help="which model(s) to build (default: both)")


def run(args: argparse.Namespace) -> int:
    cfg, paths = pipeline.config_from_args(args)
    precisions = ["int8", "fp32"] if args.precision == "all" else [args.precision]
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
