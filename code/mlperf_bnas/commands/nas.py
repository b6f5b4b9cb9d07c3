"""``mlperf-bnas nas <action>``: BootstrapNAS super-network training, export and search.

The actions live in the ``nas`` subpackage: ``nas/train_cli.py`` (train, export, info,
demo) and ``nas/search_cli.py`` (search). Each provides ``ACTIONS = {name: (help,
add_arguments, run)}``.
"""

from __future__ import annotations

import argparse
import importlib

_MODULES = ("mlperf_bnas.nas.train.steps", "mlperf_bnas.nas.search.plan")


def _actions() -> dict:
    actions = {}
    for module in _MODULES:
        actions.update(importlib.import_module(module).ACTIONS)
    return actions


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="nas_action", metavar="ACTION", required=True)
    for name, (help_text, add_args, _run) in _actions().items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    return int(_actions()[args.nas_action][2](args) or 0)
