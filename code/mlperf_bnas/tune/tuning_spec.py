"""The ``tuning:`` section of a benchmark's ``config.yaml``, validated.

::

    tuning:
      trial_duration_ms: 4000        # length of each short LoadGen trial
      offline_margin: 1.1            # Offline expected QPS = measured throughput x margin
      qps_precision: 0.03            # Server bisection stops when (high - low) <= precision x high
      max_server_trials: 12
      server_min_queries: 1000       # Server trials also run at least this many queries
      probe_samples: 64              # samples of the first, throughput-estimating Offline run
      min_server_fraction: 0.05      # Server search floor, as a fraction of the measured capacity
      max_server_trial_s: 180        # ... and the QPS below which one Server trial would run longer
      offline_repeats: 3             # runs of each close Offline contender (the choice is by median)
      repeat_within: 0.15            # ... a contender: within this fraction of the best grid figure
      server_repeats: 3              # runs of the chosen Server QPS; it stands when most are VALID
      Offline:
        backend_options:             # candidate values; every combination is tried
          num_streams: [1, 2]
          batch_size: [1, 4, 8]
      Server:
        backend_options:
          num_requests: [2, 4]

Every combination of the listed values is tried (a full grid: the grids that
matter for a CPU backend are small). A scenario with no grid is tuned with the
backend options ``config.yaml`` already resolves for it.

A candidate may be written relative to the machine, so one grid fits 2 cores and
2 x 64: ``cores`` (this machine's physical cores) or ``cores/N`` (at least 1), e.g.
``num_streams: [cores/4, cores/2, cores]`` is [1, 1, 2] -> [1, 2] on 2 cores and
[32, 64, 128] on a 2 x 64-core Xeon (Intel's 2-core instances are ``cores/2``).
Duplicates after resolving are tried once.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from mlperf_bnas.enums import Scenario
from mlperf_bnas.errors import UserError

#: The scenarios the tuner has a search for (Offline: a grid; Server: a QPS bisection).
SCENARIOS = (Scenario.OFFLINE, Scenario.SERVER)
_SCALARS = {"trial_duration_ms": int, "offline_margin": float, "qps_precision": float,
            "max_server_trials": int, "max_offline_trials": int, "server_min_queries": int,
            "probe_samples": int, "min_server_fraction": float, "max_server_trial_s": float,
            "offline_repeats": int, "repeat_within": float, "server_repeats": int}
_SCENARIO_KEYS = ("backend_options",)


@dataclass(frozen=True)
class TuningSpec:
    trial_duration_ms: int = 4000
    offline_margin: float = 1.1
    qps_precision: float = 0.03
    max_server_trials: int = 12
    max_offline_trials: int = 32
    # Server trials run until this many queries as well as trial_duration_ms: LoadGen's early
    # stopping needs several hundred queries before a 99th-percentile bound can be met.
    server_min_queries: int = 1000
    # The first Offline trial runs this many samples to estimate throughput before the timed trials.
    probe_samples: int = 64
    # The Server search gives up below this fraction of the capacity, and below the QPS at
    # which server_min_queries would take longer than max_server_trial_s.
    min_server_fraction: float = 0.05
    max_server_trial_s: float = 180.0
    # Noise: the same Offline setting measured 197.5, 84.7, 101 and 138 samples/s within one
    # tuning run on a shared Xeon. Every grid point runs once; the contenders (within
    # repeat_within of the best figure) run offline_repeats times in all, interleaved, and
    # the choice is the best median; the spread seen is recorded. 1 turns repeats off.
    offline_repeats: int = 3
    repeat_within: float = 0.15
    # The same for Server: the chosen QPS runs server_repeats times in all (its bisection run
    # counts) and stands when most runs are VALID, else it steps down by qps_precision; every
    # run's p99, the median and the spread are recorded. 1 turns repeats off.
    server_repeats: int = 3
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)   # scenario -> option -> values

    def candidates(self, scenario: str, cores: int | None = None) -> list[dict[str, Any]]:
        """Every combination of the scenario's grid, in a stable order ([{}] when there is no grid);
        ``cores/N`` values resolved for ``cores`` physical cores (default: this machine's)."""
        grid = self.grids.get(scenario, {})
        keys = sorted(grid)
        if any(_is_relative(v) for k in keys for v in grid[k]):
            cores = cores or _physical_cores()
        resolved = {k: list(dict.fromkeys(_resolve(v, cores) for v in grid[k])) for k in keys}
        return [dict(zip(keys, values)) for values in itertools.product(*(resolved[k] for k in keys))]


_RELATIVE = re.compile(r"^cores(?:/([1-9][0-9]*))?$")


def _is_relative(value: Any) -> bool:
    return isinstance(value, str) and bool(_RELATIVE.match(value))


def _resolve(value: Any, cores: int | None) -> Any:
    m = _RELATIVE.match(value) if isinstance(value, str) else None
    if not m or cores is None:
        return value
    return max(1, cores // int(m.group(1) or 1))


def _physical_cores() -> int:
    from mlperf_bnas.backends.cpu import topology

    return len(topology().cores)


def parse_tuning(raw: dict[str, Any] | None, where: str) -> TuningSpec:
    """Build a ``TuningSpec`` from ``config.yaml``'s ``tuning`` mapping; ``where`` names the file."""
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{where}: 'tuning' must be a mapping, got {type(raw).__name__}")
    raw = dict(raw or {})
    values: dict[str, Any] = {}
    grids: dict[str, dict[str, list[Any]]] = {}
    for key, value in raw.items():
        if key in _SCALARS:
            kind = _SCALARS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where}: tuning.{key} must be a number, got {value!r}")
            values[key] = kind(value)
        elif key in SCENARIOS:
            grids[key] = _parse_grid(value, f"{where}: tuning.{key}")
        else:
            raise UserError(f"{where}: unknown key tuning.{key}; valid keys: "
                            + ", ".join(sorted(list(_SCALARS) + list(SCENARIOS))))
    spec = TuningSpec(**values, grids=grids)
    if spec.trial_duration_ms < 500:
        raise UserError(f"{where}: tuning.trial_duration_ms must be >= 500 (got {spec.trial_duration_ms})")
    if spec.offline_margin < 1.0:
        raise UserError(f"{where}: tuning.offline_margin must be >= 1.0 so the run lasts its minimum "
                        f"duration (got {spec.offline_margin})")
    if not 0 < spec.qps_precision < 0.5:
        raise UserError(f"{where}: tuning.qps_precision must be in (0, 0.5) (got {spec.qps_precision})")
    if not 0 < spec.min_server_fraction < 1 or spec.max_server_trial_s <= 0:
        raise UserError(f"{where}: tuning.min_server_fraction must be in (0, 1) and max_server_trial_s > 0")
    if spec.server_min_queries < 1 or spec.probe_samples < 1:
        raise UserError(f"{where}: tuning.server_min_queries and tuning.probe_samples must be >= 1")
    if spec.offline_repeats < 1 or not 0 <= spec.repeat_within < 1:
        raise UserError(f"{where}: tuning.offline_repeats must be >= 1 and repeat_within in [0, 1)")
    if spec.server_repeats < 1:
        raise UserError(f"{where}: tuning.server_repeats must be >= 1 (1: no repeats)")
    if spec.max_server_trials < 2 or spec.max_offline_trials < 1:
        raise UserError(f"{where}: tuning.max_server_trials must be >= 2 and max_offline_trials >= 1")
    for scenario in grids:
        n = len(spec.candidates(scenario))
        if scenario == "Offline" and n > spec.max_offline_trials:
            raise UserError(f"{where}: tuning.Offline grid has {n} combinations, more than "
                            f"tuning.max_offline_trials={spec.max_offline_trials}; shrink the grid or raise the limit")
    return spec


def _parse_grid(value: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a mapping with key(s) {', '.join(_SCENARIO_KEYS)}")
    unknown = sorted(set(value) - set(_SCENARIO_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(_SCENARIO_KEYS)}")
    options = value.get("backend_options") or {}
    if not isinstance(options, dict):
        raise UserError(f"{where}.backend_options must map option names to lists of candidate values")
    grid: dict[str, list[Any]] = {}
    for name, candidates in options.items():
        if not isinstance(candidates, list) or not candidates:
            raise UserError(f"{where}.backend_options.{name} must be a non-empty list of candidate values, "
                            f"e.g. [1, 2, 4]; got {candidates!r}")
        if len(set(map(repr, candidates))) != len(candidates):
            raise UserError(f"{where}.backend_options.{name} lists a value twice: {candidates!r}")
        grid[name] = list(candidates)
    return grid
