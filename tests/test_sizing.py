"""`mlperf-bnas size`: the embedded default's LoadGen settings measured on the machine, and user confs checked.

The benchmark here selects the simulated backend (never reads input: no dataset, no model),
so the probes are real in-process LoadGen runs of a backend whose cost is known:
2 workers, 4 ms + 1 ms per sample (Offline batch 4: 2 x 4 / 8 ms = 1000 samples/s;
Server batch 1: 5 ms per query, 400 queries/s at most).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from mlperf_bnas.loadgen.explain import explain
from mlperf_bnas.loadgen.logs import read_detail_log
from mlperf_bnas.tune import sizing
from mlperf_bnas.tune.sizing import ConfSettings, Machine, Measured

SYSTEM = "sizesys"
CONFIG = """\
benchmark: sim-size
loadgen_model: resnet50
model: resnet50
dataset: imagenet
backend: simulated
accuracy: imagenet
postprocess: none
backend_options: {workers: 2, batch_size: 1, fixed_ms: 4.0, per_sample_ms: 1.0}
scenarios:
  Offline: {backend_options: {batch_size: 4}}
"""
SMOKE = """\
resnet50.*.performance_sample_count_override = 64
resnet50.*.min_duration = 2000
resnet50.Offline.min_query_count = 64
resnet50.Server.min_query_count = 100
resnet50.Server.target_latency = 100
"""


@pytest.fixture(scope="module")
def sized(tmp_path_factory):
    root = tmp_path_factory.mktemp("size")
    bench = root / "sim-size"
    bench.mkdir()
    (bench / "config.yaml").write_text(CONFIG)
    (bench / "user.smoke.conf").write_text(SMOKE)
    out = root / "out"
    common = ["--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM]
    path = Path(run_cli("size", *common, "--print-path").stdout.strip())
    proc = run_cli("size", *common, "--user-conf", str(path), "--from", str(bench / "user.smoke.conf"),
                   "--scenario", "Offline", timeout=600)
    return {"root": root, "bench": bench, "out": out, "common": common, "conf": path, "stdout": proc.stdout}


def test_generated_conf_holds_the_base_and_measured_targets_with_their_provenance(sized):
    conf = sized["conf"]
    assert conf == sized["out"] / "build" / "sim-size" / "sizing" / SYSTEM / f"user.{SYSTEM}.sized.conf"
    text = conf.read_text()
    assert text.startswith(sizing.MARKER)
    assert SMOKE in text                                   # the base conf, verbatim
    record = json.loads(conf.with_suffix(".json").read_text())
    offline, server = record["scenarios"]["Offline"], record["scenarios"]["Server"]
    # Offline: 2 x the measured rate; the simulated cost model allows at most 1000 samples/s.
    assert 500 < offline["measured_samples_per_s"] <= 1000 * 1.02
    assert offline["target_qps"] == pytest.approx(2 * offline["measured_samples_per_s"], rel=0.01)
    assert f"resnet50.Offline.target_qps = {offline['target_qps']:g}" in text
    # Server: a single query takes 5 ms; half of what an M/D/2 queue holds at 100 ms.
    assert 4.5 <= server["latency_ms"]["p50"] < 8
    assert server["target_qps"] == pytest.approx(0.5 * server["analytic_max_qps"], rel=0.01)
    assert server["target_qps"] < server["capacity_samples_per_s"] <= 400 * 1.02
    assert f"resnet50.Server.target_qps = {server['target_qps']:g}" in text
    # Where each number came from: probe, figure, machine, date.
    machine = Machine.this()
    assert f"# machine: {machine.describe()}" in text
    assert re.search(r"# benchmark: sim-size  system: sizesys  sized: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text)
    assert "best of the LoadGen Offline probes" in text and "SingleStream probe median" in text
    assert sizing.conf_machine(conf) == machine
    # Every probe is a real LoadGen run with its logs kept.
    probes = offline["measured"]["probes"]
    assert {p["kind"] for p in probes} >= {"warm-up", "throughput"}
    assert all((Path(p["log_dir"]) / "mlperf_log_detail.txt").is_file() for p in probes)


def test_current_conf_is_reused_without_measuring(sized):
    before = sized["conf"].read_text()
    proc = run_cli("size", *sized["common"], "--user-conf", str(sized["conf"]),
                   "--from", str(sized["bench"] / "user.smoke.conf"), "--scenario", "Server")
    assert "is current" in proc.stdout and "probe #" not in proc.stdout
    assert sized["conf"].read_text() == before


@pytest.mark.slow     # probes the machine again: LoadGen runs of fixed length (~15 s)
def test_conf_from_another_machine_is_resized_and_the_old_one_kept(sized, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sized["out"], out)
    common = [*sized["common"][:2], "--output-dir", str(out), "--system", SYSTEM]
    conf = out / "build" / "sim-size" / "sizing" / SYSTEM / f"user.{SYSTEM}.sized.conf"
    record_path = conf.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record["key"]["machine"] = {**record["key"]["machine"], "cpu_model": "Some Other CPU", "cores": 128}
    record_path.write_text(json.dumps(record))
    old = conf.read_text()
    proc = run_cli("size", *common, "--user-conf", str(conf), "--from", str(sized["bench"] / "user.smoke.conf"),
                   "--scenario", "Offline", timeout=600)
    assert "re-sizing" in proc.stdout and "measured on another machine" in proc.stdout
    assert "CPU model 'Some Other CPU' there" in proc.stdout and "physical cores 128 there" in proc.stdout
    assert "probe #" in proc.stdout
    archived = list((conf.parent / "archive").glob(f"*/user.{SYSTEM}.sized.conf"))
    assert len(archived) == 1 and archived[0].read_text() == old     # never deleted: runs made with it still match


def test_a_file_the_user_wrote_at_the_generated_path_is_never_replaced(sized, tmp_path):
    out = tmp_path / "out"
    conf = out / "build" / "sim-size" / "sizing" / SYSTEM / f"user.{SYSTEM}.sized.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("resnet50.Offline.target_qps = 7\n")
    common = [*sized["common"][:2], "--output-dir", str(out), "--system", SYSTEM]
    proc = run_cli("size", *common, "--user-conf", str(conf), "--from", str(sized["bench"] / "user.smoke.conf"),
                   "--scenario", "Offline", check=False)
    assert proc.returncode == 2 and "was not written by mlperf-bnas size" in proc.stderr
    assert proc.stderr.count("\n") == 1 and conf.read_text() == "resnet50.Offline.target_qps = 7\n"


def _user_conf(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "user.mine.conf"
    conf.write_text(text)
    return conf


@pytest.mark.slow     # probes the machine again: LoadGen runs of fixed length (~15 s)
def test_user_conf_out_of_reach_gets_a_warning_with_the_measured_figure(sized, tmp_path):
    low = _user_conf(tmp_path, "resnet50.*.min_duration = 2000\nresnet50.Offline.min_query_count = 1\n"
                               "resnet50.Offline.target_qps = 5\n")
    proc = run_cli("size", *sized["common"], "--user-conf", str(low), "--scenario", "Offline", "--check")
    assert proc.returncode == 0
    warning = proc.stderr.strip().splitlines()[-1]
    assert warning.startswith(f"WARNING: {low}: resnet50.Offline.target_qps = 5, but this machine measured ")
    assert "samples/s" in warning and "will be INVALID" in warning and "tune.sh --scenario Offline" in warning
    # Measured once, then reused from the cache for the next check.
    assert "probe #" in proc.stdout
    cache = json.loads((sized["out"] / "build" / "sim-size" / "sizing" / SYSTEM / "measurements.json").read_text())
    [entry] = cache.values()
    rate = entry["measured"]["samples_per_s"]
    assert rate > 0 and f"{rate:.4g} samples/s" in warning
    fine = _user_conf(tmp_path, "resnet50.*.min_duration = 2000\nresnet50.Offline.min_query_count = 1\n"
                                f"resnet50.Offline.target_qps = {1.2 * rate:.1f}\n")
    proc = run_cli("size", *sized["common"], "--user-conf", str(fine), "--scenario", "Offline", "--check")
    assert "WARNING" not in proc.stderr and "within this machine's reach" in proc.stdout
    assert "earlier measurement" in proc.stdout and "probe #" not in proc.stdout
    high = _user_conf(tmp_path, "resnet50.Server.target_qps = 5000\nresnet50.Server.target_latency = 100\n")
    proc = run_cli("size", *sized["common"], "--user-conf", str(high), "--scenario", "Server", "--check")
    assert "resnet50.Server.target_qps = 5000 is out of reach" in proc.stderr and "samples/s" in proc.stderr


def test_latency_bound_no_load_can_meet_is_one_line_and_exit_3(sized, tmp_path):
    tight = _user_conf(tmp_path, "resnet50.Server.target_qps = 10\nresnet50.Server.target_latency = 2\n")
    proc = run_cli("size", *sized["common"], "--user-conf", str(tight), "--scenario", "Server", "--check", check=False)
    assert proc.returncode == sizing.EXIT_INFEASIBLE, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("resnet50 Server: not run: this machine cannot meet the 2 ms latency bound")
    assert re.search(r"one query alone takes \d+\.\d ms", line) and "tune.sh --scenario Server" in line


def test_generated_conf_from_another_machine_stops_the_run(sized, tmp_path):
    """A tuned (or sized) conf carries the machine it was measured on; elsewhere the run stops and says why."""
    text = sized["conf"].read_text()
    other = json.dumps({"cores": 64, "cpu_model": "Intel Xeon Platinum 8480+", "sockets": 2, "threads": 128,
                        "usable_cpus": 128}, sort_keys=True)
    foreign = tmp_path / "user.copied.conf"
    foreign.write_text(re.sub(r"^# mlperf-bnas machine .*$", "# mlperf-bnas machine " + other, text, flags=re.M))
    proc = run_cli("size", *sized["common"], "--user-conf", str(foreign), "--scenario", "Offline", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "generated by mlperf-bnas size on another machine" in proc.stderr
    assert "CPU model 'Intel Xeon Platinum 8480+' there" in proc.stderr and "tune.sh" in proc.stderr


# -- the arithmetic, without a machine ------------------------------------------------------------
def _measured(rate: float, workers: int, p50: float | None) -> Measured:
    latency = {"min": p50 * 0.95, "p50": p50, "p90": p50 * 1.1} if p50 else None
    return Measured({}, rate, workers, latency, {})


def _settings(**kw) -> ConfSettings:
    base = dict(target_qps=None, min_duration_ms=10000, min_query_count=256, target_latency_ms=100,
                latency_percentile=0.99)
    return ConfSettings(**{**base, **kw})


@pytest.mark.parametrize("rate", [10.0, 100.0, 1000.0])
def test_offline_target_is_a_margin_over_the_measurement(rate):
    result = sizing.size_offline(_measured(rate, 2, None), _settings())
    assert result.target_qps == pytest.approx(2 * rate, rel=1e-3)
    # The one query lasts at least min_duration even if the real run is 2x faster than the probe.
    assert result.query_samples / (2 * rate) >= 10 * 0.99


def test_a_full_rules_stream_run_lasts_min_duration_not_the_generated_queries(tmp_path):
    """LoadGen generates SingleStream/MultiStream queries for 2 x min_duration at target_latency
    and ends the run once min_duration and min_query_count are met (loadgen.cc GenerateQueries,
    issue_query_controller.cc "Ending naturally"): a 600 s run lasts ~600 s, not the generated
    queries' 4 x 600 s, and only a run 4x faster than the probe runs out of them."""
    machine = Machine("cpu", 1, 2, 2, 2)
    m = _measured(100.0, 1, 5.0)                     # one query: 5 ms median
    full = sizing.size_stream(m, _settings(min_duration_ms=600000, min_query_count=100, target_latency_ms=None,
                                           latency_percentile=0.9), "SingleStream", "resnet50", tmp_path, machine)
    assert full.target_latency_ms == pytest.approx(2.5)
    assert full.queries == 2 * 600000 / 2.5          # 480,000 generated ...
    assert full.expected_s == pytest.approx(600.0)   # ... but the run ends at min_duration
    assert full.queries * 5.0 / 4 >= 600000          # still enough at 4x the probe's speed
    assert "4.0x faster" in full.why and "~600 s" in full.why
    # Where min_query_count dominates, the run lasts that many queries at the measured latency.
    long = sizing.size_stream(_measured(1.0, 1, 1000.0), _settings(min_duration_ms=10000, min_query_count=662,
                                                                   target_latency_ms=None, samples_per_query=8),
                              "MultiStream", "resnet50", tmp_path, machine)
    assert long.expected_s == pytest.approx(662.0) and long.queries == 662


def test_a_full_rules_offline_run_is_sized_closer_to_the_measurement():
    # 600 s runs: 2x would make each Offline run (and TEST01, TEST04) last 22 min at the probe's speed.
    full = sizing.size_offline(_measured(100.0, 2, None), _settings(min_duration_ms=600000, min_query_count=24576))
    assert full.target_qps == pytest.approx(125.0, rel=1e-3)
    assert 600 * 1.3 < full.expected_s < 600 * 1.45
    # ... and still VALID if the run is 1.3x faster than the probe.
    assert full.query_samples / (1.3 * 100.0) >= 600
    assert "1.25 x 100 samples/s" in full.why and "1.38x faster" in full.why
    smoke = sizing.size_offline(_measured(100.0, 2, None), _settings(min_duration_ms=599999))
    assert smoke.target_qps == pytest.approx(200.0, rel=1e-3)


def test_server_target_scales_with_the_machine_and_stays_below_the_bound(tmp_path):
    machine = Machine("cpu", 1, 2, 2, 2)
    fast = sizing.size_server(_measured(400, 2, 5.0), _settings(), "resnet50", tmp_path, machine)
    slow = sizing.size_server(_measured(40, 2, 50.0), _settings(), "resnet50", tmp_path, machine)
    assert fast.target_qps and slow.target_qps
    assert 8 < fast.target_qps / slow.target_qps < 40       # a 10x faster query allows far more QPS at 100 ms
    too_slow = sizing.size_server(_measured(5, 1, 150.0), _settings(), "resnet50", tmp_path, machine)
    assert too_slow.target_qps is None and "cannot meet the 100 ms latency bound" in too_slow.infeasible
    assert "one query alone takes 150.0 ms" in too_slow.infeasible


def test_conf_settings_fall_back_to_loadgen_defaults(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("retinanet.Server.target_qps = 0.5\n")
    server = ConfSettings.read(conf, "retinanet", "Server")
    assert (server.target_qps, server.target_latency_ms, server.latency_percentile, server.min_duration_ms,
            server.min_query_count) == (0.5, 100.0, 0.99, 600000.0, 100)     # 100: LoadGen's TestSettings default
    offline = ConfSettings.read(conf, "retinanet", "Offline")
    assert offline.target_qps is None and offline.min_query_count == 24576


# -- INVALID explained, from LoadGen's own summary -----------------------------------------------
SUMMARY = """\
================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Mode     : PerformanceOnly
Completed samples per second    : 2187.41
Result is : INVALID
  Performance constraints satisfied : NO
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: NO
Recommendations:
 * Reduce target QPS to improve latency.
Early Stopping Result:
 * Run unsuccessful.
 * Processed 2925 queries.
 * Would need to run at least 302035 more queries,
 with the run being successful if every additional
 query were under latency.

================================================
Additional Stats
================================================
"""


def test_invalid_server_run_is_explained_in_loadgens_words(tmp_path):
    (tmp_path / "mlperf_log_summary.txt").write_text(SUMMARY)
    failures = explain(tmp_path, "Server", "resnet50", "resnet50-openvino")
    assert [f.condition.split(" (")[0] for f in failures] == ["Performance constraints satisfied: NO",
                                                              "Early stopping satisfied: NO"]
    assert failures[0].loadgen == "Reduce target QPS to improve latency."
    assert "code/resnet50-openvino/tune.sh --scenario Server" in failures[0].fix
    assert "Would need to run at least 302035 more queries" in failures[1].loadgen


def test_invalid_offline_run_names_target_qps(tmp_path):
    text = SUMMARY.replace("Scenario : Server", "Scenario : Offline").replace(
        "  Performance constraints satisfied : NO\n", "").replace("Min duration satisfied : Yes",
                                                                   "Min duration satisfied : NO").replace(
        "Early stopping satisfied: NO", "Early stopping satisfied: Yes").replace(
        " * Reduce target QPS to improve latency.", " * Increase expected QPS so the loadgen pre-generates a larger "
                                                    "(coalesced) query.")
    (tmp_path / "mlperf_log_summary.txt").write_text(text)
    [failure] = explain(tmp_path, "Offline", "retinanet", "retinanet-pytorch-cpu")
    assert failure.condition.startswith("Min duration satisfied: NO")
    assert failure.loadgen.startswith("Increase expected QPS")
    assert "retinanet.Offline.target_qps" in failure.fix and "tune.sh --scenario Offline" in failure.fix


# --------------------------------------------------------------------------- a machine that sped up
def _slower_probe_copy(sized, tmp_path, factor: float) -> tuple[list[str], Path]:
    """A copy of the fixture's output whose generated conf says the machine was ``factor`` x
    slower when probed (its Offline target_qps divided by ``factor``): the sizing key still
    matches, so the conf counts as current, as after a probe on a busy machine."""
    out = tmp_path / "out"
    shutil.copytree(sized["out"], out)
    conf = out / "build" / "sim-size" / "sizing" / SYSTEM / f"user.{SYSTEM}.sized.conf"
    target = json.loads(conf.with_suffix(".json").read_text())["scenarios"]["Offline"]["target_qps"]
    text = conf.read_text()
    line = f"resnet50.Offline.target_qps = {target:g}"
    assert line in text
    conf.write_text(text.replace(line, f"resnet50.Offline.target_qps = {target / factor:g}"))
    return [*sized["common"][:2], "--output-dir", str(out), "--system", SYSTEM], conf


def test_a_run_faster_than_its_generated_conf_exits_4_with_the_speeds(sized, tmp_path):
    common, conf = _slower_probe_copy(sized, tmp_path, 50.0)
    proc = run_cli("run", *common, "--scenario", "Offline", "--mode", "performance", "--user-conf", str(conf),
                   check=False, subprocess_only=True, timeout=600)
    assert proc.returncode == sizing.EXIT_RESIZE, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "INVALID: Min duration satisfied: NO" in proc.stdout
    m = re.search(r"Offline ran faster than user\.sizesys\.sized\.conf was sized for \(([\d.]+) samples/s now, "
                  r"([\d.]+) when sized\)", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert "mlperf-bnas size --force" in proc.stdout and "Traceback" not in proc.stderr


def test_the_same_invalid_run_with_a_conf_the_user_wrote_is_not_resized(sized, tmp_path):
    common, conf = _slower_probe_copy(sized, tmp_path, 50.0)
    mine = tmp_path / "user.mine.conf"
    mine.write_text("\n".join(line for line in conf.read_text().splitlines() if not line.startswith("#")) + "\n")
    proc = run_cli("run", *common, "--scenario", "Offline", "--mode", "performance", "--user-conf", str(mine),
                   check=False, subprocess_only=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INVALID: Min duration satisfied: NO" in proc.stdout and "sized for" not in proc.stdout


@pytest.mark.slow     # re-sizes: LoadGen probes of fixed length (~15 s), then the run again
def test_run_script_resizes_and_runs_again_when_the_machine_sped_up(sized, tmp_path):
    """Through a benchmark's own run_offline.sh (tools/env.sh run_performance), as in run.sh."""
    from conftest import REPO, throwaway_checkout

    top, bench = throwaway_checkout(tmp_path, "sim-size")
    shutil.copytree(sized["bench"], bench, dirs_exist_ok=True)
    shutil.copy2(REPO / "code" / "resnet50-openvino" / "run_offline.sh", bench / "run_offline.sh")
    common, conf = _slower_probe_copy(sized, tmp_path, 50.0)
    record = json.loads(conf.with_suffix(".json").read_text())
    # The copied benchmark is another path: point the record's base conf (and key) at it.
    record["base_conf"] = str((bench / "user.smoke.conf").resolve())
    conf.with_suffix(".json").write_text(json.dumps(record))
    env = {k: v for k, v in os.environ.items() if k not in ("USER_CONF", "DATA_DIR", "CHECKPOINT")}
    env.update(OUTPUT_DIR=str(tmp_path / "out"), SYSTEM=SYSTEM)
    proc = subprocess.run(["bash", str(bench / "run_offline.sh")], cwd=top, env=env, capture_output=True,
                          text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Offline ran faster than" in log and "re-sizing on this machine and running it again (once)" in log
    assert "probe #" in log                                           # fresh probes
    summary = tmp_path / "out" / "results" / SYSTEM / "resnet50" / "Offline" / "performance" / "run_1"
    assert "Result is : VALID" in (summary / "mlperf_log_summary.txt").read_text()
    # The conf of the first run is kept (packaging matches runs to confs), the new one is current.
    archived = list((conf.parent / "archive").glob(f"*/user.{SYSTEM}.sized.conf"))
    assert len(archived) == 1 and "Offline.target_qps" in archived[0].read_text()


def test_a_stream_run_that_ran_out_of_queries_counts_as_faster_than_sized(sized, tmp_path):
    """SingleStream/MultiStream: LoadGen also logs a runtime error when its pre-generated queries
    run out; that error is the same cause, so the run is still re-sized (and only then)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "mlperf_log_summary.txt").write_text(
        "Scenario : SingleStream\nResult is : INVALID\n  Min duration satisfied : NO\n"
        "  Min queries satisfied : Yes\n  Early stopping satisfied: Yes\n")

    def detail(error: str) -> None:
        (run / "mlperf_log_detail.txt").write_text(
            ':::MLLOG {"key": "result_50.00_percentile_latency_ns", "value": 60000000, "time_ms": 1, '
            '"namespace": "mlperf::logging", "event_type": "POINT_IN_TIME", "metadata": {"is_error": false, '
            '"is_warning": false, "file": "f", "line_no": 1, "pid": 1, "tid": 1}}\n'
            f':::MLLOG {{"key": "error_runtime", "value": "{error}", "time_ms": 2, "namespace": "mlperf::logging", '
            '"event_type": "POINT_IN_TIME", "metadata": {"is_error": true, "is_warning": false, "file": "f", '
            '"line_no": 1, "pid": 1, "tid": 1}}\n')

    detail("Ending early: Ran out of generated queries to issue before the minimum query count and test "
           "duration were reached. Please update the relevant expected latency or target qps.")
    failures = [f.condition for f in explain(run, "SingleStream", "resnet50")]
    assert any(f.startswith("LoadGen logged 1 error") for f in failures)
    why = sizing.faster_than_sized(sized["conf"], read_detail_log(run / "mlperf_log_detail.txt"), "SingleStream",
                                   failures)
    assert why and why.startswith("SingleStream ran faster than") and "median query latency 60 ms now" in why
    detail("some other runtime error")
    failures = [f.condition for f in explain(run, "SingleStream", "resnet50")]
    assert sizing.faster_than_sized(sized["conf"], read_detail_log(run / "mlperf_log_detail.txt"), "SingleStream",
                                    failures) is None
