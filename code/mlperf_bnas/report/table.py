"""The plain-text results table ``run.sh`` ends with."""

from __future__ import annotations

import json
from pathlib import Path

from mlperf_bnas.report.collect import ReportData, ScenarioResult


def _checker_verdicts(checker_json: Path | None) -> tuple[dict[tuple[str, str, str], str], str | None]:
    """Per (system, model, scenario): the error rules our checker found under that result."""
    if checker_json is None or not checker_json.is_file():
        return {}, None
    data = json.loads(checker_json.read_text())
    errors: dict[tuple[str, str, str], set[str]] = {}
    for system, model, scenario, *_ in data.get("results", []):
        errors.setdefault((system, model, scenario), set())
    for f in data.get("findings", []):
        if f.get("severity") != "error":
            continue
        for key, rules in errors.items():
            system, model, scenario = key
            if f"/{system}/{model}/{scenario}/" in f"/{f.get('path', '')}/":
                rules.add(f["rule"])
    verdicts = {k: ("pass" if not v else ("smoke: " if data.get("smoke") else "FAIL: ") + ",".join(sorted(v)))
                for k, v in errors.items()}
    overall = "SMOKE" if data.get("smoke") else ("FAIL" if any(f.get("severity") == "error"
                                                             for f in data.get("findings", [])) else "PASS")
    return verdicts, overall


def _row(r: ScenarioResult, verdicts: dict) -> list[str]:
    perf, acc = r.performance, r.accuracy
    if r.not_run:
        return [r.model, r.scenario, "-", "-", "NOT RUN", "-", "-", "-"]
    unit = {"Offline": "samples/s", "Server": "QPS", "SingleStream": "ms p90", "MultiStream": "ms p99"}.get(
        r.scenario, "")
    if perf and perf.metric is not None and r.scenario in ("SingleStream", "MultiStream"):
        unit = perf.metric_name.split(" (")[0].replace(" latency", "")     # the run's own percentile
    metric = f"{perf.metric:.2f} {unit}" if perf and perf.metric is not None else "-"
    p99 = perf.percentiles_ms.get("p99") if perf else None
    accuracy = (f"{acc.metric}={acc.value:.3f}%" if acc and acc.value is not None else "-")
    fidelity = "-"
    if r.data_source is not None:
        fidelity = "yes (synthetic, FP32-labelled)" if r.data_source.synthetic else "no (real labels)"
    return [r.model, r.scenario, metric, f"{p99:.1f} ms" if p99 is not None else "-",
            perf.result_line if perf else "-", accuracy, fidelity,
            verdicts.get((r.system, r.model, r.scenario), "not checked")]


def results_table(data: ReportData, checker_json: Path | None = None) -> str:
    verdicts, overall = _checker_verdicts(checker_json)
    header = ["benchmark", "scenario", "result", "p99 latency", "LoadGen", "accuracy",
              "accuracy = INT8 fidelity", "checker"]
    rows = [header] + [_row(r, verdicts) for r in data.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    # Every INVALID run explained under the table: the failed condition, LoadGen's own
    # recommendation, and the command that fixes it; every scenario not run, why.
    for r in data.results:
        if r.not_run:
            lines.append(r.not_run)      # "<model> <Scenario>: not run: ..."
        elif r.performance is not None and r.performance.failures:
            for failure in r.performance.failures:
                lines.append(f"{r.model} {r.scenario} {r.performance.result_line}: {failure.line()}")
    if overall:
        lines.append(f"checker verdict: {overall}")
    return "\n".join(lines)
