"""``mlperf-bnas report [--input TREE] [--output-dir DIR] [--system NAME] [--out FILE]``.

One self-contained HTML page from a results tree (``$OUTPUT_DIR``) or a packaged
submission: per benchmark x scenario the result, validity, latency percentiles and
histogram, accuracy; the tuning trials; the NAS Pareto front; the system description.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlperf_bnas.paths import REPO, OutputRoot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", default=".", help="run output root (default: current directory)")
    p.add_argument("--input", help="results or submission tree to report on (default: --output-dir)")
    p.add_argument("--system", action="append", help="system(s) to include (default: every system found)")
    p.add_argument("--out", help="HTML file to write (default: <output-dir>/report/index.html)")
    p.add_argument("--tuning", action="append", default=[], help="extra tuning record (JSON) to include")
    p.add_argument("--nas", action="append", default=[], help="NAS results folder (pareto.csv...) to include")
    p.add_argument("--table", action="store_true", help="also print the results table on stdout")
    p.add_argument("--checker-json", type=Path, default=None,
                   help="findings of `mlperf-bnas check --json FILE`, for the table's checker column")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.report import collect, write_report

    output_dir = Path(args.output_dir)
    source = Path(args.input) if args.input else output_dir
    data = collect(source, args.system, [Path(p) for p in args.tuning], [Path(p) for p in args.nas], repo=REPO)
    out = Path(args.out) if args.out else OutputRoot(output_dir).report_file
    write_report(data, out)
    valid = sum(1 for r in data.results if r.performance and r.performance.valid)
    if args.table:
        from mlperf_bnas.report.table import results_table

        print(results_table(data, args.checker_json))
    print(f"report: {out} ({len(data.results)} benchmark x scenario result(s), {valid} VALID; "
          f"{len(data.tuning)} tuning record(s); {len(data.nas)} NAS search(es))")
    return 0
