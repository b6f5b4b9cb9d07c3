"""``mlperf-bnas``: one subcommand per pipeline step.

Entry points parse arguments and call library functions. Each subcommand lives
in ``mlperf_bnas/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``mlperf-bnas check`` never pays for importing torch or openvino.

A ``UserError`` (bad input the user can fix) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mlperf_bnas.errors import RunFailed, UserError

# name -> (module, help). Order is the pipeline order, shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("mlperf_bnas.commands.config", "show a benchmark's resolved configuration and where each value came from"),
    "dataset": ("mlperf_bnas.commands.dataset", "prepare a dataset (real or synthetic) and its preprocessed cache"),
    "build": ("mlperf_bnas.commands.build", "export, quantize (NNCF INT8) and build the model for a backend"),
    "size": ("mlperf_bnas.commands.size", "size LoadGen settings (target_qps) on this machine, or check a user.conf against it"),
    "run": ("mlperf_bnas.commands.run", "run one LoadGen test (scenario x mode) and publish its logs"),
    "accuracy": ("mlperf_bnas.commands.accuracy", "compute accuracy.txt from mlperf_log_accuracy.json"),
    "compliance": ("mlperf_bnas.commands.compliance", "run and verify an MLPerf compliance test (TEST01, TEST04)"),
    "tune": ("mlperf_bnas.commands.tune", "find the fastest backend settings and the highest valid Server QPS"),
    "package": ("mlperf_bnas.commands.package", "turn finished runs into an MLPerf v5.1 open submission tree"),
    "truncate": ("mlperf_bnas.commands.truncate", "truncate accuracy logs and write their hash (MLPerf rules)"),
    "check": ("mlperf_bnas.commands.check", "check a submission tree against the v5.1 open rules"),
    "report": ("mlperf_bnas.commands.report", "write an HTML report of results, tuning and NAS"),
    "nas": ("mlperf_bnas.commands.nas", "BootstrapNAS: super-network, training, search, export"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlperf-bnas", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only in (None, name):
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only import the module of the command being run.
    only = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only if only else "")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        if args.verbose or os.environ.get("MLPERF_BNAS_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"error: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
