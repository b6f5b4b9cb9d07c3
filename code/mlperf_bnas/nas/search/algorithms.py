"""pymoo algorithms by DyNAS-T name, on integer genomes, driven by pymoo's ask/tell loop.

``ALGORITHMS``: ga, cmaes (one objective), nsga2, age, rnsga2 (NNCF's) (two), unsga3, ctaea, moead (three);
integer genes through IntegerRandomSampling and SBX + PM with RoundingRepair. The tactics
(``tactics.py``, ``linas.py``) choose what to measure; these only propose genomes.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from pymoo.algorithms.moo.ctaea import CTAEA
from pymoo.algorithms.moo.moead import ParallelMOEAD
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.unsga3 import UNSGA3
from pymoo.algorithms.soo.nonconvex.cmaes import CMAES
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.util.ref_dirs import get_reference_directions

from mlperf_bnas.nas.search.settings import SearchSettings
from mlperf_bnas.registry import Registry

#: name -> builder(settings, n_obj, population) -> pymoo algorithm
ALGORITHMS: Registry[Callable[..., Any]] = Registry("search algorithm")


def _integer_operators(s: SearchSettings) -> dict:
    # Integer genes: SBX and PM act on floats, RoundingRepair snaps children back to integers.
    return dict(
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=s.crossover_prob, eta=s.crossover_eta, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=s.mutation_prob, eta=s.mutation_eta, vtype=float, repair=RoundingRepair()),
    )


@functools.lru_cache(maxsize=16)
def _energy_ref_dirs(n_obj: int, population: int, seed: int) -> np.ndarray:
    # Riesz-energy directions (DyNAS-T's choice) for any point count; seconds to compute, so
    # computed once per process (LINAS builds a new algorithm every round).
    return get_reference_directions("energy", n_obj, population, seed=seed).astype("float64")


def _ref_dirs(n_obj: int, population: int, seed: int) -> np.ndarray:
    return _energy_ref_dirs(n_obj, population, seed).copy()


@ALGORITHMS.register("ga")
def _ga(s: SearchSettings, n_obj: int, population: int):
    return GA(pop_size=population, eliminate_duplicates=True, **_integer_operators(s))


@ALGORITHMS.register("cmaes")
def _cmaes(s: SearchSettings, n_obj: int, population: int):
    # Continuous by nature: genomes are rounded and clipped when decoded (problem.as_genomes).
    algorithm = CMAES(pop_size=population, restarts=0)
    # x0 is the best of n_sample_points random points; pymoo's 20 would overrun small budgets. Its
    # constructor forwards unknown keywords to the cma package, so the attribute is set here.
    algorithm.n_sample_points = population
    return algorithm


@ALGORITHMS.register("nsga2")
def _nsga2(s: SearchSettings, n_obj: int, population: int):
    return NSGA2(pop_size=population, eliminate_duplicates=True, **_integer_operators(s))


@ALGORITHMS.register("age")
def _age(s: SearchSettings, n_obj: int, population: int):
    from pymoo.algorithms.moo.age import AGEMOEA   # imports numba: only when asked for
    return AGEMOEA(pop_size=population, eliminate_duplicates=True, **_integer_operators(s))


@ALGORITHMS.register("unsga3")
def _unsga3(s: SearchSettings, n_obj: int, population: int):
    return UNSGA3(ref_dirs=_ref_dirs(n_obj, population, s.seed), pop_size=population,
                  eliminate_duplicates=True, **_integer_operators(s))


@ALGORITHMS.register("ctaea")
def _ctaea(s: SearchSettings, n_obj: int, population: int):
    ops = _integer_operators(s)
    ops["crossover"] = SBX(n_offsprings=1, prob=s.crossover_prob, eta=s.crossover_eta, vtype=float,
                           repair=RoundingRepair())
    return CTAEA(ref_dirs=_ref_dirs(n_obj, population, s.seed), eliminate_duplicates=True, **ops)


@ALGORITHMS.register("moead")
def _moead(s: SearchSettings, n_obj: int, population: int):
    # The batch variant: one ask() gives a whole generation, which distributed workers can share.
    return ParallelMOEAD(ref_dirs=_ref_dirs(n_obj, population, s.seed), n_neighbors=min(20, population),
                         **_integer_operators(s))


@ALGORITHMS.register("rnsga2")
def _rnsga2(s: SearchSettings, n_obj: int, population: int):
    # NNCF's RNSGA2SearchAlgorithm: reference points in NNCF's objective space [cost, -top1]
    # (cost MACs in millions, NNCF's unit; params and latency as measured), reordered to ours.
    from pymoo.algorithms.moo.rnsga2 import RNSGA2

    scale = {"macs": 1e6}
    points = []
    for cost, neg_acc in s.aspiration_points:
        points.append([neg_acc if m == "accuracy" else cost * scale.get(m, 1.0) for m in s.optimization_metrics])
    weights = None
    if s.weights is not None:
        order = {m: (s.weights[1] if m == "accuracy" else s.weights[0]) for m in s.optimization_metrics}
        weights = np.array([order[m] for m in s.optimization_metrics])
    return RNSGA2(ref_points=np.array(points, dtype=float), pop_size=population, epsilon=s.epsilon,
                  normalization="front", extreme_points_as_reference_points=s.extreme_points_as_ref_points,
                  weights=weights, eliminate_duplicates=True, **_integer_operators(s))


def build_algorithm(settings: SearchSettings, n_obj: int, population: int | None = None):
    return ALGORITHMS.get(settings.algorithm)(settings, n_obj, population or settings.population)


def ask_tell(problem: Problem, algorithm, max_evals: int, seed: int,
             on_generation: Callable[[int], None] | None = None):
    """Drive ``algorithm`` on ``problem`` with pymoo's ask/tell loop for ``max_evals`` evaluations."""
    algorithm.setup(problem, termination=("n_evals", max_evals), seed=seed, verbose=False)
    generation = 0
    while algorithm.has_next():
        pop = algorithm.ask()
        if pop is None:   # no new offspring (duplicate elimination): pymoo has ended the run
            break
        if not isinstance(pop, Population):   # some algorithms ask for one individual at a time
            pop = Population.create(pop)
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
        generation += 1
        if on_generation:
            on_generation(generation)
    return algorithm.result()
