"""Read LoadGen's logs: ``mlperf_log_detail.txt`` (``:::MLLOG {json}`` lines) and the summary.

Both are read with bounded memory, whatever a (damaged or hostile) file holds: the
detail log line by line, skipping any line longer than ``MAX_LINE_BYTES`` (LoadGen's
longest are a few KB), the summary only up to ``MAX_SUMMARY_BYTES`` (it is ~2 KB).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

_MLLOG = ":::MLLOG "
MAX_LINE_BYTES = 1 << 20
MAX_SUMMARY_BYTES = 1 << 20
#: The detail-log key holding a performance run's result, per scenario (what the checker reads).
#: SingleStream / MultiStream: LoadGen's early-stopping estimate of the latency percentile, in ns
#: (MultiStream: per query of 8), the v5.1 checker's RESULT_FIELD_NEW; reported in ms.
RESULT_FIELD = {"Offline": "result_samples_per_second", "Server": "result_completed_samples_per_sec",
                "SingleStream": "early_stopping_latency_ss", "MultiStream": "early_stopping_latency_ms"}


@dataclass
class DetailLog:
    values: dict[str, Any] = field(default_factory=dict)   # last value logged under each key
    errors: list[dict] = field(default_factory=list)        # records LoadGen flagged is_error
    warnings: list[dict] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def read_detail_log(path: str | Path) -> DetailLog:
    out = DetailLog()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in _lines(fh):
            pos = line.find(_MLLOG)
            if pos < 0:
                continue
            try:
                rec = json.loads(line[pos + len(_MLLOG):])
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            out.values[rec.get("key")] = rec.get("value")
            meta = rec.get("metadata") or {}
            if meta.get("is_error"):
                out.errors.append(rec)
            if meta.get("is_warning"):
                out.warnings.append(rec)
    return out


def _lines(fh) -> Iterator[str]:
    """The file's lines; a line longer than ``MAX_LINE_BYTES`` is skipped, never held whole."""
    while True:
        line = fh.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) >= MAX_LINE_BYTES and not line.endswith("\n"):
            while line and not line.endswith("\n"):       # drop the rest of the overlong line
                line = fh.readline(MAX_LINE_BYTES)
            continue
        yield line


_SUMMARY_LINE = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")


def read_summary(path: str | Path) -> dict[str, str]:
    """``mlperf_log_summary.txt`` as ``{"Result is": "VALID", "Samples per second": "40.1", ...}``."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read(MAX_SUMMARY_BYTES)
    for line in text.splitlines():
        m = _SUMMARY_LINE.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    return out
