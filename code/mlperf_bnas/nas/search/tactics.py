"""Sub-network search: tactics (evolutionary, random, LINAS) x pymoo algorithms, over measured sub-networks.

The pieces, each replaceable on its own (style.md pattern 7):

* ``SubnetProblem`` (problem.py) maps a genome to objectives;
* ``ALGORITHMS`` (algorithms.py) builds a pymoo algorithm by DyNAS-T name (ga, cmaes,
  nsga2, age, unsga3, ctaea, moead) with integer genes;
* ``TACTICS`` drives the loop with pymoo's ask/tell interface;
* a ``pool`` measures a batch of sub-network configs, in this process or spread over
  torch.distributed workers (distributed.py);
* ``ResultsStore`` is the results CSV: one row per measured sub-network, written after every
  batch, and read back to resume (a re-run with the same seed replays the measured rows from
  the CSV and measures only what is new).

The best sub-network follows NNCF's rule: the lowest cost (the first efficiency metric in
``optimization_metrics``, MACs by default) among sub-networks whose accuracy is at least
``ref_acc - acc_delta``; ``ref_acc`` defaults to the maximum sub-network's measured accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.nas.search.algorithms import ask_tell, build_algorithm
from mlperf_bnas.nas.search.linas import run_linas
from mlperf_bnas.nas.search.pareto import pareto_records
from mlperf_bnas.nas.search.problem import SubnetProblem, as_genomes, genome_bounds
from mlperf_bnas.nas.search.settings import SearchSettings
from mlperf_bnas.registry import Registry

log = logging.getLogger(__name__)

SOURCE_REFERENCE = "reference"


# --------------------------------------------------------------------------- records and CSV

def config_key(config: dict) -> str:
    """Canonical text of a sub-network config: the cache/CSV key."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@dataclass
class Record:
    index: int
    config: dict
    genome: list[int]
    metrics: dict[str, float]
    source: str

    def row(self, metrics: Sequence[str]) -> dict[str, Any]:
        out = {"index": self.index, "source": self.source, "config": config_key(self.config),
               "genome": " ".join(map(str, self.genome))}
        for m in metrics:
            out[m] = repr(float(self.metrics[m])) if m in self.metrics else ""
        return out


class ResultsStore:
    """The results CSV: every measured sub-network once, in measurement order."""

    def __init__(self, path: Path, metrics: Sequence[str], space):
        self.path = Path(path)
        self.metrics = tuple(metrics)
        self.space = space
        self.records: list[Record] = []
        self._by_key: dict[str, Record] = {}
        #: Other views of the same records (DyNAS-T's CSV), written with every save.
        self.mirrors: list = []

    @property
    def columns(self) -> list[str]:
        return ["index", "source", "config", "genome", *self.metrics]

    def get(self, config: dict) -> Record | None:
        return self._by_key.get(config_key(config))

    def add(self, config: dict, genome: Sequence[int], metrics: dict, source: str) -> Record:
        missing = [m for m in self.metrics if m not in metrics]
        if missing:
            raise RuntimeError(f"evaluator returned no {', '.join(missing)} for {config_key(config)}")
        rec = Record(len(self.records), dict(config), [int(g) for g in genome],
                     {m: float(metrics[m]) for m in self.metrics}, source)
        self.records.append(rec)
        self._by_key[config_key(config)] = rec
        return rec

    @property
    def search_records(self) -> list[Record]:
        return [r for r in self.records if r.source != SOURCE_REFERENCE]

    def save(self) -> None:
        """Rewrite the CSV atomically (temp file, then os.replace)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for rec in self.records:
            writer.writerow(rec.row(self.metrics))
        write_atomic(self.path, buf.getvalue())
        for mirror in self.mirrors:
            mirror.write(self.records)

    def load(self) -> int:
        """Read an earlier run's CSV (resume). Returns the number of rows read."""
        where = str(self.path)
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in self.columns if c not in header]
            if missing:
                raise UserError(f"{where}: cannot resume: column(s) {', '.join(missing)} missing (it was made "
                                f"with other measurements); pass the same --measurements or a new --results_path")
            for line, row in enumerate(reader, start=2):
                try:
                    config = json.loads(row["config"])
                    genome = [int(g) for g in row["genome"].split()]
                    metrics = {m: float(row[m]) for m in self.metrics}
                except (ValueError, TypeError, json.JSONDecodeError) as exc:
                    raise UserError(f"{where}:{line}: unreadable row ({exc}); fix or remove the row") from None
                if self.space.decode(genome) != config:
                    raise UserError(f"{where}:{line}: genome {genome} does not decode to its config: the CSV "
                                    "comes from another super-network/search space; use a new --results_path")
                self.add(config, genome, metrics, row["source"])
        return len(self.records)


# --------------------------------------------------------------------------- measuring

class Pool(Protocol):
    """Measures a batch of sub-network configs (here, or spread over distributed workers)."""

    def measure(self, configs: list[dict]) -> list[dict[str, float]]: ...


class Evaluator(Protocol):
    def measure(self, config: dict) -> dict[str, float]: ...


class LocalPool:
    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def measure(self, configs: list[dict]) -> list[dict[str, float]]:
        return [self.evaluator.measure(c) for c in configs]


class CachedMeasure:
    """Looks configs up in the results store first; measures only new ones, records and saves them."""

    def __init__(self, store: ResultsStore, pool: Pool, space):
        self.store = store
        self.pool = pool
        self.space = space
        self.measured = 0      # full evaluations run by this process (resumed rows excluded)
        self.source = "search"

    def __call__(self, configs: list[dict]) -> list[dict[str, float]]:
        new: dict[str, dict] = {}
        for c in configs:
            if self.store.get(c) is None:
                new.setdefault(config_key(c), c)
        if new:
            batch = list(new.values())
            results = self.pool.measure(batch)
            for c, metrics in zip(batch, results):
                self.store.add(c, self.space.encode(c), metrics, self.source)
            self.measured += len(batch)
            self.store.save()
            log.info("measured %d new sub-network(s) (%d in %s)", len(batch), len(self.store.records),
                     self.store.path.name)
        return [self.store.get(c).metrics for c in configs]


# --------------------------------------------------------------------------- tactics

@dataclass
class SearchContext:
    space: Any
    settings: SearchSettings
    store: ResultsStore
    measure: CachedMeasure
    #: LINAS: one dict per (round, metric) with the predictors' out-of-sample error.
    predictor_log: list[dict] = field(default_factory=list)


TACTICS: Registry[Callable[[SearchContext], None]] = Registry("search tactic")


@TACTICS.register("evolutionary")
def evolutionary(ctx: SearchContext) -> None:
    s = ctx.settings
    problem = SubnetProblem(ctx.space, s.objectives, ctx.measure)
    algorithm = build_algorithm(s, len(s.objectives))
    ask_tell(problem, algorithm, s.effective_num_evals, s.seed,
             on_generation=lambda g: log.info("generation %d: %d sub-networks measured", g,
                                              len(ctx.store.search_records)))


@TACTICS.register("random")
def random_search(ctx: SearchContext) -> None:
    s = ctx.settings
    low, high = genome_bounds(ctx.space)
    rng = np.random.default_rng(s.seed)
    genomes = rng.integers(low, high + 1, size=(s.effective_num_evals, len(high)))
    for start in range(0, len(genomes), s.population):
        ctx.measure([ctx.space.decode([int(v) for v in g]) for g in genomes[start:start + s.population]])


TACTICS.register("linas")(run_linas)


# --------------------------------------------------------------------------- the search

@dataclass
class SearchOutcome:
    settings: SearchSettings
    records: list[Record]
    front: list[Record]
    reference: Record
    best: Record
    best_satisfies: bool
    ref_acc: float
    measured_now: int
    predictor_log: list[dict]

    @property
    def num_full_evaluations(self) -> int:
        return len([r for r in self.records if r.source != SOURCE_REFERENCE])


def choose_best(records: Sequence[Record], settings: SearchSettings, ref_acc: float,
                fallback: Record) -> tuple[Record, bool]:
    """NNCF's rule: lowest cost with accuracy >= ref_acc - acc_delta; else the maximum sub-network."""
    bound = ref_acc - settings.acc_delta
    ok = [r for r in records if r.metrics["accuracy"] >= bound]
    if not ok:
        log.warning("no sub-network reaches accuracy %.3f (ref_acc %.3f - acc_delta %.3f): choosing the "
                    "maximum sub-network", bound, ref_acc, settings.acc_delta)
        return fallback, False
    cost = settings.cost_metric
    return min(ok, key=lambda r: (r.metrics[cost], -r.metrics["accuracy"], r.index)), True


def run_search(space, pool: Pool, settings: SearchSettings, results_path: Path, resume: bool = False,
               mirrors: Sequence = ()) -> SearchOutcome:
    """Measure the maximum sub-network, run the tactic, and choose the best sub-network.

    ``mirrors``: other writers of the results (``write(records)``), e.g. DyNAS-T's CSV."""
    if "accuracy" not in settings.measured:
        raise UserError("measurements must include accuracy: the best sub-network is the cheapest one with "
                        "accuracy >= ref_acc - acc_delta")
    store = ResultsStore(results_path, settings.measured, space)
    store.mirrors = list(mirrors)
    if results_path.exists():
        if not resume:
            raise UserError(f"{results_path}: results already exist; pass --resume to continue that search "
                            "or choose another --results_path (nothing is overwritten)")
        log.info("resuming: %d sub-network(s) read from %s", store.load(), results_path)
    measure = CachedMeasure(store, pool, space)

    maximum = space.maximum()
    measure.source = SOURCE_REFERENCE
    ref_metrics = measure([maximum])[0]
    reference = store.get(maximum)
    measure.source = settings.tactic
    ref_acc = settings.ref_acc if settings.ref_acc is not None else ref_metrics["accuracy"]

    ctx = SearchContext(space, settings, store, measure)
    TACTICS.get(settings.tactic)(ctx)

    records = list(store.records)
    front = pareto_records(records, settings.objectives)
    best, satisfied = choose_best(records, settings, ref_acc, reference)
    return SearchOutcome(settings, records, front, reference, best, satisfied, ref_acc, measure.measured,
                         ctx.predictor_log)


__all__ = ["TACTICS", "ResultsStore", "Record", "SearchOutcome", "run_search", "choose_best",
           "LocalPool", "CachedMeasure", "as_genomes", "config_key"]
