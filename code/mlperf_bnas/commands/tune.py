"""``mlperf-bnas tune --benchmark DIR [--scenario Offline|Server|all] [--confirm] ...``.

Offline: tries every backend setting in ``config.yaml``'s ``tuning`` grid with short
LoadGen runs and keeps the fastest. Server: bisects for the highest target QPS whose
run is VALID at the latency bound. Writes ``<benchmark>/user.<system>.tuned.conf`` (+ .json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mlperf_bnas.config import parse_set_options
from mlperf_bnas.errors import UserError
from mlperf_bnas.tune.tuning_spec import SCENARIOS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", required=True, help="benchmark directory, e.g. code/resnet50-openvino")
    p.add_argument("--output-dir", default=".", help="output root (trial logs go under build/<benchmark>/tuning)")
    p.add_argument("--system", required=True, help="system name (systems/<system>.json)")
    p.add_argument("--user-conf", help="base user.conf (default: <benchmark>/user.conf)")
    p.add_argument("--data-dir", help="real dataset folder, passed on to every trial run")
    p.add_argument("--checkpoint", help="model checkpoint, passed on to every trial run")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all",
                   help="the scenario(s) to tune (default: all the tuner knows)")
    p.add_argument("--confirm", action="store_true",
                   help="after the search, run once at the base conf's full length (and step down if not VALID)")
    p.add_argument("--conf-out", help="tuned conf to write (default: <benchmark>/user.<system>.tuned.conf)")
    p.add_argument("--trial-duration-ms", type=int, help="override tuning.trial_duration_ms")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for the search and every trial; tuning.<key>=<yaml> "
                        "changes one key of the tuning section")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.tune.tuner import TuneRequest, tune

    bench = Path(args.benchmark)
    user_conf = Path(args.user_conf) if args.user_conf else bench / "user.conf"
    if not user_conf.is_file():
        raise UserError(f"{user_conf}: user.conf not found; pass --user-conf or set USER_CONF")
    run_args: list[str] = []
    if args.data_dir:
        run_args += ["--data-dir", args.data_dir]
    if args.checkpoint:
        run_args += ["--checkpoint", args.checkpoint]
    # `--set tuning.<key>=<yaml>` changes one key of the tuning section (e.g. a grid); the
    # other --set values go to the configuration and to every trial run.
    spec_overrides: dict = {}
    config_sets = []
    for pair in args.set:
        key, _, raw = pair.partition("=")
        if key == "tuning":
            raise UserError(f"--set {pair!r}: set one key at a time, e.g. --set 'tuning.Offline="
                            "{backend_options: {batch_size: [1, 4]}}' or --set tuning.trial_duration_ms=2000")
        if key.startswith("tuning."):
            try:
                spec_overrides[key.split(".", 1)[1]] = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise UserError(f"--set {pair!r}: the value is not valid YAML ({exc})") from None
        else:
            config_sets.append(pair)
    if args.trial_duration_ms is not None:
        spec_overrides["trial_duration_ms"] = args.trial_duration_ms
    scenarios = tuple(SCENARIOS) if args.scenario == "all" else (args.scenario,)
    tune(TuneRequest(benchmark_dir=bench, output_dir=Path(args.output_dir), system=args.system,
                     user_conf=user_conf, scenarios=scenarios, overrides=parse_set_options(config_sets),
                     set_args=config_sets, run_args=run_args,
                     conf_out=Path(args.conf_out) if args.conf_out else None, confirm=args.confirm,
                     spec_overrides=spec_overrides))
    return 0


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
