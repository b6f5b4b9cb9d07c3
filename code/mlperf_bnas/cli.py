"""``mlperf-bnas``: one subcommand per pipeline step.

Entry points parse arguments and call library functions. Each subcommand lives
in ``mlperf_bnas/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``mlperf-bnas check`` never pays for importing torch or openvino.

A ``UserError`` (bad input the user can fix) prints one line and exits 2; a
failed run exits 1; Ctrl-C exits 130 and SIGTERM 143, after the command's
cleanup (temporary files removed, partial run logs moved to the archive).
``run_command`` alone does that, for every console command (``dynast`` and the drop-in tools too).

A command that writes into an output folder (its module has ``output_dir(args)``)
holds that folder's lock while it runs (``outdir.OutputLock``: one writer per
folder), after the folder was found writable, and reports what interrupted
commands left there (removed with ``--clean-partial``).
"""

from __future__ import annotations

import argparse
import importlib
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from mlperf_bnas.errors import Interrupted, RunFailed, UserError

# name -> (module, help). Order is the pipeline order, shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("mlperf_bnas.commands.show_config", "show a benchmark's resolved configuration and where each value came from"),
    "download": ("mlperf_bnas.commands.download", "download a real dataset from MLPerf's sources (needs internet)"),
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
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            if hasattr(mod, "output_dir"):
                p.add_argument("--clean-partial", action="store_true",
                               help="remove the partial folders interrupted commands left in the output folder "
                                    "(they are reported either way)")
    return parser


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def _output_folder(module, args: argparse.Namespace):
    """Hold the output folder's lock for a writing command; report (or remove) leftovers."""
    target = module.output_dir(args) if hasattr(module, "output_dir") else None
    if target is None:
        yield
        return
    from mlperf_bnas import outdir

    folder = outdir.check_output_dir(target)
    what = " ".join([args.command] + [f"--{k} {getattr(args, k)}" for k in ("scenario", "mode")
                                      if getattr(args, k, None)])
    with outdir.OutputLock(folder, what) as lock:
        if not lock.inherited:
            outdir.report_or_remove(folder, remove=bool(getattr(args, "clean_partial", False)))
        yield


def run_command(body: Callable[[], int | None], verbose: bool = False) -> int:
    """Run a console command's ``body`` and turn how it ended into the exit status, the one place
    that does (``mlperf-bnas``, ``dynast`` and the tools that take MLPerf's command lines end
    here): SIGTERM raises ``Interrupted`` while the body runs (in the main thread), so its
    cleanup runs as on Ctrl-C; a ``UserError`` prints one line and gives 2 (its traceback with
    ``verbose`` or ``MLPERF_BNAS_TRACEBACK``), a failed run 1, ``Interrupted`` 128 + the
    signal, Ctrl-C 130."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return int(body() or 0)
    except UserError as exc:
        if verbose or os.environ.get("MLPERF_BNAS_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"error: run failed: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    entry_point = argv is None
    argv = sys.argv[1:] if argv is None else argv
    # Only import the module of the command being run.
    only = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only if only else "")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # torchao 0.18 registers an Enum with torch's pytree on import, which torch 2.14 answers with
    # a deprecation warning in every RetinaNet step's log; nothing a user can act on.
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])

    def body() -> int:
        # engine: ipex runs in its own environment (torch 2.8): re-run there when needed.
        from mlperf_bnas.commands import engine_env
        rc = engine_env.run_in_engine_env(args.command, args, argv, replace_process=entry_point)
        if rc is not None:
            return rc
        # backend_options.allocator / openmp_env: set before the process starts, so re-run with them.
        from mlperf_bnas.commands import allocator_env
        rc = allocator_env.run_with_allocator(args.command, args, argv, replace_process=entry_point)
        if rc is not None:
            return rc
        with _output_folder(module, args):
            return int(module.run(args) or 0)

    return run_command(body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
