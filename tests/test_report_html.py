"""`mlperf-bnas report` on a results tree made by real LoadGen runs (simulated backend, one
process per run), plus the inputs other steps write (accuracy.txt, systems/<system>.json, a
NAS search's CSVs, a tuning record). The HTML is parsed, not just searched for strings."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import run_cli
from mlperf_bnas.loadgen.logs import read_detail_log, read_summary
from mlperf_bnas.report.collect import read_trace_latencies

SYSTEM = "reportsys"
CONFIG = """\
benchmark: simulated-report
loadgen_model: resnet50
model: resnet50
dataset: imagenet
backend: simulated
accuracy: imagenet
postprocess: none
backend_options: {fixed_ms: 2.0, per_sample_ms: 0.5, workers: 2, batch_size: 1}
scenarios:
  Offline:
    backend_options: {batch_size: 8}
"""
USER_CONF = """\
resnet50.*.performance_sample_count_override = 64
resnet50.*.min_duration = 500
resnet50.Offline.min_query_count = 200
resnet50.Offline.target_qps = 2500
resnet50.Server.min_query_count = 600
resnet50.Server.target_qps = 300
resnet50.Server.target_latency = 40
"""
ACCURACY_TXT = "accuracy=74.512%, good=47, total=64\nhash=" + "0" * 64 + "\n"
SYSTEM_JSON = {"division": "open", "submitter": "Tester", "system_name": "Report test <box>",
               "host_processor_model_name": "Example CPU", "host_processor_core_count": 2}
NAS_ROWS = [  # index, source, config, genome, accuracy, latency (the NAS ResultsStore's CSV columns)
    (0, "reference", '{"d":[2,2]}', "1 1", 76.1, 9.0),
    (1, "search", '{"d":[1,2]}', "0 1", 75.9, 6.5),
    (2, "search", '{"d":[1,1]}', "0 0", 74.8, 4.0),
    (3, "search", '{"d":[2,1]}', "1 0", 74.0, 7.5),
]


def _write_nas(folder: Path) -> None:
    folder.mkdir(parents=True)
    header = "index,source,config,genome,accuracy,latency\n"

    def line(r):
        return f"{r[0]},{r[1]},\"{r[2].replace(chr(34), chr(34) * 2)}\",{r[3]},{r[4]},{r[5]}\n"

    (folder / "search_results.csv").write_text(header + "".join(line(r) for r in NAS_ROWS))
    (folder / "pareto.csv").write_text(header + "".join(line(r) for r in NAS_ROWS if r[0] in (0, 1, 2)))
    # The shapes `mlperf-bnas nas search` writes (nas/search/plan.py write_outputs).
    (folder / "best_config.json").write_text(json.dumps({
        "config": {"d": [1, 2]}, "metrics": {"accuracy": 75.9, "latency": 6.5}, "cost_metric": "latency",
        "reference": {"config": {"d": [2, 2]}, "metrics": {"accuracy": 76.1, "latency": 9.0}}}))
    (folder / "nas_record.json").write_text(json.dumps({"format": 1, "base_model": "resnet50",
                                                        "search": {"algorithm": "nsga2", "seed": 7}}))


@pytest.fixture(scope="session")
def results_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    bench = root / "simulated-report"
    bench.mkdir()
    (bench / "config.yaml").write_text(CONFIG)
    (bench / "user.conf").write_text(USER_CONF)
    out = root / "out"
    for scenario in ("Offline", "Server"):
        run_cli("run", "--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM,
                "--scenario", scenario, "--mode", "performance", "--user-conf", str(bench / "user.conf"))
        acc = out / "results" / SYSTEM / "resnet50" / scenario / "accuracy"
        acc.mkdir(parents=True)
        (acc / "accuracy.txt").write_text(ACCURACY_TXT)
    (out / "systems").mkdir()
    (out / "systems" / f"{SYSTEM}.json").write_text(json.dumps(SYSTEM_JSON))
    _write_nas(out / "build" / "nas" / "search")
    # What `mlperf-bnas dataset` leaves for generated data (data/synthetic.py): the report must
    # then call the accuracy figure what it is, the INT8 model's fidelity to FP32.
    marker = out / "build" / "resnet50-openvino" / "data" / "imagenet" / "synthetic.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"generator": "mlperf_bnas.data.synthetic/1", "count": 64,
                                  "labeller": {"model": "resnet50", "weights_sha256": "0" * 64}}))
    return out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.rows: list[list[str]] = []
        self.headings: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_shows_each_run_as_loadgen_logged_it(results_tree, tmp_path):
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps(_tuning_record()))
    proc = run_cli("report", "--output-dir", str(results_tree), "--system", SYSTEM, "--tuning", str(tuning))
    html_path = results_tree / "report" / "index.html"
    assert f"report: {html_path}" in proc.stdout
    page = _parse(html_path)
    assert not page.external, page.external           # self-contained
    assert len(page.images) >= 5                        # 2 latency, NAS, 2 tuning
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    summary_rows = {(r[1], r[2]): r for r in page.rows if len(r) == 9 and r[0] == SYSTEM}
    for scenario in ("Offline", "Server"):
        run_dir = results_tree / "results" / SYSTEM / "resnet50" / scenario / "performance" / "run_1"
        detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
        verdict = read_summary(run_dir / "mlperf_log_summary.txt")["Result is"]
        row = summary_rows[("resnet50", scenario)]
        key = "result_samples_per_second" if scenario == "Offline" else "result_completed_samples_per_sec"
        assert row[3].startswith(f"{detail.get(key):.2f}")
        assert row[4] == verdict
        assert row[7] == f"{detail.get('result_99.00_percentile_latency_ns') / 1e6:.2f}"
        assert row[8] == "accuracy = 74.512% (INT8 vs FP32, synthetic data)"
    # The Server latency bound from the log, the NAS choice, the tuning evidence, the system.
    assert any(r[:2] == ["latency bound (p99)", "40 ms"] for r in page.rows)
    nas_rows = {r[0]: r for r in page.rows if r and r[0] in ("original model", "chosen sub-network")}
    assert nas_rows["original model"][1:] == ["76.1", "9"]
    assert nas_rows["chosen sub-network"][1:] == ["75.9", "6.5"]
    assert any(r[:1] == ["front #3"] for r in page.rows) and not any(r[:1] == ["front #4"] for r in page.rows)
    assert any(r[:4] == ["3", "Server", "bisect", "workers=2"] for r in page.rows)
    assert ["system_name", "Report test <box>"] in page.rows     # escaped in the HTML, intact when parsed
    assert ["base_model", "resnet50"] in page.rows
    assert "Tuning" in page.headings and "NAS search" in page.headings


def test_report_reads_a_submission_tree_too(results_tree, tmp_path):
    sub = tmp_path / "submission" / "open" / "Tester"
    shutil.copytree(results_tree / "results", sub / "results")
    shutil.copytree(results_tree / "systems", sub / "systems")
    (sub / "measurements").mkdir()
    out = tmp_path / "r.html"
    run_cli("report", "--input", str(tmp_path / "submission"), "--out", str(out))
    page = _parse(out)
    assert {(r[1], r[2]) for r in page.rows if len(r) == 9 and r[0] == SYSTEM} == {
        ("resnet50", "Offline"), ("resnet50", "Server")}


def test_report_never_replaces_a_file_it_did_not_write(results_tree, tmp_path):
    mine = tmp_path / "index.html"
    mine.write_text("<html>my notes</html>")
    proc = run_cli("report", "--output-dir", str(results_tree), "--out", str(mine), check=False)
    assert proc.returncode == 2 and str(mine) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert mine.read_text() == "<html>my notes</html>"
    proc = run_cli("report", "--output-dir", str(results_tree), "--system", "nosuch", "--out",
                   str(tmp_path / "x.html"), check=False)
    assert proc.returncode == 2 and "nosuch" in proc.stderr and SYSTEM in proc.stderr


TRACE_DRIVER = """
import sys, time, threading, mlperf_loadgen as lg
conf, out = sys.argv[1], sys.argv[2]
def issue(qs):
    def later(q):
        time.sleep(0.002)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0)])
    for q in qs:
        threading.Thread(target=later, args=(q,)).start()
s = lg.TestSettings(); s.FromConfig(conf, "resnet50", "Server")
s.scenario = lg.TestScenario.Server; s.mode = lg.TestMode.PerformanceOnly
o = lg.LogOutputSettings(); o.outdir = out; o.copy_summary_to_stdout = False
ls = lg.LogSettings(); ls.log_output = o; ls.enable_trace = True
sut = lg.ConstructSUT(issue, lambda: None); qsl = lg.ConstructQSL(64, 64, lambda i: None, lambda i: None)
lg.StartTestWithLogSettings(sut, qsl, s, ls, out + "/no-audit.config")
lg.DestroyQSL(qsl); lg.DestroySUT(sut)
"""


def test_trace_gives_every_query_latency(tmp_path):
    """With LoadGen's trace enabled, the histogram uses every query's latency."""
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Server.target_qps = 200\nresnet50.Server.min_duration = 300\n"
                    "resnet50.Server.min_query_count = 100\n")
    subprocess.run([sys.executable, "-c", TRACE_DRIVER, str(conf), str(tmp_path)], check=True, timeout=120)
    latencies, source = read_trace_latencies(tmp_path / "mlperf_log_trace.json")
    detail = read_detail_log(tmp_path / "mlperf_log_detail.txt")
    assert len(latencies) == detail.get("result_query_count")
    assert "trace" in source
    # Same definition of latency as LoadGen's own percentiles (from the scheduled issue time).
    ordered = sorted(latencies)
    for pct in ("50.00", "90.00"):
        index = int(len(ordered) * float(pct) / 100)
        assert ordered[index] == pytest.approx(detail.get(f"result_{pct}_percentile_latency_ns") / 1e6, rel=1e-6)
    assert min(latencies) >= 2.0   # the driver's service time


def _tuning_record() -> dict:
    trial = {"number": 3, "scenario": "Server", "purpose": "bisect", "backend_options": {"workers": 2},
             "conf_values": {"target_qps": 250.0}, "log_dir": "x", "valid": True, "samples_per_s": 249.0,
             "scheduled_qps": 250.0, "latency_ms": {"p50": 4.0, "p99": 20.0}, "latency_bound_ms": 40.0,
             "early_stopping_met": True, "query_count": 1000, "invalid_reason": None, "error": None, "wall_s": 3.0}
    grid = {**trial, "number": 1, "scenario": "Offline", "purpose": "grid", "conf_values": {"target_qps": 900.0},
            "samples_per_s": 950.0, "latency_ms": {"p99": 900.0}}
    return {"generated_by": "mlperf-bnas tune", "benchmark": "simulated-report", "system": SYSTEM,
            "updated": "20260101-000000", "tuned_conf": "user.reportsys.tuned.conf", "spec": {"offline_margin": 1.1},
            "server_offline_efficiency": 250 / 950,
            "scenarios": {
                "Offline": {"backend_options": {"workers": 2}, "samples_per_s": 950.0, "target_qps": 1045.0,
                            "trials": [1], "confirmed": None, "trial_records": [grid]},
                "Server": {"backend_options": {"workers": 2}, "target_qps": 250.0, "capacity_samples_per_s": 950.0,
                           "latency_bound_ms": 40.0, "trials": [3], "confirmed": None, "trial_records": [trial]}}}
