"""Cheap per-objective predictors for LINAS (scikit-learn), on one-hot genome features.

One regressor per objective, refitted each LINAS round on every sub-network measured so
far (as DyNAS-T's ``PredictorManager`` does). ``score`` reports a predictor's error on
sub-networks it was not fitted on, which is what LINAS logs each round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlperf_bnas.registry import Registry

PREDICTORS: Registry = Registry("predictor")


@PREDICTORS.register("ridge")
def _ridge(seed: int):
    return RidgeCV(alphas=np.logspace(-4, 3, 15))


@PREDICTORS.register("gbm")
def _gbm(seed: int):
    return GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=seed)


@PREDICTORS.register("mlp")
def _mlp(seed: int):
    return make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=2000,
                                                        random_state=seed))


def one_hot(genomes: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Genomes (n, genes) -> concatenated one-hot of each gene's choice."""
    genomes = np.atleast_2d(genomes).astype(int)
    columns = [np.eye(int(u) + 1)[genomes[:, i]] for i, u in enumerate(upper)]
    return np.hstack(columns)


@dataclass(frozen=True)
class PredictorError:
    metric: str
    n: int
    mae: float
    mape: float          # mean absolute error relative to the measured value, %
    kendall_tau: float   # rank agreement; what the evolutionary inner loop relies on

    def as_dict(self) -> dict:
        return {"metric": self.metric, "n": self.n, "mae": self.mae, "mape_pct": self.mape,
                "kendall_tau": self.kendall_tau}


class ObjectivePredictor:
    """Fits ``metric`` from genomes; targets are standardised so one alpha grid fits all scales."""

    def __init__(self, metric: str, kind: str, upper: np.ndarray, seed: int):
        self.metric = metric
        self.kind = kind
        self.upper = np.asarray(upper, dtype=int)
        self.seed = seed
        self._model = None
        self._mean = 0.0
        self._scale = 1.0

    def fit(self, genomes: np.ndarray, values: np.ndarray) -> "ObjectivePredictor":
        values = np.asarray(values, dtype=float)
        self._mean = float(values.mean())
        self._scale = float(values.std()) or 1.0
        self._model = PREDICTORS.get(self.kind)(self.seed)
        self._model.fit(one_hot(genomes, self.upper), (values - self._mean) / self._scale)
        return self

    def predict(self, genomes: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError(f"predictor for {self.metric} used before fit")
        return self._model.predict(one_hot(genomes, self.upper)) * self._scale + self._mean

    def score(self, genomes: np.ndarray, values: np.ndarray) -> PredictorError:
        values = np.asarray(values, dtype=float)
        predicted = self.predict(genomes)
        err = np.abs(predicted - values)
        denom = np.where(np.abs(values) > 1e-12, np.abs(values), 1.0)
        if len(values) > 1 and np.ptp(values) > 0 and np.ptp(predicted) > 0:
            tau = float(kendalltau(predicted, values).statistic)
        else:
            tau = float("nan")
        return PredictorError(self.metric, len(values), float(err.mean()), float((err / denom).mean() * 100), tau)
