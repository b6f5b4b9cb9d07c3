"""``mlperf-bnas download openimages validation|calibration --dataset-dir DIR``: a real dataset, for
users with internet (MLPerf's own sources; ``data/openimages_download.py``). Runs never download."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=["openimages"], help="the dataset (RetinaNet's MLPerf OpenImages subset)")
    p.add_argument("split", choices=["validation", "calibration"])
    p.add_argument("--dataset-dir", required=True, type=Path, help="the dataset folder (DATA_DIR of the runs)")
    p.add_argument("--max-images", type=int, default=None, help="random subset (MLPerf's seed 42), validation only")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=10, help="parallel image downloads")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.data import openimages_download

    if args.split == "validation":
        openimages_download.validation(args.dataset_dir, args.max_images, args.seed, args.workers)
    else:
        openimages_download.calibration(args.dataset_dir, args.workers)
    return 0
