"""LINAS: Lightweight Iterative Neural Architecture Search (DyNAS-T's default tactic).

Each round: validate a population (full measurements) -> fit one cheap predictor per
objective on everything measured so far -> run the evolutionary algorithm on the predictors
only (``linas_inner_evals`` predicted evaluations, no measurements) -> its final population
is the next round's candidates. The budget (``num_evals``) counts only full measurements.

The predictors' error is reported each round on the population just validated, which the
predictors had not seen (an honest, out-of-sample figure).
"""

from __future__ import annotations

import logging

import numpy as np

from mlperf_bnas.nas.search.algorithms import ask_tell, build_algorithm
from mlperf_bnas.nas.search.predictors import ObjectivePredictor
from mlperf_bnas.nas.search.problem import PredictedProblem, as_genomes, genome_bounds

log = logging.getLogger(__name__)


def _decode(space, genome) -> dict:
    return space.decode([int(v) for v in genome])


def _unmeasured(ctx, genomes: np.ndarray, limit: int) -> list[np.ndarray]:
    """Distinct genomes of ``genomes`` not yet in the results store, at most ``limit``."""
    out, seen = [], set()
    for g in genomes:
        key = tuple(int(v) for v in g)
        if key in seen or ctx.store.get(_decode(ctx.space, g)) is not None:
            continue
        seen.add(key)
        out.append(np.array(key))
        if len(out) == limit:
            break
    return out


def run_linas(ctx) -> None:
    s = ctx.settings
    space = ctx.space
    low, high = genome_bounds(space)
    rng = np.random.default_rng(s.seed)
    rounds = s.effective_num_evals // s.population
    candidates = list(rng.integers(low, high + 1, size=(s.population, len(high))))
    predictors: dict[str, ObjectivePredictor] = {}
    predictor_train_size = 0

    for round_no in range(1, rounds + 1):
        batch = np.array(candidates)
        configs = [_decode(space, g) for g in batch]
        before = len(ctx.store.search_records)
        measured = ctx.measure(configs)
        log.info("LINAS round %d/%d: validated %d candidate(s) (%d new)", round_no, rounds, len(configs),
                 len(ctx.store.search_records) - before)

        # Predictor error on this population, which the predictors were not fitted on.
        for metric, predictor in predictors.items():
            truth = np.array([m[metric] for m in measured])
            err = predictor.score(batch, truth).as_dict()
            err.update(round=round_no, n_train=predictor_train_size)
            ctx.predictor_log.append(err)
            log.info("LINAS round %d: %s predictor on %d new sub-networks: MAE %.4g, MAPE %.2f%%, "
                     "Kendall tau %.3f", round_no, metric, err["n"], err["mae"], err["mape_pct"], err["kendall_tau"])
        if round_no == rounds:
            break

        # Fit one predictor per objective on everything measured so far (the reference included).
        records = ctx.store.records
        genomes = np.array([r.genome for r in records])
        predictor_train_size = len(records)
        predictors = {
            m: ObjectivePredictor(m, s.predictor, high, s.seed).fit(genomes, [r.metrics[m] for r in records])
            for m in s.objectives
        }

        def predict(X: np.ndarray, _p=predictors) -> dict:
            return {m: p.predict(X) for m, p in _p.items()}

        inner = PredictedProblem(space, s.objectives, predict)
        result = ask_tell(inner, build_algorithm(s, len(s.objectives)), s.linas_inner_evals, s.seed + round_no)
        final = as_genomes(space, result.pop.get("X"))
        candidates = _unmeasured(ctx, final, s.population)
        if len(candidates) < s.population:
            # The predicted front holds fewer new sub-networks than a population: explore at random.
            fill = _unmeasured(ctx, rng.integers(low, high + 1, size=(20 * s.population, len(high))),
                               s.population - len(candidates))
            candidates.extend(fill)
        if not candidates:
            log.info("LINAS: every sub-network the predictors suggest is measured already; stopping")
            return
