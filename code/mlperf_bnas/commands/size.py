"""``mlperf-bnas size``: LoadGen settings sized on this machine, before a run (``mlperf_bnas.tune.sizing``).

Two uses, both from the run scripts (``tools/env.sh``'s ``prepare_conf``):

* the embedded default (``USER_CONF`` unset, synthetic data): ``--from user.smoke.conf``
  creates or refreshes the generated conf ``--user-conf`` names (``--print-path`` prints
  where it lives), measuring this machine when the conf is missing or stale;
* a conf the user set: ``--check`` warns before the run when its target_qps is out of this
  machine's reach (with the measured figure), and stops on a conf generated on another machine.

``--scenario S`` names the run about to start: when S cannot be run on this machine at any
load (its latency bound is below one query's latency), one line says so and the command
exits with status 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlperf_bnas.commands.arguments import add_common_arguments, add_scenario_argument, config_from_args, \
    run_config_from_args
from mlperf_bnas.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--user-conf", metavar="FILE", help="the conf the run will use (generated with --from)")
    p.add_argument("--from", dest="base", metavar="FILE",
                   help="generate --user-conf from this base conf (the benchmark's user.smoke.conf) when it is "
                        "missing or stale")
    add_scenario_argument(p, required=False, help="the run about to start")
    p.add_argument("--check", action="store_true",
                   help="a conf the user wrote: warn when its target_qps is out of this machine's reach")
    p.add_argument("--force", action="store_true", help="re-size even when the generated conf is current")
    p.add_argument("--print-path", action="store_true",
                   help="print where the generated conf of this benchmark and system lives, and exit")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.tune import sizing

    cfg, paths = config_from_args(args)
    if args.print_path:
        print(paths.sized_conf)
        return 0
    if not args.user_conf:
        raise UserError("--user-conf is required (the conf the run will use)")
    conf = Path(args.user_conf)
    if args.base:
        base = Path(args.base)
        if not base.is_file():
            raise UserError(f"{base}: base conf not found; pass the benchmark's user.smoke.conf")
        if conf.resolve() != paths.sized_conf.resolve():
            raise UserError(f"--user-conf {conf}: with --from, the generated conf is {paths.sized_conf} "
                            "(mlperf-bnas size --print-path)")
        cfgs = {s: config_from_args(args, s)[0] for s in sizing.SIZED_SCENARIOS}
        req = sizing.SizeRequest(cfgs, paths, base, args.data_dir, args.checkpoint, args.force)
        path, record, sized_now = sizing.ensure_sized(req)
        if not sized_now:
            print(f"size: {path} is current (sized {record['sized_at']} on this machine)")
        line = sizing.infeasible(record, args.scenario) if args.scenario else None
        if line:
            print(line, file=sys.stderr)
            return sizing.EXIT_INFEASIBLE
        return 0
    if not conf.is_file():
        raise UserError(f"{conf}: user.conf not found; set USER_CONF to an existing file")
    sizing.check_conf_machine(conf, cfg.benchmark_dir)
    if sizing.is_sized_conf(conf):
        # A conf `size` generated (on this machine: checked above), passed on as USER_CONF.
        record = sizing.read_record(conf) or {}
        line = sizing.infeasible(record, args.scenario) if args.scenario else None
        if line:
            print(line, file=sys.stderr)
            return sizing.EXIT_INFEASIBLE
        return 0
    if not (args.check and args.scenario):
        return 0
    run_cfg, _ = run_config_from_args(args, args.scenario)
    measured = sizing.cached_measurement(paths, {args.scenario: run_cfg}, args.data_dir, args.checkpoint,
                                         {"Server", "SingleStream", "MultiStream"} & {args.scenario})
    warnings, line = sizing.check_user_conf(conf, run_cfg, args.scenario, measured[args.scenario],
                                            sizing.Machine.this())
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if line:
        print(line, file=sys.stderr)
        return sizing.EXIT_INFEASIBLE
    if not warnings:
        m = measured[args.scenario]
        print(f"size: {conf.name} {args.scenario} target_qps is within this machine's reach "
              f"({m.samples_per_s:.4g} samples/s measured)")
    return 0


def output_dir(args: argparse.Namespace) -> Path | None:
    """The folder this command writes into (the command line locks it: one writer at a time);
    ``--print-path`` only reads."""
    return None if args.print_path else Path(args.output_dir)
