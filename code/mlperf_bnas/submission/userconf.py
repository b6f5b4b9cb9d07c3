"""Which ``user.conf`` produced a run: parse LoadGen conf lines and compare them with the log.

A run's ``mlperf_log_detail.txt`` records every setting LoadGen was asked for
(``requested_*``), but not the file it came from. Packaging must submit the
``user.conf`` that was really used, so it picks the candidate file whose
settings for this model and scenario agree with the log, and refuses to guess
when none does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlperf_bnas.loadgen.logs import DetailLog

_LINE = re.compile(r"^\s*([\w\-.*]+)\.([\w*]+)\.(\w+)\s*=\s*(\S+)\s*$")


def settings_for(conf: Path, model: str, scenario: str) -> dict[str, str]:
    """The ``key = value`` pairs of ``conf`` that apply to ``model``/``scenario`` (later lines win,
    specific beats wildcard as in LoadGen)."""
    ranked: dict[str, tuple[int, str]] = {}
    for raw in conf.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split("#", 1)[0]
        m = _LINE.match(line)
        if not m:
            continue
        m_model, m_scen, key, value = m.groups()
        if m_model not in ("*", model) or m_scen not in ("*", scenario):
            continue
        rank = (m_model != "*") * 2 + (m_scen != "*")
        if key not in ranked or rank >= ranked[key][0]:
            ranked[key] = (rank, value)
    return {k: v for k, (_, v) in ranked.items()}


def _log_keys(key: str, scenario: str) -> list[tuple[str, float]]:
    """Detail-log keys (and unit scale) that record a user.conf key."""
    table = {
        "min_duration": [("requested_min_duration_ms", 1.0)],
        "max_duration": [("requested_max_duration_ms", 1.0)],
        "min_query_count": [("requested_min_query_count", 1.0)],
        "max_query_count": [("requested_max_query_count", 1.0)],
        "performance_sample_count_override": [("requested_performance_sample_count_override", 1.0)],
        "target_qps": [("requested_server_target_qps", 1.0)] if scenario == "Server"
        else [("requested_offline_expected_qps", 1.0)],
        "target_latency": [("requested_server_target_latency_ns", 1e6)],
    }
    return table.get(key, [])


def mismatches(conf: Path, detail: DetailLog, model: str, scenario: str) -> list[str]:
    """Settings in ``conf`` that disagree with what the log says LoadGen was asked for."""
    out = []
    for key, value in settings_for(conf, model, scenario).items():
        for log_key, scale in _log_keys(key, scenario):
            logged: Any = detail.get(log_key)
            if logged is None:
                continue
            try:
                if abs(float(value) * scale - float(logged)) > 1e-6 * max(1.0, abs(float(logged))):
                    out.append(f"{key}={value} but the log has {log_key}={logged}")
            except ValueError:
                out.append(f"{key}={value} is not a number")
    return out
