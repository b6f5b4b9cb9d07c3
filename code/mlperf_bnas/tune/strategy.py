"""The two searches: Offline grid (fastest settings) and Server bisection (highest valid QPS).

Both drive a ``TrialRunner``; every figure comes from a real, short LoadGen run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from mlperf_bnas.errors import RunFailed
from mlperf_bnas.tune.tuning_spec import TuningSpec
from mlperf_bnas.tune.trials import Trial, TrialRunner, require_success


@dataclass
class OfflineChoice:
    backend_options: dict[str, Any]
    samples_per_s: float
    target_qps: float                       # offline expected QPS written to the tuned conf
    trials: list[int] = field(default_factory=list)
    confirmed: bool | None = None
    #: Per repeated candidate: its runs, median, min, max and (max - min) / median.
    spread: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ServerChoice:
    backend_options: dict[str, Any]
    target_qps: float                       # highest VALID target QPS found
    capacity_samples_per_s: float           # Offline throughput with the same settings (upper bound)
    latency_bound_ms: float | None
    trials: list[int] = field(default_factory=list)
    confirmed: bool | None = None
    #: The repeats of the chosen QPS (``server_repeats``): per QPS tried, every run's verdict,
    #: p99 and completed rate, the median p99 and its spread (see ``server_spread``).
    repeats: list[dict[str, Any]] = field(default_factory=list)


def _offline_trial(runner: TrialRunner, spec: TuningSpec, options: dict[str, Any], estimate: float | None,
                   purpose: str, progress: str = "") -> Trial:
    """A short Offline run; without an estimate, a fixed-size probe first measures one."""
    if estimate is None:
        probe = require_success(runner.run("Offline", "probe", options, {
            "target_qps": 1, "min_duration": 1, "min_query_count": spec.probe_samples}, progress))
        estimate = probe.samples_per_s
        if not estimate:
            raise RunFailed(f"tuning probe #{probe.number} measured no throughput; see {probe.log_dir}")
    # LoadGen issues max(min_query_count, target_qps * min_duration) samples, so this run lasts
    # about trial_duration_ms when the candidate is as fast as the estimate.
    return runner.run("Offline", purpose, options, {
        "target_qps": round(estimate, 3), "min_duration": spec.trial_duration_ms, "min_query_count": 1}, progress)


def spread_of(rates: list[float]) -> dict[str, Any]:
    """What the repeated runs of one setting measured: the figures, their median and range."""
    med = statistics.median(rates)
    return {"runs": [round(r, 3) for r in rates], "median": round(med, 3), "min": round(min(rates), 3),
            "max": round(max(rates), 3), "relative_spread": round((max(rates) - min(rates)) / med, 4) if med else None}


def tune_offline(runner: TrialRunner, spec: TuningSpec, candidates: list[dict[str, Any]]) -> OfflineChoice:
    """Every grid point once; then the contenders (within ``repeat_within`` of the best figure)
    again, round-robin, until each has ``offline_repeats`` runs; the best *median* wins. One
    run's figure on a noisy machine picks whichever setting had the quiet minute."""
    estimate: float | None = None
    numbers: list[int] = []
    rates: dict[int, list[float]] = {}          # candidate index -> its successful figures
    for i, options in enumerate(candidates, 1):
        trial = _offline_trial(runner, spec, options, estimate, "grid", f"{i}/{len(candidates)}")
        numbers.append(trial.number)
        if trial.error or not trial.samples_per_s:
            continue
        estimate = max(estimate or 0.0, trial.samples_per_s)
        rates[i - 1] = [trial.samples_per_s]
    if not rates:
        raise RunFailed("every Offline tuning trial failed; see the trial logs listed above")
    top = max(r[0] for r in rates.values())
    contenders = [k for k, r in rates.items() if r[0] >= (1 - spec.repeat_within) * top]
    if spec.offline_repeats > 1:
        for round_no in range(2, spec.offline_repeats + 1):
            for k in contenders:                 # interleaved: a slow minute hits every contender
                trial = _offline_trial(runner, spec, candidates[k], estimate, "repeat",
                                       f"round {round_no}/{spec.offline_repeats}")
                numbers.append(trial.number)
                if not trial.error and trial.samples_per_s:
                    rates[k].append(trial.samples_per_s)
    medians = {k: statistics.median(r) for k, r in rates.items()}
    best = max(contenders, key=lambda k: medians[k])
    spread = [{"backend_options": candidates[k], **spread_of(rates[k])} for k in contenders]
    # target_qps from the highest figure the choice reached: LoadGen's Offline query is
    # target_qps x min_duration samples, so a quiet minute must still fill min_duration.
    return OfflineChoice(candidates[best], round(medians[best], 3),
                         round(max(rates[best]) * spec.offline_margin, 3), numbers, spread=spread)


def bisect_server_qps(runner: TrialRunner, spec: TuningSpec, options: dict[str, Any], capacity: float,
                      label: str = "", to_beat: float = 0.0) -> tuple[float, float | None, list[int]]:
    """Highest target QPS whose short Server run is VALID (latency bound + early stopping met).

    The answer lies in (0, capacity]: a Server run cannot complete more than the Offline
    throughput with the same settings. The first guess is 80% of it (where a CPU backend's
    Server result usually lands), then plain bisection until the bracket is within
    ``qps_precision``. Returns (qps, latency bound in ms, trial numbers).

    ``to_beat`` (the best earlier candidate's QPS): this candidate only matters above it, so
    the search starts just above it and the bracket's lower end never goes below it. A
    candidate that cannot beat it costs one INVALID trial instead of a bisection down to its
    own, lower, maximum (those are the slowest trials: 500 queries at a low rate). Returns
    QPS 0 when it is not beaten.
    """
    low, high = 0.0, capacity
    guess = 0.8 * capacity
    if to_beat:
        guess = to_beat * (1 + spec.qps_precision)
        if guess > capacity:
            print(f"    Server search skipped: capacity {capacity:.1f} samples/s cannot beat the best "
                  f"candidate's {to_beat:.1f} QPS", flush=True)
            return 0.0, None, []
    floor = max(spec.min_server_fraction * capacity, spec.server_min_queries / spec.max_server_trial_s)
    bound_ms: float | None = None
    numbers: list[int] = []
    for step in range(spec.max_server_trials):
        if guess < floor:
            print(f"    Server search stops: {guess:.2f} QPS is below the floor {floor:.2f} "
                  f"(tuning.min_server_fraction / max_server_trial_s)", flush=True)
            break
        trial = require_success(runner.run("Server", "bisect", options, {
            "target_qps": round(guess, 3), "min_duration": spec.trial_duration_ms,
            "min_query_count": spec.server_min_queries}, f"{label}step {step + 1}, bracket [{low:.1f}, {high:.1f}]"))
        numbers.append(trial.number)
        bound_ms = trial.latency_bound_ms or bound_ms
        if trial.valid:
            low = guess
        else:
            high = guess
            fastest = trial.latency_ms.get("min")
            if bound_ms and fastest is not None and fastest > bound_ms:
                print(f"    Server search stops: even the fastest query took {fastest:.1f} ms, more than the "
                      f"{bound_ms:g} ms bound, so no lower QPS can be VALID with these settings", flush=True)
                break
        bottom = max(low, to_beat)
        if high - bottom <= spec.qps_precision * high:
            if to_beat and not low:
                print(f"    Server search stops: {high:.1f} QPS was not VALID, so these settings do not beat "
                      f"the best candidate's {to_beat:.1f} QPS", flush=True)
            break
        guess = (bottom + high) / 2
    return low, bound_ms, numbers


def measured_capacity(runner: TrialRunner, options: dict[str, Any]) -> float:
    """The highest Offline throughput any trial measured with these settings.

    Each Offline run of the same settings measures the same capacity with its own noise, and
    on a shared or virtual machine noise (a stall, a neighbour) only ever lowers a figure. A
    capacity trial that came out low would cap the Server bisection below what the settings
    can do (seen here: 455 samples/s against 540 in the grid run of the same settings two
    minutes earlier), so the bisection's upper end is the best of them."""
    rates = [t.samples_per_s for t in runner.trials
             if t.scenario == "Offline" and t.backend_options == options and not t.error and t.samples_per_s]
    return max(rates, default=0.0)


def server_spread(target_qps: float, runs: list[Trial]) -> dict[str, Any]:
    """What the repeated Server runs at one QPS saw: each run's verdict, p99 and completed rate,
    how many were VALID, the median p99 and its (max - min) / median."""
    p99 = [t.latency_ms["p99"] for t in runs if "p99" in t.latency_ms]
    rates = [t.samples_per_s for t in runs if t.samples_per_s]
    med = statistics.median(p99) if p99 else None
    return {"target_qps": target_qps,
            "runs": [{"trial": t.number, "valid": t.valid, "p99_ms": t.latency_ms.get("p99"),
                      "samples_per_s": t.samples_per_s, "invalid_reason": t.invalid_reason} for t in runs],
            "valid_runs": sum(t.valid for t in runs), "median_p99_ms": med,
            "min_p99_ms": min(p99) if p99 else None, "max_p99_ms": max(p99) if p99 else None,
            "relative_spread": round((max(p99) - min(p99)) / med, 4) if med else None,
            "median_samples_per_s": statistics.median(rates) if rates else None}


def repeat_server(runner: TrialRunner, spec: TuningSpec, choice: ServerChoice, label: str = "",
                  max_steps: int = 3) -> ServerChoice:
    """Run the chosen QPS until it has ``server_repeats`` runs (the bisection's VALID one counts);
    it stands when most of them are VALID (so the median run is), else the QPS steps down by
    ``qps_precision`` and is repeated afresh, at most ``max_steps`` times. One VALID run on a
    noisy machine may have had the quiet minute, as one Offline figure may."""
    qps = choice.target_qps
    first = [t for t in runner.trials if t.number in choice.trials and t.scenario == "Server" and t.valid
             and t.conf_values.get("target_qps") == round(qps, 3)]
    runs: list[Trial] = first[-1:]
    for step in range(max_steps + 1):
        while len(runs) < spec.server_repeats:
            trial = require_success(runner.run("Server", "repeat", choice.backend_options, {
                "target_qps": round(qps, 3), "min_duration": spec.trial_duration_ms,
                "min_query_count": spec.server_min_queries},
                f"{label}run {len(runs) + 1}/{spec.server_repeats} at {qps:.1f} QPS"))
            choice.trials.append(trial.number)
            runs.append(trial)
        spread = server_spread(round(qps, 3), runs)
        choice.repeats.append(spread)
        if 2 * spread["valid_runs"] > len(runs):
            choice.target_qps = round(qps, 3)
            return choice
        print(f"    {qps:.1f} QPS: {spread['valid_runs']} of {len(runs)} runs VALID (median p99 "
              f"{spread['median_p99_ms'] or 0:.1f} ms): stepping down {100 * spec.qps_precision:.0f}%", flush=True)
        qps *= 1 - spec.qps_precision
        runs = []
    choice.target_qps = 0.0
    return choice


def tune_server(runner: TrialRunner, spec: TuningSpec, candidates: list[dict[str, Any]],
                offline: OfflineChoice | None) -> ServerChoice:
    best: ServerChoice | None = None
    found: list[ServerChoice] = []
    for i, options in enumerate(candidates, 1):
        label = f"{i}/{len(candidates)} " if len(candidates) > 1 else ""
        # The tuned Offline throughput is a good length estimate only for the same settings.
        estimate = offline.samples_per_s if offline and offline.backend_options == options else None
        capacity_trial = require_success(_offline_trial(runner, spec, options, estimate, "capacity", label))
        capacity = measured_capacity(runner, options)
        if capacity <= 0:
            raise RunFailed(f"capacity trial #{capacity_trial.number} measured no throughput")
        qps, bound_ms, numbers = bisect_server_qps(runner, spec, options, capacity, label,
                                                   to_beat=best.target_qps if best else 0.0)
        choice = ServerChoice(options, round(qps, 3), capacity, bound_ms, [capacity_trial.number, *numbers])
        found.append(choice)
        if best is None or choice.target_qps > best.target_qps:
            best = choice
    assert best is not None
    if spec.server_repeats > 1 and best.target_qps > 0:
        # Repeat the best; should its QPS not stand, the next candidate whose one run beat what
        # is left is repeated too, and the best repeated QPS wins.
        verified: ServerChoice | None = None
        for choice in sorted(found, key=lambda c: -c.target_qps):
            if choice.target_qps <= 0 or (verified is not None and choice.target_qps <= verified.target_qps):
                break
            label = f"{found.index(choice) + 1}/{len(found)} " if len(found) > 1 else ""
            repeat_server(runner, spec, choice, label)
            if verified is None or choice.target_qps > verified.target_qps:
                verified = choice
        best = verified if verified is not None else best
    if best.target_qps <= 0:
        last = runner.trials[-1]
        p50 = last.latency_ms.get("p50")
        raise RunFailed(
            f"no Server target_qps tested was VALID at the {best.latency_bound_ms} ms bound (last trial #{last.number}: "
            f"{last.conf_values.get('target_qps')} QPS, p50 {p50 if p50 is None else round(p50, 1)} ms); the service "
            "time is too close to the bound on this machine: raise target_latency in user.conf, or add faster "
            "Server settings to tuning.Server (e.g. fewer streams, more threads each)")
    return best


def confirm(runner: TrialRunner, spec: TuningSpec, scenario: str, options: dict[str, Any], target_qps: float,
            attempts: int = 3) -> tuple[float, bool, list[int]]:
    """Run once at the base conf's full length. Server: an INVALID run lowers the QPS by
    ``qps_precision`` and tries again. Offline: a run that ended before its minimum duration
    (the system was faster than expected) raises the expected QPS."""
    numbers: list[int] = []
    for attempt in range(attempts):
        trial = require_success(runner.run(scenario, "confirm", options, {"target_qps": round(target_qps, 3)},
                                           f"full length, attempt {attempt + 1}/{attempts}"))
        numbers.append(trial.number)
        if trial.valid:
            return target_qps, True, numbers
        if scenario == "Server":
            target_qps *= 1 - spec.qps_precision
        elif trial.samples_per_s:
            target_qps = max(target_qps, trial.samples_per_s) * spec.offline_margin
    return target_qps, False, numbers
