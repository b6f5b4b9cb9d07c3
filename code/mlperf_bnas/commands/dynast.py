"""``dynast``: DyNAS-T's command line, on this project's BootstrapNAS super-networks.

DyNAS-T (IntelLabs/DyNAS-T 1.6.0) is "not under active management"; its users keep their
command lines. ``dynast`` takes DyNAS-T's flags and metric names verbatim (``--supernet
--optimization_metrics accuracy_top1 macs --measurements ... --search_tactic linas
--search_algo nsga2 --num_evals --population --seed --test_fraction --dataset_path
--results_path --batch_size --eval_batch_size --distributed --dist_timeout``), DyNAS-T's
defaults, and writes ``--results_path`` in DyNAS-T's results CSV layout. It runs the same
search as ``mlperf-bnas nas search`` (``nas/search/plan.py``), so it also writes that
command's outputs (best sub-network, front, ``nas_record.json``) beside the CSV.

``--supernet`` takes this project's super-network names (``resnet50``, ``digits_resnet``,
...) or a checkpoint; DyNAS-T's own names get one line saying they are not shipped.
Distributed search as DyNAS-T documents it: ``mpirun -np N dynast --distributed ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mlperf_bnas.cli import run_command


def build_parser() -> argparse.ArgumentParser:
    from mlperf_bnas.commands.nas import search_flags

    parser = argparse.ArgumentParser(
        prog="dynast", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="DyNAS-T's sub-network search command line on this project's BootstrapNAS super-networks")
    search_flags(parser, dynast=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from mlperf_bnas.commands.nas import search_request
    from mlperf_bnas.nas.search.plan import search

    # Exit statuses, SIGTERM and the one-line errors as every mlperf-bnas command has them.
    return run_command(lambda: search(search_request(args, dynast=True, argv=argv)), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
