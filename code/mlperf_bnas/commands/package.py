"""``mlperf-bnas package``: turn finished runs into an MLPerf v5.1 open submission tree.

``mlperf-bnas package --default-system-name`` prints a system name derived from
the machine; ``tools/env.sh`` calls it for every run, so this path imports
nothing heavier than the system probe.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlperf_bnas.enums import Precision, values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--default-system-name", action="store_true",
                   help="print the default system name for this machine and exit")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="folder holding results/, compliance/ and build/ (default: $OUTPUT_DIR or the repository root); "
                        "the submission is written to <output-dir>/submission/open/<submitter>/")
    p.add_argument("--system", default=None, help="system name (default: $SYSTEM or the machine's default name)")
    p.add_argument("--submitter", default=None, help="submitter (default: 'submitter' in the overrides file)")
    p.add_argument("--overrides", type=Path, default=None,
                   help="system overrides YAML (default: <repository>/systems/overrides.yaml)")
    p.add_argument("--benchmark", action="append", default=[], metavar="DIR",
                   help="benchmark directory to package (repeatable; default: every code/*/config.yaml with results)")
    p.add_argument("--precision", default=Precision.INT8.value, choices=values(Precision),
                   help="precision of the model the runs used (its build record is documented; default: int8)")


def run(args: argparse.Namespace) -> int:
    if args.default_system_name:
        from mlperf_bnas.submission.system import default_system_name

        print(default_system_name())
        return 0
    from mlperf_bnas.submission.packager import PackageRequest, package_submission

    summary = package_submission(PackageRequest.resolve(
        output_dir=args.output_dir or (Path(os.environ["OUTPUT_DIR"]) if os.environ.get("OUTPUT_DIR") else None),
        system=args.system or os.environ.get("SYSTEM") or None,
        submitter=args.submitter,
        overrides=args.overrides,
        benchmarks=[Path(b) for b in args.benchmark],
        precision=args.precision,
    ))
    print(summary)
    return 0


def output_dir(args: argparse.Namespace) -> Path | None:
    """The folder packaging writes into (locked while it runs); None for --default-system-name."""
    if args.default_system_name:
        return None
    from mlperf_bnas.paths import REPO

    return args.output_dir or (Path(os.environ["OUTPUT_DIR"]) if os.environ.get("OUTPUT_DIR") else REPO)
