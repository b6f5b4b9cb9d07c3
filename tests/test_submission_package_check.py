"""Package + check on a submission produced by real (short) LoadGen runs of the null backend.

One session fixture runs `mlperf-bnas run` (Offline/Server x performance/accuracy) and
`mlperf-bnas compliance TEST04` for a benchmark directory whose config selects the null
backend, then packages it. The tests check the packaged tree, the checker's smoke verdict
(it fails exactly the rules a short synthetic run cannot meet), the deliberate corruptions
of mlperf_bnas.submission.corruptions (each caught by the right rule), and that a failed or interrupted packaging leaves the
earlier submission untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from mlperf_bnas.submission import checker as C
from mlperf_bnas.submission import packager as P
from mlperf_bnas.submission.corruptions import CORRUPTIONS, Tree, edit_detail

SYSTEM = "ci_null_cpu"
SUBMITTER = "BootstrapNAS-community"   # systems/overrides.yaml's default
# Short runs the null backend completes in about a second each. Like the benchmarks'
# user.smoke.conf, the Server latency bound is relaxed (a loaded 2-core CI machine misses
# 15 ms now and then, and early stopping would then need thousands more queries).
FAST_CONF = """\
resnet50.Offline.target_qps = 1000000
resnet50.Offline.min_duration = 500
resnet50.Server.target_qps = 1000
resnet50.Server.min_duration = 500
resnet50.Server.target_latency = 100
resnet50.*.min_query_count = 600
"""
NULL_CONFIG = """\
benchmark: resnet50-openvino
loadgen_model: resnet50
model: resnet50
dataset: imagenet
backend: "null"              # quoted: a bare null is YAML for None
accuracy: imagenet
postprocess: none
backend_options:
  batch_size: 256
"""


def _accuracy_txt(log: Path) -> str:
    """accuracy.txt in the imagenet format: the null backend answers class 0 for every sample,
    and this fixture's stand-in labels are all 0 (so every decoded response is checked)."""
    entries = json.loads(log.read_text())
    good = sum(1 for e in entries if int.from_bytes(bytes.fromhex(e["data"]), "little") == 0)
    return f"accuracy={100.0 * good / len(entries):.3f}%, good={good}, total={len(entries)}\n"


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    bench = root / "resnet50-openvino"
    shutil.copytree(REPO / "code" / "resnet50-openvino", bench)
    (bench / "config.yaml").write_text(NULL_CONFIG)
    (bench / "user.smoke.conf").write_text(FAST_CONF)
    out = root / "out"
    common = ["--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM]
    conf = ["--user-conf", str(bench / "user.smoke.conf")]
    for scenario in ("Offline", "Server"):
        for mode in ("performance", "accuracy"):
            run_cli("run", *common, "--scenario", scenario, "--mode", mode, *conf, timeout=300)
        acc = out / "results" / SYSTEM / "resnet50" / scenario / "accuracy"
        (acc / "accuracy.txt").write_text(_accuracy_txt(acc / "mlperf_log_accuracy.json"))
    # TEST04 on Server only: its throughput is LoadGen's arrival rate, so the verification is
    # stable; an Offline null-backend run measures Python overhead, which swings by +-20%
    # on a shared machine. (TEST01, which needs the dataset, is in test_submission_resnet50.)
    proc = run_cli("compliance", "TEST04", *common, "--scenario", "Server", *conf, check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    # The build record packaging documents (the real build writes it; see test_submission_resnet50).
    record = out / "build" / "resnet50-openvino" / "model" / "int8" / "quantization.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({
        "benchmark": "resnet50-openvino", "model": "resnet50", "dataset": "imagenet", "precision": "int8",
        "weights": {"path": str(root / "resnet50-seed0.pt"), "sha256": "0" * 64,
                    "source": "seeded random weights (no CHECKPOINT)"},
        "calibration": {"count": 2, "qsl_indices": [0, 1], "names": ["a.JPEG", "b.JPEG"]},
        "quantization": {"tool": "nncf", "nncf_version": "3.4.0", "config": {"preset": "performance"},
                         "calibration_samples_used": 2},
        "openvino_version": "2026.4.1", "input": {"shape": "[?,224,224,3]", "element_type": "u8"},
    }))
    pkg = run_cli("package", "--output-dir", str(out), "--system", SYSTEM, "--benchmark", str(bench))
    return {"root": root, "out": out, "bench": bench, "package_stdout": pkg.stdout,
            "tree": out / "submission" / "open" / SUBMITTER}


def _digest(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*")) if p.is_file()}


# -- the packaged tree -------------------------------------------------------------------------
def test_package_layout(smoke):
    tree = smoke["tree"]
    for scenario in ("Offline", "Server"):
        res = tree / "results" / SYSTEM / "resnet50" / scenario
        assert sorted(p.name for p in (res / "performance" / "run_1").iterdir()) == \
            ["mlperf_log_detail.txt", "mlperf_log_summary.txt"]
        assert sorted(p.name for p in (res / "accuracy").iterdir()) == \
            ["accuracy.txt", "mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt"]
        meas = tree / "measurements" / SYSTEM / "resnet50" / scenario
        assert (meas / "user.conf").read_text() == FAST_CONF        # the conf the runs used, found by content
        assert f"USER_CONF=code/resnet50-openvino/user.smoke.conf" in (meas / "README.md").read_text()
        fields = json.loads((meas / f"{SYSTEM}_resnet50-openvino_{scenario}.json").read_text())
        assert fields["weight_data_types"] == "int8" and all(fields.values())
        assert "nncf 3.4.0" in fields["weight_transformations"]
    assert (tree / "compliance" / SYSTEM / "resnet50" / "Server" / "TEST04" / "verify_performance.txt").is_file()
    system = json.loads((tree / "systems" / f"{SYSTEM}.json").read_text())
    assert system["submitter"] == SUBMITTER and system["division"] == "open"
    assert (tree / "code" / "resnet50" / "run_compliance.sh").is_file()
    assert (tree / "code" / "mlperf_bnas" / "submission" / "checker.py").is_file()
    assert not list(tree.rglob("__pycache__"))
    assert "a.JPEG" in (tree / "calibration.md").read_text()


def test_accuracy_log_truncated_and_hashed(smoke):
    full = smoke["out"] / "results" / SYSTEM / "resnet50" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    sub = smoke["tree"] / "results" / SYSTEM / "resnet50" / "Offline" / "accuracy"
    text = full.read_text()
    assert len(text) > 3 * 4096                       # the full log stays outside, whole
    assert (sub / "mlperf_log_accuracy.json").read_text() == text[:4096] + "\n\n...\n\n" + text[-4096:]
    assert (sub / "mlperf_log_accuracy.json").stat().st_size < 10 * 1024
    last = (sub / "accuracy.txt").read_text().splitlines()[-1]
    assert last == "hash=" + hashlib.sha256(full.read_bytes()).hexdigest()


# -- our checker on the smoke tree -------------------------------------------------------------
GOLDEN_SMOKE = """\
WARNING [scenarios-missing] results/{S}/resnet50
ERROR [min-duration] results/{S}/resnet50/Offline/performance/run_1/mlperf_log_detail.txt
ERROR [dataset-coverage] results/{S}/resnet50/Offline/accuracy/mlperf_log_detail.txt
WARNING [compliance-missing] compliance/{S}/resnet50/Offline/TEST01
WARNING [compliance-missing] compliance/{S}/resnet50/Offline/TEST04
ERROR [latency-bound] results/{S}/resnet50/Server/performance/run_1/mlperf_log_detail.txt
ERROR [min-duration] results/{S}/resnet50/Server/performance/run_1/mlperf_log_detail.txt
ERROR [min-query-count] results/{S}/resnet50/Server/performance/run_1/mlperf_log_detail.txt
ERROR [dataset-coverage] results/{S}/resnet50/Server/accuracy/mlperf_log_detail.txt
WARNING [compliance-missing] compliance/{S}/resnet50/Server/TEST01
v5.1 release checker verdict (submission_checker.py of v5.1.1, by its rules): FAIL (latency-bound, min-duration)
official v5.1 checker verdict (the submission_checker package, by its rules): FAIL (dataset-coverage, latency-bound, min-duration)
SUMMARY: SMOKE submission (short runs / synthetic data): fails only the rules a short run cannot meet: \
latency-bound (1), min-duration (2), min-query-count (1), dataset-coverage (2)
""".format(S=SYSTEM)


def _normalise(stdout: str) -> str:
    """Checker output without run-dependent numbers: finding lines cut after the path, plus the verdicts."""
    keep = []
    for line in stdout.splitlines():
        m = re.match(r"^(ERROR|WARNING) \[([\w-]+)\] open/[^/]+/(\S+?):", line)
        if m:
            keep.append(f"{m.group(1)} [{m.group(2)}] {m.group(3)}")
        elif line.startswith(("v5.1 release", "official v5.1", "SUMMARY")):
            keep.append(line)
    return "\n".join(keep) + "\n"


def test_check_smoke_golden(smoke):
    proc = run_cli("check", "--input", str(smoke["out"] / "submission"), check=False)
    assert proc.returncode == 1, proc.stderr
    verdict = smoke["tree"] / "compliance" / SYSTEM / "resnet50" / "Server" / "TEST04" / "verify_performance.txt"
    if not verdict.read_text().strip().endswith("TEST PASS"):
        pytest.skip("TEST04 verification failed on this (loaded) machine: " + verdict.read_text().splitlines()[-1])
    assert _normalise(proc.stdout) == GOLDEN_SMOKE, proc.stdout
    assert "note: full accuracy logs not found" not in proc.stdout     # hashes verified against results/


@pytest.fixture(scope="session")
def baseline(smoke):
    report = C.check_submission(smoke["out"] / "submission", smoke["out"] / "results")
    assert report.is_smoke, [f.line() for f in report.errors]
    return {(f.rule, f.path) for f in report.findings}


# -- deliberate corruptions (the list lives in mlperf_bnas.submission.corruptions) ---------------
def _perf(t, scen="Offline"):
    return t / "results" / SYSTEM / "resnet50" / scen / "performance" / "run_1"


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_caught(smoke, baseline, tmp_path, name):
    corruption = CORRUPTIONS[name]
    rule, fragment = corruption.rule, corruption.fragment
    sub_root = tmp_path / "submission"
    shutil.copytree(smoke["out"] / "submission", sub_root)
    compliance_ok = (smoke["tree"] / "compliance" / SYSTEM / "resnet50" / "Server" / "TEST04" /
                     "verify_performance.txt").read_text().strip().endswith("TEST PASS")
    if name == "compliance-verdict-fail" and not compliance_ok:
        pytest.skip("TEST04 did not pass on this (loaded) machine, so there is no PASS to corrupt")
    # The copy's hash check needs the full logs: they stay in the fixture's results/.
    (tmp_path / "results").symlink_to(smoke["out"] / "results")
    corruption.mutate(Tree.locate(sub_root, tmp_path / "results"))
    report = C.check_submission(sub_root, tmp_path / "results")
    new = [f for f in report.findings if (f.rule, f.path) not in baseline]
    assert any(f.rule == rule and (fragment in f.message or fragment in f.path) for f in new), \
        f"{name}: expected [{rule}] '{fragment}', got:\n" + "\n".join(f.line() for f in new)
    # A corruption of a smoke rule (e.g. the sample count) still reads as a smoke tree.
    assert report.errors and (C.RULES[rule].smoke or not report.is_smoke)
    assert C.RULES[rule].severity == "error"


def test_at_least_twenty_distinct_rules_exercised():
    assert len(CORRUPTIONS) >= 20 and len({c.rule for c in CORRUPTIONS.values()}) >= 20


def test_corruptions_locate_the_packaged_layout(smoke):
    tree = Tree.locate(smoke["out"] / "submission", smoke["out"] / "results")
    assert (tree.system, tree.benchmark) == (SYSTEM, "resnet50")
    assert tree.perf("Server").is_dir() and tree.system_json().is_file() and tree.full_accuracy_log().is_file()


def test_check_cli_rejects_a_corrupted_tree_with_one_line_per_finding(smoke, tmp_path):
    sub_root = tmp_path / "submission"
    shutil.copytree(smoke["out"] / "submission", sub_root)
    edit_detail(_perf(sub_root / "open" / SUBMITTER) / "mlperf_log_detail.txt", "effective_sample_index_rng_seed", 1)
    proc = run_cli("check", "--input", str(sub_root), "--json", str(tmp_path / "f.json"), check=False)
    assert proc.returncode == 1
    line = next(l for l in proc.stdout.splitlines() if "[seeds]" in l)
    assert line.startswith("ERROR [seeds] open/") and "mlperf_log_detail.txt" in line
    assert line.endswith("(v5.1 release checker: fails; official package: fails)")
    assert "SUMMARY: submission has errors:" in proc.stdout and "seeds" in proc.stdout.splitlines()[-1]
    data = json.loads((tmp_path / "f.json").read_text())
    assert any(f["rule"] == "seeds" for f in data["findings"]) and data["smoke"] is False


def test_check_bad_input_is_one_line(tmp_path):
    proc = run_cli("check", "--input", str(tmp_path), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "open/" in proc.stderr


# -- truncate command ---------------------------------------------------------------------------
def test_truncate_command_output_mode(smoke, tmp_path):
    src = tmp_path / "raw"
    acc = src / "open" / SUBMITTER / "results" / SYSTEM / "resnet50" / "Offline" / "accuracy"
    full = smoke["out"] / "results" / SYSTEM / "resnet50" / "Offline" / "accuracy"
    shutil.copytree(full, acc)
    run_cli("truncate", "--input", str(src), "--output", str(tmp_path / "new"))
    new = tmp_path / "new" / acc.relative_to(src)
    assert (new / "mlperf_log_accuracy.json").stat().st_size < 10 * 1024
    assert (acc / "mlperf_log_accuracy.json").read_bytes() == (full / "mlperf_log_accuracy.json").read_bytes()
    assert (new / "accuracy.txt").read_text().endswith(
        "hash=" + hashlib.sha256((full / "mlperf_log_accuracy.json").read_bytes()).hexdigest() + "\n")
    again = run_cli("truncate", "--input", str(src), "--output", str(tmp_path / "new"), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


# -- atomic packaging ---------------------------------------------------------------------------
def _request(smoke):
    return P.PackageRequest.resolve(output_dir=smoke["out"], system=SYSTEM, submitter=None, overrides=None,
                                    benchmarks=[smoke["bench"]])


def test_failed_packaging_leaves_earlier_tree_intact(smoke):
    before = _digest(smoke["tree"])
    acc_txt = smoke["out"] / "results" / SYSTEM / "resnet50" / "Server" / "accuracy" / "accuracy.txt"
    saved = acc_txt.read_text()
    acc_txt.unlink()
    try:
        proc = run_cli("package", "--output-dir", str(smoke["out"]), "--system", SYSTEM,
                       "--benchmark", str(smoke["bench"]), check=False)
    finally:
        acc_txt.write_text(saved)
    assert proc.returncode == 2 and "accuracy.txt: missing" in proc.stderr and proc.stderr.count("\n") == 1
    assert _digest(smoke["tree"]) == before
    assert not list((smoke["out"] / "build").glob(".submission-*"))


def test_interrupted_packaging_leaves_earlier_tree_intact(smoke, monkeypatch):
    before = _digest(smoke["tree"])

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P.provenance, "calibration_document", interrupted)   # the last step before the swap
    with pytest.raises(KeyboardInterrupt):
        P.package_submission(_request(smoke))
    assert _digest(smoke["tree"]) == before
    assert not list((smoke["out"] / "build").glob(".submission-*"))
    assert not [p for p in (smoke["out"] / "submission" / "open").iterdir() if p.name != SUBMITTER]


def test_repackaging_archives_the_earlier_tree(smoke):
    before = _digest(smoke["tree"])
    packaged = P.package_submission(_request(smoke))
    assert packaged.archived is not None and _digest(packaged.archived) == before
    assert packaged.archived.is_relative_to(smoke["out"] / "build" / "archive")


def test_package_bad_overrides_is_one_line(smoke, tmp_path):
    bad = tmp_path / "overrides.yaml"
    bad.write_text("submitter: x\nstatus: beta\n")
    proc = run_cli("package", "--output-dir", str(smoke["out"]), "--system", SYSTEM, "--benchmark",
                   str(smoke["bench"]), "--overrides", str(bad), check=False)
    assert proc.returncode == 2 and "status 'beta' is invalid" in proc.stderr and str(bad) in proc.stderr
    bad.write_text("submitter: x\ncooling_system: air\n")
    proc = run_cli("package", "--output-dir", str(smoke["out"]), "--system", SYSTEM, "--benchmark",
                   str(smoke["bench"]), "--overrides", str(bad), check=False)
    assert proc.returncode == 2 and "unknown key 'cooling_system'" in proc.stderr


@pytest.mark.parametrize("cpu,expected", [
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "Intel_Xeon_Platinum_8380"),
    ("AMD EPYC 9654 96-Core Processor", "AMD_EPYC_9654_96_Core"),
    ("", "cpu"),
])
def test_system_name_sanitising(cpu, expected):
    from mlperf_bnas.submission.system import _sanitize
    assert _sanitize(cpu) == expected


def test_default_system_name_is_fast_and_file_safe():
    proc = run_cli("package", "--default-system-name")
    name = proc.stdout.strip()
    assert re.fullmatch(r"\d+x[A-Za-z0-9_]+_\d+c", name), name
    import subprocess
    import sys
    import time
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys, mlperf_bnas.cli as c; c.main(['package', '--default-system-name']);"
                    "assert 'torch' not in sys.modules and 'openvino' not in sys.modules"], check=True,
                   capture_output=True)
    assert time.perf_counter() - start < 5      # generous: a shared CI core; it is ~0.1 s idle


# -- refusals: no results, no value, incomplete logs, links (issue #19) -------------------------
def test_check_refuses_a_tree_without_results(tmp_path):
    # An empty open/ is what a failed packaging used to leave behind.
    (tmp_path / "submission" / "open" / SUBMITTER).mkdir(parents=True)
    proc = run_cli("check", "--input", str(tmp_path / "submission"), check=False)
    assert proc.returncode == 1, proc.stdout
    assert "ERROR [no-results]" in proc.stdout and "PASS" not in proc.stdout.splitlines()[-1]


def test_check_reports_links_that_loop_or_leave_the_tree(smoke, tmp_path):
    sub_root = tmp_path / "submission"
    shutil.copytree(smoke["out"] / "submission", sub_root)
    sub = sub_root / "open" / SUBMITTER
    (sub / "loop").symlink_to(sub / "loop")
    (sub / "code" / "elsewhere").symlink_to(tmp_path)
    proc = run_cli("check", "--input", str(sub_root), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"ERROR [symlinks] open/{SUBMITTER}/loop: a symbolic link that loops" in proc.stdout
    assert f"ERROR [symlinks] open/{SUBMITTER}/code/elsewhere: a symbolic link that leaves the tree" in proc.stdout


def test_check_reports_a_result_without_a_value_and_cut_off_logs(smoke, tmp_path):
    sub_root = tmp_path / "submission"
    shutil.copytree(smoke["out"] / "submission", sub_root)
    perf = _perf(sub_root / "open" / SUBMITTER)
    detail = perf / "mlperf_log_detail.txt"
    detail.write_text("".join(ln for ln in detail.read_text().splitlines(keepends=True)
                              if "result_samples_per_second" not in ln))
    (perf / "mlperf_log_summary.txt").write_text("")
    report = C.check_submission(sub_root)
    found = {(f.rule, Path(f.path).name) for f in report.findings}
    assert ("result-value", "mlperf_log_detail.txt") in found
    assert ("log-incomplete", "mlperf_log_summary.txt") in found
    assert any(r[3] == "no result value in the log" for r in report.results)


def test_check_reads_a_log_with_an_endless_line_in_bounded_memory(smoke, tmp_path):
    import tracemalloc

    sub_root = tmp_path / "submission"
    shutil.copytree(smoke["out"] / "submission", sub_root)
    detail = _perf(sub_root / "open" / SUBMITTER) / "mlperf_log_detail.txt"
    text = detail.read_text()
    with open(detail, "w") as fh:
        fh.write("x" * (64 << 20) + "\n" + text)                  # a 64 MB line, then the real log
    tracemalloc.start()
    report = C.check_submission(sub_root)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20, f"{peak >> 20} MiB"
    assert not any(f.rule == "result-value" for f in report.findings)     # the real records were read


@pytest.fixture
def out_copy(smoke, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(smoke["out"], out, symlinks=True, ignore=shutil.ignore_patterns("submission"))
    return out


def _package(out, smoke):
    return run_cli("package", "--output-dir", str(out), "--system", SYSTEM, "--benchmark", str(smoke["bench"]),
                   check=False)


def test_package_refuses_an_incomplete_result(smoke, out_copy):
    summary = out_copy / "results" / SYSTEM / "resnet50" / "Offline" / "performance" / "run_1" / "mlperf_log_summary.txt"
    summary.write_text("")                                      # what a full disk leaves
    proc = _package(out_copy, smoke)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{summary}: empty (0 bytes)" in proc.stderr and "cannot be packaged" in proc.stderr
    assert not (out_copy / "submission").exists() or not any((out_copy / "submission").rglob("*.txt"))
    assert not list((out_copy / "build").glob(".submission-*"))


def test_package_refuses_links_that_loop_or_leave_the_output(smoke, out_copy, tmp_path):
    acc = out_copy / "results" / SYSTEM / "resnet50" / "Server" / "accuracy"
    (acc / "loop").symlink_to(acc / "loop")
    proc = _package(out_copy, smoke)
    assert proc.returncode == 2 and "a symbolic link that loops" in proc.stderr and "Traceback" not in proc.stderr
    (acc / "loop").unlink()
    outside = tmp_path / "elsewhere.txt"
    outside.write_text((acc / "accuracy.txt").read_text())
    (acc / "accuracy.txt").unlink()
    (acc / "accuracy.txt").symlink_to(outside)
    proc = _package(out_copy, smoke)
    assert proc.returncode == 2 and f"{acc / 'accuracy.txt'}: a symbolic link that leaves the tree" in proc.stderr


def test_truncate_output_mode_never_copies_a_full_log(tmp_path, monkeypatch):
    """``truncate --output`` used to copy the whole tree, full logs included, then copy each full log
    again as a backup before truncating: 3x the logs on disk (RetinaNet: up to 416 MB a scenario).
    Now the copy leaves the full logs out and truncates from the source; nothing over 10 KiB is copied."""
    from mlperf_bnas.loadgen.accuracy_log import Entry, write_entries
    from mlperf_bnas.submission.truncation import ELLIPSIS, MAX_ACCURACY_LOG_SIZE, VIEWABLE_SIZE

    src = tmp_path / "raw"
    accs = [src / "open" / SUBMITTER / "results" / SYSTEM / "retinanet" / s / "accuracy" for s in ("Offline", "Server")]
    for k, acc in enumerate(accs):
        acc.mkdir(parents=True)
        write_entries(acc / "mlperf_log_accuracy.json", (Entry(i, i, f"{k:02x}" * 2800) for i in range(40)))
        (acc / "accuracy.txt").write_text("mAP=1.000%\n")
        (acc / "mlperf_log_detail.txt").write_text("detail\n")
    copied: list[tuple[str, int]] = []
    real_copyfile = shutil.copyfile

    def copyfile(a, b, *args, **kwargs):
        copied.append((Path(a).name, Path(a).stat().st_size))
        return real_copyfile(a, b, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copyfile)
    run_cli("truncate", "--input", str(src), "--output", str(tmp_path / "new"))
    assert copied and max(size for _, size in copied) < MAX_ACCURACY_LOG_SIZE, copied
    for acc in accs:
        full = (acc / "mlperf_log_accuracy.json").read_bytes()
        assert len(full) > 100_000                       # the source keeps its full log
        new = tmp_path / "new" / acc.relative_to(src)
        assert (new / "mlperf_log_accuracy.json").read_bytes() == \
            full[:VIEWABLE_SIZE] + ELLIPSIS.encode() + full[-VIEWABLE_SIZE:]
        assert (new / "accuracy.txt").read_text() == f"mAP=1.000%\nhash={hashlib.sha256(full).hexdigest()}\n"
        assert (new / "mlperf_log_detail.txt").read_text() == "detail\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "raw"]   # no partial or backup folder left
