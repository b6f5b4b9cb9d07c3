"""``mlperf-bnas build``: export the model, quantize it (NNCF INT8) and build it for the backend."""

from __future__ import annotations

import argparse
import json

from mlperf_bnas import pipeline
from mlperf_bnas.commands.arguments import add_common_arguments, add_precision_argument, config_from_args
from mlperf_bnas.enums import Precision, values
from mlperf_bnas.paths import BUILD_RECORD


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    add_precision_argument(p, extra=("all",), default="all", help="which model(s) to build (default: all)")


def run(args: argparse.Namespace) -> int:
    cfg, paths = config_from_args(args)
    precisions = values(Precision) if args.precision == "all" else [args.precision]
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
