"""The search problem as pymoo sees it: an integer genome -> objectives to minimise.

One integer gene per elastic choice (``SearchSpace.genes``, gene ``i`` takes ``0 ..
len(choices) - 1``). ``SubnetProblem`` only maps genomes to objectives; the algorithm
(pymoo) owns selection and the tactic (``tactics.py``/``linas.py``) owns the loop, so
algorithms and tactics are interchangeable (style.md pattern 7).

Accuracy is maximised, so its objective is ``-accuracy``; MACs, parameters and latency
are minimised as they are.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from pymoo.core.problem import Problem

#: measure(configs) -> one {metric: value} per config (the whole batch at once, so a
#: distributed pool can spread it over workers).
MeasureBatch = Callable[[list[dict]], list[dict]]


def genome_bounds(space) -> tuple[np.ndarray, np.ndarray]:
    upper = np.array([len(g.choices) - 1 for g in space.genes], dtype=int)
    return np.zeros_like(upper), upper


def as_genomes(space, X: np.ndarray) -> np.ndarray:
    """Round and clip (CMA-ES and SBX/PM work on floats) to valid integer genomes."""
    low, high = genome_bounds(space)
    X = np.atleast_2d(np.asarray(X, dtype=float))
    return np.clip(np.rint(X), low, high).astype(int)


def objective_values(metrics: dict, objectives: Sequence[str]) -> list[float]:
    return [-float(metrics[m]) if m == "accuracy" else float(metrics[m]) for m in objectives]


class SubnetProblem(Problem):
    """Genome -> measured objectives (every call is a full, high-fidelity evaluation)."""

    def __init__(self, space, objectives: Sequence[str], measure: MeasureBatch):
        low, high = genome_bounds(space)
        if len(high) == 0:
            raise ValueError("the search space has no genes")
        super().__init__(n_var=len(high), n_obj=len(objectives), xl=low, xu=high, vtype=int)
        self.space = space
        self.objectives = tuple(objectives)
        self._measure = measure

    def _evaluate(self, X, out, *args, **kwargs):
        configs = [self.space.decode([int(v) for v in g]) for g in as_genomes(self.space, X)]
        results = self._measure(configs)
        out["F"] = np.array([objective_values(r, self.objectives) for r in results], dtype=float)


class PredictedProblem(Problem):
    """Genome -> predicted objectives (LINAS's cheap, low-fidelity inner problem)."""

    def __init__(self, space, objectives: Sequence[str], predict: Callable[[np.ndarray], dict]):
        low, high = genome_bounds(space)
        super().__init__(n_var=len(high), n_obj=len(objectives), xl=low, xu=high, vtype=int)
        self.space = space
        self.objectives = tuple(objectives)
        self._predict = predict   # genomes -> {metric: array}

    def _evaluate(self, X, out, *args, **kwargs):
        predicted = self._predict(as_genomes(self.space, X))
        out["F"] = np.column_stack([-predicted[m] if m == "accuracy" else predicted[m]
                                    for m in self.objectives]).astype(float)
