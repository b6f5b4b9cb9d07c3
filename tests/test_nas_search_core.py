"""The search machinery on a small analytic search space (fast, no super-network).

The toy space and evaluator implement the same contract as nas/supernet/space.py and the
super-network evaluator, with metrics that trade off like real ones (accuracy grows with
MACs, with diminishing returns), so fronts are non-trivial. Every tactic x algorithm runs;
fronts are non-dominated; the same seed gives the same search; the CSV round-trips and
resumes without re-measuring; bad settings fail with errors that name the key.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.search.pareto import front_indices, hypervolume, objective_matrix
from mlperf_bnas.nas.search.predictors import ObjectivePredictor
from mlperf_bnas.nas.search.tactics import LocalPool, ResultsStore, choose_best, run_search
from mlperf_bnas.nas.search.settings import ALGORITHM_OBJECTIVES, build_settings, read_search_section


@dataclass(frozen=True)
class Gene:
    name: str
    choices: tuple


class ToySpace:
    """Index 0 = largest, as in nas/supernet/space.py."""

    def __init__(self):
        self.genes = [Gene("w0", (32, 24, 16, 8)), Gene("w1", (32, 24, 16, 8)), Gene("k", (5, 3)),
                      Gene("w2", (48, 32, 16)), Gene("d", (0, 1, 2))]

    def decode(self, x):
        return {g.name: g.choices[int(v)] for g, v in zip(self.genes, x)}

    def encode(self, config):
        return [g.choices.index(config[g.name]) for g in self.genes]

    def maximum(self):
        return self.decode([0] * len(self.genes))

    def minimum(self):
        return self.decode([len(g.choices) - 1 for g in self.genes])


class ToyEvaluator:
    def __init__(self):
        self.calls = 0

    def measure(self, c):
        self.calls += 1
        macs = c["w0"] * c["w1"] * c["k"] ** 2 + c["w1"] * c["w2"] * (3 - c["d"])
        params = c["w0"] + c["w1"] + c["w2"] + 10 * (3 - c["d"])
        acc = 100 - 400.0 / (1 + macs ** 0.5) - 1.5 * (c["k"] == 3) - 0.7 * c["d"]
        return {"accuracy": acc, "macs": float(macs), "params": float(params), "latency": macs / 1000}


def settings(**cli):
    base = dict(num_evals=32, population=8, linas_inner_evals=200)
    base.update(cli)
    return build_settings({}, base)


def search(tmp_path: Path, name="r.csv", evaluator=None, resume=False, **cli):
    evaluator = evaluator or ToyEvaluator()
    outcome = run_search(ToySpace(), LocalPool(evaluator), settings(**cli), tmp_path / name, resume=resume)
    return outcome, evaluator


_METRICS = {1: ("accuracy",), 2: ("accuracy", "macs"), 3: ("accuracy", "macs", "params")}
# Every algorithm under the evolutionary tactic; LINAS with a single- and a multi-objective inner
# algorithm (its inner loop is the same ask/tell code); random search.
COMBOS = ([("evolutionary", algo, _METRICS[counts[0]]) for algo, counts in ALGORITHM_OBJECTIVES.items()]
          + [("linas", "nsga2", _METRICS[2]), ("linas", "ga", _METRICS[1]), ("random", "nsga2", _METRICS[2])])
# AGE-MOEA imports numba, whose first compilation takes seconds: in the full suite only.
PARAMS = [pytest.param(t, a, m, id=f"{t}-{a}", marks=[pytest.mark.slow] if a == "age" else []) for t, a, m in COMBOS]


@pytest.mark.parametrize("tactic,algo,metrics", PARAMS)
def test_every_tactic_and_algorithm_gives_a_non_dominated_front(tmp_path, tactic, algo, metrics):
    outcome, evaluator = search(tmp_path, search_tactic=tactic, search_algo=algo, optimization_metrics=list(metrics))
    assert 1 < outcome.num_full_evaluations <= 32
    assert evaluator.calls == len(outcome.records)           # every record measured exactly once
    F = objective_matrix(outcome.records, metrics)
    front = objective_matrix(outcome.front, metrics)
    # Nothing measured dominates a front member, and every front member was measured.
    for f in front:
        assert not np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1))
    assert len(outcome.front) == len({tuple(F[i]) for i in front_indices(F)})   # one record per front point
    assert outcome.best.metrics["accuracy"] >= outcome.ref_acc - outcome.settings.acc_delta or not outcome.best_satisfies


def test_same_seed_same_search_other_seed_differs(tmp_path):
    a, _ = search(tmp_path, "a.csv", seed=3)
    b, _ = search(tmp_path, "b.csv", seed=3)
    c, _ = search(tmp_path, "c.csv", seed=4)
    configs = lambda o: [json.dumps(r.config, sort_keys=True) for r in o.records]   # noqa: E731
    assert configs(a) == configs(b)
    assert configs(a) != configs(c)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_csv_round_trips_and_resume_measures_nothing_twice(tmp_path):
    first, ev1 = search(tmp_path, seed=1)
    text = (tmp_path / "r.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == len(first.records)
    assert rows[0]["source"] == "reference" and json.loads(rows[0]["config"]) == ToySpace().maximum()
    for row, rec in zip(rows, first.records):
        assert json.loads(row["config"]) == rec.config
        assert float(row["accuracy"]) == rec.metrics["accuracy"]        # repr(): exact round trip

    with pytest.raises(UserError, match="--resume"):
        search(tmp_path, seed=1)                                       # never overwritten silently
    assert (tmp_path / "r.csv").read_text() == text

    again, ev2 = search(tmp_path, seed=1, resume=True)
    assert ev2.calls == 0                                              # everything replayed from the CSV
    assert [r.config for r in again.front] == [r.config for r in first.front]
    assert again.best.config == first.best.config

    # Resuming with a larger budget continues the same search: the old rows are reused.
    more, ev3 = search(tmp_path, seed=1, resume=True, num_evals=48)
    assert len(more.records) > len(first.records)
    assert ev3.calls == len(more.records) - len(first.records)


def test_resume_rejects_a_csv_from_another_space(tmp_path):
    search(tmp_path, seed=1)
    path = tmp_path / "r.csv"
    text = path.read_text()
    assert '""w0"":32' in text
    path.write_text(text.replace('""w0"":32', '""w0"":64', 1))     # a width this space does not have
    with pytest.raises(UserError, match="another super-network"):
        search(tmp_path, seed=1, resume=True)


def test_best_follows_nncf_rule():
    s = settings(acc_delta=1.0, optimization_metrics=["accuracy", "macs"])

    class R:
        def __init__(self, i, acc, macs):
            self.index, self.metrics = i, {"accuracy": acc, "macs": macs}

    recs = [R(0, 80.0, 100), R(1, 79.5, 40), R(2, 78.9, 10), R(3, 79.0, 50)]
    best, ok = choose_best(recs, s, ref_acc=80.0, fallback=recs[0])
    assert ok and best.index == 1          # cheapest with accuracy >= 79.0
    best, ok = choose_best(recs, s, ref_acc=95.0, fallback=recs[0])
    assert not ok and best.index == 0      # nothing qualifies: the maximum sub-network


def test_linas_reports_predictor_error_each_round(tmp_path):
    outcome, _ = search(tmp_path, search_tactic="linas", num_evals=40, population=8)
    rounds = sorted({e["round"] for e in outcome.predictor_log})
    assert rounds == [2, 3, 4, 5]          # round 1 is random; later rounds score the previous fit
    assert {e["metric"] for e in outcome.predictor_log} == {"accuracy", "macs"}
    assert all(np.isfinite(e["mae"]) for e in outcome.predictor_log)


def test_predictor_fits_additive_metric():
    rng = np.random.default_rng(0)
    upper = np.array([3, 3, 1, 2])
    X = rng.integers(0, upper + 1, size=(60, 4))
    y = X @ np.array([1.0, 2.0, -3.0, 0.5]) + 7
    p = ObjectivePredictor("macs", "ridge", upper, 0).fit(X[:40], y[:40])
    err = p.score(X[40:], y[40:])
    assert err.mae < 0.05 and err.kendall_tau > 0.95


def test_hypervolume_grows_with_a_better_front():
    ref = np.array([1.0, 1.0])
    assert hypervolume(np.array([[0.5, 0.5]]), ref) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.5, 0.5], [0.2, 0.8]]), ref) == pytest.approx(0.31)
    assert hypervolume(np.array([[1.5, 0.1]]), ref) == 0.0


@pytest.mark.parametrize("cli,message", [
    (dict(search_algo="ga", optimization_metrics=["accuracy", "macs", "params"]),
     "with 3 objective\\(s\\) use one of: unsga3, ctaea, moead"),
    (dict(search_algo="nsga2", optimization_metrics=["accuracy"]), "use one of: ga, cmaes"),
    (dict(search_algo="bogus"), "unknown bootstrapNAS.search.algorithm 'bogus'; valid: ga, cmaes"),
    (dict(search_tactic="grid"), "valid: evolutionary, linas, random"),
    (dict(optimization_metrics=["accuracy", "flops"]), "unknown metric\\(s\\) flops"),
    (dict(population=64, num_evals=32), "population \\(64\\) must not be greater than num_evals"),
    (dict(mutation_prob=1.5), "mutation_prob must be a number in"),
])
def test_bad_settings_name_the_key(cli, message):
    with pytest.raises(UserError, match=message):
        settings(**cli)


def test_config_file_section_and_precedence(tmp_path):
    cfg = tmp_path / "nas.json"
    cfg.write_text(json.dumps({"bootstrapNAS": {"search": {
        "algorithm": "NSGA2", "num_evals": 64, "population": 16, "ref_acc": -1, "acc_delta": 2,
        "batchnorm_adaptation": {"num_bn_adaptation_samples": 128}, "latency": {"runtime": "torch",
                                                                               "precision": "fp32"}}}}))
    s = build_settings(read_search_section(cfg), {"population": 8}, str(cfg))
    assert (s.algorithm, s.num_evals, s.population, s.ref_acc, s.acc_delta, s.num_bn_samples) == \
        ("nsga2", 64, 8, None, 2.0, 128)
    assert s.latency.runtime == "torch"
    cfg.write_text(json.dumps({"bootstrapNAS": {"search": {"num_eval": 10}}}))
    with pytest.raises(UserError, match="unknown key bootstrapNAS.search.num_eval; valid keys: .*num_evals"):
        build_settings(read_search_section(cfg), {}, str(cfg))


def test_results_store_reads_back_what_it_wrote(tmp_path):
    space = ToySpace()
    store = ResultsStore(tmp_path / "s.csv", ("accuracy", "macs"), space)
    store.add(space.maximum(), [0] * 5, {"accuracy": 1 / 3, "macs": 1e9 + 0.5}, "reference")
    store.save()
    back = ResultsStore(tmp_path / "s.csv", ("accuracy", "macs"), space)
    assert back.load() == 1
    assert back.records[0].metrics == {"accuracy": 1 / 3, "macs": 1e9 + 0.5}
