"""The searches' logic against a scripted machine (no LoadGen; the LoadGen-backed tuner is
tested end to end in test_tune_simulated.py)."""

from __future__ import annotations

from typing import Any

from mlperf_bnas.tune.strategy import tune_offline, tune_server
from mlperf_bnas.tune.tuning_spec import TuningSpec
from mlperf_bnas.tune.trials import Trial


class ScriptedMachine:
    """Offline runs measure the next figure of a noisy series; a Server run is VALID exactly
    when its target QPS is at most ``server_max_qps``."""

    def __init__(self, offline_rates: list[float], server_max_qps: float):
        self.offline_rates = list(offline_rates)
        self.server_max_qps = server_max_qps
        self.trials: list[Trial] = []

    def run(self, scenario: str, purpose: str, backend_options: dict[str, Any], conf_values: dict[str, Any],
            progress: str = "") -> Trial:
        trial = Trial(len(self.trials) + 1, scenario, purpose, dict(backend_options), dict(conf_values), "-")
        if scenario == "Offline":
            trial.samples_per_s, trial.valid = self.offline_rates.pop(0), True
        else:
            qps = conf_values["target_qps"]
            trial.samples_per_s, trial.valid = qps, qps <= self.server_max_qps
            trial.latency_bound_ms, trial.latency_ms = 100.0, {"min": 5.0}
        self.trials.append(trial)
        return trial


def test_a_low_capacity_measurement_does_not_cap_the_server_search():
    # probe 300, grid 540, then the capacity run of the same settings stalls and reads 455:
    # the settings can serve 500 QPS, which only a bracket up to 540 can find.
    machine = ScriptedMachine([300.0, 540.0, 455.0], server_max_qps=500.0)
    spec = TuningSpec(qps_precision=0.02, offline_repeats=1)
    options = {"num_streams": 2}
    offline = tune_offline(machine, spec, [options])
    server = tune_server(machine, spec, [options], offline)
    assert server.capacity_samples_per_s == 540.0
    assert 500.0 * (1 - spec.qps_precision) <= server.target_qps <= 500.0


def test_capacity_comes_only_from_the_same_settings():
    # Another candidate's faster Offline run must not widen this candidate's bracket.
    machine = ScriptedMachine([300.0, 900.0, 400.0, 410.0], server_max_qps=380.0)
    spec = TuningSpec(qps_precision=0.02, offline_repeats=1)
    fast, slow = {"num_streams": 2, "batch_size": 8}, {"num_streams": 2, "batch_size": 1}
    offline = tune_offline(machine, spec, [fast])
    server = tune_server(machine, spec, [slow], offline)
    assert server.capacity_samples_per_s == 410.0
    assert 380.0 * (1 - spec.qps_precision) <= server.target_qps <= 380.0


def test_offline_choice_is_by_median_of_interleaved_repeats():
    # A's one lucky grid run (200) beats B's 180, but A's repeats read 120 and 125: by median
    # B (180) is the faster setting. C (90) is not a contender and is not repeated.
    a, b, c = {"batch_size": 4}, {"batch_size": 8}, {"batch_size": 1}
    machine = ScriptedMachine([100.0, 200.0, 180.0, 90.0, 120.0, 178.0, 125.0, 182.0], server_max_qps=0)
    choice = tune_offline(machine, TuningSpec(offline_repeats=3, repeat_within=0.15), [a, b, c])
    assert choice.backend_options == b
    assert choice.samples_per_s == 180.0                       # the median
    assert choice.target_qps == round(182.0 * 1.1, 3)          # the highest run x margin
    repeats = [t for t in machine.trials if t.purpose == "repeat"]
    assert [t.backend_options for t in repeats] == [a, b, a, b]     # interleaved
    spread = {s["median"]: s for s in choice.spread}
    assert set(spread) == {125.0, 180.0}
    assert spread[125.0]["runs"] == [200.0, 120.0, 125.0] and spread[125.0]["relative_spread"] == 0.64


def test_grid_values_relative_to_the_machine():
    from mlperf_bnas.tune.tuning_spec import parse_tuning

    spec = parse_tuning({"Offline": {"backend_options": {"num_streams": ["cores/4", "cores/2", "cores"],
                                                         "batch_size": [1, 4]}}}, "config.yaml")
    two = spec.candidates("Offline", cores=2)
    assert [(c["batch_size"], c["num_streams"]) for c in two] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    xeon = spec.candidates("Offline", cores=128)
    assert sorted({c["num_streams"] for c in xeon}) == [32, 64, 128]
    assert all(isinstance(c["num_streams"], int) for c in spec.candidates("Offline"))     # this machine


def _server_trials(machine: ScriptedMachine, options: dict[str, Any]) -> list[Trial]:
    return [t for t in machine.trials if t.scenario == "Server" and t.backend_options == options]


def test_a_candidate_that_cannot_beat_the_best_costs_one_trial():
    first, second = {"num_streams": 2}, {"num_streams": 1}
    machine = ScriptedMachine([100.0] * 6, server_max_qps=80.0)
    spec = TuningSpec(qps_precision=0.02)
    server = tune_server(machine, spec, [first], None)
    assert 80.0 * (1 - spec.qps_precision) <= server.target_qps <= 80.0
    # The same machine answers for the second candidate: it is no better, and one INVALID run
    # just above the best QPS shows it.
    best = tune_server(machine, spec, [first, second], None)
    assert best.backend_options == first
    assert len(_server_trials(machine, second)) == 1
    assert _server_trials(machine, second)[0].conf_values["target_qps"] > best.target_qps


def test_a_better_later_candidate_is_still_found():
    class TwoCandidates(ScriptedMachine):
        def run(self, scenario, purpose, backend_options, conf_values, progress=""):
            self.server_max_qps = 60.0 if backend_options["num_streams"] == 1 else 90.0
            return super().run(scenario, purpose, backend_options, conf_values, progress)

    machine = TwoCandidates([100.0] * 4, server_max_qps=0.0)
    spec = TuningSpec(qps_precision=0.02)
    best = tune_server(machine, spec, [{"num_streams": 1}, {"num_streams": 2}], None)
    assert best.backend_options == {"num_streams": 2}
    assert 90.0 * (1 - spec.qps_precision) <= best.target_qps <= 90.0


class NoisyServer(ScriptedMachine):
    """Server runs at or below ``server_max_qps`` are VALID except the ones listed as unlucky
    (by their order among Server runs); each run reports a p99 of its own."""

    def __init__(self, offline_rates, server_max_qps, unlucky=(), lucky=()):
        super().__init__(offline_rates, server_max_qps)
        self.unlucky, self.lucky, self.server_runs = set(unlucky), set(lucky), 0

    def run(self, scenario, purpose, backend_options, conf_values, progress=""):
        trial = super().run(scenario, purpose, backend_options, conf_values, progress)
        if scenario == "Server":
            self.server_runs += 1
            if self.server_runs in self.unlucky:
                trial.valid = False
            if self.server_runs in self.lucky:
                trial.valid = True
            trial.latency_ms["p99"] = 50.0 + self.server_runs
        return trial


def test_the_chosen_server_qps_is_repeated_and_the_spread_recorded():
    machine = NoisyServer([100.0] * 4, server_max_qps=80.0)
    spec = TuningSpec(qps_precision=0.02, server_repeats=3)
    best = tune_server(machine, spec, [{"num_streams": 2}], None)
    assert 80.0 * (1 - spec.qps_precision) <= best.target_qps <= 80.0
    repeats = [t for t in machine.trials if t.purpose == "repeat"]
    assert len(repeats) == 2 and all(t.conf_values["target_qps"] == best.target_qps for t in repeats)
    (spread,) = best.repeats
    assert spread["valid_runs"] == 3 and len(spread["runs"]) == 3
    p99 = [r["p99_ms"] for r in spread["runs"]]
    assert spread["median_p99_ms"] == sorted(p99)[1] and spread["min_p99_ms"] == min(p99)
    assert all(t.number in best.trials for t in repeats)


def test_a_lucky_server_run_does_not_stand_alone():
    # The capacity is 100; the machine holds 60 QPS, but the run at 80 QPS (the first guess)
    # had a quiet minute. Its repeats fail, so 80 steps down, and down again, to what holds.
    machine = NoisyServer([100.0] * 4, server_max_qps=60.0, lucky={1})
    spec = TuningSpec(qps_precision=0.25, server_repeats=3)
    best = tune_server(machine, spec, [{"num_streams": 2}], None)
    assert best.target_qps <= 60.0
    verdicts = [(r["target_qps"], r["valid_runs"], len(r["runs"])) for r in best.repeats]
    assert verdicts[0][1] < 2 and verdicts[-1][1] >= 2 and verdicts[-1][0] == best.target_qps


def test_one_unlucky_repeat_does_not_step_the_qps_down():
    machine = NoisyServer([100.0] * 4, server_max_qps=80.0)
    spec = TuningSpec(qps_precision=0.02, server_repeats=3)
    first = tune_server(machine, spec, [{"num_streams": 2}], None)
    runs_before = machine.server_runs
    machine2 = NoisyServer([100.0] * 4, server_max_qps=80.0, unlucky={runs_before - 1})
    again = tune_server(machine2, spec, [{"num_streams": 2}], None)
    assert again.target_qps == first.target_qps and again.repeats[0]["valid_runs"] == 2
