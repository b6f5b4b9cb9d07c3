"""Command-line plumbing shared by the pipeline commands (dataset, build, run, accuracy, compliance).

Flags become library arguments here and nowhere below ``commands/``: the pipeline takes a
resolved ``BenchmarkConfig`` and ``OutputPaths``. Every ``choices=`` list comes from
``enums``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from mlperf_bnas.config import BenchmarkConfig, load_config, parse_set_options
from mlperf_bnas.enums import Mode, Precision, Scenario, values
from mlperf_bnas.paths import OutputPaths

log = logging.getLogger(__name__)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--benchmark DIR --output-dir DIR --system NAME [--data-dir DIR] [--checkpoint FILE] [--set k=v]``."""
    p.add_argument("--benchmark", required=True, metavar="DIR", help="benchmark directory, e.g. code/resnet50-openvino")
    p.add_argument("--output-dir", default=".", metavar="DIR", help="root of results/, build/, compliance/ (default: .)")
    p.add_argument("--system", default="local_cpu", metavar="NAME", help="system name used in results/<system>/")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="real dataset folder (default: synthetic data)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model weights: state dict or exported NAS sub-network (default: seeded weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. backend_options.num_streams=2 (repeatable)")


def add_scenario_argument(p: argparse.ArgumentParser, required: bool = True, extra: tuple[str, ...] = (),
                          **kwargs: Any) -> None:
    """``--scenario`` with the scenarios of ``enums.Scenario`` (plus ``extra`` words such as "all")."""
    p.add_argument("--scenario", required=required, choices=[*values(Scenario), *extra], **kwargs)


def add_mode_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default=Mode.PERFORMANCE.value, choices=values(Mode))


def add_precision_argument(p: argparse.ArgumentParser, extra: tuple[str, ...] = (), **kwargs: Any) -> None:
    kwargs.setdefault("default", Precision.INT8.value)
    p.add_argument("--precision", choices=[*values(Precision), *extra], **kwargs)


def config_from_args(args: argparse.Namespace, scenario: str | None = None,
                     tuned: tuple[dict[str, Any], str] | None = None) -> tuple[BenchmarkConfig, OutputPaths]:
    """The benchmark's config for ``scenario``: config.yaml, then ``tuned`` = (backend options, their
    source) when the run uses a tuned conf, then ``--set`` (the command line always wins)."""
    sets = parse_set_options(args.set)
    cfg = load_config(args.benchmark, scenario)
    if tuned and tuned[0]:
        cfg = cfg.with_overrides({"backend_options": tuned[0]}, tuned[1])
    if sets:
        cfg = cfg.with_overrides(sets, "command line")
    return cfg, OutputPaths.of(cfg, args.output_dir, args.system)


def run_config_from_args(args: argparse.Namespace, scenario: str) -> tuple[BenchmarkConfig, OutputPaths]:
    """``config_from_args`` for a LoadGen run with ``args.user_conf``: a conf written by
    `mlperf-bnas tune` carries the backend settings its target_qps was measured with, and
    they apply (running that target_qps on other settings would be another system)."""
    from mlperf_bnas.loadgen.userconf import tuned_backend_options

    user_conf = Path(args.user_conf)
    tuned = tuned_backend_options(user_conf, scenario) if user_conf.is_file() else {}
    if tuned:
        log.info("backend options from the tuned conf %s: %s", user_conf, tuned)
    return config_from_args(args, scenario, (tuned, f"{user_conf} (tuned)"))
