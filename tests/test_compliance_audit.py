"""Compliance runs: audit.config lives only in the run's private folder and never outlives it;
MLPerf's verification thresholds.

The runs here use a benchmark directory whose config selects the null backend, so no model
is built; the real TEST01 on ResNet-50 is in test_submission_resnet50.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from mlperf_bnas.submission.audit import verify_accuracy, verify_performance

SYSTEM = "ci_audit_cpu"
CONF = """\
resnet50.Server.target_qps = 1000
resnet50.Server.min_duration = 300
resnet50.Server.target_latency = 100
resnet50.*.min_query_count = 300
"""


def _null_bench(root: Path, postprocess: str = "none") -> Path:
    bench = root / f"null-{postprocess}"
    bench.mkdir()
    (bench / "config.yaml").write_text(
        "benchmark: resnet50-openvino\nloadgen_model: resnet50\nmodel: resnet50\ndataset: imagenet\n"
        f'backend: "null"\naccuracy: imagenet\npostprocess: {postprocess}\nbackend_options:\n  batch_size: 64\n')
    (bench / "user.conf").write_text(CONF)
    return bench


def _audit_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("audit.config")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A real Server performance run to compare against (accuracy log: a copy is enough for the
    precondition; TEST04 does not read it)."""
    root = tmp_path_factory.mktemp("audit")
    bench = _null_bench(root)
    out = root / "out"
    run_cli("run", "--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM,
            "--scenario", "Server", "--mode", "performance", "--user-conf", str(bench / "user.conf"), timeout=300)
    return root, bench, out


def test_failed_inference_leaves_no_audit_config(reference, tmp_path):
    root, _bench, out = reference
    failing = _null_bench(tmp_path, postprocess="retinanet")   # null outputs are no detections: every batch fails
    proc = run_cli("compliance", "TEST04", "--benchmark", str(failing), "--output-dir", str(out), "--system", SYSTEM,
                   "--scenario", "Server", "--user-conf", str(failing / "user.conf"), check=False, timeout=300)
    assert proc.returncode == 1 and "run failed" in proc.stderr, proc.stderr[-2000:]
    assert not _audit_files(out, tmp_path, REPO / "code")
    assert not list((out / "build" / "resnet50-openvino" / "compliance").iterdir())   # private folder removed
    assert not (out / "compliance" / SYSTEM / "resnet50" / "Server" / "TEST04").exists()
    # The failed run's logs are kept in the archive, and they were a compliance run (audit applied).
    archived = list((out / "build" / "archive").glob("failed-*/run/mlperf_log_detail.txt"))
    assert len(archived) == 1
    assert '"key": "effective_performance_issue_same", "value": true' in archived[0].read_text()


def test_compliance_script_with_rejected_user_conf_leaves_no_audit_config(reference, tmp_path):
    """Through code/resnet50-openvino/run_compliance.sh: the user.conf is rejected (a line LoadGen
    would refuse) after the audit.config was written; the script fails with one line and nothing is left behind."""
    _root, _bench, out = reference
    ref = out / "results" / SYSTEM / "resnet50" / "Server"
    shutil.copytree(ref / "performance", tmp_path / "results" / SYSTEM / "resnet50" / "Server" / "performance")
    acc = tmp_path / "results" / SYSTEM / "resnet50" / "Server" / "accuracy"
    acc.mkdir(parents=True)
    (acc / "mlperf_log_accuracy.json").write_text("[]")
    bad = tmp_path / "bad.conf"
    bad.write_text("resnet50.Server.target_qps = not-a-number\n")
    env = dict(os.environ, OUTPUT_DIR=str(tmp_path), SYSTEM=SYSTEM, USER_CONF=str(bad), DATA_DIR="", CHECKPOINT="")
    proc = subprocess.run(["bash", str(REPO / "code" / "resnet50-openvino" / "run_compliance.sh"), "Server"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FAILED TEST01 (exit 2), TEST04 (exit 2)" in proc.stdout
    assert f"{bad}:1: target_qps = not-a-number: not a number" in proc.stderr
    assert not _audit_files(tmp_path, REPO / "code")
    work = tmp_path / "build" / "resnet50-openvino" / "compliance"
    assert work.is_dir() and not list(work.iterdir())


# -- MLPerf's verification logic -------------------------------------------------------------------
def _summary(path: Path, scenario: str, score: float, valid: str = "VALID") -> Path:
    key = "Samples per second" if scenario == "Offline" else "Completed samples per second"
    path.write_text(f"Scenario : {scenario}\nMode     : PerformanceOnly\n{key}: {score}\nResult is : {valid}\n"
                    "target_latency (ns): 15000000\n")
    return path


def test_only_a_performance_verdict_failing_exits_4(reference, tmp_path):
    """A compliance run 30% faster than the reference (another target_qps: what a machine that
    sped up does) fails TEST04's performance check only: exit status 4, which run.sh answers by
    making the reference run and the tests again, back to back."""
    _root, bench, out = reference
    faster = tmp_path / "faster.conf"
    faster.write_text(CONF.replace("target_qps = 1000", "target_qps = 1300"))
    proc = run_cli("compliance", "TEST04", "--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM,
                   "--scenario", "Server", "--user-conf", str(faster), check=False, subprocess_only=True,
                   timeout=300)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Performance check pass: False" in proc.stdout
    verdict = out / "compliance" / SYSTEM / "resnet50" / "Server" / "TEST04" / "verify_performance.txt"
    # (This short reference run is itself INVALID, which fails the same check first.)
    assert verdict.read_text().strip().splitlines()[-1].startswith("TEST FAIL: ")


@pytest.mark.parametrize("test,score,passes", [
    ("TEST01", 100.0, True), ("TEST01", 109.0, True), ("TEST01", 111.0, False), ("TEST01", 89.0, False),
    ("TEST04", 109.0, True), ("TEST04", 111.0, False), ("TEST04", 50.0, True),
])
def test_verify_performance_thresholds(tmp_path, test, score, passes):
    ref = _summary(tmp_path / "ref.txt", "Offline", 100.0)
    tst = _summary(tmp_path / "test.txt", "Offline", score)
    ok, text = verify_performance(ref, tst, test)
    assert ok is passes
    assert text.splitlines()[-1] == ("TEST PASS" if passes else "TEST FAIL: Test score invalid")
    assert f"reference score = 100.0" in text and f"test score = {score}" in text


def test_verify_performance_invalid_reference(tmp_path):
    ok, text = verify_performance(_summary(tmp_path / "r", "Server", 10, "INVALID"),
                                  _summary(tmp_path / "t", "Server", 10), "TEST04")
    assert not ok and text.strip().endswith("TEST FAIL: Reference results are invalid")


def test_verify_accuracy_compares_logged_responses(tmp_path):
    import json

    ref = tmp_path / "acc.json"
    ref.write_text(json.dumps([{"seq_id": i, "qsl_idx": i, "data": (i).to_bytes(4, "little").hex()} for i in range(8)]))
    same = tmp_path / "same.json"
    same.write_text(json.dumps([{"seq_id": 100 + i, "qsl_idx": i % 8, "data": (i % 8).to_bytes(4, "little").hex()}
                                for i in range(20)]))
    ok, text = verify_accuracy(ref, same, "int32")
    assert ok and "num_perf_log_qsl_idx_match = 20" in text and text.strip().endswith("TEST PASS")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"seq_id": 1, "qsl_idx": 3, "data": (4).to_bytes(4, "little").hex()}]))
    ok, text = verify_accuracy(ref, wrong, "int32")
    assert not ok and "num_perf_log_data_mismatch = 1" in text and text.strip().endswith("TEST FAIL")


def _mlperf_verify_accuracy(ref: Path, test: Path, dtype: str) -> list[int]:
    """MLPerf's compliance/TEST01/verify_accuracy.py counting, kept literally (whole responses in memory)."""
    import json

    import numpy as np

    dt = {"int32": np.int32, "float32": np.float32}[dtype]
    results, dup, acc_mis, match, perf_mis, missing = {}, 0, 0, 0, 0, 0
    acc_data, perf_data = json.loads(ref.read_text()), json.loads(test.read_text())
    for sample in acc_data:
        if sample["qsl_idx"] in results:
            dup += 1
            acc_mis += results[sample["qsl_idx"]] != sample["data"]
        else:
            results[sample["qsl_idx"]] = sample["data"]
    for sample in perf_data:
        data = np.frombuffer(bytes.fromhex(sample["data"]), dt)
        if sample["qsl_idx"] in results:
            match += 1
            ref_data = np.frombuffer(bytes.fromhex(results[sample["qsl_idx"]]), dt)
            if ref_data.size == 0 or data.size == 0:
                perf_mis += ref_data.size != data.size
            elif data[0] != ref_data[0]:
                perf_mis += 1
        else:
            missing += 1
        results[sample["qsl_idx"]] = sample["data"]
    return [len(acc_data), dup, acc_mis, len(perf_data), match, perf_mis, missing]


def test_verify_accuracy_counts_as_mlperf_without_holding_the_log(tmp_path):
    """TEST01's check keeps a digest and the first element of each response, not the response: a
    full RetinaNet accuracy log (up to 416 MB of hex) is not held in memory. Its counts are MLPerf
    script's on duplicates (same and different), empty responses, responses that differ only
    after their first element and indices the accuracy run never logged."""
    import tracemalloc

    import numpy as np

    from mlperf_bnas.loadgen.accuracy_log import Entry, write_entries

    def rows(*values):
        return np.array(values, np.float32).tobytes().hex()

    ref, test = tmp_path / "acc.json", tmp_path / "perf.json"
    write_entries(ref, [Entry(0, 0, rows(1, 2, 3)), Entry(1, 1, rows(4, 5)), Entry(2, 2, ""),
                        Entry(3, 0, rows(1, 2, 3)), Entry(4, 1, rows(4, 6)), Entry(5, 3, rows(7))])
    write_entries(test, [Entry(9, 0, rows(1, 9, 9)), Entry(8, 1, rows(5)), Entry(7, 2, ""), Entry(6, 3, ""),
                         Entry(5, 5, rows(1)), Entry(4, 0, rows(2))])
    ok, text = verify_accuracy(ref, test, "float32")
    counts = [int(line.split(" = ")[1]) for line in text.splitlines() if " = " in line]
    assert counts == _mlperf_verify_accuracy(ref, test, "float32") == [6, 2, 1, 6, 5, 3, 1]
    assert not ok

    big = tmp_path / "big.json"           # 40 responses of 100,000 float32 values: 32 MB of hex
    response = np.arange(100_000, dtype=np.float32)
    write_entries(big, (Entry(i, i, (response + i).tobytes().hex()) for i in range(40)))
    write_entries(test, [Entry(0, i, (response + i)[:3].tobytes().hex()) for i in range(40)])
    tracemalloc.start()
    try:
        ok, text = verify_accuracy(big, test, "float32")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ok and "num_perf_log_qsl_idx_match = 40" in text
    assert peak < big.stat().st_size / 4, f"{peak / 2**20:.1f} MiB for a {big.stat().st_size / 2**20:.1f} MiB log"
