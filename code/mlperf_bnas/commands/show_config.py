"""``mlperf-bnas config show <benchmark-dir> [--scenario S] [--set k=v ...]``."""

from __future__ import annotations

import argparse

from mlperf_bnas.commands.arguments import add_scenario_argument
from mlperf_bnas.config import OPTION_SECTIONS, load_config, parse_set_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show"])
    p.add_argument("benchmark", help="benchmark directory, e.g. code/resnet50-openvino")
    add_scenario_argument(p, required=False)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.benchmark, args.scenario, parse_set_options(args.set))
    rows = []
    for key in ("benchmark", "loadgen_model", "model", "dataset", "backend", "accuracy", "postprocess"):
        rows.append((key, getattr(cfg, key), cfg.sources.get(key, "default")))
    for section in OPTION_SECTIONS:
        for sub, value in sorted(getattr(cfg, section).items()):
            rows.append((f"{section}.{sub}", value, cfg.sources.get(f"{section}.{sub}", "default")))
    width = max(len(r[0]) for r in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {value!s:<24}  ({source})")
    return 0
