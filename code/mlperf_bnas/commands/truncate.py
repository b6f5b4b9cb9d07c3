"""``mlperf-bnas truncate``: truncate accuracy logs and record their hash (MLPerf rules).

Two ways, as MLPerf's ``truncate_accuracy_log.py``:

* ``--input SUBMISSION --output NEW``: copy the submission tree to NEW with its accuracy logs
  truncated (read from SUBMISSION, which keeps the full logs: they are never copied);
* ``--input SUBMISSION --backup DIR``: truncate in place, the full logs first copied to DIR.

``mlperf-bnas package`` already does this while packaging; this command is for
trees assembled by hand.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mlperf_bnas.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=Path, required=True, help="submission root (the folder holding open/)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="write a truncated copy of the tree here (must not exist)")
    where.add_argument("--backup", type=Path, help="truncate in place; keep the full logs here")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.submission.truncation import truncate_tree, truncated_copy

    src = args.input
    if not src.is_dir():
        raise UserError(f"{src}: not a folder; pass the submission root (the folder holding open/)")
    if args.output:
        if args.output.exists():
            raise UserError(f"{args.output}: already exists; choose a new folder for the truncated copy")
        tmp = args.output.with_name(f".{args.output.name}.partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        # The full logs stay in the original tree and are read from there: never copied.
        try:
            changed = [acc.relative_to(tmp.resolve()) for acc in truncated_copy(src, tmp.resolve())]
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tmp.rename(args.output)
        where = args.output
    else:
        changed = [acc.relative_to(src.resolve()) for acc in truncate_tree(src, args.backup)]
        where = src
    for acc in changed:
        print(f"truncated {acc}")
    print(f"{len(changed)} accuracy log(s) truncated under {where}"
          + (f"; full logs kept in {args.backup}" if args.backup else f"; full logs remain in {src}"))
    return 0
