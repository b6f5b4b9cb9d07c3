"""Deliberate corruptions of a packaged submission: one list for the tests and the checker comparison.

Each ``Corruption`` damages a copy of a submission tree in one way and names the rule of
our checker that must catch it. ``tests/test_submission_package_check.py`` applies every
one to a null-backend tree and asserts the rule fires; ``tools/compare_with_official_checker.py``
applies the same list to any packaged tree and runs the official MLPerf checker beside ours.

``fake_full_run_values`` is a *fixture for comparing checkers*, never a submission: it edits
the copy's detail logs so that the rules a short smoke run cannot meet (duration, sample
counts, latency bound, early stopping, dataset coverage) read as met. On a smoke tree every
result already fails those rules, so without it each corruption would leave both verdicts
at FAIL and say nothing about whether the two checkers agree on that corruption.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlperf_bnas.enums import Mode
from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import SubmissionTree, mode_dir
from mlperf_bnas.submission import rules as R


@dataclass(frozen=True)
class Tree:
    """Where things are in one packaged submission (``<submission>/open/<submitter>``)."""
    submission: Path            # the folder holding open/
    submitter_dir: Path         # open/<submitter>
    system: str
    benchmark: str              # folder name under results/<system>/, e.g. resnet50
    full_results: Path | None   # $OUTPUT_DIR/results (untruncated accuracy logs), if known

    @classmethod
    def locate(cls, submission: Path, full_results: Path | None = None) -> "Tree":
        """The first submitter and system of ``submission``; resnet50 when present (it has TEST04)."""
        submission = Path(submission)
        submitters = SubmissionTree.submitters(submission)
        if not submitters:
            raise UserError(f"{submission}: no open/<submitter>/results/ folder; pass the submission root "
                            "(the folder holding open/, e.g. $OUTPUT_DIR/submission)")
        sub = submitters[0].root
        systems = sorted(p for p in submitters[0].results_root.iterdir() if p.is_dir())
        if not systems:
            raise UserError(f"{submitters[0].results_root}: no system folder with results")
        benchmarks = sorted(p.name for p in systems[0].iterdir() if p.is_dir())
        if not benchmarks:
            raise UserError(f"{systems[0]}: no benchmark folder with results")
        benchmark = "resnet50" if "resnet50" in benchmarks else benchmarks[0]
        return cls(submission, sub, systems[0].name, benchmark, full_results)

    def relocated(self, submission: Path) -> "Tree":
        """The same layout in a copy of the submission at ``submission``."""
        return Tree(Path(submission), Path(submission) / self.submitter_dir.relative_to(self.submission),
                    self.system, self.benchmark, self.full_results)

    @property
    def tree(self) -> SubmissionTree:
        return SubmissionTree(self.submitter_dir)

    def result(self, scenario: str) -> Path:
        return self.tree.result_dir(self.system, self.benchmark, scenario)

    def perf(self, scenario: str = "Offline") -> Path:
        return self.tree.performance_dir(self.system, self.benchmark, scenario)

    def acc(self, scenario: str = "Offline") -> Path:
        return self.tree.accuracy_dir(self.system, self.benchmark, scenario)

    def meas(self, scenario: str = "Offline") -> Path:
        return self.tree.measurements_dir(self.system, self.benchmark, scenario)

    def compliance(self, scenario: str, test: str) -> Path:
        return self.tree.compliance_dir(self.system, self.benchmark, scenario, test)

    def system_json(self) -> Path:
        return self.tree.system_file(self.system)

    def full_accuracy_log(self, scenario: str = "Offline") -> Path:
        if self.full_results is None:
            raise UserError("this corruption copies the full (untruncated) accuracy log: pass --full-results "
                            "$OUTPUT_DIR/results")
        runs = SubmissionTree(self.full_results, results=self.full_results)
        return runs.accuracy_dir(self.system, self.benchmark, scenario) / "mlperf_log_accuracy.json"


# -- editing helpers ----------------------------------------------------------------------------
_DELETE = object()


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is _DELETE:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def edit_detail(path: Path, key: str, value: Any) -> None:
    """Set ``key`` in a LoadGen detail log (every record with that key)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if f'"key": "{key}"' in line:
            rec = json.loads(line.split(":::MLLOG ", 1)[1])
            rec["value"] = value
            line = ":::MLLOG " + json.dumps(rec) + "\n"
        lines.append(line)
    path.write_text("".join(lines), encoding="utf-8")


def add_loadgen_error(path: Path) -> None:
    """An error record, counted in the log's ``num_errors`` as LoadGen counts its own (the release
    checker trusts that count and looks no further)."""
    rec = {"key": "error_runtime", "value": "Injected: SUT reported a failed query", "time_ms": 1.0,
           "namespace": "mlperf::logging", "event_type": "POINT_IN_TIME",
           "metadata": {"is_error": True, "is_warning": False, "file": "loadgen.cc", "line_no": 1}}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(":::MLLOG " + json.dumps(rec) + "\n")
    if '"key": "num_errors"' in path.read_text(encoding="utf-8"):
        edit_detail(path, "num_errors", 1)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise UserError(f"{path}: does not contain {old!r}, so this corruption cannot be applied to this tree")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _drop_hash_line(path: Path) -> None:
    path.write_text("\n".join(l for l in path.read_text(encoding="utf-8").splitlines()
                              if not l.startswith("hash=")), encoding="utf-8")


def _datacenter_only(t: Tree) -> None:
    """system_type datacenter: v5.1 has no ResNet-50 there (the release checker: 'has an invalid model')."""
    if R.MLPERF_MODEL.get(t.benchmark) != "resnet":
        raise UserError(f"{t.benchmark}: exists for every v5.1 system type; this corruption needs a resnet50 result")
    edit_json(t.system_json(), system_type="datacenter")


def _add_pycache(t: Tree) -> None:
    (t.tree.code_dir / t.benchmark / "__pycache__").mkdir()
    (t.tree.code_dir / t.benchmark / "__pycache__" / "x.pyc").write_bytes(b"0")


@dataclass(frozen=True)
class Corruption:
    mutate: Callable[[Tree], None]
    rule: str        # our rule that must catch it
    fragment: str    # part of that finding's message or path


CORRUPTIONS: dict[str, Corruption] = {
    "tampered-qsl-seed": Corruption(lambda t: edit_detail(t.perf() / "mlperf_log_detail.txt", "effective_qsl_rng_seed", 42),
                                    "seeds", "qsl_rng_seed is wrong"),
    "tampered-schedule-seed": Corruption(lambda t: edit_detail(t.perf("Server") / "mlperf_log_detail.txt",
                                                               "effective_schedule_rng_seed", 7), "seeds", "schedule_rng_seed"),
    "missing-perf-detail": Corruption(lambda t: (t.perf() / "mlperf_log_detail.txt").unlink(),
                                      "perf-log-missing", "mlperf_log_detail.txt"),
    "missing-perf-summary": Corruption(lambda t: (t.perf() / "mlperf_log_summary.txt").unlink(),
                                       "perf-file-list", "missing mlperf_log_summary.txt"),
    "stray-file-in-perf": Corruption(lambda t: (t.perf() / "notes.txt").write_text("x"), "perf-file-list",
                                     "unexpected notes.txt"),
    "untruncated-accuracy-log": Corruption(lambda t: shutil.copy2(t.full_accuracy_log(), t.acc() / "mlperf_log_accuracy.json"),
                                           "acc-log-size", "not truncated"),
    "edited-truncated-log": Corruption(lambda t: replace_in(t.acc() / "mlperf_log_accuracy.json", '"qsl_idx"', '"qsl_IDX"'),
                                       "acc-truncation", "first and last 4096"),
    "wrong-hash": Corruption(lambda t: replace_in(t.acc() / "accuracy.txt", "hash=", "hash=0"), "acc-hash-mismatch", "sha256"),
    "missing-hash": Corruption(lambda t: _drop_hash_line(t.acc() / "accuracy.txt"), "acc-hash-missing", "no hash="),
    "missing-accuracy-txt": Corruption(lambda t: (t.acc("Server") / "accuracy.txt").unlink(), "acc-file-missing",
                                       "accuracy.txt"),
    "missing-accuracy-summary": Corruption(lambda t: (t.acc() / "mlperf_log_summary.txt").unlink(), "acc-file-list",
                                           "missing mlperf_log_summary.txt"),
    "accuracy-value-removed": Corruption(lambda t: replace_in(t.acc() / "accuracy.txt", "accuracy=", "acc="),
                                         "acc-value", "no accuracy="),
    "empty-system-field": Corruption(lambda t: edit_json(t.system_json(), host_memory_capacity=""), "system-field-empty",
                                     "host_memory_capacity"),
    "missing-system-field": Corruption(lambda t: edit_json(t.system_json(), cooling=_DELETE), "system-field-missing",
                                       "'cooling'"),
    "invalid-status": Corruption(lambda t: edit_json(t.system_json(), status="beta"), "system-status", "beta"),
    "invalid-system-type": Corruption(lambda t: edit_json(t.system_json(), system_type="laptop"), "system-type", "laptop"),
    "benchmark-not-in-system-type": Corruption(_datacenter_only, "system-type-benchmark", "invalid model"),
    "submitter-mismatch": Corruption(lambda t: edit_json(t.system_json(), submitter="SomeoneElse"), "system-submitter",
                                     "SomeoneElse"),
    "missing-system-json": Corruption(lambda t: t.system_json().unlink(), "system-json-missing", "no system description"),
    "unused-system-json": Corruption(lambda t: shutil.copy2(t.system_json(), t.system_json().parent / "other_system.json"),
                                     "unused-system", "without results"),
    "loadgen-error-in-perf-log": Corruption(lambda t: add_loadgen_error(t.perf("Server") / "mlperf_log_detail.txt"),
                                            "perf-loadgen-errors", "Injected"),
    "loadgen-error-in-accuracy-log": Corruption(lambda t: add_loadgen_error(t.acc("Server") / "mlperf_log_detail.txt"),
                                                "loadgen-errors", "Injected"),
    "invalid-result": Corruption(lambda t: edit_detail(t.perf() / "mlperf_log_detail.txt", "result_validity", "INVALID"),
                                 "result-invalid", "INVALID"),
    "low-perf-sample-count": Corruption(lambda t: edit_detail(t.perf() / "mlperf_log_detail.txt",
                                                              "effective_performance_sample_count", 8),
                                        "perf-sample-count", "needs to be >="),
    "early-stopping-not-met": Corruption(lambda t: edit_detail(t.perf("Server") / "mlperf_log_detail.txt",
                                                               "early_stopping_met", False), "early-stopping", "not met"),
    "scenario-swapped": Corruption(lambda t: [shutil.copy2(p, t.perf("Server") / p.name) for p in t.perf().iterdir()],
                                   "scenario-mismatch", "'Offline' run in the 'Server' folder"),
    "accuracy-log-from-performance-run": Corruption(lambda t: shutil.copy2(t.perf() / "mlperf_log_detail.txt",
                                                                           t.acc() / "mlperf_log_detail.txt"),
                                                    "test-mode", "expected AccuracyOnly"),
    "missing-measurements-readme": Corruption(lambda t: (t.meas() / "README.md").unlink(), "measurements-file", "README.md"),
    "empty-user-conf": Corruption(lambda t: (t.meas("Server") / "user.conf").write_text(""), "measurements-file", "empty"),
    "user-conf-not-the-one-used": Corruption(lambda t: (t.meas() / "user.conf").write_text(
        (t.meas() / "user.conf").read_text() + f"{t.benchmark}.Offline.min_duration = 1234567\n"),
        "user-conf-mismatch", "min_duration"),
    "empty-measurement-field": Corruption(lambda t: edit_json(next(t.meas().glob("*.json")), weight_data_types=""),
                                          "measurements-field", "weight_data_types"),
    "missing-measurement-json": Corruption(lambda t: next(t.meas().glob("*.json")).unlink(), "measurements-json", "missing"),
    "missing-measurements-dir": Corruption(lambda t: shutil.rmtree(t.meas("Server")), "measurements-dir-missing", "missing"),
    "missing-code-folder": Corruption(lambda t: shutil.rmtree(t.tree.code_dir), "code-dir-missing", "missing"),
    "missing-benchmark-code-dir": Corruption(lambda t: shutil.rmtree(t.tree.code_dir / t.benchmark),
                                             "code-benchmark-dir", "missing"),
    "pycache-in-code": Corruption(_add_pycache, "pycache", "__pycache__"),
    "hidden-file": Corruption(lambda t: (t.tree.results_root / ".DS_Store").write_text("x"), "hidden-names",
                              "starts with '.'"),
    "space-in-name": Corruption(lambda t: (t.tree.code_dir / t.benchmark / "my notes.md").write_text("x"),
                                "spaces-in-names", "space"),
    "empty-folder": Corruption(lambda t: (t.tree.code_dir / t.benchmark / "empty").mkdir(), "empty-dirs",
                               "empty folder"),
    "file-beside-divisions": Corruption(lambda t: (t.submission / "stray.txt").write_text("x"), "root-extra-files",
                                        "outside"),
    "missing-calibration-doc": Corruption(lambda t: (t.submitter_dir / "calibration.md").unlink(), "calibration-doc",
                                          "missing"),
    "compliance-verdict-fail": Corruption(lambda t: replace_in(t.compliance("Server", "TEST04") / "verify_performance.txt",
                                                               "TEST PASS", "TEST FAIL: Test score invalid"),
                                          "compliance-verdict", "not 'TEST PASS'"),
    "unknown-benchmark": Corruption(lambda t: t.result("Offline").parent.rename(t.result("Offline").parent.with_name("mobilebert")),
                                    "unknown-benchmark", "mobilebert"),
    "compliance-missing-log": Corruption(lambda t: (mode_dir(t.compliance("Server", "TEST04"), Mode.PERFORMANCE) /
                                                    "mlperf_log_detail.txt").unlink(), "compliance-files", "missing"),
}


def fake_full_run_values(tree: Tree) -> None:
    """Edit every detail log of ``tree`` (a throw-away copy) so the short-run rules read as met.

    A fixture for comparing checkers, never a submission: min duration 600 s, the benchmark's
    performance sample count, the Server latency bound with early stopping met, an Offline
    query of the round's size, and an accuracy run over the whole dataset. Everything else (seeds, files, fields) stays as run.
    """
    results = tree.tree.results_root
    for detail in sorted(results.glob("*/*/*/*/mlperf_log_detail.txt")) + \
            sorted(results.glob("*/*/*/performance/run_1/mlperf_log_detail.txt")):
        benchmark, scenario = detail.relative_to(results).parts[1:3]
        model = R.MLPERF_MODEL.get(benchmark)
        if model is None:
            continue
        edit_detail(detail, "effective_min_duration_ms", R.MIN_DURATION_MS)
        edit_detail(detail, "effective_performance_sample_count", R.PERFORMANCE_SAMPLE_COUNT[model])
        edit_detail(detail, "qsl_reported_total_count", R.DATASET_SIZE[model])
        if "effective_accuracy_sample_count" in detail.read_text(encoding="utf-8"):
            edit_detail(detail, "effective_accuracy_sample_count", R.DATASET_SIZE[model])
        bound = R.LATENCY_CONSTRAINT_NS[model].get(scenario)
        if bound:
            edit_detail(detail, "effective_target_latency_ns", bound)
            edit_detail(detail, "early_stopping_met", True)
        if scenario == "Offline" and detail.parent.name == "run_1":
            # The release checker's one-query size (24576 samples), in every division.
            edit_detail(detail, "effective_samples_per_query", R.OFFLINE_MIN_SAMPLES_PER_QUERY)
