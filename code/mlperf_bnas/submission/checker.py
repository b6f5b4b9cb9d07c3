"""Our submission checker: a v5.1 open-division tree against the official rules, and a few stricter ones.

Every finding names the file and a rule id; ``RULES`` says, for each rule, what the two
official MLPerf checkers do with the same defect in the open division -- ``fail`` (the
result is rejected), ``logs`` (an error line, but the result is still accepted) or ``no``
(not checked):

* ``release``: the round's own checker, ``tools/submission/submission_checker.py`` as
  released with v5.1 (tag ``v5.1.1`` of mlcommons/inference): the checker a submitter is
  judged by;
* ``official``: the ``submission_checker`` package of the development branch, run with
  ``--version v5.1``.

so our verdict can be compared with both (docs/submission.md;
``tools/compare_with_official_checker.py`` runs them). The round's per-system-type scenario
tables (``rules.REQUIRED_SCENARIOS``) are applied as the release checker applies them.
Rules marked ``smoke`` are the ones a short run on synthetic data cannot meet; a tree that
fails only those is reported as a smoke submission.

When the full accuracy logs are available (``$OUTPUT_DIR/results`` beside
``$OUTPUT_DIR/submission``), the recorded hashes and the truncated logs are
verified against them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mlperf_bnas.enums import Mode
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import bad_symlinks, sha256_file
from mlperf_bnas.loadgen import accuracy_log, completeness, userconf
from mlperf_bnas.loadgen.explain import explain, one_line
from mlperf_bnas.loadgen.logs import DetailLog, read_detail_log
from mlperf_bnas.paths import SubmissionTree, mode_dir
from mlperf_bnas.submission import rules as R
from mlperf_bnas.submission.system import NON_EMPTY_FIELDS, REQUIRED_FIELDS, VALID_STATUS, VALID_SYSTEM_TYPES
from mlperf_bnas.submission.truncation import HASH_LINE, truncated_text


@dataclass(frozen=True)
class Rule:
    official: str       # the checker package (submission_checker/, --version v5.1), open division: "fail" | "logs" | "no"
    release: str        # the v5.1 release checker (tools/submission/submission_checker.py at tag v5.1.1), open division
    text: str
    smoke: bool = False  # a short run on synthetic data cannot meet it
    severity: str = "error"


#: What the two official checkers do with a defect, in the open division: "fail" (the
#: result, or the whole submitter, is rejected; a crash counts), "logs" (an error or
#: warning line, the result is kept) or "no" (not checked). Read from the code:
#: ``git show v5.1.1:tools/submission/submission_checker.py`` (check_results_dir,
#: check_performance_dir, check_accuracy_dir, check_measurement_dir) and the package's
#: checks/*.py; docs/submission.md lists where the two differ.
RULES: dict[str, Rule] = {
    # -- tree layout: the package runs no folder checks; the release checker rejects all of these
    "root-extra-files": Rule("no", "fail", "only .md/.pdf files may sit beside the division folders"),
    "division-extra-files": Rule("no", "fail", "only submitter folders may sit in the division folder"),
    "invalid-division": Rule("no", "logs", "division folders are closed, open or network", severity="warning"),
    "hidden-names": Rule("no", "fail", "no file or folder name may start with '.' (git unfriendly)"),
    "spaces-in-names": Rule("no", "fail", "no file or folder name may contain a space"),
    "pycache": Rule("no", "fail", "no __pycache__ folders"),
    "empty-dirs": Rule("no", "fail", "no empty folders"),
    "file-size": Rule("no", "fail", "no file over 50 MB"),
    "broken-symlinks": Rule("no", "fail", "no broken symbolic links"),
    "symlinks": Rule("no", "no", "no symbolic link loops or leads out of the tree (a submission must hold its own "
                                 "files; the release checker only rejects broken links)"),
    "no-results": Rule("no", "no", "the tree holds at least one result (an empty open/ is what a failed packaging "
                                   "leaves; both official checkers call an empty tree OK)"),
    "calibration-doc": Rule("no", "no", "calibration.md documents how the model was calibrated/quantized "
                                        "(both official checkers: closed division only)"),
    # -- systems/ ----------------------------------------------------------------------
    "system-json-missing": Rule("fail", "fail", "every results/<system> has systems/<system>.json"),
    "system-field-missing": Rule("fail", "fail", "systems/<system>.json has every v5.1 field"),
    "system-field-empty": Rule("fail", "fail", "fields that need a meaningful response are not empty"),
    "system-status": Rule("fail", "fail", "status is available, preview or rdi"),
    "system-type": Rule("fail", "fail", "system_type is datacenter, edge or datacenter,edge"),
    "system-submitter": Rule("fail", "fail", "submitter matches the submitter folder"),
    "system-division": Rule("fail", "fail", "division matches the division folder"),
    "unused-system": Rule("no", "fail", "every systems/<system>.json has results"),
    # -- the round's scenario tables (rules.REQUIRED_SCENARIOS, per system_type) ----------
    "system-type-benchmark": Rule("no", "fail", "the benchmark exists for the system's system_type in v5.1 (resnet "
                                                "is edge only): the release checker rejects it in every division "
                                                "('has an invalid model'); the package checks this in closed only"),
    "scenarios-missing": Rule("no", "no", "the system type's required scenarios are all present: the open division "
                                          "waives missing ones (the release checker mentions them with --debug only)",
                              severity="warning"),
    "scenarios-required": Rule("fail", "fail", "closed/network: the system type's required scenarios are all present"),
    "scenario-unlisted": Rule("fail", "fail", "closed/network: every scenario is required or optional for the "
                                              "system type (the open division accepts any)"),
    # -- measurements/ and code/ --------------------------------------------------------
    "measurements-dir-missing": Rule("fail", "fail", "every result has measurements/<system>/<benchmark>/<scenario>/"),
    "measurements-file": Rule("fail", "fail", "measurements hold a non-empty README.md and user.conf"),
    "measurements-json": Rule("fail", "fail", "measurements hold <system>_<implementation>_<scenario>.json"),
    "measurements-field": Rule("fail", "fail", "the measurements JSON has every required field, non-empty"),
    "code-dir-missing": Rule("fail", "fail", "code/ exists"),
    "code-benchmark-dir": Rule("no", "fail", "code/<benchmark> exists (the package only needs code/)"),
    "unknown-benchmark": Rule("fail", "fail", "results/<system>/<benchmark> is resnet50/resnet or retinanet "
                                              "(or mapped to one in model_mapping.json)"),
    "user-conf-mismatch": Rule("no", "no", "the submitted user.conf is the one the performance run used"),
    # -- performance ----------------------------------------------------------------------
    "perf-log-missing": Rule("fail", "fail", "performance/run_1/mlperf_log_detail.txt exists"),
    "result-value": Rule("fail", "fail", "the performance log holds the scenario's result value"),
    "log-incomplete": Rule("no", "no", "LoadGen's logs are complete: the summary parses and ends with its closing "
                                       "line, the detail log reaches the end of the test (a full disk leaves them "
                                       "cut off)"),
    "perf-file-list": Rule("no", "fail", "performance/run_1 holds exactly mlperf_log_summary.txt and "
                                         "mlperf_log_detail.txt"),
    "result-invalid": Rule("no", "fail", "LoadGen reported 'Result is : VALID'"),
    "perf-loadgen-errors": Rule("no", "fail", "no LoadGen errors in the performance mlperf_log_detail.txt (the "
                                              "package's check only fails with --submission-exceptions)"),
    "test-mode": Rule("no", "no", "performance logs come from PerformanceOnly runs, accuracy logs from AccuracyOnly runs"),
    "perf-sample-count": Rule("fail", "fail", "effective performance_sample_count >= the benchmark's "
                                              "(a synthetic set smaller than that cannot meet it)", smoke=True),
    "seeds": Rule("fail", "fail", "the RNG seeds are the round's (v5.1)"),
    "scenario-mismatch": Rule("fail", "no", "the log's scenario is the folder's (the release checker only infers "
                                            "SingleStream/MultiStream-derived results and accepts the rest)"),
    "early-stopping": Rule("fail", "logs", "Server, SingleStream, MultiStream: LoadGen's early stopping criterion "
                                           "met (its estimate of the latency percentile is the reported result)"),
    "latency-bound": Rule("fail", "fail", "Server: target latency within the benchmark's bound "
                                          "(user.smoke.conf relaxes it for small machines)", smoke=True),
    "latency-percentile": Rule("no", "no", "the latency percentile is the rule's: Server and MultiStream 99th, "
                                           "SingleStream 90th (a smoke conf may relax it)", smoke=True),
    "multistream-samples-per-query": Rule("no", "no", "MultiStream: 8 samples per query (LoadGen's mlperf.conf; "
                                                      "the official checkers read the count but do not check it)"),
    "min-duration": Rule("fail", "fail", "min_duration >= 600 s", smoke=True),
    "min-query-count": Rule("no", "no", "Server: min_query_count >= 270336 (both official checkers: "
                                        "closed only, or not at all for early-stopping scenarios)", smoke=True),
    "offline-samples-per-query": Rule("no", "fail", "Offline: one query of >= 24576 samples (the release checker "
                                                    "applies it in every division, the package in closed only)",
                                      smoke=True),
    # -- accuracy ---------------------------------------------------------------------------
    "acc-file-missing": Rule("fail", "fail", "accuracy/ holds accuracy.txt, mlperf_log_accuracy.json and "
                                             "mlperf_log_detail.txt"),
    "acc-file-list": Rule("no", "fail", "accuracy/ holds exactly those and mlperf_log_summary.txt"),
    "loadgen-errors": Rule("fail", "fail", "no LoadGen errors in the accuracy run's mlperf_log_detail.txt (the "
                                           "release checker crashes on them)"),
    "acc-log-size": Rule("fail", "logs", "mlperf_log_accuracy.json is truncated (< 10 KiB)"),
    "acc-hash-missing": Rule("logs", "logs", "accuracy.txt ends with hash=<sha256 of the full accuracy log>"),
    "acc-hash-mismatch": Rule("no", "no", "the recorded hash is the full accuracy log's"),
    "acc-truncation": Rule("no", "no", "the truncated log is the first and last 4096 characters of the full log"),
    "acc-value": Rule("no", "fail", "accuracy.txt reports the benchmark's metric"),
    "dataset-coverage": Rule("fail", "logs", "the accuracy run covers the whole dataset", smoke=True),
    "acc-log-coverage": Rule("no", "no", "the full accuracy log answers every sample exactly once"),
    # -- compliance (not required in open division; checked when present) -------------------
    "compliance-missing": Rule("no", "no", "TEST01 (and TEST04 for resnet) were run", severity="warning"),
    "compliance-files": Rule("no", "no", "compliance folders hold MLPerf's verification outputs (official: closed only)"),
    "compliance-verdict": Rule("no", "no", "compliance verifications end in TEST PASS (official: closed only)"),
    "compliance-loadgen-errors": Rule("no", "no", "no LoadGen errors in the compliance runs' logs (official: closed only)"),
}
SMOKE_RULES = tuple(k for k, r in RULES.items() if r.smoke)


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    message: str

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    def line(self) -> str:
        words = {"fail": "fails", "logs": "logs only", "no": "not checked"}
        rule = RULES[self.rule]
        return (f"{self.severity.upper()} [{self.rule}] {self.path}: {self.message} "
                f"(v5.1 release checker: {words[rule.release]}; official package: {words[rule.official]})")


@dataclass
class Report:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    results: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # system, model, scenario, metric, accuracy

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def official_failures(self) -> list[Finding]:
        return [f for f in self.findings if RULES[f.rule].official == "fail"]

    def release_failures(self) -> list[Finding]:
        return [f for f in self.findings if RULES[f.rule].release == "fail"]

    @property
    def is_smoke(self) -> bool:
        """Fails only smoke rules, and is short or synthetic (so a real run missing its latency
        bound is not excused as a smoke run)."""
        rules = {f.rule for f in self.errors}
        return bool(rules) and all(RULES[r].smoke for r in rules) and bool(rules & {"min-duration", "dataset-coverage"})

    def summary(self) -> str:
        lines = []
        for system, model, scenario, metric, acc in self.results:
            lines.append(f"result {system}/{model}/{scenario}: {metric}; accuracy: {acc}")
        errs, warns = self.errors, self.warnings
        lines.append(f"{len(errs)} error(s), {len(warns)} warning(s) in {len(self.results)} result(s)")
        rel = sorted({f.rule for f in self.release_failures()})
        lines.append("v5.1 release checker verdict (submission_checker.py of v5.1.1, by its rules): "
                     + (f"FAIL ({', '.join(rel)})" if rel else "PASS"))
        off = sorted({f.rule for f in self.official_failures()})
        lines.append("official v5.1 checker verdict (the submission_checker package, by its rules): "
                     + (f"FAIL ({', '.join(off)})" if off else "PASS"))
        if not errs:
            lines.append("SUMMARY: submission passes the v5.1 open-division checks")
        elif self.is_smoke:
            counts = {r: sum(1 for f in errs if f.rule == r) for r in SMOKE_RULES}
            named = ", ".join(f"{r} ({n})" for r, n in counts.items() if n)
            lines.append(f"SUMMARY: SMOKE submission (short runs / synthetic data): fails only the rules a short run "
                         f"cannot meet: {named}")
        else:
            failed = sorted({f.rule for f in errs})
            lines.append(f"SUMMARY: submission has errors: {', '.join(failed)}")
        return "\n".join(lines)


class _Checker:
    def __init__(self, root: Path, full_results: Path | None):
        self.root = root.resolve()
        self.full_results = full_results
        self.report = Report(self.root)

    def add(self, rule: str, path: Path | str, message: str) -> None:
        if rule not in RULES:
            raise KeyError(rule)
        rel = str(path)
        # Lexically, never resolving links (a looping one cannot be resolved); a file outside the
        # tree (the full accuracy logs under --full-results) keeps its own path.
        absolute = Path(os.path.abspath(path))
        if Path(path).is_absolute() and absolute.is_relative_to(self.root):
            rel = str(absolute.relative_to(self.root))
        self.report.findings.append(Finding(rule, rel, message))

    # -- tree ----------------------------------------------------------------------------
    def run(self) -> Report:
        root = self.root
        for f in _files(root):
            if not f.name.endswith((".md", ".pdf")):
                self.add("root-extra-files", f, "file outside the division folders")
        for division in _dirs(root):
            if division.name not in ("closed", "open", "network"):
                if division.name not in (".git", ".github", "assets"):
                    self.add("invalid-division", division, f"{division.name!r} is not a division (closed, open, network)")
                continue
            for f in _files(division):
                self.add("division-extra-files", f, "file outside the submitter folders")
            for submitter in _dirs(division):
                self.check_submitter(division.name, submitter)
        if not self.report.results:
            self.add("no-results", root, "no results/<system>/<benchmark>/<scenario> under any division and "
                                         "submitter; package the runs first (mlperf-bnas package)")
        return self.report

    def check_submitter(self, division: str, sub: Path) -> None:
        tree = SubmissionTree(sub)
        if not tree.results_root.is_dir():
            return
        self.check_folders(sub)
        if not tree.calibration_doc.is_file() and not (sub / "documentation" / "calibration.md").is_file():
            self.add("calibration-doc", tree.calibration_doc, "missing (open division: how the weights were quantized/calibrated)")
        systems_with_results = set()
        for system_dir in _dirs(tree.results_root):
            systems_with_results.add(system_dir.name)
            system_json = self.check_system(division, sub, system_dir.name)
            for model_dir in _dirs(system_dir):
                mlperf_model = R.MLPERF_MODEL.get(model_dir.name)
                if mlperf_model is None:
                    mapping = sub / "model_mapping.json"
                    mapped = _load_json(mapping) if mapping.is_file() else None
                    mlperf_model = (mapped or {}).get(model_dir.name)
                if mlperf_model not in R.PERFORMANCE_SAMPLE_COUNT:
                    # Not a benchmark this checker knows the rules of: say so instead of guessing.
                    self.add("unknown-benchmark", model_dir, f"benchmark {model_dir.name!r} is neither resnet50/resnet "
                             "nor retinanet and has no model_mapping.json entry; this checker only knows those")
                    continue
                self.check_scenarios(division, model_dir, mlperf_model, (system_json or {}).get("system_type"))
                for scen_dir in _dirs(model_dir):
                    self.check_result(sub, system_dir.name, model_dir.name, mlperf_model, scen_dir, system_json)
        systems_dir = tree.systems_dir
        if systems_dir.is_dir():
            for js in sorted(systems_dir.glob("*.json")):
                if js.stem not in systems_with_results:
                    self.add("unused-system", js, "system description without results")

    def check_scenarios(self, division: str, model_dir: Path, mlperf_model: str, system_type: Any) -> None:
        """The round's scenario tables for the system type, as the release checker applies them:
        a benchmark missing from the table is rejected in every division; missing required
        scenarios and unlisted ones fail closed/network, and the open division waives them."""
        if system_type not in R.REQUIRED_SCENARIOS:
            return                      # system-type reports it
        required = R.REQUIRED_SCENARIOS[system_type].get(mlperf_model)
        if required is None:
            fits = [t for t, table in R.REQUIRED_SCENARIOS.items() if mlperf_model in table and t != "edge,datacenter"]
            self.add("system-type-benchmark", model_dir,
                     f"v5.1 has no {mlperf_model} benchmark for system_type {system_type!r}, so the release checker "
                     f"rejects these results ('has an invalid model'); set system_type to one of {', '.join(fits)} "
                     "in systems/overrides.yaml")
            return
        optional = R.OPTIONAL_SCENARIOS[system_type].get(mlperf_model, ())
        present = {d.name for d in _dirs(model_dir)}
        missing = [sc for sc in required if sc not in present]
        unlisted = sorted(present - set(required) - set(optional))
        policy = R.SCENARIO_POLICY.get(division, R.SCENARIO_POLICY["closed"])
        if missing:
            text = (f"v5.1 '{system_type}' requires {', '.join(required)} for {mlperf_model}; missing "
                    f"{', '.join(missing)}")
            if policy["missing"] == "waived":
                self.add("scenarios-missing", model_dir, text + f": the {division} division waives this (closed "
                         "would fail); the result(s) present are evaluated")
            else:
                self.add("scenarios-required", model_dir, text)
        if unlisted and policy["unlisted"] != "accepted":
            self.add("scenario-unlisted", model_dir, f"{', '.join(unlisted)} neither required nor optional for "
                     f"{mlperf_model} on a '{system_type}' system in v5.1")

    def check_folders(self, sub: Path) -> None:
        links = {path: what for path, what in bad_symlinks(sub, within=self.root)}
        for p in sorted(sub.rglob("*")):
            name = p.name
            if p in links:
                self.add("broken-symlinks" if "broken" in links[p] else "symlinks", p, links[p])
                continue
            if p.is_symlink():
                continue        # a link inside the tree: its target is checked where it lies
            if name.startswith("."):
                self.add("hidden-names", p, "name starts with '.'")
            if " " in name:
                self.add("spaces-in-names", p, "name contains a space")
            if p.is_dir():
                if name == "__pycache__":
                    self.add("pycache", p, "__pycache__ folder")
                elif not any(p.iterdir()):
                    self.add("empty-dirs", p, "empty folder")
            elif p.is_file() and p.stat().st_size > R.FILE_SIZE_LIMIT_BYTES:
                self.add("file-size", p, f"{p.stat().st_size / 2**20:.1f} MB > 50 MB")

    # -- systems -------------------------------------------------------------------------
    def check_system(self, division: str, sub: Path, system: str) -> dict[str, Any] | None:
        path = SubmissionTree(sub).system_file(system)
        if not path.is_file():
            self.add("system-json-missing", path, f"no system description for results/{system}")
            return None
        desc = _load_json(path)
        if desc is None:
            self.add("system-json-missing", path, "not valid JSON")
            return None
        for k in REQUIRED_FIELDS:
            if k not in desc:
                self.add("system-field-missing", path, f"field {k!r} is missing")
            elif k in NON_EMPTY_FIELDS and not desc[k]:
                self.add("system-field-empty", path, f"field {k!r} requires a meaningful response but is empty")
        status = str(desc.get("status", "")).lower()
        if status not in VALID_STATUS:
            self.add("system-status", path, f"status {desc.get('status')!r} is not one of {', '.join(VALID_STATUS)}")
        if desc.get("system_type") not in VALID_SYSTEM_TYPES:
            self.add("system-type", path, f"system_type {desc.get('system_type')!r} is not one of {', '.join(VALID_SYSTEM_TYPES[:3])}")
        if str(desc.get("submitter", "")).lower() != sub.name.lower():
            self.add("system-submitter", path, f"submitter {desc.get('submitter')!r} but the folder is {sub.name!r}")
        if str(desc.get("division", "")).lower() != division:
            self.add("system-division", path, f"division {desc.get('division')!r} but the folder is {division!r}")
        return desc

    # -- one result -------------------------------------------------------------------------
    def check_result(self, sub: Path, system: str, model: str, mlperf_model: str, scen_dir: Path,
                     system_json: dict[str, Any] | None) -> None:
        scenario = scen_dir.name
        tree = SubmissionTree(sub)
        meas = tree.measurements_dir(system, model, scenario)
        self.check_measurements(sub, system, model, scenario, meas)
        perf = mode_dir(scen_dir, Mode.PERFORMANCE)
        metric = "no valid performance log"
        perf_log: DetailLog | None = None
        for name in R.PERF_LOADED_FILES:
            # The official checker cannot load the result without it; the other files it does not list.
            if not (perf / name).is_file():
                self.add("perf-log-missing", perf / name, "missing")
        if perf.is_dir():
            self.file_list("perf-file-list", perf, R.PERF_LISTED_FILES, R.PERF_LOADED_FILES + R.OPTIONAL_PERF_FILES)
            self.incomplete(perf, "performance", scenario)
            if (perf / "mlperf_log_detail.txt").is_file():
                perf_log = read_detail_log(perf / "mlperf_log_detail.txt")
                metric = self.check_performance(perf / "mlperf_log_detail.txt", perf_log, mlperf_model, scenario,
                                                system_json, model, _implementation(meas, system, scenario))
                if (meas / "user.conf").is_file():
                    try:
                        bad = userconf.mismatches(userconf.read(meas / "user.conf"), perf_log, model, scenario)
                    except UserError as exc:
                        bad = [f"LoadGen would not read it as written: {exc}"]
                    if bad:
                        self.add("user-conf-mismatch", meas / "user.conf", "; ".join(bad))
        acc = self.check_accuracy(mode_dir(scen_dir, Mode.ACCURACY), mlperf_model, system, model, scenario)
        self.check_compliance(tree.compliance_dir(system, model, scenario), mlperf_model, scenario)
        self.report.results.append((system, model, scenario, metric, acc))

    def incomplete(self, folder: Path, mode: str, scenario: str) -> None:
        """Logs cut off or empty (missing files and a missing result value have rules of their own)."""
        for problem in completeness.problems(folder, mode, scenario, check_accuracy_log=False):
            if not problem.endswith(": missing") and "the run has no result" not in problem:
                name, _, what = problem.partition(": ")
                self.add("log-incomplete", Path(name), what)

    def file_list(self, rule: str, folder: Path, required: Iterable[str], optional: Iterable[str] = ()) -> None:
        present = {p.name for p in folder.iterdir() if p.is_file()}
        allowed_extra = set(optional) | {"mlperf_log_trace.json", "results.json", ".gitkeep"}
        missing = sorted(set(required) - present)
        extra = sorted(present - set(required) - allowed_extra)
        if missing:
            self.add(rule, folder, f"missing {', '.join(missing)}")
        if extra:
            self.add(rule, folder, f"unexpected {', '.join(extra)}")

    def check_measurements(self, sub: Path, system: str, model: str, scenario: str, meas: Path) -> None:
        if not meas.is_dir():
            self.add("measurements-dir-missing", meas, "missing")
            return
        for name in R.REQUIRED_MEASURE_FILES:
            f = meas / name
            if not f.is_file():
                self.add("measurements-file", f, "missing")
            elif f.stat().st_size == 0:
                self.add("measurements-file", f, "empty")
        candidates = [p for p in sorted(meas.glob("*.json")) if p.name.startswith(system)]
        chosen = next((p for p in candidates if p.name.endswith(f"_{scenario}.json")), candidates[0] if candidates else None)
        if chosen is None:
            self.add("measurements-json", meas / f"{system}_<implementation>_{scenario}.json", "missing")
        else:
            data = _load_json(chosen)
            if data is None:
                self.add("measurements-json", chosen, "not valid JSON")
            else:
                for k in R.MEASUREMENT_FIELDS:
                    if k not in data:
                        self.add("measurements-field", chosen, f"field {k!r} is missing")
                    elif not data[k]:
                        self.add("measurements-field", chosen, f"field {k!r} is missing a meaningful value")
        code = SubmissionTree(sub).code_dir
        if not code.is_dir():
            self.add("code-dir-missing", code, "missing (the code that produced the results)")
        elif not (code / model).exists():
            self.add("code-benchmark-dir", code / model, "missing (the code that produced the result)")

    def check_performance(self, path: Path, log: DetailLog, model: str, scenario: str,
                          system_json: dict[str, Any] | None, folder_model: str | None = None,
                          benchmark: str | None = None) -> str:
        if log.get("result_validity") != "VALID":
            # Which LoadGen condition failed, LoadGen's own recommendation, and the fix.
            why = explain(path.parent, scenario, folder_model or model, benchmark, detail=log)
            self.add("result-invalid", path, f"result_validity is {log.get('result_validity')!r}"
                     + (f": {one_line(why)}" if why else ""))
        self.loadgen_errors("perf-loadgen-errors", path, log)
        if log.get("effective_test_mode") not in (None, "PerformanceOnly"):
            self.add("test-mode", path, f"effective_test_mode is {log.get('effective_test_mode')!r}, expected PerformanceOnly")
        need = R.PERFORMANCE_SAMPLE_COUNT[model]
        psc = log.get("effective_performance_sample_count")
        if not isinstance(psc, int) or psc < need:
            self.add("perf-sample-count", path, f"performance_sample_count is {psc}, needs to be >= {need}")
        for seed, expected in R.SEEDS.items():
            found = log.get(f"effective_{seed}")
            if found != expected:
                self.add("seeds", path, f"{seed} is wrong: expected {expected}, found {found}")
        effective = log.get("effective_scenario")
        if effective != scenario:
            self.add("scenario-mismatch", path, f"log is a {effective!r} run in the {scenario!r} folder")
        bound = R.LATENCY_CONSTRAINT_NS[model].get(scenario)
        if effective == "Server":
            if not log.get("early_stopping_met"):
                self.add("early-stopping", path, f"early stopping not met: {str(log.get('early_stopping_result'))[:200]!r}")
            lat = log.get("effective_target_latency_ns")
            if bound and (not isinstance(lat, (int, float)) or lat > bound):
                self.add("latency-bound", path, f"target latency {lat} ns exceeds the {bound} ns bound")
        if effective in R.LATENCY_PERCENTILE:
            if effective != "Server" and not log.get("early_stopping_met"):
                self.add("early-stopping", path, f"early stopping not met: {str(log.get('early_stopping_result'))[:200]!r}")
            # The result (or bound) is judged at the rule's percentile; a lower one would loosen it.
            need_pct = R.LATENCY_PERCENTILE[effective]
            percentile = log.get("effective_target_latency_percentile")
            if not isinstance(percentile, (int, float)) or percentile < need_pct:
                self.add("latency-percentile", path, f"latency percentile is {percentile}, the {effective} rule is "
                                                     f"{need_pct:g}")
        if effective == "MultiStream":
            spq = log.get("effective_samples_per_query")
            if spq != R.MULTISTREAM_SAMPLES_PER_QUERY:
                self.add("multistream-samples-per-query", path, f"MultiStream queries hold {spq} samples, the rule "
                                                                f"is {R.MULTISTREAM_SAMPLES_PER_QUERY}")
        min_duration = log.get("effective_min_duration_ms")
        if not isinstance(min_duration, (int, float)) or min_duration < R.MIN_DURATION_MS:
            self.add("min-duration", path, f"min_duration is {min_duration} ms, needs >= {R.MIN_DURATION_MS} ms")
        if effective == "Offline":
            spq = log.get("effective_samples_per_query")
            if not isinstance(spq, int) or spq < R.OFFLINE_MIN_SAMPLES_PER_QUERY:
                self.add("offline-samples-per-query", path, f"Offline query has {spq} samples, the round needs "
                                                            f">= {R.OFFLINE_MIN_SAMPLES_PER_QUERY}")
        elif effective == "Server":
            need_q = R.MIN_QUERIES[model]["Server"]
            mqc = log.get("effective_min_query_count")
            if not isinstance(mqc, int) or mqc < need_q:
                self.add("min-query-count", path, f"min_query_count is {mqc}, the round needs >= {need_q}")
        key = R.RESULT_FIELD.get(str(effective))
        value = log.get(key) if key else None
        if not isinstance(value, (int, float)):
            self.add("result-value", path, f"no {key or 'result'} value: the log holds no result "
                                           "(an interrupted run, or a full disk)")
            return "no result value in the log"
        return f"{key}={value}"

    def loadgen_errors(self, rule: str, path: Path, log: DetailLog) -> None:
        if log.errors:
            first = str(log.errors[0].get("value"))[:160]
            self.add(rule, path, f"{len(log.errors)} LoadGen error(s), first: {first!r}")

    def check_accuracy(self, acc: Path, model: str, system: str, folder_model: str, scenario: str) -> str:
        for name in R.ACC_LOADED_FILES:
            if not (acc / name).is_file():
                hint = "; generate it with `mlperf-bnas accuracy`" if name == "accuracy.txt" else ""
                self.add("acc-file-missing", acc / name, f"missing{hint}")
        if acc.is_dir():
            self.file_list("acc-file-list", acc, R.ACC_LISTED_FILES, R.ACC_LOADED_FILES)
            # The submitted accuracy log is truncated: its completeness is checked against the full one.
            self.incomplete(acc, "accuracy", scenario)
        if not (acc / "accuracy.txt").is_file():
            return "missing"
        value = "not found"
        text = _read_small(acc / "accuracy.txt")
        recorded = None
        for line in text.splitlines():
            m = re.match(R.ACCURACY_PATTERN[model], line)
            if m and value == "not found":
                value = m.group(1)
            h = HASH_LINE.match(line)
            if h and recorded is None:
                recorded = h.group(1)
        if value == "not found":
            self.add("acc-value", acc / "accuracy.txt", f"no {'accuracy=' if model == 'resnet' else 'mAP='} line")
        if recorded is None:
            self.add("acc-hash-missing", acc / "accuracy.txt", "no hash=<sha256> line (truncate with `mlperf-bnas truncate`)")
        log_path = acc / "mlperf_log_accuracy.json"
        if log_path.is_file() and log_path.stat().st_size > R.MAX_ACCURACY_LOG_SIZE:
            self.add("acc-log-size", log_path, f"{log_path.stat().st_size} bytes: not truncated (limit {R.MAX_ACCURACY_LOG_SIZE})")
        detail = None
        if (acc / "mlperf_log_detail.txt").is_file():
            detail = read_detail_log(acc / "mlperf_log_detail.txt")
            self.loadgen_errors("loadgen-errors", acc / "mlperf_log_detail.txt", detail)
            if detail.get("effective_test_mode") not in (None, "AccuracyOnly"):
                self.add("test-mode", acc / "mlperf_log_detail.txt",
                         f"effective_test_mode is {detail.get('effective_test_mode')!r}, expected AccuracyOnly")
            total = detail.get("effective_accuracy_sample_count", detail.get("qsl_reported_total_count"))
            if total != R.DATASET_SIZE[model]:
                self.add("dataset-coverage", acc / "mlperf_log_detail.txt",
                         f"accuracy run covers {total} samples, the dataset has {R.DATASET_SIZE[model]}")
        full = SubmissionTree(self.full_results, results=self.full_results).accuracy_dir(
            system, folder_model, scenario) / "mlperf_log_accuracy.json" if self.full_results else None
        if full is not None and full.is_file():
            if recorded is not None and recorded != sha256_file(full):
                self.add("acc-hash-mismatch", acc / "accuracy.txt",
                         f"hash={recorded[:12]}... is not the sha256 of the full log {full}")
            if log_path.is_file() and log_path.stat().st_size <= R.MAX_ACCURACY_LOG_SIZE \
                    and _read_small(log_path) != _truncated_or_none(full):
                self.add("acc-truncation", log_path, f"is not the first and last 4096 characters of {full}")
            self.check_log_coverage(full, detail, acc)
        return value

    def check_log_coverage(self, full: Path, detail: DetailLog | None, acc: Path) -> None:
        """Every sample answered exactly once, read as a stream (a full log can be gigabytes)."""
        seen: set[int] = set()
        repeated = 0
        try:
            for entry in accuracy_log.entries(full):
                repeated += entry.qsl_idx in seen
                seen.add(entry.qsl_idx)
        except UserError as exc:
            self.add("acc-log-coverage", full, f"the full accuracy log is unreadable: {exc}")
            return
        total = detail.get("qsl_reported_total_count") if detail else None
        if repeated:
            self.add("acc-log-coverage", full, f"{repeated} sample(s) answered more than once")
        if isinstance(total, int) and seen != set(range(total)):
            self.add("acc-log-coverage", full, f"answers {len(seen)} distinct samples of the {total} LoadGen reported")

    # -- compliance ----------------------------------------------------------------------------
    def check_compliance(self, comp: Path, model: str, scenario: str) -> None:
        for test in R.COMPLIANCE_TESTS[model]:
            tdir = comp / test
            if not tdir.is_dir():
                self.add("compliance-missing", tdir, f"{test} not run (recommended in the open division too)")
                continue
            perf, acc = mode_dir(tdir, Mode.PERFORMANCE), mode_dir(tdir, Mode.ACCURACY)
            needed = [tdir / "verify_performance.txt", perf / "mlperf_log_detail.txt", perf / "mlperf_log_summary.txt"]
            if test == "TEST01":
                needed += [tdir / "verify_accuracy.txt", acc / "mlperf_log_accuracy.json", acc / "accuracy.txt"]
            for path in needed:
                if not path.is_file():
                    self.add("compliance-files", path, "missing")
            if test == "TEST01" and acc.is_dir() and (tdir / "verify_accuracy.txt").is_file():
                # MLPerf's fallback: a failed deterministic check needs both accuracy results beside the log.
                passed = "TEST PASS" in _read_small(tdir / "verify_accuracy.txt")
                required = ["mlperf_log_accuracy.json", "accuracy.txt"]
                if not passed:
                    required += ["baseline_accuracy.txt", "compliance_accuracy.txt"]
                self.file_list("compliance-files", acc, required)
            for verdict in ("verify_accuracy.txt", "verify_performance.txt"):
                f = tdir / verdict
                if f.is_file():
                    lines = [ln.strip() for ln in _read_small(f).splitlines() if ln.strip()]
                    if not lines or lines[-1] != "TEST PASS":
                        self.add("compliance-verdict", f, f"ends with {lines[-1] if lines else 'nothing'!r}, not 'TEST PASS'")
            detail = perf / "mlperf_log_detail.txt"
            if detail.is_file():
                self.loadgen_errors("compliance-loadgen-errors", detail, read_detail_log(detail))


def _implementation(meas: Path, system: str, scenario: str) -> str | None:
    """The benchmark directory a result came from: the implementation name in
    ``measurements/.../<system>_<implementation>_<Scenario>.json``."""
    for path in sorted(meas.glob(f"{system}_*_{scenario}.json")) if meas.is_dir() else []:
        return path.name[len(system) + 1:-len(f"_{scenario}.json")] or None
    return None


def _dirs(p: Path) -> list[Path]:
    return sorted(x for x in p.iterdir() if x.is_dir()) if p.is_dir() else []


def _files(p: Path) -> list[Path]:
    return sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else []


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_small(path, errors="strict"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


#: Small text files (accuracy.txt, verdicts, JSON descriptions) are read up to this size: a
#: file any larger is not what it claims to be, and is never read whole.
SMALL_FILE_BYTES = 4 << 20


def _read_small(path: Path, errors: str = "replace") -> str:
    with open(path, encoding="utf-8", errors=errors) as fh:
        return fh.read(SMALL_FILE_BYTES)


def _truncated_or_none(full: Path) -> str | None:
    try:
        return truncated_text(full)
    except UserError:
        return None


def check_submission(root: Path, full_results: Path | None = None) -> Report:
    """Check the submission tree under ``root`` (the folder holding ``open/``)."""
    return _Checker(root, full_results).run()
