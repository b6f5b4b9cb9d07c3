"""Search settings: the ``bootstrapNAS.search`` section of a NAS config, plus DyNAS-T-style flags.

One declaration per setting (``SearchSettings``); precedence is command line, then the
config file's ``bootstrapNAS.search`` section, then the field default. Key names follow
NNCF 2.x's BootstrapNAS search (``algorithm``, ``num_evals``, ``population``, ``seed``,
``crossover_prob``, ``crossover_eta``, ``mutation_prob``, ``mutation_eta``, ``ref_acc``,
``acc_delta``, ``batchnorm_adaptation.num_bn_adaptation_samples``) and DyNAS-T's command
line (``search_tactic``, ``search_algo``, ``optimization_metrics``, ``measurements``,
``test_fraction``). NNCF's RNSGA2 keys (``aspiration_points``, ``epsilon``, ``weights``,
``extreme_points_as_ref_points``) and ``num_constraints`` (0 only: NNCF never computed
constraint values) are read too. DyNAS-T's metric name ``accuracy_top1`` is ``accuracy``.
Every value is validated here, with a ``UserError`` naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.enums import Precision, values
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import read_mapping

#: Everything a sub-network can be measured on. Accuracy is maximised, the rest minimised.
METRICS = ("accuracy", "macs", "params", "latency")
#: DyNAS-T's names for the same metrics (its image-classification super-networks).
METRIC_ALIASES = {"accuracy_top1": "accuracy"}
#: What a metric list on the command line may name.
METRIC_CHOICES = METRICS + tuple(METRIC_ALIASES)
TACTICS = ("evolutionary", "linas", "random")
#: Which algorithm optimises how many objectives (DyNAS-T's table, dynast/search/evolutionary.py).
ALGORITHM_OBJECTIVES: dict[str, tuple[int, ...]] = {
    "ga": (1,), "cmaes": (1,),
    "nsga2": (2,), "age": (2,),
    "unsga3": (3,), "ctaea": (3,), "moead": (3,),
    "rnsga2": (2,),   # NNCF's RNSGA2 (reference-point NSGA-II)
}
LATENCY_RUNTIMES = ("openvino", "torch")
PRECISIONS = tuple(values(Precision))
PREDICTORS = ("ridge", "gbm", "mlp")
SECTION = "bootstrapNAS.search"


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: on the benchmark's runtime, warm, median of ``iterations``."""
    runtime: str = "openvino"
    precision: str = "int8"
    batch_size: int = 1
    warmup: int = 5
    iterations: int = 20
    #: OpenVINO inference threads for the measurement (0: the runtime's default).
    num_threads: int = 0


@dataclass(frozen=True)
class SearchSettings:
    algorithm: str = "nsga2"
    tactic: str = "evolutionary"
    optimization_metrics: tuple[str, ...] = ("accuracy", "macs")
    measurements: tuple[str, ...] = ("accuracy", "macs", "params")
    num_evals: int = 3000
    population: int = 40
    seed: int = 0
    crossover_prob: float = 0.9
    crossover_eta: float = 10.0
    mutation_prob: float = 0.02
    mutation_eta: float = 3.0
    #: Reference accuracy (%); None (NNCF's -1): the maximum sub-network's measured accuracy.
    ref_acc: float | None = None
    acc_delta: float = 1.0
    #: Samples used to re-calibrate BatchNorm before each accuracy measurement.
    num_bn_samples: int = 2000
    #: Fraction of the validation set used for accuracy (DyNAS-T's --test_fraction).
    test_fraction: float = 1.0
    #: Batch size of the BN re-calibration and accuracy batches (DyNAS-T's --eval_batch_size);
    #: None: the model's own data batching.
    eval_batch_size: int | None = None
    #: LINAS: evaluations of the predictors per inner evolutionary run (DyNAS-T: 5000).
    linas_inner_evals: int = 5000
    predictor: str = "ridge"
    latency: LatencySettings = field(default_factory=LatencySettings)
    #: NNCF's search problem constraint count; only 0 (NNCF evaluated no constraints).
    num_constraints: int = 0
    #: RNSGA2 (NNCF): preferred points [cost, -top1], cost in NNCF's units (MACs in millions).
    aspiration_points: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    epsilon: float = 0.001
    weights: tuple[float, ...] | None = None
    extreme_points_as_ref_points: bool = False

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.optimization_metrics

    @property
    def cost_metric(self) -> str:
        """The efficiency metric the best sub-network minimises (NNCF: MACs unless another is given)."""
        costs = [m for m in self.optimization_metrics if m != "accuracy"]
        return costs[0] if costs else "macs"

    @property
    def measured(self) -> tuple[str, ...]:
        """Metrics measured for every sub-network: optimisation metrics, measurements and the cost."""
        wanted = set(self.optimization_metrics) | set(self.measurements) | {self.cost_metric}
        return tuple(m for m in METRICS if m in wanted)

    @property
    def effective_num_evals(self) -> int:
        # NNCF rounds the budget down to whole generations.
        return self.num_evals // self.population * self.population

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["optimization_metrics"] = list(self.optimization_metrics)
        out["measurements"] = list(self.measurements)
        out["aspiration_points"] = [list(p) for p in self.aspiration_points]
        out["weights"] = list(self.weights) if self.weights is not None else None
        return out


# Config-file keys that differ from the field names (NNCF's and DyNAS-T's spellings).
_ALIASES = {"search_tactic": "tactic", "search_algo": "algorithm"}
_NESTED = {"batchnorm_adaptation": {"num_bn_adaptation_samples": "num_bn_samples"}}
_FIELDS = {f.name for f in dataclasses.fields(SearchSettings)}
_LATENCY_FIELDS = {f.name for f in dataclasses.fields(LatencySettings)}


def read_search_section(path: str | Path) -> dict[str, Any]:
    """The ``bootstrapNAS.search`` mapping of a JSON or YAML NAS config (empty if absent)."""
    path = Path(path)
    raw = read_mapping(path, "NAS config", "pass an existing JSON/YAML file to --config")
    nas = raw.get("bootstrapNAS", {}) or {}
    if not isinstance(nas, dict):
        raise UserError(f"{path}: 'bootstrapNAS' must be a mapping")
    section = nas.get("search", {}) or {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: '{SECTION}' must be a mapping")
    return section


#: NNCF search keys that are not supported: key -> why.
_REFUSED = {"compression": "knowledge distillation belongs to training (bootstrapNAS.training.compression); the "
                           "search measures sub-networks"}


def _flatten(section: dict[str, Any], where: str) -> dict[str, Any]:
    """Config-file spelling -> field names; unknown keys are errors listing the valid ones."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key in _REFUSED:
            raise UserError(f"{where}: {SECTION}.{key}: not supported: {_REFUSED[key]}")
        if key in _NESTED:
            if not isinstance(value, dict):
                raise UserError(f"{where}: {SECTION}.{key} must be a mapping")
            for sub, sub_value in value.items():
                if sub not in _NESTED[key]:
                    raise UserError(f"{where}: unknown key {SECTION}.{key}.{sub}; valid: "
                                    + ", ".join(sorted(_NESTED[key])))
                out[_NESTED[key][sub]] = sub_value
        elif key == "latency":
            if not isinstance(value, dict):
                raise UserError(f"{where}: {SECTION}.latency must be a mapping")
            unknown = sorted(set(value) - _LATENCY_FIELDS)
            if unknown:
                raise UserError(f"{where}: unknown key(s) {', '.join(SECTION + '.latency.' + k for k in unknown)}; "
                                f"valid: {', '.join(sorted(_LATENCY_FIELDS))}")
            out["latency"] = dict(value)
        elif key in _ALIASES or key in _FIELDS:
            out[_ALIASES.get(key, key)] = value
        else:
            valid = sorted((_FIELDS - {"latency"}) | set(_ALIASES) | set(_NESTED) | {"latency"})
            raise UserError(f"{where}: unknown key {SECTION}.{key}; valid keys: {', '.join(valid)}")
    return out


def _as_int(key: str, value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _as_float(key: str, value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"{where}: {key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _as_metrics(key: str, value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise UserError(f"{where}: {key} must be a non-empty list of {', '.join(METRICS)}")
    value = [METRIC_ALIASES.get(v, v) for v in value]
    unknown = [v for v in value if v not in METRICS]
    if unknown:
        raise UserError(f"{where}: {key} has unknown metric(s) {', '.join(map(str, unknown))}; "
                        f"valid: {', '.join(METRICS)}")
    if len(set(value)) != len(value):
        raise UserError(f"{where}: {key} lists a metric twice: {', '.join(value)}")
    return tuple(value)


def build_settings(config_section: dict[str, Any] | None, cli: dict[str, Any] | None,
                   where: str = "search settings", defaults: dict[str, Any] | None = None) -> SearchSettings:
    """Merge (command line > config section > ``defaults`` (a tool's own, e.g. DyNAS-T's) > field
    defaults) and validate everything."""
    merged: dict[str, Any] = {}
    merged.update({_ALIASES.get(k, k): v for k, v in (defaults or {}).items()})
    merged.update(_flatten(config_section or {}, where))
    cli = dict(cli or {})
    latency = dict(merged.pop("latency", {}) or {})
    latency.update({k: v for k, v in (cli.pop("latency", None) or {}).items() if v is not None})
    merged.update({_ALIASES.get(k, k): v for k, v in cli.items() if v is not None})
    merged = {k: v for k, v in merged.items() if k in _FIELDS}
    s = SearchSettings(**merged, latency=LatencySettings(**latency))
    return validate(s, where)


def validate(s: SearchSettings, where: str) -> SearchSettings:
    algo = str(s.algorithm).lower()   # NNCF writes "NSGA2"
    if algo not in ALGORITHM_OBJECTIVES:
        raise UserError(f"{where}: unknown {SECTION}.algorithm {s.algorithm!r}; valid: "
                        + ", ".join(ALGORITHM_OBJECTIVES))
    if s.tactic not in TACTICS:
        raise UserError(f"{where}: unknown {SECTION}.search_tactic {s.tactic!r}; valid: {', '.join(TACTICS)}")
    objectives = _as_metrics("optimization_metrics", s.optimization_metrics, where)
    measurements = _as_metrics("measurements", s.measurements, where)
    if len(objectives) > 3:
        raise UserError(f"{where}: optimization_metrics takes 1, 2 or 3 of {', '.join(METRICS)}, got {len(objectives)}")
    allowed = ALGORITHM_OBJECTIVES[algo]
    if len(objectives) not in allowed:
        fits = ", ".join(a for a, n in ALGORITHM_OBJECTIVES.items() if len(objectives) in n)
        raise UserError(
            f"{where}: algorithm {algo!r} optimises {' or '.join(map(str, allowed))} objective(s), but "
            f"optimization_metrics has {len(objectives)} ({', '.join(objectives)}); with {len(objectives)} "
            f"objective(s) use one of: {fits}")
    population = _as_int("population", s.population, where, 2)
    num_evals = _as_int("num_evals", s.num_evals, where, 1)
    if population > num_evals:
        raise UserError(f"{where}: population ({population}) must not be greater than num_evals ({num_evals})")
    ref_acc = s.ref_acc
    if ref_acc is not None:
        ref_acc = _as_float("ref_acc", ref_acc, where, -1.0, 100.0)
        if ref_acc < 0:   # NNCF's "-1": not set
            ref_acc = None
    lat = s.latency
    if lat.runtime not in LATENCY_RUNTIMES:
        raise UserError(f"{where}: unknown {SECTION}.latency.runtime {lat.runtime!r}; valid: {', '.join(LATENCY_RUNTIMES)}")
    if lat.precision not in PRECISIONS:
        raise UserError(f"{where}: unknown {SECTION}.latency.precision {lat.precision!r}; valid: {', '.join(PRECISIONS)}")
    if lat.runtime == "torch" and lat.precision != "fp32":
        raise UserError(f"{where}: latency.runtime 'torch' measures FP32 only; set latency.precision to fp32 "
                        "or use runtime openvino for INT8")
    if s.num_constraints != 0:
        raise UserError(f"{where}: {SECTION}.num_constraints: {s.num_constraints!r} not supported: NNCF declared "
                        "constraints but never computed their values; only 0 is accepted")
    aspiration, weights = _rnsga2_params(s, algo, objectives, where)
    if s.predictor not in PREDICTORS:
        raise UserError(f"{where}: unknown {SECTION}.predictor {s.predictor!r}; valid: {', '.join(PREDICTORS)}")
    return dataclasses.replace(
        s,
        algorithm=algo,
        optimization_metrics=objectives,
        measurements=measurements,
        num_evals=num_evals,
        population=population,
        seed=_as_int("seed", s.seed, where, 0),
        crossover_prob=_as_float("crossover_prob", s.crossover_prob, where, 0.0, 1.0),
        crossover_eta=_as_float("crossover_eta", s.crossover_eta, where, 0.0, 1e6),
        mutation_prob=_as_float("mutation_prob", s.mutation_prob, where, 0.0, 1.0),
        mutation_eta=_as_float("mutation_eta", s.mutation_eta, where, 0.0, 1e6),
        ref_acc=ref_acc,
        acc_delta=_as_float("acc_delta", s.acc_delta, where, 0.0, 100.0),
        num_bn_samples=_as_int("batchnorm_adaptation.num_bn_adaptation_samples", s.num_bn_samples, where, 0),
        test_fraction=_as_float("test_fraction", s.test_fraction, where, 1e-9, 1.0),
        eval_batch_size=(None if s.eval_batch_size is None
                         else _as_int("eval_batch_size", s.eval_batch_size, where, 1)),
        linas_inner_evals=_as_int("linas_inner_evals", s.linas_inner_evals, where, 1),
        aspiration_points=aspiration,
        epsilon=_as_float("epsilon", s.epsilon, where, 1e-12, 1e6),
        weights=weights,
        latency=LatencySettings(
            runtime=lat.runtime, precision=lat.precision,
            batch_size=_as_int("latency.batch_size", lat.batch_size, where, 1),
            warmup=_as_int("latency.warmup", lat.warmup, where, 0),
            iterations=_as_int("latency.iterations", lat.iterations, where, 1),
            num_threads=_as_int("latency.num_threads", lat.num_threads, where, 0),
        ),
    )


def _rnsga2_params(s: SearchSettings, algo: str, objectives: tuple[str, ...], where: str):
    """RNSGA2's aspiration points and weights, checked (they matter only for rnsga2)."""
    points = s.aspiration_points
    if not (isinstance(points, (list, tuple)) and points and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_number(v) for v in p) for p in points)):
        raise UserError(f"{where}: {SECTION}.aspiration_points must be a list of [cost, -top1] pairs (NNCF's "
                        f"objective space), got {points!r}")
    weights = s.weights
    if weights is not None and not (isinstance(weights, (list, tuple)) and len(weights) == 2
                                    and all(_is_number(w) and w > 0 for w in weights)):
        raise UserError(f"{where}: {SECTION}.weights must be two positive numbers (one per objective), got {weights!r}")
    if not isinstance(s.extreme_points_as_ref_points, bool):
        raise UserError(f"{where}: {SECTION}.extreme_points_as_ref_points must be true or false")
    if algo == "rnsga2" and ("accuracy" not in objectives or len(objectives) != 2):
        raise UserError(f"{where}: algorithm rnsga2 (NNCF's RNSGA2) optimises accuracy and one cost metric; "
                        f"optimization_metrics is {', '.join(objectives)}")
    return (tuple(tuple(float(v) for v in p) for p in points),
            tuple(float(w) for w in weights) if weights is not None else None)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
