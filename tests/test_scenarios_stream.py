"""SingleStream and MultiStream on the simulated backend: real LoadGen runs, their results,
their compliance verdicts and our checker's rules for them, and the refusal of a setting
that cannot serve them. (run.sh with all four scenarios, packaged and checked:
test_main_job_sized.py; the real OpenVINO backend: test_scenarios_stream_real.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, run_cli
from mlperf_bnas.loadgen.logs import read_detail_log
from mlperf_bnas.submission import checker as C
from mlperf_bnas.submission.audit import verify_performance

BENCH = REPO / "code" / "resnet50-openvino"
SYSTEM = "stream_cpu"
# One worker: a sample costs 2 ms + 1 ms; a MultiStream query of 8 is 8 sequential batches of 1.
SIMULATED = ["--set", "backend=simulated", "--set", "backend_options.workers=1", "--set", "backend_options.fixed_ms=2",
             "--set", "backend_options.per_sample_ms=1"]
CONF = """\
resnet50.*.performance_sample_count_override = 64
resnet50.*.min_duration = 1500
resnet50.SingleStream.target_latency = 1.5
resnet50.MultiStream.target_latency = 12
resnet50.MultiStream.min_query_count = 100
resnet50.MultiStream.target_latency_percentile = 90
"""


def _args(out: Path, conf: Path, scenario: str, *extra: str) -> list[str]:
    return ["run", "--benchmark", str(BENCH), "--output-dir", str(out), "--system", SYSTEM, "--scenario", scenario,
            "--user-conf", str(conf), *SIMULATED, *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("streams")
    conf = out / "user.conf"
    conf.write_text(CONF)
    procs = {s: run_cli(*_args(out, conf, s, "--set", "backend_options.batch_size=1"), timeout=300)
             for s in ("SingleStream", "MultiStream")}
    return {"out": out, "conf": conf, "procs": procs}


def _perf(out: Path, scenario: str) -> Path:
    return out / "results" / SYSTEM / "resnet50" / scenario / "performance" / "run_1"


@pytest.mark.parametrize("scenario, key, one_query_ms", [("SingleStream", "early_stopping_latency_ss", 3.0),
                                                         ("MultiStream", "early_stopping_latency_ms", 24.0)])
def test_stream_runs_are_valid_and_report_one_querys_latency(runs, scenario, key, one_query_ms):
    detail = read_detail_log(_perf(runs["out"], scenario) / "mlperf_log_detail.txt")
    assert detail.get("result_validity") == "VALID"
    assert detail.get("effective_scenario") == scenario
    assert detail.get("effective_samples_per_query") == (8 if scenario == "MultiStream" else 1)
    # The reported result: LoadGen's early-stopping estimate, at least one query's cost, and
    # not inflated by queueing (one query at a time).
    latency_ms = detail.get(key) / 1e6
    assert one_query_ms * 0.95 < latency_ms < one_query_ms * 3, latency_ms
    line = runs["procs"][scenario].stdout
    assert f"resnet50 {scenario} performance: VALID" in line
    assert "early-stopping estimate, the reported result" in line


def test_a_batch_larger_than_the_query_is_refused_by_name(runs, tmp_path):
    proc = run_cli(*_args(tmp_path, runs["conf"], "SingleStream", "--set", "backend_options.batch_size=4"), check=False)
    assert proc.returncode != 0
    assert "backend_options.batch_size = 4 cannot serve SingleStream" in proc.stderr
    assert "scenarios.SingleStream.backend_options.batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(*_args(tmp_path, runs["conf"], "MultiStream", "--set", "backend_options.batch_size=16"), check=False)
    assert proc.returncode != 0 and "cannot serve MultiStream: its queries hold 8 sample(s)" in proc.stderr
    assert not list(tmp_path.rglob("mlperf_log_*"))


def test_config_declares_the_lowest_latency_settings():
    for scenario, batch in (("SingleStream", "1"), ("MultiStream", "8")):
        proc = run_cli("config", "show", str(BENCH), "--scenario", scenario)
        rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line.strip()}
        assert rows["backend_options.performance_hint"] == "LATENCY"
        assert rows["backend_options.batch_size"] == batch


def _checker_findings(run_dir: Path, scenario: str) -> set[str]:
    checker = C._Checker(run_dir, None)
    checker.check_performance(run_dir / "mlperf_log_detail.txt", read_detail_log(run_dir / "mlperf_log_detail.txt"),
                              "resnet", scenario, None)
    return {f.rule for f in checker.report.findings}


def test_checker_rules_for_stream_scenarios(runs):
    ss = _checker_findings(_perf(runs["out"], "SingleStream"), "SingleStream")
    # A short run: only the smoke rules (duration, sample count); SingleStream keeps its p90.
    assert ss <= {"min-duration", "perf-sample-count"}, ss
    ms = _checker_findings(_perf(runs["out"], "MultiStream"), "MultiStream")
    # This conf relaxed MultiStream to the 90th percentile: the checker names it.
    assert "latency-percentile" in ms and ms <= {"min-duration", "perf-sample-count", "latency-percentile"}, ms
    assert C.RULES["latency-percentile"].smoke


def _summary(path: Path, scenario: str, estimate_ns: float, valid: str = "VALID") -> Path:
    pct = "90.0th" if scenario == "SingleStream" else "99.0th"
    path.write_text(f"Scenario : {scenario}\nMode     : PerformanceOnly\n{pct} percentile latency (ns) : 1\n"
                    f"Result is : {valid}\nEarly Stopping Result:\n * Early stopping {pct} percentile estimate: "
                    f"{estimate_ns:.0f}\n\nNo errors encountered during test.\n")
    return path


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream"])
def test_compliance_performance_verdicts_follow_the_official_scripts(tmp_path, scenario):
    ref = _summary(tmp_path / "ref.txt", scenario, 30e6)
    # TEST04 (no caching): a test run at most 10%/20% faster passes; TEST04's script compares the
    # rate 1e9/latency with 200000 (SingleStream) / 1600000, so 30 ms latencies get 20%.
    ok, text = verify_performance(ref, _summary(tmp_path / "t1.txt", scenario, 26e6), "TEST04")
    assert ok, text
    ok, text = verify_performance(ref, _summary(tmp_path / "t2.txt", scenario, 20e6), "TEST04")
    assert not ok and "TEST FAIL" in text
    # TEST01: the latency itself within +-10% (30 ms is above the 200 us / 1.6 ms relaxation).
    ok, text = verify_performance(ref, _summary(tmp_path / "t3.txt", scenario, 32e6), "TEST01")
    assert ok, text
    ok, text = verify_performance(ref, _summary(tmp_path / "t4.txt", scenario, 34e6), "TEST01")
    assert not ok
    ok, text = verify_performance(ref, _summary(tmp_path / "t5.txt", scenario, 30e6, "INVALID"), "TEST01")
    assert not ok and "Test results are invalid" in text


@pytest.mark.parametrize("system_type, expected", [
    ("edge", {"resnet50-openvino": "Offline SingleStream MultiStream",
              "retinanet-pytorch-cpu": "Offline SingleStream MultiStream"}),
    ("datacenter,edge", {"resnet50-openvino": "Offline Server SingleStream MultiStream",
                         "retinanet-pytorch-cpu": "Offline Server SingleStream MultiStream"}),
    ("datacenter", {"retinanet-pytorch-cpu": "Offline Server"}),
])
def test_run_sh_scenarios_follow_the_system_type(tmp_path, system_type, expected):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(f"submitter: x\nsystem_type: {system_type}\n")
    args = ["package", "--required-scenarios", "--overrides", str(overrides)]
    for bench in expected:
        args += ["--benchmark", str(REPO / "code" / bench)]
    proc = run_cli(*args)
    assert proc.stdout.splitlines() == list(expected.values())


def test_a_benchmark_the_system_type_lacks_is_an_error_naming_the_file(tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("submitter: x\nsystem_type: datacenter\n")
    proc = run_cli("package", "--required-scenarios", "--overrides", str(overrides), "--benchmark", str(BENCH),
                   check=False)
    assert proc.returncode == 2
    assert str(overrides) in proc.stderr and "set system_type to edge" in proc.stderr
    assert "Traceback" not in proc.stderr
