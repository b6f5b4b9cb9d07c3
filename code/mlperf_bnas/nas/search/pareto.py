"""Pareto fronts, hypervolume and the front plot (pymoo for the maths, matplotlib Agg for the plot)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mlperf_bnas.nas.search.problem import objective_values


def front_indices(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (minimisation), in input order."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    if F.shape[1] == 1:
        return np.array([int(np.argmin(F[:, 0]))])
    return np.sort(NonDominatedSorting().do(F, only_non_dominated_front=True))


def objective_matrix(records: Sequence, objectives: Sequence[str]) -> np.ndarray:
    return np.array([objective_values(r.metrics, objectives) for r in records], dtype=float).reshape(
        len(records), len(objectives))


def pareto_records(records: Sequence, objectives: Sequence[str]) -> list:
    """Non-dominated records, sorted by their first cost objective (or accuracy alone).

    Sub-networks with identical objective values (e.g. configs differing only in a skipped
    block's width) are one point of the front: the first measured one stands for it.
    """
    F = objective_matrix(records, objectives)
    front, seen = [], set()
    for i in front_indices(F):
        key = tuple(F[i])
        if key not in seen:
            seen.add(key)
            front.append(records[i])
    key = next((m for m in objectives if m != "accuracy"), objectives[0])
    return sorted(front, key=lambda r: objective_values(r.metrics, [key])[0])


def hypervolume(F: np.ndarray, ref_point: np.ndarray) -> float:
    """Hypervolume (pymoo HV) of the points of ``F`` that dominate ``ref_point``."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return 0.0
    inside = np.all(F < ref_point, axis=1)
    if not inside.any():
        return 0.0
    return float(HV(ref_point=np.asarray(ref_point, dtype=float))(F[inside]))


def normalise(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    span = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return (np.asarray(F, dtype=float) - ideal) / span


def plot_front(records: Sequence, front: Sequence, reference, best, x_metric: str, path: Path,
               title: str) -> None:
    """Accuracy vs ``x_metric``: every evaluated sub-network, the front, the original model, the best."""
    import matplotlib
    matplotlib.use("Agg")   # headless: never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r.metrics[x_metric] for r in records]
    ys = [r.metrics["accuracy"] for r in records]
    ax.scatter(xs, ys, s=10, c="0.65", alpha=0.7, label=f"evaluated ({len(records)})")
    if front:
        ax.plot([r.metrics[x_metric] for r in front], [r.metrics["accuracy"] for r in front], "-o", ms=4,
                c="tab:blue", label=f"Pareto front ({len(front)})")
    if reference is not None:
        ax.scatter([reference.metrics[x_metric]], [reference.metrics["accuracy"]], marker="s", s=90,
                   c="tab:red", edgecolors="k", zorder=5, label="original model (maximum sub-network)")
    if best is not None:
        ax.scatter([best.metrics[x_metric]], [best.metrics["accuracy"]], marker="*", s=200, c="gold",
                   edgecolors="k", zorder=6, label="chosen sub-network")
    unit = {"latency": "latency (ms)", "macs": "MACs", "params": "parameters"}[x_metric]
    ax.set_xlabel(unit)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
