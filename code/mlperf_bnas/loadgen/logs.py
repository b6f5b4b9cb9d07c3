"""Read LoadGen's logs: ``mlperf_log_detail.txt`` (``:::MLLOG {json}`` lines) and the summary."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MLLOG = ":::MLLOG "


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
        for line in fh:
            pos = line.find(_MLLOG)
            if pos < 0:
                continue
            try:
                rec = json.loads(line[pos + len(_MLLOG):])
            except json.JSONDecodeError:
                continue
            out.values[rec.get("key")] = rec.get("value")
            meta = rec.get("metadata") or {}
            if meta.get("is_error"):
                out.errors.append(rec)
            if meta.get("is_warning"):
                out.warnings.append(rec)
    return out


_SUMMARY_LINE = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")


def read_summary(path: str | Path) -> dict[str, str]:
    """``mlperf_log_summary.txt`` as ``{"Result is": "VALID", "Samples per second": "40.1", ...}``."""
    out: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = _SUMMARY_LINE.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    return out
