"""``mlperf-bnas dataset``: open (or generate) the dataset and build its preprocessed cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlperf_bnas import pipeline
from mlperf_bnas.commands.arguments import add_common_arguments, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg, paths = config_from_args(args)
    dataset, cache = pipeline.prepare_dataset(cfg, paths, args.data_dir, args.checkpoint,
                                              progress=not args.no_progress)
    kind = "real" if args.data_dir else "synthetic"
    print(f"{cfg.dataset} ({kind}): {len(dataset)} images in {dataset.root}")
    print(f"preprocessed cache: {cache.cache_dir} (spec {cache.spec.key}, samples {cache.sample_shape} {cache.spec.dtype})")
    return 0


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
