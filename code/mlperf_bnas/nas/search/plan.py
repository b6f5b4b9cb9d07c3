"""One sub-network search, shared by ``mlperf-bnas nas search`` and ``dynast`` (their flags: ``commands/``).

Flags follow DyNAS-T (``--supernet --optimization_metrics --measurements --search_tactic
--search_algo --num_evals --population --seed --results_path --dataset_path --test_fraction
--distributed``); the NNCF ``bootstrapNAS.search`` section of ``--config`` (or, for ``nas
search``, of the config stored in the super-network checkpoint) supplies the rest. Command
line > config section > the tool's defaults (DyNAS-T's for ``dynast``) > SearchSettings'.

``--supernet`` is a checkpoint, or a super-network name of this project (``resnet50``,
``digits_resnet``/``digits`` (the demo), any other searchable model): the checkpoint is then
``--supernet_ckpt_path`` or ``$OUTPUT_DIR/build/bootstrapnas/<name>/supernet.pt``. DyNAS-T's
own names get one line saying they are not shipped (``dynast_compat``).

Writes into ``--output-dir`` (default ``$OUTPUT_DIR`` or the current folder):
``search_results.csv`` (every measured sub-network), ``pareto.csv``, ``pareto.png``,
``best_config.json``, ``best_subnet.pt`` (``export.save_subnet``) and ``nas_record.json``
beside it (what the submission's calibration notes quote), plus ``linas_predictors.csv``
for LINAS and ``latency_cache.json`` when latency is measured; ``dynast`` also writes its
``--results_path`` in DyNAS-T's CSV layout. Only rank 0 of a distributed search writes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint, read_mapping, sha256_file, write_atomic
from mlperf_bnas.nas.search.dynast_compat import DynastCsv, dynast_supernet_refusal
from mlperf_bnas.nas.search.settings import SearchSettings, build_settings, read_search_section
from mlperf_bnas.paths import OutputRoot, SearchOutputs

log = logging.getLogger(__name__)

RECORD_FORMAT = "mlperf-bnas-nas-record/1"


@dataclass(frozen=True)
class SearchRequest:
    """What ``mlperf-bnas nas search`` or ``dynast`` was asked (their flags: ``commands/``)."""

    supernet: str | Path                    # a checkpoint, or a super-network name (resolve_supernet)
    supernet_ckpt_path: Path | None = None  # the checkpoint of a named super-network (DyNAS-T's flag)
    config: Path | None = None              # NAS config whose bootstrapNAS.search section sets defaults
    model: str | None = None                # base model (default: the name stored in the checkpoint)
    #: Search settings given on the command line (``settings.build_settings``'s ``cli``): None = unset.
    settings: dict[str, Any] = field(default_factory=dict)
    #: The tool's own defaults below the config section (DyNAS-T's for ``dynast``).
    defaults: dict[str, Any] = field(default_factory=dict)
    #: Read the bootstrapNAS.search section of the config stored in the checkpoint when --config is unset.
    stored_config_defaults: bool = True
    dataset_path: Path | None = None
    results_path: Path | None = None
    #: ``dynast``'s --results_path: the results in DyNAS-T's CSV layout.
    dynast_results: Path | None = None
    output_dir: Path | None = None
    resume: bool = False
    distributed: bool = False
    nproc: int | None = None
    dist_timeout_s: float = 1800
    tool: str = "mlperf-bnas nas search"
    command: str | None = None              # the command line, for nas_record.json


#: Super-network name -> its folder under build/bootstrapnas/ when it differs (the demo's).
NAME_FOLDERS = {"digits_resnet": "digits"}
NAME_ALIASES = {"digits": "digits_resnet"}


def supernet_names() -> list[str]:
    """The super-network names ``--supernet`` takes: every base model the search can measure."""
    from mlperf_bnas.nas.search.targets import SEARCH_TARGETS

    return list(SEARCH_TARGETS.names())


def default_supernet_path(name: str) -> Path:
    """Where a named super-network is looked for: ``$OUTPUT_DIR/build/bootstrapnas/<name>/supernet.pt``."""
    root = OutputRoot(Path(os.environ.get("OUTPUT_DIR") or "."))
    return root.nas_dir / NAME_FOLDERS.get(name, name) / "supernet.pt"


def resolve_supernet(spec: str | Path, ckpt_path: Path | None) -> tuple[Path, str | None]:
    """(checkpoint, the name it was asked by or None) for ``--supernet spec [--supernet_ckpt_path P]``."""
    text = str(spec)
    names = supernet_names()
    name = NAME_ALIASES.get(text, text)
    if name in names:
        path = Path(ckpt_path) if ckpt_path is not None else default_supernet_path(name)
        if not path.is_file():
            how = ("run code/bootstrapnas/run_demo.sh" if name == "digits_resnet" else
                   f"train it with `mlperf-bnas nas train --config CFG --output-dir {path.parent}`")
            raise UserError(f"--supernet {text}: no trained super-network at {path}; {how}, or pass its "
                            "checkpoint with --supernet_ckpt_path")
        return path, name
    refusal = dynast_supernet_refusal(text, names)
    if refusal:
        raise UserError(refusal)
    from mlperf_bnas.models.entry import MODELS

    if text in MODELS and not Path(text).is_file():
        # A benchmark model without a search target (names come from SEARCH_TARGETS, so one
        # that gains a target is taken above).
        raise UserError(f"--supernet {text}: the {text} benchmark model has no BootstrapNAS search target in "
                        f"this version; search one of {', '.join(names)}, or pass a super-network checkpoint")
    if ckpt_path is not None:
        raise UserError(f"--supernet_ckpt_path needs a super-network name in --supernet ({', '.join(names)}); "
                        f"{text!r} is not one")
    path = Path(text)
    if path.is_file() or path.suffix in (".pt", ".pth"):
        return path, None
    raise UserError(f"--supernet {text}: neither a super-network name ({', '.join(names)}) nor an existing "
                    "checkpoint file")


def _peek_checkpoint(path: Path) -> dict:
    """The super-network checkpoint's plain data (weights_only: never runs code from the file)."""
    from mlperf_bnas.nas.supernet.network import SUPERNET_HINT

    ckpt = load_checkpoint(path, "super-network checkpoint", SUPERNET_HINT)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"--supernet {path}: not a BootstrapNAS super-network checkpoint")
    return ckpt


def _stored_nas_config(extra: dict) -> dict:
    """The NAS config the trainer recorded in the checkpoint (the dict, or the path of its file
    when that file is still there); empty if none."""
    for key in ("nas_config", "config"):
        cfg = extra.get(key)
        if isinstance(cfg, str) and Path(cfg).is_file():
            cfg = _read_config_file(Path(cfg))
        if isinstance(cfg, dict) and isinstance(cfg.get("bootstrapNAS"), dict):
            return cfg
    return {}


def _read_config_file(path: Path) -> dict:
    return read_mapping(path, "NAS config", "pass an existing JSON/YAML file to --config")


class Plan:
    """Everything resolved from the command line before any process starts measuring."""

    def __init__(self, request: SearchRequest, check_outputs: bool = True):
        from mlperf_bnas.nas.search.targets import SEARCH_TARGETS

        self.request = args = request
        path, asked_name = resolve_supernet(args.supernet, args.supernet_ckpt_path)
        self.supernet_path = path.resolve()
        ckpt = _peek_checkpoint(self.supernet_path)
        self.state_dict = ckpt["state_dict"]
        extra = ckpt.get("extra") or {}
        self.base_model = args.model or extra.get("model") or extra.get("base_model")
        if not self.base_model:
            raise UserError(f"--supernet {self.supernet_path}: the checkpoint does not name its base model; pass "
                            f"--model ({', '.join(SEARCH_TARGETS.names())})")
        if asked_name is not None and asked_name != self.base_model:
            raise UserError(f"--supernet {args.supernet}: {self.supernet_path} is a {self.base_model} super-network, "
                            f"not {asked_name}")
        self.target = SEARCH_TARGETS.get(self.base_model)()
        stored = _stored_nas_config(extra)
        if args.config is not None:
            section, where = read_search_section(args.config), str(args.config)
            data_config = _read_config_file(args.config)
        else:
            use = args.stored_config_defaults
            section = ((stored.get("bootstrapNAS") or {}).get("search") or {}) if use else {}
            where, data_config = f"{self.supernet_path} (stored NAS config)", stored
        # The training run's data seed: the validation split must be the one training never saw.
        self.data_seed = int(data_config.get("seed", stored.get("seed", 0)) or 0)
        cli = {**args.settings, "latency": dict(args.settings.get("latency") or {})}
        if cli["latency"].get("runtime") is None and not (section.get("latency") or {}).get("runtime"):
            cli["latency"]["runtime"] = self.target.default_latency_runtime
            if self.target.default_latency_runtime == "torch" and cli["latency"].get("precision") is None:
                cli["latency"]["precision"] = "fp32"
        self.settings: SearchSettings = build_settings(section, cli, where, args.defaults)
        if "latency" in self.settings.measured and self.settings.latency.runtime == "openvino" \
                and self.target.preprocess_spec is None:
            raise UserError(f"latency.runtime openvino: {self.base_model} has no benchmark preprocessing; use "
                            "--latency_runtime torch")
        out = args.output_dir or Path(os.environ.get("OUTPUT_DIR") or ".")
        self.out_dir = out.resolve()
        self.outputs = SearchOutputs(self.out_dir)
        self.results_path = (args.results_path or self.outputs.results_csv).resolve()
        self.dynast_results = args.dynast_results.resolve() if args.dynast_results is not None else None
        if self.dynast_results is not None and self.dynast_results in (
                self.results_path, self.outputs.pareto_csv.resolve(), self.outputs.linas_log.resolve()):
            raise UserError(f"--results_path {self.dynast_results}: this search writes its own "
                            f"{self.dynast_results.name} there; choose another file name")
        if args.resume and not self.results_path.is_file():
            raise UserError(f"--resume: {self.results_path} does not exist; run without --resume to start a search")
        if check_outputs and not args.resume:
            o = self.outputs
            existing = [p for p in (self.results_path, self.dynast_results, o.best_subnet, o.record, o.best_config,
                                    o.pareto_csv) if p is not None and p.exists()]
            if existing:
                raise UserError(f"{existing[0]}: an earlier search's output is there; pass --resume to continue "
                                "it, or choose another --output-dir (nothing is overwritten)")


# --------------------------------------------------------------------------- one process

def _build_evaluator(plan: Plan, rank: int):
    from mlperf_bnas.nas.search.latency import LatencyMeter
    from mlperf_bnas.nas.search.measure import SupernetEvaluator
    from mlperf_bnas.nas.search.targets import model_builder
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    from mlperf_bnas.nas.search.measure import Rebatched

    s = plan.settings
    supernet = SuperNetwork.load(plan.supernet_path, model_builder(plan.base_model, plan.state_dict))
    bn_batches, val_loader = plan.target.loaders(plan.request.dataset_path, s.test_fraction, plan.data_seed)
    if s.eval_batch_size is not None:
        bn_batches, val_loader = Rebatched(bn_batches, s.eval_batch_size), Rebatched(val_loader, s.eval_batch_size)
    latency = None
    if "latency" in s.measured:
        # One cache per process: ranks never write the same file.
        latency = LatencyMeter(s.latency, plan.outputs.latency_cache(rank), plan.target.input_shape,
                               plan.target.preprocess_spec, plan.outputs.latency_build)
    return supernet, SupernetEvaluator(supernet, s.measured, bn_batches, val_loader, s.num_bn_samples, latency)


def _search_process(plan: Plan, rank: int, world: int) -> int:
    from mlperf_bnas.nas.search import distributed
    from mlperf_bnas.nas.search.tactics import LocalPool, run_search

    supernet, evaluator = _build_evaluator(plan, rank)
    if world > 1 and rank > 0:
        distributed.serve(evaluator.measure)
        return 0
    pool = distributed.DistributedPool(evaluator.measure) if world > 1 else LocalPool(evaluator)
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        _check_same_supernet(plan)
        mirrors = [DynastCsv(plan.dynast_results, plan.request.resume)] if plan.dynast_results else []
        outcome = run_search(supernet.space, pool, plan.settings, plan.results_path, resume=plan.request.resume,
                             mirrors=mirrors)
    finally:
        if world > 1:
            pool.close()
    write_outputs(plan, supernet, evaluator, outcome, world)
    return 0


def _check_same_supernet(plan: Plan) -> None:
    """A resumed search must measure the super-network its CSV was measured on."""
    state_path = SearchOutputs.supernet_stamp(plan.results_path)
    current = {"supernet": str(plan.supernet_path), "sha256": sha256_file(plan.supernet_path),
               "base_model": plan.base_model}
    if plan.request.resume and state_path.is_file():
        try:
            earlier = json.loads(state_path.read_text())
        except json.JSONDecodeError:
            earlier = {}
        if earlier.get("sha256") != current["sha256"]:
            raise UserError(f"--resume: {plan.results_path} was measured on super-network sha256 "
                            f"{earlier.get('sha256')} ({earlier.get('supernet')}), not on {plan.supernet_path}; "
                            "start a new search in another --output-dir")
    write_atomic(state_path, json.dumps(current, indent=1) + "\n")


def _spawned(rank: int, world: int, port: int, request: SearchRequest) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank{rank} %(name)s: %(message)s")
    # The parent checked the outputs; here rank 0 may already be writing them.
    _distributed_main(Plan(request, check_outputs=False))


def _distributed_main(plan: Plan) -> int:
    from mlperf_bnas.nas.search import distributed

    rank, world = distributed.init(plan.request.dist_timeout_s)
    try:
        return _search_process(plan, rank, world)
    finally:
        distributed.shutdown()


def search(args: SearchRequest) -> int:
    """Run the search in this process, as one group under torchrun or an MPI launcher, or in
    ``nproc`` local processes."""
    from mlperf_bnas.nas.search import distributed

    launch = distributed.detect_launch()
    # Every setting is checked before a process starts. Under a launcher only rank 0 checks the
    # outputs (the others may start after rank 0 has begun writing).
    plan = Plan(args, check_outputs=launch is None or launch.rank == 0)
    if launch is not None and launch.world_size > 1:
        if args.nproc is not None:
            raise UserError(f"--nproc: under {launch.launcher} the process count is the launcher's "
                            f"({launch.world_size})")
        if not args.distributed:
            log.info("%s started %d processes: they search as one group (as with --distributed); rank 0 writes "
                     "the results", launch.launcher, launch.world_size)
        return _distributed_main(plan)
    if not args.distributed or (launch is not None and args.nproc is None):
        if args.nproc not in (None, 1):
            raise UserError("--nproc needs --distributed")
        return _search_process(plan, 0, 1)
    nproc = args.nproc or 2
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    import torch.multiprocessing as mp

    log.info("starting %d local search processes (gloo on 127.0.0.1)", nproc)
    mp.spawn(_spawned, args=(nproc, distributed.free_port(), args), nprocs=nproc, join=True)
    return 0


# --------------------------------------------------------------------------- outputs

def _metrics_out(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items()}


def write_outputs(plan: Plan, supernet, evaluator, outcome, world: int) -> None:
    from mlperf_bnas.nas.export import save_subnet
    from mlperf_bnas.nas.search.pareto import plot_front
    from mlperf_bnas.nas.search.tactics import ResultsStore

    s = plan.settings
    out = plan.outputs
    front_store = ResultsStore(out.pareto_csv, s.measured, supernet.space)
    front_store.records = list(outcome.front)
    front_store.save()

    x_metric = s.cost_metric
    plot_front(outcome.records, outcome.front, outcome.reference, outcome.best, x_metric, out.pareto_png,
               f"{s.tactic} / {s.algorithm}: {outcome.num_full_evaluations} sub-networks measured")

    rule = (f"lowest {s.cost_metric} among measured sub-networks with accuracy >= ref_acc - acc_delta "
            f"= {outcome.ref_acc:.4g} - {s.acc_delta:g} (NNCF BootstrapNAS rule)")
    best = {"config": outcome.best.config, "metrics": _metrics_out(outcome.best.metrics),
            "satisfies_accuracy_bound": outcome.best_satisfies, "ref_acc": outcome.ref_acc,
            "acc_delta": s.acc_delta, "cost_metric": s.cost_metric, "rule": rule,
            "reference": {"config": outcome.reference.config, "metrics": _metrics_out(outcome.reference.metrics)}}
    write_atomic(out.best_config, json.dumps(best, indent=2) + "\n")

    if outcome.predictor_log:
        lines = ["round,metric,n,n_train,mae,mape_pct,kendall_tau"]
        for e in outcome.predictor_log:
            lines.append(f"{e['round']},{e['metric']},{e['n']},{e['n_train']},{e['mae']!r},{e['mape_pct']!r},"
                         f"{e['kendall_tau']!r}")
        write_atomic(out.linas_log, "\n".join(lines) + "\n")

    evaluator.prepare_export(outcome.best.config)
    subnet = supernet.extract_subnet(outcome.best.config)
    save_subnet(subnet, outcome.best.config, plan.base_model, plan.target.preprocess, out.best_subnet)
    record = {
        "format": RECORD_FORMAT,
        "subnet": out.best_subnet.name,
        "subnet_sha256": sha256_file(out.best_subnet),
        "base_model": plan.base_model,
        "subnet_config": outcome.best.config,
        "metrics": _metrics_out(outcome.best.metrics),
        "satisfies_accuracy_bound": outcome.best_satisfies,
        "reference_metrics": _metrics_out(outcome.reference.metrics),
        "selection_rule": rule,
        "supernet": {"path": str(plan.supernet_path), "sha256": sha256_file(plan.supernet_path)},
        "search": {"tool": plan.request.tool, "tactic": s.tactic, "algorithm": s.algorithm,
                   "optimization_metrics": list(s.optimization_metrics), "measured": list(s.measured),
                   "num_evals": s.num_evals, "population": s.population, "seed": s.seed,
                   "full_evaluations": outcome.num_full_evaluations, "distributed_processes": world,
                   "settings": s.to_dict(),
                   "accuracy_data": {"dataset_path": str(plan.request.dataset_path) if plan.request.dataset_path else None,
                                     "test_fraction": s.test_fraction, "num_bn_samples": s.num_bn_samples},
                   "latency": s.to_dict()["latency"] if "latency" in s.measured else None},
        "files": {"results_csv": str(plan.results_path), "pareto_csv": out.pareto_csv.name,
                  "pareto_png": out.pareto_png.name, "best_config": out.best_config.name,
                  **({"dynast_results_csv": str(plan.dynast_results)} if plan.dynast_results else {})},
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": plan.request.command or " ".join(["mlperf-bnas", *sys.argv[1:]]),
    }
    write_atomic(out.record, json.dumps(record, indent=2) + "\n")
    b = outcome.best.metrics
    print(f"search: {outcome.num_full_evaluations} sub-networks measured ({outcome.measured_now} now), "
          f"front of {len(outcome.front)}; best: accuracy {b['accuracy']:.2f}% "
          f"{s.cost_metric} {b[s.cost_metric]:.4g} (reference {outcome.reference.metrics['accuracy']:.2f}% "
          f"{outcome.reference.metrics[s.cost_metric]:.4g}) -> {out.best_subnet}")

