"""One self-contained HTML page (inline CSS, plots embedded as base64 PNG) from ``ReportData``."""

from __future__ import annotations

import base64
import html
import time
from typing import Any

from mlperf_bnas.report import plots
from mlperf_bnas.report.collect import NasResult, ReportData, ScenarioResult

MARKER = '<meta name="generator" content="mlperf-bnas report">'

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#666;font-size:13px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.valid{color:#fff;background:#2e7d32;padding:1px 6px;border-radius:3px;font-weight:600}
.invalid{color:#fff;background:#c62828;padding:1px 6px;border-radius:3px;font-weight:600}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}
img{max-width:100%;height:auto} pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
.warn{background:#fff4e5;border-left:4px solid #ff9800;padding:6px 10px;margin:8px 0;font-size:13px}
tr.chosen td{background:#fff3e0;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _badge(valid: bool, text: str | None = None) -> str:
    return f'<span class="{"valid" if valid else "invalid"}">{_e(text or ("VALID" if valid else "INVALID"))}</span>'


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "" if value is None else fmt.format(value)


def render(data: ReportData) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{MARKER}",
             "<title>MLPerf Inference report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>MLPerf Inference v5.1 (open) report</h1>",
             f'<p class="muted">Source: {_e(data.source)} ({_e(data.kind)} tree) &middot; generated '
             f'{_e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))} by mlperf-bnas report</p>']
    parts.append(_summary_table(data.results))
    for result in data.results:
        parts.append(_scenario_section(result))
    parts.append(_sizing_sections(data.sizing))
    parts.append(_tuning_sections(data.tuning))
    parts.append(_nas_sections(data.nas))
    parts.append(_system_sections(data.systems))
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _summary_table(results: list[ScenarioResult]) -> str:
    rows = ["<h2 id=\"summary\">Results</h2>", "<table><tr><th>system</th><th>benchmark</th><th>scenario</th>"
            "<th>result</th><th>validity</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>accuracy</th></tr>"]
    if not results:
        rows.append('<tr><td colspan="9">no results found</td></tr>')
    for r in results:
        p = r.performance
        acc = r.accuracy
        acc_text = f"{acc.metric} = {acc.value:g}%" if acc and acc.value is not None else ("see below" if acc else "")
        if acc_text and r.data_source and r.data_source.synthetic:
            acc_text += " (INT8 vs FP32, synthetic data)"
        if r.not_run:
            rows.append(f"<tr><td>{_e(r.system)}</td><td>{_e(r.model)}</td><td>{_e(r.scenario)}</td>"
                        f"<td colspan=\"6\">{_badge(False, 'NOT RUN')} {_e(r.not_run)}</td></tr>")
            continue
        if p is None:
            rows.append(f"<tr><td>{_e(r.system)}</td><td>{_e(r.model)}</td><td>{_e(r.scenario)}</td>"
                        f"<td colspan=\"5\">no performance run</td><td>{_e(acc_text)}</td></tr>")
            continue
        rows.append(
            f"<tr><td>{_e(r.system)}</td><td>{_e(r.model)}</td><td><a href=\"#{_e(_anchor(r))}\">{_e(r.scenario)}</a></td>"
            f"<td class=\"num\">{_num(p.metric)} {_e(p.metric_name)}</td><td>{_badge(p.valid, p.result_line)}</td>"
            f"<td class=\"num\">{_num(p.percentiles_ms.get('p50'))}</td><td class=\"num\">{_num(p.percentiles_ms.get('p90'))}</td>"
            f"<td class=\"num\">{_num(p.percentiles_ms.get('p99'))}</td><td>{_e(acc_text)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _anchor(r: ScenarioResult) -> str:
    return f"{r.system}-{r.model}-{r.scenario}"


def _scenario_section(r: ScenarioResult) -> str:
    out = [f'<div class="card" id="{_e(_anchor(r))}"><h3>{_e(r.model)} &middot; {_e(r.scenario)} &middot; {_e(r.system)}</h3>']
    if r.not_run:
        out.append(f'<div class="warn"><b>Not run on this machine.</b> {_e(r.not_run)}</div></div>')
        return "\n".join(out)
    for problem in r.problems:
        out.append(f'<div class="warn">{_e(problem)}</div>')
    p = r.performance
    for failure in (p.failures if p is not None else []):
        said = f' LoadGen: &ldquo;{_e(failure.loadgen)}&rdquo;' if failure.loadgen else ""
        out.append(f'<div class="warn"><b>{_e(p.result_line)}: {_e(failure.condition)}.</b>{said} '
                   f'<b>Fix:</b> {_e(failure.fix)}</div>')
    if p is not None:
        out.append("<table>")
        out.append(f"<tr><th>result</th><td>{_num(p.metric)} {_e(p.metric_name)} {_badge(p.valid, p.result_line)}</td></tr>")
        if p.target_qps is not None and r.scenario in ("SingleStream", "MultiStream"):
            # LoadGen logs 1 / the expected latency as the target QPS of a stream scenario.
            out.append(f"<tr><th>expected latency (target_latency)</th><td>{1000.0 / p.target_qps:g} ms "
                       f"per query</td></tr>")
        elif p.target_qps is not None:
            out.append(f"<tr><th>{'target QPS' if r.scenario == 'Server' else 'expected QPS'}</th>"
                       f"<td>{p.target_qps:g}</td></tr>")
        if p.latency_bound_ms:
            out.append(f"<tr><th>latency bound (p99)</th><td>{p.latency_bound_ms:g} ms</td></tr>")
        for name, value in p.checks.items():
            out.append(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>")
        if p.early_stopping:
            out.append(f"<tr><th>early stopping</th><td>{_e(p.early_stopping)}</td></tr>")
        if p.query_count is not None:
            out.append(f"<tr><th>queries</th><td>{_e(p.query_count)}</td></tr>")
        if p.errors:
            out.append(f"<tr><th>LoadGen errors</th><td>{_e('; '.join(p.errors))}</td></tr>")
        lat = ", ".join(f"{k} {v:.3f}" for k, v in p.percentiles_ms.items())
        out.append(f"<tr><th>latency (ms)</th><td>{_e(lat)}</td></tr>")
        out.append(f"<tr><th>logs</th><td>{_e(p.log_dir)}</td></tr></table>")
        out.append(_img(plots.latency_plot(p, f"{r.model} {r.scenario}: latency"), f"{r.model} {r.scenario} latency"))
        out.append(f'<p class="muted">Latency figure: {_e(p.latency_source)}.</p>')
    a = r.accuracy
    if a is not None:
        head = f"{a.metric} = {a.value:g}%" if a.value is not None else "no accuracy figure found in the file"
        kind = "INT8 fidelity" if r.data_source and r.data_source.synthetic else "Accuracy"
        out.append(f"<p><b>{kind}</b> ({_e(a.path)}): {_e(head)}</p>")
        if r.data_source:
            out.append(f'<p class="muted">Data: {_e(r.data_source.description)}.</p>')
        out.append(f"<pre>{_e(a.text.strip()[-3000:])}</pre>")
    out.append("</div>")
    return "\n".join(out)


def _opts(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(options.items())) or "(config defaults)"


def _sizing_sections(records: list[dict[str, Any]]) -> str:
    """Where the embedded default's target_qps came from (`mlperf-bnas size`)."""
    if not records:
        return ""
    out = ['<h2 id="sizing">LoadGen settings sized on this machine</h2>',
           '<p class="muted">The embedded default has no machine-speed constant: before its runs, '
           '<code>mlperf-bnas size</code> measured this machine with short LoadGen probes and wrote the conf the '
           'runs used (packaged as their <code>user.conf</code>).</p>']
    for rec in records:
        machine = rec.get("machine") or {}
        out.append(f'<div class="card"><h3>{_e(rec.get("benchmark"))} on {_e(rec.get("system"))}</h3>'
                   f'<p class="muted">{_e(machine.get("cpu_model"))}, {_e(machine.get("cores"))} core(s), '
                   f'{_e(machine.get("usable_cpus"))} usable CPU(s); sized {_e(rec.get("sized_at"))}; '
                   f'conf {_e(rec.get("conf"))}</p><table><tr><th>scenario</th><th>target_qps</th>'
                   '<th>where it came from</th></tr>')
        for scenario, result in (rec.get("scenarios") or {}).items():
            target = result.get("target_qps")
            out.append(f"<tr><td>{_e(scenario)}</td><td class=\"num\">{_e(target if target is not None else 'not run')}"
                       f"</td><td>{_e(result.get('why'))}</td></tr>")
        out.append("</table></div>")
    return "\n".join(out)


def _tuning_sections(records: list[dict[str, Any]]) -> str:
    out = ['<h2 id="tuning">Tuning</h2>']
    if not records:
        out.append('<p class="muted">No tuning record found (run <code>mlperf-bnas tune</code> / tune.sh).</p>')
        return "\n".join(out)
    for rec in records:
        out.append(f'<div class="card"><h3>{_e(rec.get("benchmark"))} on {_e(rec.get("system"))} '
                   f'(tuned {_e(rec.get("updated"))})</h3>')
        out.append(f'<p class="muted">Record: {_e(rec.get("_path"))}; tuned conf: {_e(rec.get("tuned_conf"))}</p>')
        scen = rec.get("scenarios", {})
        eff = rec.get("server_offline_efficiency")
        if eff is not None:
            server = scen.get("Server") or {}
            same = (f"; Server QPS / Offline throughput at the Server's own settings: "
                    f"{server['target_qps'] / server['capacity_samples_per_s']:.3f}"
                    if server.get("capacity_samples_per_s") else "")
            out.append(f"<p><b>Server/Offline efficiency</b>: {eff:.3f} "
                       f"(tuned Server QPS / tuned Offline samples/s){same}</p>")
        for name in ("Offline", "Server"):
            s = scen.get(name)
            if not s:
                continue
            if name == "Offline":
                out.append(f"<p><b>Offline choice</b>: {_e(_opts(s['backend_options']))}: "
                           f"{s['samples_per_s']:.1f} samples/s measured, expected QPS set to {s['target_qps']:.1f}"
                           f"{_confirmed(s)}</p>")
                out.append(_img(plots.tuning_offline_plot(s.get("trial_records", []), s["backend_options"],
                                                          "Offline candidates"), "Offline tuning trials"))
            else:
                bound = s.get("latency_bound_ms")
                out.append(f"<p><b>Server choice</b>: {_e(_opts(s['backend_options']))}: target QPS "
                           f"{s['target_qps']:.1f}, VALID at p99 &le; {_e(bound)} ms "
                           f"(capacity {s['capacity_samples_per_s']:.1f} samples/s){_confirmed(s)}</p>")
                chosen = [t for t in s.get("trial_records", []) if t.get("backend_options") == s["backend_options"]]
                out.append(_img(plots.tuning_server_plot(chosen, s["target_qps"], bound,
                                                         "Server bisection (chosen settings)"), "Server tuning trials"))
            out.append(_trial_table(s.get("trial_records", []), s))
        for name, failure in (rec.get("failed_searches") or {}).items():
            out.append(f'<div class="warn"><b>{_e(name)} search found no VALID setting</b>: {_e(failure.get("error"))}</div>')
            out.append(_img(plots.tuning_server_plot(failure.get("trial_records", []), 0.0,
                                                     _bound(failure.get("trial_records", [])), f"{name} search (failed)"),
                            f"{name} failed search"))
            out.append(_trial_table(failure.get("trial_records", []), {}))
        out.append("</div>")
    return "\n".join(out)


def _bound(trials: list[dict[str, Any]]) -> float | None:
    return next((t["latency_bound_ms"] for t in trials if t.get("latency_bound_ms")), None)


def _confirmed(s: dict[str, Any]) -> str:
    if s.get("confirmed") is None:
        return " (not confirmed at full length)"
    return " (full-length confirmation: " + ("VALID)" if s["confirmed"] else "NOT VALID)")


def _trial_table(trials: list[dict[str, Any]], chosen: dict[str, Any]) -> str:
    rows = ["<table><tr><th>#</th><th>scenario</th><th>purpose</th><th>backend options</th><th>target QPS</th>"
            "<th>samples/s</th><th>p99 ms</th><th>result</th><th>wall s</th></tr>"]
    for t in trials:
        is_chosen = t.get("backend_options") == chosen.get("backend_options") and (
            t.get("purpose") == "grid" if t.get("scenario") == "Offline"
            else t.get("valid") and t.get("conf_values", {}).get("target_qps") == chosen.get("target_qps"))
        if t.get("error"):
            result = f'<span class="invalid">FAILED</span> {_e(t["error"])}'
        else:
            result = _badge(bool(t.get("valid"))) + (f" {_e(t['invalid_reason'])}" if t.get("invalid_reason") else "")
        row_class = ' class="chosen"' if is_chosen else ""
        rows.append(
            f"<tr{row_class}><td>{t['number']}</td><td>{_e(t['scenario'])}</td>"
            f"<td>{_e(t['purpose'])}</td><td>{_e(_opts(t['backend_options']))}</td>"
            f"<td class=\"num\">{_num(t.get('conf_values', {}).get('target_qps'), '{:g}')}</td>"
            f"<td class=\"num\">{_num(t.get('samples_per_s'), '{:.1f}')}</td>"
            f"<td class=\"num\">{_num(t.get('latency_ms', {}).get('p99'))}</td><td>{result}</td>"
            f"<td class=\"num\">{_num(t.get('wall_s'), '{:.1f}')}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _nas_sections(results: list[NasResult]) -> str:
    if not results:
        return '<h2 id="nas">NAS search</h2><p class="muted">No NAS search results found.</p>'
    out = ['<h2 id="nas">NAS search</h2>']
    for nas in results:
        x_metric = nas.cost_metric or next((m for m in ("latency", "latency_ms", "macs", "params") if m in nas.metrics),
                                           next((m for m in nas.metrics if m != "accuracy"), None))
        out.append(f'<div class="card"><h3>{_e(nas.where)}</h3>')
        out.append(f"<p>{len(nas.records)} evaluated sub-network(s), {len(nas.front)} on the Pareto front.</p>")
        if x_metric:
            out.append(_img(plots.nas_plot(nas, x_metric), "NAS Pareto front"))
        rows = ["<table><tr><th>sub-network</th>" + "".join(f"<th>{_e(m)}</th>" for m in nas.metrics) + "</tr>"]
        for label, rec in (("original model", nas.reference), ("chosen sub-network", nas.best)):
            if rec:
                rows.append(f"<tr><td>{label}</td>" + "".join(
                    f"<td class=\"num\">{_num(rec.get(m), '{:.4g}')}</td>" for m in nas.metrics) + "</tr>")
        for i, rec in enumerate(nas.front):
            rows.append(f"<tr><td>front #{i + 1}</td>" + "".join(
                f"<td class=\"num\">{_num(rec.get(m), '{:.4g}')}</td>" for m in nas.metrics) + "</tr>")
        rows.append("</table>")
        out.append("\n".join(rows))
        if nas.record:
            summary = {k: v for k, v in nas.record.items() if not isinstance(v, (list, dict))}
            if summary:
                out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                               for k, v in summary.items()) + "</table>")
        out.append("</div>")
    return "\n".join(out)


def _system_sections(systems: dict[str, dict[str, Any] | None]) -> str:
    out = ['<h2 id="systems">System description</h2>']
    if not systems:
        out.append('<p class="muted">No system.</p>')
    for name, desc in systems.items():
        if not desc:
            out.append(f'<div class="warn">systems/{_e(name)}.json not found</div>')
            continue
        out.append(f'<h3>{_e(name)}</h3><p class="muted">{_e(desc.get("_path"))}</p><table>')
        for key, value in desc.items():
            if key != "_path":
                out.append(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>")
        out.append("</table>")
    return "\n".join(out)
