"""Gather everything the report shows from a results tree or a packaged submission.

Sources, all written by other steps (nothing here re-computes a result):

* ``results/<system>/<model>/<Scenario>/performance/run_1/mlperf_log_{summary,detail}.txt``:
  result, VALID or not, and LoadGen's latency percentiles;
  ``mlperf_log_trace.json`` beside them, when the run enabled LoadGen's trace, gives every
  query's latency (the ``Latency`` counter events) for the histogram;
* ``results/.../accuracy/accuracy.txt``: accuracy (on synthetic data labelled by the FP32
  model, this is the INT8 model's fidelity to FP32);
* ``build/<benchmark>/tuning/<system>/tuning.json`` and ``code/<benchmark>/user.<system>.tuned.json``:
  the tuning trials;
* ``nas_record.json`` / ``pareto.csv`` / ``search_results.csv`` / ``best_config.json``: a NAS search;
* ``systems/<system>.json``: the system description.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.data.dataset_base import SYNTHETIC_STAMP
from mlperf_bnas.enums import Mode, Precision, Scenario, values
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.explain import Failure, explain
from mlperf_bnas.loadgen.logs import RESULT_FIELD, read_detail_log, read_summary
from mlperf_bnas.paths import (
    BUILD_RECORD, OutputRoot, SearchOutputs, SubmissionTree, benchmark_dir, benchmark_dirs, mode_dir, tuned_conf_path,
)
from mlperf_bnas.submission.rules import LATENCY_SCENARIOS, result_value
from mlperf_bnas.tune.sizing import GENERATED_BY as SIZING_GENERATED_BY

log = logging.getLogger(__name__)

PERCENTILE_KEYS = (("min", "result_min_latency_ns", 0.0), ("p50", "result_50.00_percentile_latency_ns", 50.0),
                   ("p90", "result_90.00_percentile_latency_ns", 90.0),
                   ("p95", "result_95.00_percentile_latency_ns", 95.0),
                   ("p97", "result_97.00_percentile_latency_ns", 97.0),
                   ("p99", "result_99.00_percentile_latency_ns", 99.0),
                   ("p99.9", "result_99.90_percentile_latency_ns", 99.9),
                   ("max", "result_max_latency_ns", 100.0))
MAX_TRACE_BYTES = 256 << 20
_ACCURACY = re.compile(r"(?:^|[\s{\"])(accuracy|mAP)[\"']?\s*[=:]\s*([\d.]+)\s*%?", re.MULTILINE)


@dataclass
class PerfRun:
    log_dir: Path
    valid: bool
    result_line: str                       # "VALID" / "INVALID"
    metric_name: str
    metric: float | None
    percentiles_ms: dict[str, float]
    latency_bound_ms: float | None
    checks: dict[str, str]                 # summary's "... satisfied" lines
    early_stopping: str | None
    query_count: int | None
    duration_ms: float | None
    target_qps: float | None
    errors: list[str]
    query_latencies_ms: list[float] | None     # from the trace, when there is one
    latency_source: str
    failures: list[Failure] = field(default_factory=list)   # why LoadGen called it INVALID, and the fix


@dataclass
class AccuracyResult:
    path: Path
    metric: str | None
    value: float | None
    text: str


@dataclass
class DataSource:
    """What the accuracy figure measures: real data, or synthetic data labelled by the FP32 model."""
    benchmark: str
    synthetic: bool
    description: str


@dataclass
class ScenarioResult:
    system: str
    model: str
    scenario: str
    performance: PerfRun | None = None
    accuracy: AccuracyResult | None = None
    data_source: DataSource | None = None
    problems: list[str] = field(default_factory=list)
    benchmark: str | None = None            # benchmark directory name, where known
    not_run: str | None = None              # the one line saying why this scenario was not run here


@dataclass
class NasResult:
    where: Path
    metrics: list[str]
    cost_metric: str | None                 # the search's cost objective (x axis), when recorded
    records: list[dict[str, Any]]          # every evaluated sub-network: metrics + source + config
    front: list[dict[str, Any]]
    reference: dict[str, Any] | None
    best: dict[str, Any] | None
    record: dict[str, Any]                  # nas_record.json (may be empty)


@dataclass
class ReportData:
    source: Path
    kind: str                               # "results" or "submission"
    systems: dict[str, dict[str, Any] | None]
    results: list[ScenarioResult]
    tuning: list[dict[str, Any]]
    nas: list[NasResult]
    sizing: list[dict[str, Any]] = field(default_factory=list)   # `mlperf-bnas size` records (generated confs)


# --------------------------------------------------------------------------- performance / accuracy

def read_performance(run_dir: Path, scenario: str) -> PerfRun:
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    summary_path = run_dir / "mlperf_log_summary.txt"
    summary = read_summary(summary_path) if summary_path.is_file() else {}
    key = RESULT_FIELD[scenario]
    metric = detail.get(key)
    if scenario in LATENCY_SCENARIOS:
        pct = detail.get("effective_target_latency_percentile")
        pct_text = f"p{float(pct) * 100:g}" if isinstance(pct, (int, float)) else "percentile"
        metric_name = f"ms {pct_text} latency (early-stopping estimate" + (
            ", per query of 8)" if scenario == "MultiStream" else ")")
        metric = result_value(scenario, metric) if isinstance(metric, (int, float)) else None
    else:
        metric_name = "samples/s" if scenario == "Offline" else "completed samples/s"
    # MultiStream: a query's latency (its slowest sample) is what the rules measure.
    per_query = scenario == "MultiStream"
    percentiles = {name: detail.get(_per_query_key(k) if per_query else k) / 1e6 for name, k, _ in PERCENTILE_KEYS
                   if isinstance(detail.get(_per_query_key(k) if per_query else k), (int, float))}
    bound = detail.get("effective_target_latency_ns") if scenario == "Server" else None
    result_line = summary.get("Result is") or ("VALID" if detail.get("result_validity") == "VALID" else
                                               str(detail.get("result_validity", "unknown")))
    checks = {k: v for k, v in summary.items() if k.endswith("satisfied")}
    es = detail.get("early_stopping_result")
    target = detail.get("effective_target_qps")
    latencies, source = read_trace_latencies(run_dir / "mlperf_log_trace.json")
    if latencies is None:
        source = ("LoadGen's percentiles (mlperf_log_detail.txt); per-query latencies need LoadGen's trace, "
                  "which this run did not enable")
    duration = detail.get("generated_query_duration")
    return PerfRun(
        log_dir=run_dir, valid=result_line == "VALID" and not detail.errors, result_line=result_line,
        metric_name=metric_name, metric=float(metric) if isinstance(metric, (int, float)) else None,
        percentiles_ms=percentiles,
        latency_bound_ms=bound / 1e6 if isinstance(bound, (int, float)) and bound > 0 else None,
        checks=checks, early_stopping=str(es) if es is not None else None,
        query_count=detail.get("result_query_count"),
        duration_ms=duration / 1e6 if isinstance(duration, (int, float)) else None,
        target_qps=float(target) if isinstance(target, (int, float)) else None,
        errors=[str(e.get("value"))[:200] for e in detail.errors],
        query_latencies_ms=latencies, latency_source=source)


def _per_query_key(key: str) -> str:
    """A per-sample latency key -> MultiStream's per-query one."""
    return {"result_min_latency_ns": "result_min_query_latency_ns",
            "result_max_latency_ns": "result_max_query_latency_ns"}.get(
        key, key.replace("_percentile_latency_ns", "_percentile_per_query_latency_ns"))


def read_trace_latencies(path: Path) -> tuple[list[float] | None, str]:
    """Per-sample latencies (ms) from LoadGen's ``mlperf_log_trace.json`` ``Latency`` counter events."""
    # LoadGen leaves an empty trace file behind when the trace was not enabled.
    if not path.is_file() or path.stat().st_size == 0:
        return None, ""
    if path.stat().st_size > MAX_TRACE_BYTES:
        log.warning("%s is larger than %d MB; using LoadGen's percentiles instead", path, MAX_TRACE_BYTES >> 20)
        return None, ""
    # LoadGen 5.1 writes one event per line but does not escape some values (e.g.
    # "key":""loadgen_version""), so the file as a whole is not valid JSON: parse the
    # per-sample "Latency" counter lines on their own.
    values: list[float] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith('{"name":"Latency"'):
                continue
            try:
                event = json.loads(line.rstrip().rstrip(","))
                # LoadGen measures latency from the scheduled issue time: issue delay + issue-to-done.
                values.append((event["args"]["issue_delay"] + event["args"]["issue_to_done"]) / 1e6)
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s: unreadable Latency event %r; using LoadGen's percentiles", path, line[:120])
                return None, ""
    if not values:
        return None, ""
    return values, f"every query's latency from LoadGen's trace ({path.name}, {len(values)} samples)"


def read_accuracy(path: Path) -> AccuracyResult:
    text = path.read_text(encoding="utf-8", errors="replace")
    matches = _ACCURACY.findall(text)
    metric, value = (matches[-1][0], float(matches[-1][1])) if matches else (None, None)
    return AccuracyResult(path, metric, value, text)


# --------------------------------------------------------------------------- trees

def _results_roots(source: Path) -> tuple[str, list[Path]]:
    """Folders that directly hold ``results/`` (and ``systems/``): the tree itself or submitters."""
    tree = SubmissionTree(source)
    if tree.results_root.is_dir():
        kind = "submission" if tree.measurements_root.is_dir() and tree.systems_dir.is_dir() \
            and not OutputRoot(source).staging_dir.is_dir() else "results"
        return kind, [source]
    roots = [t.root for t in SubmissionTree.submitters(source)]
    roots += [t.root for t in SubmissionTree.submitters(OutputRoot(source).submission_root)]
    if roots:
        return "submission", roots
    raise UserError(f"{source}: no results/ folder (nor open/<submitter>/results/); pass the output directory "
                    "of a run or a packaged submission tree")


def collect(source: Path, systems: list[str] | None, extra_tuning: list[Path] = (), nas_dirs: list[Path] = (),
            repo: Path | None = None) -> ReportData:
    source = Path(source).resolve()
    kind, roots = _results_roots(source)
    results: list[ScenarioResult] = []
    system_desc: dict[str, dict[str, Any] | None] = {}
    for root in roots:
        results_root = SubmissionTree(root).results_root
        found = sorted(p.name for p in results_root.iterdir() if p.is_dir())
        wanted = systems or found
        for system in wanted:
            sys_dir = results_root / system
            if not sys_dir.is_dir():
                if systems:
                    raise UserError(f"{sys_dir}: no results for system {system!r}; systems with results here: "
                                    + (", ".join(found) or "none"))
                continue
            # A results tree has no systems/ of its own once packaged: the description is in the
            # submission the packager wrote beside it.
            packaged = [t.root for t in SubmissionTree.submitters(OutputRoot(source).submission_root)]
            system_desc.setdefault(system, _system_description(system, [root, source, *packaged, repo]))
            for model_dir in sorted(p for p in sys_dir.iterdir() if p.is_dir()):
                for scenario in values(Scenario):
                    scen_dir = model_dir / scenario
                    if scen_dir.is_dir():
                        results.append(_scenario(system, model_dir.name, scenario, scen_dir))
    if not results and not systems:
        raise UserError(f"{source}: results/ holds no <system>/<model>/<Scenario> runs yet; run a benchmark first")
    sources = _data_sources(source, repo)
    sizing = _sizing_records(source, list(system_desc) or (systems or []))
    for record in sizing:
        # A scenario this machine could not run at any load: one row saying so, not a result.
        for scenario, result in (record.get("scenarios") or {}).items():
            have = any(r.system == record.get("system") and r.model == record.get("loadgen_model")
                       and r.scenario == scenario for r in results)
            if result.get("infeasible") and not have:
                results.append(ScenarioResult(record["system"], record["loadgen_model"], scenario,
                                              benchmark=record.get("benchmark"), not_run=result["infeasible"]))
    for result in results:
        result.data_source = sources.get(result.model)
        if result.benchmark is None:
            result.benchmark = (result.data_source.benchmark if result.data_source else
                                _packaged_benchmark(roots, result))
        if result.performance is not None and not result.performance.valid:
            result.performance.failures = explain(result.performance.log_dir, result.scenario, result.model,
                                                  result.benchmark)
    tuning = _tuning_records(source, repo, list(system_desc) or (systems or []), extra_tuning)
    nas = _nas_results(source, nas_dirs)
    return ReportData(source, kind, system_desc, results, tuning, nas, sizing)


def _packaged_benchmark(roots: list[Path], r: ScenarioResult) -> str | None:
    """In a packaged tree, the benchmark directory is the implementation name in
    ``measurements/<system>/<model>/<Scenario>/<system>_<benchmark>_<Scenario>.json``."""
    for root in roots:
        folder = SubmissionTree(root).measurements_dir(r.system, r.model, r.scenario)
        for path in sorted(folder.glob(f"{r.system}_*_{r.scenario}.json")):
            return path.name[len(r.system) + 1:-len(f"_{r.scenario}.json")] or None
    return None


def _sizing_records(source: Path, systems: list[str]) -> list[dict[str, Any]]:
    """The records of the generated confs (``mlperf-bnas size``) the runs used."""
    out = []
    for system in systems:
        for path in OutputRoot(source).sized_records(system):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                log.warning("%s: unreadable sizing record; left out of the report", path)
                continue
            if isinstance(data, dict) and data.get("generated_by") == SIZING_GENERATED_BY:
                out.append({"_path": str(path), **data})
    return out


def _scenario(system: str, model: str, scenario: str, scen_dir: Path) -> ScenarioResult:
    out = ScenarioResult(system, model, scenario)
    perf_dir = mode_dir(scen_dir, Mode.PERFORMANCE)
    if (perf_dir / "mlperf_log_detail.txt").is_file():
        out.performance = read_performance(perf_dir, scenario)
    else:
        out.problems.append(f"no performance run ({perf_dir / 'mlperf_log_detail.txt'} missing)")
    acc = mode_dir(scen_dir, Mode.ACCURACY) / "accuracy.txt"
    if acc.is_file():
        out.accuracy = read_accuracy(acc)
    else:
        out.problems.append(f"no accuracy result ({acc} missing)")
    return out


def _data_sources(source: Path, repo: Path | None) -> dict[str, DataSource]:
    """loadgen model -> where its accuracy data came from, from the build tree the runs used.

    ``build/<benchmark>/data/<dataset>/synthetic.json`` marks generated data whose labels are the
    FP32 model's own predictions (so accuracy on it is the INT8 model's fidelity to FP32);
    ``model/int8/quantization.json`` names the weights."""
    from mlperf_bnas.config import load_config

    out: dict[str, DataSource] = {}
    if repo is None:
        return out
    outputs = OutputRoot(source)
    for bench_build in outputs.benchmark_build_dirs():
        config = benchmark_dir(bench_build.name, repo) / "config.yaml"
        if not config.is_file():
            continue
        try:
            model = load_config(config.parent).loadgen_model
        except UserError:
            continue
        weights = ""
        quant = outputs.model_dir_of(bench_build.name, Precision.INT8) / BUILD_RECORD
        if quant.is_file():
            try:
                weights = str((json.loads(quant.read_text(encoding="utf-8")).get("weights") or {}).get("source", ""))
            except (json.JSONDecodeError, AttributeError):
                weights = ""
        marker = next((d / SYNTHETIC_STAMP for d in outputs.synthetic_data_dirs(bench_build.name)
                       if (d / SYNTHETIC_STAMP).is_file()), None)
        if marker is not None:
            try:
                info = json.loads(marker.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                info = {}
            labeller = (info.get("labeller") or {}).get("model", "the FP32 model")
            text = (f"synthetic data ({info.get('count', '?')} images, {marker.parent}) labelled by the FP32 "
                    f"{labeller}'s own predictions: this accuracy is the INT8 model's fidelity to FP32, "
                    f"not accuracy on the real dataset")
            out[model] = DataSource(bench_build.name, True, text + (f"; weights: {weights}" if weights else ""))
        else:
            out[model] = DataSource(bench_build.name, False,
                                    "real dataset (DATA_DIR)" + (f"; weights: {weights}" if weights else ""))
    return out


def _system_description(system: str, roots: list[Path | None]) -> dict[str, Any] | None:
    for root in roots:
        if root is None:
            continue
        path = SubmissionTree(Path(root)).system_file(system)
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: not valid JSON ({exc}); fix or regenerate it with mlperf-bnas package") from None
            if isinstance(data, dict):
                return {"_path": str(path), **data}
    return None


def _tuning_records(source: Path, repo: Path | None, systems: list[str], extra: list[Path]) -> list[dict[str, Any]]:
    paths: list[Path] = [Path(p) for p in extra]
    for system in systems:
        paths += OutputRoot(source).tuning_records(system)
        if repo is not None:
            paths += [tuned_conf_path(d, system).with_suffix(".json") for d in benchmark_dirs(repo)
                      if tuned_conf_path(d, system).with_suffix(".json").is_file()]
    records, seen = [], set()
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: tuning record not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("generated_by") != "mlperf-bnas tune":
            raise UserError(f"{path}: not a tuning record written by mlperf-bnas tune")
        key = (data.get("benchmark"), data.get("system"), data.get("updated"))
        if key in seen:
            continue
        seen.add(key)
        records.append({"_path": str(path), **data})
    return records


# --------------------------------------------------------------------------- NAS

def _nas_results(source: Path, nas_dirs: list[Path]) -> list[NasResult]:
    dirs = [Path(d) for d in nas_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d}: NAS results folder not found (expected search_results.csv / pareto.csv inside)")
    if not dirs:
        # A search writes its CSVs under the output tree (build/...); look a few levels down.
        # (`mlperf-bnas nas search` writes them to its --output-dir, by default $OUTPUT_DIR itself.)
        names = (SearchOutputs(source).results_csv.name, SearchOutputs(source).pareto_csv.name)
        found = {p.parent for name in names for pattern in (name, f"nas*/**/{name}", f"build/**/{name}")
                 for p in source.glob(pattern)}
        dirs = sorted(found)
    out = []
    for d in dirs:
        nas = read_nas(d)
        if nas is not None:
            out.append(nas)
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _numeric(rows: list[dict[str, str]], skip: set[str]) -> tuple[list[str], list[dict[str, Any]]]:
    metrics: list[str] = []
    if rows:
        for name in rows[0]:
            if name in skip:
                continue
            try:
                [float(r[name]) for r in rows if r.get(name) not in ("", None)]
                metrics.append(name)
            except ValueError:
                continue
    parsed = []
    for r in rows:
        rec: dict[str, Any] = {k: r.get(k) for k in skip if k in r}
        for m in metrics:
            rec[m] = float(r[m]) if r.get(m) not in ("", None) else None
        parsed.append(rec)
    return metrics, parsed


def read_nas(folder: Path) -> NasResult | None:
    outputs = SearchOutputs(folder)
    results_csv, pareto_csv = outputs.results_csv, outputs.pareto_csv
    record: dict[str, Any] = {}
    if outputs.record.is_file():
        try:
            record = json.loads(outputs.record.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{outputs.record}: not valid JSON ({exc})") from None
        record = record if isinstance(record, dict) else {}
        # --results_path may have put the results CSV elsewhere; the record names it.
        named = (record.get("files") or {}).get("results_csv")
        if named and not results_csv.is_file() and Path(named).is_file():
            results_csv = Path(named)
    if not results_csv.is_file() and not pareto_csv.is_file():
        return None
    skip = {"index", "source", "config", "genome", "subnet", "name"}
    all_rows = _read_csv(results_csv) if results_csv.is_file() else []
    metrics, records = _numeric(all_rows, skip)
    front_rows = _read_csv(pareto_csv) if pareto_csv.is_file() else []
    front_metrics, front = _numeric(front_rows, skip)
    metrics = metrics or front_metrics
    if "accuracy" not in metrics:
        log.warning("%s: no 'accuracy' column; NAS section skipped", folder)
        return None
    reference = next((r for r in records + front if r.get("source") == "reference"), None)
    best = None
    cost_metric = None
    best_path = outputs.best_config
    if best_path.is_file():
        try:
            best_cfg = json.loads(best_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{best_path}: not valid JSON ({exc})") from None
        wanted = best_cfg.get("config", best_cfg) if isinstance(best_cfg, dict) else best_cfg
        key = json.dumps(wanted, sort_keys=True, separators=(",", ":"))
        best = next((r for r in records + front if r.get("config") == key), None)
        if isinstance(best_cfg, dict):
            if best is None and isinstance(best_cfg.get("metrics"), dict):
                best = {**best_cfg["metrics"], "config": key, "source": "best_config.json"}
            ref = best_cfg.get("reference")
            if reference is None and isinstance(ref, dict) and isinstance(ref.get("metrics"), dict):
                reference = {**ref["metrics"], "source": "reference"}
            cost_metric = best_cfg.get("cost_metric") if best_cfg.get("cost_metric") in metrics else None
    return NasResult(folder, metrics, cost_metric, records, front, reference, best, record)
