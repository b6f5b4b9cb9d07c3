"""Is a LoadGen log folder a complete result? Checked before a run is published, and again by
``package`` and ``check``.

LoadGen does not report a failed write: on a full disk it returns normally and
leaves an empty ``mlperf_log_summary.txt`` or a detail log cut off mid-line. A
folder is complete when

* the summary parses and ends with LoadGen's closing line (``No errors
  encountered during test.`` / ``N ERRORS encountered``), and for a performance
  run holds ``Result is`` and the scenario's metric with a number;
* the detail log ends with a whole line and holds ``power_end`` (the end of the
  test), and for a performance run ``result_validity`` and the result value;
* in accuracy mode, ``mlperf_log_accuracy.json`` is a closed JSON array answering
  every sample LoadGen reported (read as a stream: it can be gigabytes).

``estimate_bytes`` says how much a run will write, for the free-space check
before it starts.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen import accuracy_log
from mlperf_bnas.loadgen.logs import MAX_SUMMARY_BYTES, RESULT_FIELD, read_detail_log, read_summary

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
ACCURACY = "mlperf_log_accuracy.json"
#: The scenario's headline metric in the summary (the detail log's: logs.RESULT_FIELD).
#: SingleStream / MultiStream: the summary's line names the conf's percentile ("90.0th percentile
#: latency (ns)"), see ``summary_metric``.
SUMMARY_METRIC = {"Offline": "Samples per second", "Server": "Completed samples per second"}
_PERCENTILE_LINE = re.compile(r"^[\d.]+th percentile latency \(ns\)$")


def summary_metric(summary: dict[str, str], scenario: str) -> str | None:
    """The summary key holding ``scenario``'s headline figure (None when the summary has none)."""
    if scenario in SUMMARY_METRIC:
        return SUMMARY_METRIC[scenario]
    return next((k for k in summary if _PERCENTILE_LINE.match(k)), None)


_CLOSING = re.compile(r"^(No errors|1 ERROR|\d+ ERRORS) encountered", re.M)

# What a run writes besides its accuracy log (measured: a detail log is 25-30 KB, a summary
# 1.5 KB; the margin covers LoadGen's buffers and our own records) and, per logged response,
# LoadGen's JSON line around the hex data.
_BASE_BYTES = 4 << 20
_ENTRY_OVERHEAD = 64
_TRACE_BYTES_PER_QUERY = 1400


def problems(folder: Path, mode: str, scenario: str | None = None, check_accuracy_log: bool = True) -> list[str]:
    """Why ``folder`` is not a complete LoadGen result of ``mode`` (empty list: it is complete)."""
    folder = Path(folder)
    out: list[str] = []
    summary_path, detail_path = folder / SUMMARY, folder / DETAIL
    detail = None
    if not summary_path.is_file():
        out.append(f"{summary_path}: missing")
    elif summary_path.stat().st_size == 0:
        out.append(f"{summary_path}: empty (0 bytes): LoadGen could not write it")
    elif summary_path.stat().st_size > MAX_SUMMARY_BYTES:
        out.append(f"{summary_path}: {summary_path.stat().st_size} bytes, too large to be a LoadGen summary")
    else:
        text = summary_path.read_text(encoding="utf-8", errors="replace")
        if not _CLOSING.search(text):
            out.append(f"{summary_path}: cut off (no closing 'errors encountered' line)")
        if mode == "performance":
            summary = read_summary(summary_path)
            if summary.get("Result is") not in ("VALID", "INVALID"):
                out.append(f"{summary_path}: no 'Result is : VALID/INVALID' line")
            which = str(scenario or summary.get("Scenario"))
            metric = summary_metric(summary, which)
            if which in RESULT_FIELD and (metric is None or not _is_number(summary.get(metric))):
                out.append(f"{summary_path}: no '{metric or 'percentile latency (ns)'}' value: the run has no result")
    if not detail_path.is_file():
        out.append(f"{detail_path}: missing")
    elif detail_path.stat().st_size == 0:
        out.append(f"{detail_path}: empty (0 bytes): LoadGen could not write it")
    else:
        with open(detail_path, "rb") as fh:
            fh.seek(-1, 2)
            ends_whole = fh.read(1) == b"\n"
        if not ends_whole:
            out.append(f"{detail_path}: cut off in the middle of a line: LoadGen could not finish writing it")
        detail = read_detail_log(detail_path)
        if detail.get("power_end") is None:
            out.append(f"{detail_path}: ends before the end of the test (no power_end record)")
        scenario = scenario or detail.get("effective_scenario")
        if mode == "performance":
            if detail.get("result_validity") is None:
                out.append(f"{detail_path}: no result_validity record")
            key = RESULT_FIELD.get(str(scenario))
            if key and not isinstance(detail.get(key), (int, float)):
                out.append(f"{detail_path}: no {key} value: the run has no result")
    if mode == "accuracy" and check_accuracy_log:
        out += _accuracy_problems(folder / ACCURACY, detail.get("qsl_reported_total_count") if detail else None)
    return out


def _accuracy_problems(path: Path, total: object) -> list[str]:
    if not path.is_file():
        return [f"{path}: missing"]
    seen: set[int] = set()
    try:
        for entry in accuracy_log.entries(path):
            seen.add(entry.qsl_idx)
    except UserError as exc:
        return [str(exc)]
    if isinstance(total, int) and len(seen) != total:
        return [f"{path}: answers {len(seen)} distinct samples of the {total} LoadGen reported"]
    return []


def _is_number(value: str | None) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def estimate_bytes(mode: str, total_samples: int, response_bytes: int, queries: int = 0, trace: bool = False) -> int:
    """Bytes a run will write: the logs, plus (accuracy mode) one hex-encoded response per sample,
    plus (``trace``) LoadGen's per-query trace."""
    need = _BASE_BYTES
    if mode == "accuracy":
        need += total_samples * (2 * max(1, response_bytes) + _ENTRY_OVERHEAD)
    if trace:
        need += queries * _TRACE_BYTES_PER_QUERY
    return need
