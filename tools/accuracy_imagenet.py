#!/usr/bin/env python3
"""Drop-in for MLPerf's ``accuracy-imagenet.py``: same flags, same output line.

    tools/accuracy_imagenet.py --mlperf-accuracy-file mlperf_log_accuracy.json --imagenet-val-file val_map.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlperf_bnas.accuracy.top1 import DTYPES, top1
from mlperf_bnas.cli import run_command
from mlperf_bnas.data.imagenet import read_val_map
from mlperf_bnas.loadgen.accuracy_log import entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mlperf-accuracy-file", required=True, help="path to mlperf_log_accuracy.json")
    p.add_argument("--imagenet-val-file", required=True, help="path to imagenet val_map.txt")
    p.add_argument("--verbose", action="store_true", help="also print the number of duplicates")
    p.add_argument("--dtype", default="int32", choices=sorted(DTYPES), help="data type of the label")
    args = p.parse_args(argv)
    return run_command(lambda: _score(args))


def _score(args: argparse.Namespace) -> int:
    labels = [label for _, label in read_val_map(Path(args.imagenet_val_file))]
    result = top1(entries(Path(args.mlperf_accuracy_file)), labels, args.dtype, where=args.mlperf_accuracy_file)
    print(result.line())
    if args.verbose:
        print(f"found and ignored {result.duplicates} dupes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
