"""`mlperf-bnas tune` against the simulated backend, whose best settings are known analytically.

One tuning run (session fixture, real LoadGen trials in their own processes) is shared by
the assertions below. The simulated backend (backends/simulated.py) serves a batch of b
samples in ``fixed_ms + per_sample_ms*b (+ spill beyond cache_batch)`` on ``workers``
parallel workers, so:

* Offline: capacity(workers, b) = workers * b / t(b); with the costs below the best grid
  point is workers=2, batch_size=8 (1684/s), 34% ahead of the runner-up, so measurement
  noise cannot flip the choice, and it is not simply the largest batch.
* Server: single-sample queries with Poisson arrivals on 2 workers of fixed 6 ms service
  is an M/D/2 queue. Its maximum arrival rate with p99 latency <= 50 ms is computed
  without simulation in tune/queueing.py (Lindley's equation of the equivalent E_2/D/1
  queue, solved numerically; checked against Erlang's exact M/D/1 formula below): 285/s.
  The tuner must land within 10% of it. It lands a little below: LoadGen's early stopping
  on ~1200-query trials demands about the 99.5th percentile (analytic 278/s), and the
  bisection stops within its 2% precision.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from mlperf_bnas.backends.simulated import SimulatedCost
from mlperf_bnas.loadgen.userconf import MARKER, read, tuned_backend_options
from mlperf_bnas.tune.sizing import Machine, conf_machine
from mlperf_bnas.tune.queueing import max_server_qps, md1_waiting_cdf, waiting_time_tail

# A whole tuning search of real, short LoadGen trials: minutes.
pytestmark = pytest.mark.slow

COST = SimulatedCost(fixed_ms=5.5, per_sample_ms=0.5, cache_batch=8, spill_per_sample_ms=1.5)
WORKERS = (1, 2)
BATCHES = (4, 8, 16)
BOUND_MS = 50
SYSTEM = "simsys"

CONFIG = f"""\
benchmark: simulated-test
loadgen_model: resnet50
model: resnet50
dataset: imagenet
backend: simulated
accuracy: imagenet
postprocess: none
backend_options: {{fixed_ms: {COST.fixed_ms}, per_sample_ms: {COST.per_sample_ms}, cache_batch: {COST.cache_batch},
                  spill_per_sample_ms: {COST.spill_per_sample_ms}, workers: 2, batch_size: 1}}
tuning:
  trial_duration_ms: 1500
  server_min_queries: 1200
  qps_precision: 0.02
  Offline:
    backend_options: {{workers: {list(WORKERS)}, batch_size: {list(BATCHES)}}}
"""
USER_CONF = f"""\
# the user's own settings: kept, verbatim, in the tuned conf
resnet50.*.performance_sample_count_override = 64
resnet50.Server.target_latency = {BOUND_MS}
"""


def make_benchmark(root: Path, config: str = CONFIG) -> Path:
    bench = root / "simulated-test"
    bench.mkdir(parents=True)
    (bench / "config.yaml").write_text(config)
    (bench / "user.conf").write_text(USER_CONF)
    return bench


@pytest.fixture(scope="session")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    bench = make_benchmark(root)
    proc = run_cli("tune", "--benchmark", str(bench), "--output-dir", str(root / "out"), "--system", SYSTEM,
                   "--user-conf", str(bench / "user.conf"), timeout=900)
    record = json.loads((bench / f"user.{SYSTEM}.tuned.json").read_text())
    return bench, root / "out", record, proc.stdout


def test_offline_picks_the_known_best_setting(tuned):
    _bench, _out, record, stdout = tuned
    grid = {(w, b): COST.offline_capacity_per_s(w, b) for w in WORKERS for b in BATCHES}
    best = max(grid, key=grid.get)
    assert best == (2, 8)
    offline = record["scenarios"]["Offline"]
    assert offline["backend_options"] == {"workers": 2, "batch_size": 8}
    # Every grid point was really measured, each by its own LoadGen run.
    measured = {(t["backend_options"]["workers"], t["backend_options"]["batch_size"]): t["samples_per_s"]
                for t in offline["trial_records"] if t["purpose"] == "grid"}
    assert set(measured) == set(grid)
    # The measured throughput is the simulated capacity (less the harness overhead).
    assert 0.8 * grid[best] < offline["samples_per_s"] <= 1.02 * grid[best]
    # The choice's figure is the median of its repeated runs; target_qps is its highest run x margin.
    chosen = [s for s in offline["spread"] if s["backend_options"] == {"workers": 2, "batch_size": 8}]
    assert chosen and len(chosen[0]["runs"]) == 3 and chosen[0]["median"] == pytest.approx(offline["samples_per_s"])
    assert offline["target_qps"] == pytest.approx(chosen[0]["max"] * 1.1, rel=1e-3)
    assert "Offline: workers=2 batch_size=8" in stdout or "batch_size=8 workers=2" in stdout


def test_server_qps_within_10_percent_of_the_md2_maximum(tuned):
    _bench, _out, record, _stdout = tuned
    server = record["scenarios"]["Server"]
    analytic = max_server_qps(COST.batch_ms(1) / 1000, 2, BOUND_MS / 1000, 0.99)
    assert 280 < analytic < 290   # the figure quoted in the module docstring
    assert server["latency_bound_ms"] == BOUND_MS
    assert abs(server["target_qps"] - analytic) <= 0.10 * analytic, (server["target_qps"], analytic)
    bisect = [t for t in server["trial_records"] if t["purpose"] == "bisect"]
    repeats = [t for t in server["trial_records"] if t["purpose"] == "repeat"]
    # The answer is a target QPS whose own runs were VALID (most of its 3), and the search bracketed it.
    assert any(not t["valid"] for t in bisect)
    final = server["repeats"][-1]
    assert final["target_qps"] == server["target_qps"] and len(final["runs"]) == 3 and final["valid_runs"] >= 2
    at_answer = [t for t in bisect + repeats if t["conf_values"]["target_qps"] == server["target_qps"]]
    assert sum(t["valid"] for t in at_answer) >= 2 and repeats
    assert final["median_p99_ms"] is not None and final["median_p99_ms"] <= BOUND_MS


def test_the_evidence_holds_every_trial_of_the_run(tuned):
    # Probes, capacity runs and losing candidates included, not only the choice's own trials.
    _bench, _out, record, stdout = tuned
    printed = {int(line.split("#")[1].split()[0]) for line in stdout.splitlines() if line.startswith("[tune ")}
    recorded = {t["number"] for s in record["scenarios"].values() for t in s["trial_records"]}
    assert printed and recorded == printed
    assert any(t["purpose"] == "probe" for t in record["scenarios"]["Offline"]["trial_records"])


def test_tuned_conf_keeps_the_user_conf_and_records_the_choice(tuned):
    bench, out, record, _stdout = tuned
    conf = bench / f"user.{SYSTEM}.tuned.conf"
    text = conf.read_text()
    assert text.startswith(MARKER)
    assert USER_CONF in text
    offline = read(conf).settings("resnet50", "Offline")
    server = read(conf).settings("resnet50", "Server")
    assert float(offline["target_qps"]) == pytest.approx(record["scenarios"]["Offline"]["target_qps"], rel=1e-4)
    assert float(server["target_qps"]) == pytest.approx(record["scenarios"]["Server"]["target_qps"], rel=1e-4)
    assert server["target_latency"] == str(BOUND_MS)
    assert tuned_backend_options(conf, "Offline") == {"workers": 2, "batch_size": 8}
    # The machine the trials ran on (a run on another machine stops: tests/test_sizing.py).
    assert conf_machine(conf) == Machine.this()
    # The user's own conf is untouched, and a copy of the evidence sits in the output tree for the report.
    assert (bench / "user.conf").read_text() == USER_CONF
    assert json.loads((out / "build" / bench.name / "tuning" / SYSTEM / "tuning.json").read_text()) == record



def test_a_run_with_the_tuned_conf_uses_the_tuned_backend_settings(tuned, tmp_path):
    # The tuned target_qps was measured on the tuned settings; `mlperf-bnas run` with that conf
    # must apply them without any --set (and an explicit --set still wins).
    bench, _out, _record, _stdout = tuned
    short = "resnet50.*.min_duration = 300\nresnet50.Offline.min_query_count = 64\n"
    conf = tmp_path / "tuned.conf"            # still a tuned conf (marker first), made short
    conf.write_text((bench / f"user.{SYSTEM}.tuned.conf").read_text() + short)
    plain = tmp_path / "plain.conf"
    plain.write_text(USER_CONF + short)
    common = ("run", "--benchmark", str(bench), "--output-dir", str(tmp_path), "--system", SYSTEM,
              "--scenario", "Offline", "--log-dir")
    proc = run_cli(*common, str(tmp_path / "tuned"), "--user-conf", str(conf))
    assert "backend: {'batch_size': 8, 'workers': 2" in proc.stderr
    proc = run_cli(*common, str(tmp_path / "set"), "--user-conf", str(conf), "--set", "backend_options.batch_size=4")
    assert "backend: {'batch_size': 4, 'workers': 2" in proc.stderr
    # The user's own conf carries no settings: config.yaml's apply (workers 2, batch 1).
    proc = run_cli(*common, str(tmp_path / "plain"), "--user-conf", str(plain))
    assert "backend: {'batch_size': 1, 'workers': 2" in proc.stderr


def test_run_trace_gives_the_report_every_query_latency(tuned, tmp_path):
    # Off by default (an empty trace file: LoadGen creates it either way); --trace fills it.
    from mlperf_bnas.loadgen.logs import read_detail_log
    from mlperf_bnas.report.collect import read_trace_latencies

    bench, _out, _record, _stdout = tuned
    conf = tmp_path / "short.conf"
    conf.write_text(USER_CONF + "resnet50.Server.target_qps = 100\nresnet50.Server.min_duration = 300\n"
                    "resnet50.Server.min_query_count = 50\n")
    common = ("run", "--benchmark", str(bench), "--output-dir", str(tmp_path), "--system", SYSTEM,
              "--scenario", "Server", "--user-conf", str(conf), "--log-dir")
    run_cli(*common, str(tmp_path / "plain"))
    assert read_trace_latencies(tmp_path / "plain" / "mlperf_log_trace.json")[0] is None
    run_cli(*common, str(tmp_path / "traced"), "--trace")
    latencies, source = read_trace_latencies(tmp_path / "traced" / "mlperf_log_trace.json")
    assert "trace" in source
    assert len(latencies) == read_detail_log(tmp_path / "traced" / "mlperf_log_detail.txt").get("result_query_count")


def test_refuses_to_replace_a_file_the_user_wrote(tmp_path):
    bench = make_benchmark(tmp_path)
    mine = bench / f"user.{SYSTEM}.tuned.conf"
    mine.write_text("resnet50.Server.target_qps = 5\n")
    proc = run_cli("tune", "--benchmark", str(bench), "--output-dir", str(tmp_path / "out"), "--system", SYSTEM,
                   "--user-conf", str(bench / "user.conf"), check=False)
    assert proc.returncode == 2
    assert str(mine) in proc.stderr and "not written by mlperf-bnas tune" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert mine.read_text() == "resnet50.Server.target_qps = 5\n"
    assert not list((tmp_path / "out").glob("build/*/tuning"))   # no trial ran


@pytest.mark.parametrize("tuning, message", [
    ("tuning: {Offline: {backend_options: {streams: [1, 2]}}}", "backend_options.streams"),
    ("tuning: {Offline: {backend_options: {workers: 2}}}", "must be a non-empty list"),
    ("tuning: {trial_seconds: 3}", "unknown key tuning.trial_seconds"),
    ("tuning: {offline_margin: 0.9}", "offline_margin must be >= 1.0"),
])
def test_bad_tuning_section_is_a_one_line_error(tmp_path, tuning, message):
    config = CONFIG.split("tuning:")[0] + tuning + "\n"
    bench = make_benchmark(tmp_path, config)
    proc = run_cli("tune", "--benchmark", str(bench), "--output-dir", str(tmp_path / "out"), "--system", SYSTEM,
                   "--user-conf", str(bench / "user.conf"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "config.yaml" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_md1_tail_matches_erlangs_exact_formula():
    # c = 1: the numerical Lindley solution against Erlang's closed form for M/D/1.
    for rate, threshold in ((150.0, 0.035), (100.0, 0.010), (180.0, 0.035)):
        numeric = waiting_time_tail(rate, 0.005, 1, threshold)
        exact = 1 - md1_waiting_cdf(rate, 0.005, threshold)
        assert numeric == pytest.approx(exact, rel=0.02), (rate, threshold)
    # More workers at the same per-worker load wait less (pooling).
    assert waiting_time_tail(300, 0.005, 2, 0.02) < waiting_time_tail(150, 0.005, 1, 0.02)


def test_unreachable_bound_fails_clearly_and_keeps_the_offline_result(tmp_path):
    """A 60 ms service time cannot meet a 50 ms bound at any QPS: the search stops after one
    trial (its fastest query already misses the bound), exits 1 with the reason, and the Offline
    result tuned before it is saved."""
    config = CONFIG.split("backend_options:")[0] + (
        "backend_options: {fixed_ms: 60.0, per_sample_ms: 0.0, workers: 1, batch_size: 1}\n"
        "tuning: {trial_duration_ms: 500, server_min_queries: 20, probe_samples: 8}\n")
    bench = make_benchmark(tmp_path, config)
    proc = run_cli("tune", "--benchmark", str(bench), "--output-dir", str(tmp_path / "out"), "--system", SYSTEM,
                   "--user-conf", str(bench / "user.conf"), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "no Server target_qps tested was VALID" in proc.stderr
    assert "even the fastest query took" in proc.stdout
    record = json.loads((bench / f"user.{SYSTEM}.tuned.json").read_text())
    assert set(record["scenarios"]) == {"Offline"}
    # The failed search's evidence is kept: its capacity trial and the one Server trial.
    failed = record["failed_searches"]["Server"]
    assert "no Server target_qps" in failed["error"]
    server_trials = [t for t in failed["trial_records"] if t["scenario"] == "Server"]
    assert len(server_trials) == 1 and server_trials[0]["latency_ms"]["min"] > BOUND_MS
    assert 1000 / 60 * 0.8 < record["scenarios"]["Offline"]["samples_per_s"] <= 1000 / 60 * 1.02
    assert "resnet50.Server.target_qps" not in (bench / f"user.{SYSTEM}.tuned.conf").read_text().split(
        "end of base conf")[1]


def test_set_changes_one_tuning_key(tmp_path):
    bench = make_benchmark(tmp_path)
    common = ["tune", "--benchmark", str(bench), "--output-dir", str(tmp_path / "out"), "--system", SYSTEM,
              "--user-conf", str(bench / "user.conf")]
    proc = run_cli(*common, "--set", "tuning={}", check=False)
    assert proc.returncode == 2 and "set one key at a time" in proc.stderr
    # A tuning key from the command line is validated like config.yaml's (no trial runs).
    proc = run_cli(*common, "--set", "tuning.Offline={backend_options: {workers: []}}", check=False)
    assert proc.returncode == 2 and "tuning.Offline.backend_options.workers must be a non-empty list" in proc.stderr
    assert not list((tmp_path / "out").glob("build/*/tuning"))
