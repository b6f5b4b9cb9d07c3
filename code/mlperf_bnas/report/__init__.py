"""The HTML report: ``collect`` reads a results or submission tree, ``html.render`` writes one page."""

from __future__ import annotations

from pathlib import Path

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.report.collect import ReportData, collect
from mlperf_bnas.report.html import MARKER, render


def write_report(data: ReportData, out: Path) -> Path:
    """Write ``out`` atomically; a file there that this command did not write is never replaced."""
    out = Path(out)
    if out.exists():
        head = out.read_text(encoding="utf-8", errors="replace")[:2000]
        if MARKER not in head:
            raise UserError(f"{out}: exists and was not written by mlperf-bnas report; move it away or pass --out")
    write_atomic(out, render(data))
    return out


__all__ = ["collect", "render", "write_report", "ReportData"]
