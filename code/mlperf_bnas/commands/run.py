"""``mlperf-bnas run``: one LoadGen test (scenario x mode) in this process, logs published atomically."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from mlperf_bnas import outdir, pipeline
from mlperf_bnas.commands.arguments import (
    add_common_arguments, add_mode_argument, add_precision_argument, add_scenario_argument, run_config_from_args,
)
from mlperf_bnas.enums import Mode
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen import completeness
from mlperf_bnas.loadgen.guard import WATCHDOG_FACTOR, WATCHDOG_FLOOR_S
from mlperf_bnas.loadgen.runner import RunRequest, load_settings, run_test

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    add_scenario_argument(p)
    add_mode_argument(p)
    p.add_argument("--user-conf", required=True, metavar="FILE", help="LoadGen user.conf")
    add_precision_argument(p)
    p.add_argument("--model-path", default=None, metavar="PATH",
                   help="run this built model instead of build/<benchmark>/model/<precision>")
    p.add_argument("--log-dir", default=None, metavar="DIR",
                   help="write the logs here instead of results/... (tuning trials)")
    p.add_argument("--trace", action="store_true",
                   help="also write LoadGen's per-query trace (mlperf_log_trace.json, ~1.3 KB per query), "
                        "from which the report draws a true latency histogram; never packaged")
    p.add_argument("--watchdog-floor", type=float, default=WATCHDOG_FLOOR_S, metavar="SECONDS",
                   help="fail the run when samples wait this long without any answer and also "
                        f"{WATCHDOG_FACTOR:g}x longer than the slowest wait seen so far (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    user_conf = Path(args.user_conf)
    cfg, paths = run_config_from_args(args, args.scenario)
    log_dir = Path(args.log_dir).resolve() if args.log_dir else paths.results_dir(args.scenario, args.mode)
    if args.watchdog_floor <= 0:
        raise UserError(f"--watchdog-floor {args.watchdog_floor:g}: must be a positive number of seconds")
    request = RunRequest(loadgen_model=cfg.loadgen_model, scenario=args.scenario, mode=args.mode,
                         user_conf=user_conf, log_dir=log_dir, archive_dir=paths.archive_dir, trace=args.trace,
                         watchdog_floor_s=args.watchdog_floor)
    # Settings first: a user.conf LoadGen rejects fails before minutes of loading; so does an
    # output folder the logs cannot be written to.
    settings = load_settings(request)
    request = dataclasses.replace(request, response_bytes=pipeline.model_entry(cfg).max_response_bytes)
    for folder, what in ((log_dir.parent, "--log-dir" if args.log_dir else "OUTPUT_DIR (--output-dir)"),
                         (paths.archive_dir, "OUTPUT_DIR (--output-dir)")):
        outdir.require_writable(folder, what)
    outdir.require_free_space(log_dir.parent, completeness.estimate_bytes("performance", 0, 0),
                              "a run's logs")
    sut, qsl, backend = pipeline.open_sut(cfg, args.scenario, paths, args.precision, args.data_dir,
                                          args.checkpoint, model_path=args.model_path)
    try:
        log.info("backend: %s", backend.describe())
        summary = run_test(request, sut, qsl, settings)
    finally:
        backend.close()
    result = summary.get("Result is", "done" if args.mode == Mode.ACCURACY else "?")
    key = completeness.summary_metric(summary, args.scenario)
    metric = f"{key}: {summary[key]}" if key and key in summary else ""
    early = detail = None
    if args.mode == "performance" and (log_dir / "mlperf_log_detail.txt").is_file():
        from mlperf_bnas.loadgen.logs import RESULT_FIELD, read_detail_log

        detail = read_detail_log(log_dir / "mlperf_log_detail.txt")    # read once: metric, explain, sizing
        if args.scenario in ("SingleStream", "MultiStream"):
            early = detail.get(RESULT_FIELD[args.scenario])
    if isinstance(early, (int, float)):
        metric += f" (early-stopping estimate, the reported result: {early / 1e6:.3f} ms)"
    print(f"{cfg.loadgen_model} {args.scenario} {args.mode}: {result} {metric} -> {log_dir}")
    if args.mode == "performance" and result != "VALID":
        from mlperf_bnas.loadgen.explain import explain
        from mlperf_bnas.tune import sizing

        failures = explain(log_dir, args.scenario, cfg.loadgen_model, cfg.benchmark_dir.name, detail=detail)
        for failure in failures:
            print(f"  INVALID: {failure.line()}")
        why = sizing.faster_than_sized(user_conf, detail, args.scenario, [f.condition for f in failures])
        if why:
            # The run scripts re-size and run again (tools/env.sh run_performance); said here for a
            # direct caller too.
            print(f"  {why}. Fix: re-size on this machine (mlperf-bnas size --force, what the run scripts do "
                  f"on exit status {sizing.EXIT_RESIZE}) and run again")
            return sizing.EXIT_RESIZE
    return 0


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
