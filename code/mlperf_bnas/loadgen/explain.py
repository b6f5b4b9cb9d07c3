"""Why LoadGen called a run INVALID: the failed condition, LoadGen's own words, the fix.

LoadGen's ``mlperf_log_summary.txt`` lists the conditions of a valid run
(``Performance constraints satisfied``, ``Min duration satisfied``, ``Min queries
satisfied``, ``Early stopping satisfied``) with Yes/NO, then its ``Recommendations:``
and ``Early Stopping Result:`` paragraphs; the detail log repeats the recommendation as
``result_invalid_reason``. ``explain`` turns a run folder into one ``Failure`` per
failed condition, quoting LoadGen, and names the command that fixes it, so the
results table, ``mlperf-bnas check`` and the HTML report all say the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlperf_bnas.loadgen.logs import DetailLog, read_detail_log

#: Summary condition lines, in LoadGen's order.
CONDITIONS = ("Performance constraints satisfied", "Min duration satisfied", "Min queries satisfied",
              "Early stopping satisfied")
_CONDITION = re.compile(r"^\s*(" + "|".join(CONDITIONS) + r")\s*:\s*(\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    condition: str            # e.g. "Min duration satisfied: NO"
    loadgen: str              # what LoadGen itself says about it (quoted), or "" when it says nothing
    fix: str                  # the command or setting that fixes it

    def line(self) -> str:
        said = f' LoadGen: "{self.loadgen}"' if self.loadgen else ""
        return f"{self.condition}.{said} Fix: {self.fix}"


def _paragraph(lines: list[str], title: str) -> str:
    """The ``* ...`` lines under ``title:`` in the summary, joined into one sentence."""
    out: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == title + ":":
            inside = True
            continue
        if inside:
            if not line.strip() or not (line.startswith(" ") or line.startswith("\t")):
                break
            out.append(line.strip().lstrip("*").strip())
    return " ".join(s for s in out if s)


def explain(run_dir: Path, scenario: str, model: str, benchmark: str | None = None,
            detail: DetailLog | None = None) -> list[Failure]:
    """The failed conditions of the LoadGen run in ``run_dir`` ([] when it is VALID or has no summary)."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "mlperf_log_summary.txt"
    if detail is None and (run_dir / "mlperf_log_detail.txt").is_file():
        detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    lines = summary_path.read_text(encoding="utf-8", errors="replace").splitlines() if summary_path.is_file() else []
    failed = []
    for line in lines:
        m = _CONDITION.match(line)
        if m and m.group(2).lower().startswith("no"):
            failed.append(m.group(1))
    recommendation = _paragraph(lines, "Recommendations")
    if not recommendation and detail is not None:
        recommendation = str(detail.get("result_invalid_reason") or "").strip()
    early = _paragraph(lines, "Early Stopping Result")
    if not early and detail is not None:
        early = " ".join(str(detail.get("early_stopping_result") or "").replace("*", " ").split())
    script = f"code/{benchmark}" if benchmark else "code/<benchmark>"
    key = f"{model}.{scenario}"
    out: list[Failure] = []
    latency_failed = "Performance constraints satisfied" in failed
    for condition in failed:
        label = f"{condition}: NO"
        if condition == "Performance constraints satisfied":
            bound = detail.get("effective_target_latency_ns") if detail else None
            fastest = detail.get("result_min_latency_ns") if detail else None
            bound_text = f" {bound / 1e6:g} ms" if isinstance(bound, (int, float)) else ""
            if isinstance(bound, (int, float)) and isinstance(fastest, (int, float)) and fastest > bound:
                # No load helps: even the fastest query missed the bound.
                out.append(Failure(label + f" (even the fastest query took {fastest / 1e6:.1f} ms, over the "
                                   f"{bound / 1e6:g} ms bound: no target_qps is VALID with these settings on this "
                                   "machine)", recommendation,
                                   f"a faster setting (`{script}/tune.sh --scenario {scenario}` tries the "
                                   f"tuning.Server grid), a faster machine, or a larger {key}.target_latency "
                                   "(a smoke run only)"))
                continue
            out.append(Failure(label + f" (the latency bound{bound_text} was missed at this load)", recommendation,
                               f"lower {key}.target_qps: `{script}/tune.sh --scenario {scenario}` finds the "
                               "highest VALID one and writes it to a tuned conf"))
        elif condition == "Min duration satisfied":
            if scenario == "Offline":
                out.append(Failure(label + " (LoadGen's one query ended before min_duration: the machine is faster "
                                   "than target_qps says)", recommendation,
                                   f"raise {key}.target_qps above the measured samples/s (`{script}/tune.sh "
                                   "--scenario Offline` measures it; unset USER_CONF and the embedded default sizes "
                                   "it on this machine), or a longer min_duration"))
            elif scenario in ("SingleStream", "MultiStream"):
                out.append(Failure(label + " (LoadGen's pre-generated queries ran out before min_duration: one "
                                   "query is faster than target_latency says)", recommendation,
                                   f"lower {key}.target_latency (LoadGen's expected latency) to at most the measured "
                                   f"one (`{script}/run_{scenario.lower()}.sh` warns with the measured figure; "
                                   "unset USER_CONF and the embedded default sizes it on this machine)"))
            else:
                out.append(Failure(label, recommendation, f"remove {key}.max_duration / max_query_count, or a longer "
                                   f"{key}.min_duration"))
        elif condition == "Min queries satisfied":
            out.append(Failure(label, recommendation,
                               f"a longer {key}.min_duration (or a lower {key}.min_query_count)"))
        elif condition == "Early stopping satisfied":
            if latency_failed:
                # Early stopping fails because too many queries missed the bound: the same fix.
                out.append(Failure(label + " (too many queries over the latency bound)", early,
                                   f"lower {key}.target_qps (`{script}/tune.sh --scenario {scenario}`)"))
            else:
                out.append(Failure(label + " (too few queries for LoadGen's estimate of the latency percentile)",
                                   early, f"raise {key}.min_query_count (or a longer {key}.min_duration)"))
    if detail is not None and detail.errors:
        first = str(detail.errors[0].get("value"))[:160]
        out.append(Failure(f"LoadGen logged {len(detail.errors)} error(s)", first,
                           "see the error records in mlperf_log_detail.txt; fix the setting or the SUT they name"))
    if not out and detail is not None and detail.get("result_validity") not in (None, "VALID"):
        out.append(Failure(f"result_validity {detail.get('result_validity')}", recommendation,
                           f"see {summary_path}"))
    return out


def one_line(failures: list[Failure]) -> str:
    return " | ".join(f.line() for f in failures)
