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
    p.add_argument("--required-scenarios", action="store_true",
                   help="print the scenarios the overrides file's system_type requires for each --benchmark (one "
                        "line per benchmark, in run order: what run.sh runs) and exit")
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
    if args.required_scenarios:
        return _print_required_scenarios(args)
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


def _print_required_scenarios(args: argparse.Namespace) -> int:
    """One line per benchmark: the v5.1 scenarios its system type requires (rules.REQUIRED_SCENARIOS)."""
    from mlperf_bnas.config import load_config
    from mlperf_bnas.errors import UserError
    from mlperf_bnas.enums import Scenario
    from mlperf_bnas.paths import system_overrides
    from mlperf_bnas.submission.rules import MLPERF_MODEL, REQUIRED_SCENARIOS
    from mlperf_bnas.submission.system import load_overrides

    overrides = (args.overrides or system_overrides()).resolve()
    system_type = str(load_overrides(overrides).get("system_type", "")).strip()
    if system_type not in REQUIRED_SCENARIOS:
        raise UserError(f"{overrides}: system_type {system_type!r} is not one of {', '.join(REQUIRED_SCENARIOS)}; "
                        "set it (edge: SingleStream, MultiStream, Offline; datacenter: Server, Offline)")
    if not args.benchmark:
        raise UserError("--required-scenarios needs --benchmark DIR (repeatable)")
    for bench in args.benchmark:
        cfg = load_config(bench)
        model = MLPERF_MODEL.get(cfg.loadgen_model, cfg.loadgen_model)
        required = REQUIRED_SCENARIOS[system_type].get(model)
        if not required:
            types = [t for t, table in REQUIRED_SCENARIOS.items() if model in table and "," not in t]
            raise UserError(f"{overrides}: system_type {system_type!r} has no {model} ({cfg.loadgen_model}) in the "
                            f"round's v5.1 scenario tables (the round's checker would reject its results); set system_type to "
                            f"{' or '.join(types)} (or datacenter,edge), or leave {bench} out (BENCHMARKS=...)")
        print(" ".join(s for s in Scenario if s in required))       # in run order
    return 0


def output_dir(args: argparse.Namespace) -> Path | None:
    """The folder packaging writes into (locked while it runs); None for --default-system-name."""
    if args.default_system_name or args.required_scenarios:
        return None
    from mlperf_bnas.paths import REPO

    return args.output_dir or (Path(os.environ["OUTPUT_DIR"]) if os.environ.get("OUTPUT_DIR") else REPO)
