"""``mlperf-bnas nas <action>``: BootstrapNAS super-network training, export and search.

The flags live here; the steps they run are library functions of the ``nas`` package:
``nas/train/steps.py`` (train, export, info, demo) and ``nas/search/plan.py`` (search).
Parsing imports neither torch nor the search: only the chosen action does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from mlperf_bnas.nas.search.settings import (
    ALGORITHM_OBJECTIVES, LATENCY_RUNTIMES, METRIC_CHOICES, PRECISIONS, PREDICTORS, TACTICS,
)


# -- train ----------------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="BootstrapNAS config (.json/.yaml, NNCF format)")
    p.add_argument("--output-dir", required=True, type=Path, help="folder for checkpoints and the training log")
    p.add_argument("--pretrained", help="pre-trained weights (state dict file), or 'torchvision' for resnet50")
    p.add_argument("--data-dir", help="dataset root for dataset 'imagefolder'")
    p.add_argument("--resume", action="store_true", help="continue from <output-dir>/supernet_last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _train(args: argparse.Namespace) -> int:
    from mlperf_bnas.nas.train.steps import train

    summary = train(args.config, args.output_dir, args.pretrained, args.data_dir, args.resume, not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


# -- export ---------------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, type=Path, help="trained super-network checkpoint (supernet.pt)")
    p.add_argument("--subnet", default="min", help="max, min, a JSON config, or a .json file (a search result row)")
    p.add_argument("--output", required=True, type=Path, help="sub-network checkpoint to write (.pt)")
    p.add_argument("--bn-samples", type=int, default=0,
                   help="re-calibrate BN statistics on this many training samples first (digits dataset only)")


def _export(args: argparse.Namespace) -> int:
    from mlperf_bnas.nas.train.steps import export_subnet

    print(json.dumps(export_subnet(args.supernet, args.subnet, args.output, args.bn_samples)))
    return 0


# -- info -----------------------------------------------------------------------------------
def _info_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--supernet", type=Path, help="a super-network checkpoint")
    src.add_argument("--config", type=Path, help="a BootstrapNAS config: describe the super-network it generates")
    p.add_argument("--nodes", action="store_true", help="also list the traced graph's node names")


def _info(args: argparse.Namespace) -> int:
    from mlperf_bnas.nas.train.steps import describe

    print(json.dumps(describe(args.supernet, args.config, args.nodes), indent=2))
    return 0


# -- demo -----------------------------------------------------------------------------------
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, default=Path("."), help="OUTPUT_DIR (results under build/bootstrapnas/digits)")
    p.add_argument("--config", type=Path, default=None,
                   help="training config (default: code/bootstrapnas/configs/digits_progressive_shrinking.json)")
    p.add_argument("--pretrain-epochs", type=int, default=8, help="epochs of the pre-trained model")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo training")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _demo(args: argparse.Namespace) -> int:
    from mlperf_bnas.nas.train.steps import DEMO_CONFIG, run_demo

    summary = run_demo(args.output_dir, args.config or DEMO_CONFIG, args.pretrain_epochs, args.resume,
                       not args.no_progress)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "config"} for k, v in summary["subnets"].items()},
                     indent=2))
    return 0


# -- search ----------------------------------------------------------------------------------
def search_flags(p: argparse.ArgumentParser, dynast: bool = False) -> None:
    """The search's flags: DyNAS-T's (``--supernet --optimization_metrics --search_tactic ...``) and
    this project's, each also with dashes. ``dynast``: DyNAS-T's own set as its ``dynast`` took
    them (``--results_path`` required, ``--batch_size``, ``--device`` ...); the shared ones keep
    one meaning in both commands."""
    def flag(name: str, *short: str, **kw: Any) -> None:
        names = list(short) + [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        p.add_argument(*names, **kw)

    flag("supernet", required=not dynast, default=None,
         help="a super-network checkpoint (supernet.pt), or a name: resnet50, digits_resnet (the demo), ... "
              "(checkpoint: --supernet_ckpt_path or $OUTPUT_DIR/build/bootstrapnas/<name>/supernet.pt)")
    flag("supernet_ckpt_path", type=Path, help="the checkpoint of the super-network named by --supernet")
    flag("optimization_metrics", nargs="+", choices=METRIC_CHOICES,
         help="1, 2 or 3 objectives (accuracy_top1 = accuracy)" + (" (default accuracy_top1 macs)" if dynast
                                                                   else " (default accuracy macs)"))
    flag("measurements", nargs="+", choices=METRIC_CHOICES, help="also measured and written to the CSV")
    flag("search_tactic", choices=TACTICS, help="default " + ("linas" if dynast else "evolutionary"))
    flag("search_algo", choices=list(ALGORITHM_OBJECTIVES), help="default nsga2 (ga/cmaes: 1 objective; "
         "nsga2/age/rnsga2: 2; unsga3/ctaea/moead: 3)")
    flag("num_evals", type=int, help="full sub-network evaluations (rounded down to whole populations)")
    flag("population", type=int)
    flag("seed", type=int)
    flag("test_fraction", type=float, help="fraction of the validation set used for accuracy")
    flag("dataset_path", type=Path, help="validation data for accuracy (ResNet-50: ImageNet val folder)")
    flag("distributed", action="store_true",
         help="spread evaluations over torch.distributed (gloo) workers (under mpirun/torchrun: the launcher's)")
    if dynast:
        flag("results_path", required=True, type=Path, help="the results CSV, in DyNAS-T's layout")
        flag("batch_size", type=int, default=None, help="latency batch size (default 128, DyNAS-T's)")
        flag("eval_batch_size", type=int, help="batch size of BN re-calibration and accuracy (default: --batch_size)")
        flag("device", "-d", default="cpu", help="measurements run on the CPU (cpu only)")
        flag("dataloader_workers", type=int, default=None,
             help="accepted; data is read by the measuring process itself here")
        flag("verbose", "-v", action="store_true", help="debug logging")
        flag("mp_calibration_samples", type=int, default=None,
             help="DyNAS-T's INC mixed-precision search: not supported")
        flag("local_rank", type=int, default=None, help="set by torch.distributed.launch; ranks are read from the "
                                                        "environment")
        flag("dist_timeout", type=int, default=3600, help="seconds a rank waits for the others (DyNAS-T's 3600)")
        flag("backend", choices=["gloo"], default="gloo")
    else:
        flag("results_path", type=Path, help="results CSV (default <output-dir>/search_results.csv)")
        flag("eval_batch_size", type=int, help="batch size of BN re-calibration and accuracy")
    flag("config", type=Path, help="NAS config (JSON/YAML) whose bootstrapNAS.search section sets defaults")
    flag("model", help="base model of the super-network (default: the name stored in the checkpoint)")
    flag("ref_acc", type=float, help="reference top-1 (%%); default: the maximum sub-network's")
    flag("acc_delta", type=float, help="best = lowest cost with accuracy >= ref_acc - acc_delta (default 1)")
    flag("num_bn_samples", type=int, help="BN re-calibration samples per accuracy measurement")
    flag("linas_inner_evals", type=int, help="LINAS: predictor evaluations per inner evolutionary run")
    flag("predictor", choices=PREDICTORS, help="LINAS predictor (default ridge)")
    flag("latency_runtime", choices=LATENCY_RUNTIMES, help="default: the base model's benchmark runtime")
    flag("latency_precision", choices=PRECISIONS)
    if not dynast:
        flag("latency_batch_size", type=int)
    flag("latency_iterations", type=int)
    flag("latency_warmup", type=int)
    flag("output_dir", type=Path, help="where the outputs go (default " + ("the --results_path folder)" if dynast
                                                                          else "$OUTPUT_DIR or the current folder)"))
    flag("resume", action="store_true", help="continue the search recorded in the results")
    flag("nproc", type=int, default=None, help="with --distributed outside a launcher: start this many local processes")


def search_request(args: argparse.Namespace, dynast: bool = False, argv: list[str] | None = None):
    """The ``SearchRequest`` of either command's parsed flags (``argv``: the command line, for the record)."""
    from mlperf_bnas.errors import UserError
    from mlperf_bnas.nas.search.dynast_compat import DYNAST_DEFAULTS
    from mlperf_bnas.nas.search.plan import SearchRequest

    latency = {"runtime": args.latency_runtime, "precision": args.latency_precision,
               "batch_size": args.batch_size if dynast else args.latency_batch_size,
               "iterations": args.latency_iterations, "warmup": args.latency_warmup}
    settings = {"optimization_metrics": args.optimization_metrics, "measurements": args.measurements,
                "tactic": args.search_tactic, "algorithm": args.search_algo, "num_evals": args.num_evals,
                "population": args.population, "seed": args.seed, "ref_acc": args.ref_acc,
                "acc_delta": args.acc_delta, "num_bn_samples": args.num_bn_samples,
                "test_fraction": args.test_fraction, "linas_inner_evals": args.linas_inner_evals,
                "predictor": args.predictor, "eval_batch_size": args.eval_batch_size, "latency": latency}
    if not dynast:
        return SearchRequest(supernet=args.supernet, supernet_ckpt_path=args.supernet_ckpt_path, config=args.config,
                             model=args.model, settings=settings, dataset_path=args.dataset_path,
                             results_path=args.results_path, output_dir=args.output_dir, resume=args.resume,
                             distributed=args.distributed, nproc=args.nproc,
                             command=" ".join(["mlperf-bnas", *sys.argv[1:]]))
    if args.supernet is None:
        raise UserError("--supernet: name the super-network (resnet50, digits_resnet, ...) or give a checkpoint; "
                        "DyNAS-T's default ofa_mbv3_d234_e346_k357_w1.0 is not shipped here")
    if args.device != "cpu":
        raise UserError(f"--device {args.device}: not supported: measurements run on the CPU the benchmark "
                        "targets (accuracy on the CPU, latency on the benchmark's runtime)")
    if args.mp_calibration_samples is not None:
        raise UserError("--mp_calibration_samples: not supported: DyNAS-T's INC mixed-precision super-networks "
                        "are not shipped; INT8 is `mlperf-bnas build`'s step")
    if args.dataloader_workers is not None:
        logging.getLogger(__name__).info("--dataloader_workers %d: data is read by the measuring process itself",
                                         args.dataloader_workers)
    if settings["eval_batch_size"] is None:   # DyNAS-T: eval_batch_size defaults to batch_size
        settings["eval_batch_size"] = args.batch_size or DYNAST_DEFAULTS["latency"]["batch_size"]
    results = Path(args.results_path)
    return SearchRequest(supernet=args.supernet, supernet_ckpt_path=args.supernet_ckpt_path, config=args.config,
                         model=args.model, settings=settings, defaults=dict(DYNAST_DEFAULTS),
                         stored_config_defaults=False, dataset_path=args.dataset_path,
                         dynast_results=results, output_dir=args.output_dir or results.resolve().parent,
                         resume=args.resume, distributed=args.distributed, nproc=args.nproc,
                         dist_timeout_s=float(args.dist_timeout), tool="dynast",
                         command=" ".join(["dynast", *(sys.argv[1:] if argv is None else argv)]))


def _search(args: argparse.Namespace) -> int:
    from mlperf_bnas.nas.search.plan import search

    return search(search_request(args))


#: action -> (help, add_arguments, run)
ACTIONS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("progressive-shrinking training of a BootstrapNAS super-network", _train_args, _train),
    "export": ("export a sub-network of a trained super-network as a checkpoint", _export_args, _export),
    "info": ("describe the super-network generated for a model", _info_args, _info),
    "demo": ("embedded demo: digits CNN -> super-network -> progressive shrinking -> sub-networks", _demo_args, _demo),
    "search": ("search the super-network for the best sub-networks (DyNAS-T-style; NSGA-II, LINAS, ...)",
               search_flags, _search),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="nas_action", metavar="ACTION", required=True)
    for name, (help_text, add_args, _run) in ACTIONS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    return int(ACTIONS[args.nas_action][2](args) or 0)
