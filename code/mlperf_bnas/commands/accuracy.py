"""``mlperf-bnas accuracy``: ``mlperf_log_accuracy.json`` -> ``accuracy.txt`` (MLPerf's format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlperf_bnas import pipeline
from mlperf_bnas.accuracy import ACCURACY
from mlperf_bnas.commands.arguments import add_common_arguments, add_scenario_argument, config_from_args
from mlperf_bnas.enums import Mode
from mlperf_bnas.fileio import write_atomic


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    add_scenario_argument(p)
    p.add_argument("--log-dir", default=None, metavar="DIR",
                   help="folder holding mlperf_log_accuracy.json (default: results/.../<Scenario>/accuracy)")


def run(args: argparse.Namespace) -> int:
    cfg, paths = config_from_args(args, args.scenario)
    log_dir = Path(args.log_dir).resolve() if args.log_dir else paths.results_dir(args.scenario, Mode.ACCURACY)
    scorer = ACCURACY.get(cfg.accuracy)
    dataset = pipeline.open_dataset(cfg, paths, args.data_dir, args.checkpoint, create=False)
    report = scorer(log_dir / "mlperf_log_accuracy.json", dataset)
    write_atomic(log_dir / "accuracy.txt", report.text)
    print(report.text, end="")
    return 0


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
