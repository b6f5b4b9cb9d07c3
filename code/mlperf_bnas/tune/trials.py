"""One tuning trial = one short LoadGen test in its own ``mlperf-bnas run`` process.

LoadGen accepts one ``FromConfig(user.conf)`` per process, so every trial is a
subprocess with its own generated user.conf and log folder (under
``build/<benchmark>/tuning/``, never ``results/``). The trial's figures are read
back from LoadGen's own logs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import RunFailed
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.loadgen.logs import RESULT_FIELD, read_detail_log, read_summary
from mlperf_bnas.loadgen.userconf import trial_conf_text
from mlperf_bnas.processes import run_child


@dataclass
class Trial:
    number: int
    scenario: str
    purpose: str                      # "probe", "grid", "capacity", "bisect", "confirm"
    backend_options: dict[str, Any]
    conf_values: dict[str, Any]       # LoadGen settings this trial set (target_qps, min_duration...)
    log_dir: str
    valid: bool = False
    samples_per_s: float | None = None          # Offline: result_samples_per_second; Server: completed/s
    scheduled_qps: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)   # "p50", "p90", "p99"...
    latency_bound_ms: float | None = None
    early_stopping_met: bool | None = None
    query_count: int | None = None
    invalid_reason: str | None = None
    error: str | None = None
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.backend_options.items())) or "(config defaults)"
        if self.error:
            return f"{opts}: FAILED ({self.error})"
        rate = f"{self.samples_per_s:.1f} samples/s" if self.samples_per_s is not None else "no result"
        parts = [opts]
        if "target_qps" in self.conf_values and self.scenario == "Server":
            parts.append(f"target_qps={self.conf_values['target_qps']:.1f}")
        parts.append(rate)
        if "p99" in self.latency_ms:
            parts.append(f"p99={self.latency_ms['p99']:.2f} ms")
        parts.append("VALID" if self.valid else f"INVALID{' (' + self.invalid_reason + ')' if self.invalid_reason else ''}")
        return ", ".join(parts)


_PERCENTILES = {"min": "result_min_latency_ns", "p50": "result_50.00_percentile_latency_ns", "p90": "result_90.00_percentile_latency_ns",
                "p95": "result_95.00_percentile_latency_ns", "p97": "result_97.00_percentile_latency_ns",
                "p99": "result_99.00_percentile_latency_ns", "p99.9": "result_99.90_percentile_latency_ns",
                "mean": "result_mean_latency_ns", "max": "result_max_latency_ns"}


@dataclass
class TrialRunner:
    """Runs trials of one benchmark with ``mlperf-bnas run`` (same environment as the run scripts)."""

    benchmark_dir: Path
    output_dir: Path
    system: str
    loadgen_model: str
    base_conf: str
    work_dir: Path                                   # trial folders go here
    extra_args: list[str] = field(default_factory=list)   # --data-dir, --checkpoint, user --set ...
    timeout_s: float = 1800.0
    trials: list[Trial] = field(default_factory=list)

    def run(self, scenario: str, purpose: str, backend_options: dict[str, Any],
            conf_values: dict[str, Any], progress: str = "") -> Trial:
        number = len(self.trials) + 1
        trial_dir = self.work_dir / f"trial_{number:03d}_{scenario}_{purpose}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        conf = trial_dir / "user.conf"
        write_atomic(conf, trial_conf_text(self.base_conf, self.loadgen_model, scenario, conf_values))
        log_dir = trial_dir / "logs"
        cmd = [sys.executable, "-m", "mlperf_bnas", "run", "--benchmark", str(self.benchmark_dir),
               "--output-dir", str(self.output_dir), "--system", self.system, "--scenario", scenario,
               "--mode", "performance", "--user-conf", str(conf), "--log-dir", str(log_dir), *self.extra_args]
        for key, value in sorted(backend_options.items()):
            cmd += ["--set", f"backend_options.{key}={value}"]
        trial = Trial(number, scenario, purpose, dict(backend_options), dict(conf_values), str(log_dir))
        print(f"[tune {scenario} #{number} {purpose}{' ' + progress if progress else ''}] "
              + (" ".join(f"{k}={v}" for k, v in sorted(backend_options.items())) or "(config defaults)")
              + "".join(f" {k}={v:.6g}" if isinstance(v, float) else f" {k}={v}" for k, v in conf_values.items()),
              flush=True)
        start = time.monotonic()
        with open(trial_dir / "run.log", "w", encoding="utf-8") as out:
            # Stopping tune (Ctrl-C) stops the trial the same way, its logs archived (processes.py).
            rc = run_child(cmd, timeout=self.timeout_s, stdout=out, stderr=subprocess.STDOUT)
        trial.wall_s = round(time.monotonic() - start, 2)
        if rc != 0:
            tail = (trial_dir / "run.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = "timed out" if rc is None else (tail[-1] if tail else f"exit status {rc}")
            trial.error = f"{reason[:300]} (log: {trial_dir / 'run.log'})"
        else:
            _read_logs(trial, log_dir)
        print(f"    -> {trial.describe()}  [{trial.wall_s:.1f}s]", flush=True)
        self.trials.append(trial)
        return trial


def _read_logs(trial: Trial, log_dir: Path) -> None:
    summary_path, detail_path = log_dir / "mlperf_log_summary.txt", log_dir / "mlperf_log_detail.txt"
    if not detail_path.is_file():
        trial.error = f"no LoadGen log in {log_dir}"
        return
    detail = read_detail_log(detail_path)
    summary = read_summary(summary_path) if summary_path.is_file() else {}
    if detail.errors:
        trial.error = "LoadGen logged errors: " + "; ".join(str(e.get("value"))[:100] for e in detail.errors[:3])
    trial.valid = summary.get("Result is") == "VALID" and not detail.errors
    key = RESULT_FIELD[trial.scenario]
    trial.samples_per_s = _float(detail.get(key))
    trial.scheduled_qps = _float(detail.get("result_scheduled_samples_per_sec"))
    trial.latency_ms = {name: detail.get(k) / 1e6 for name, k in _PERCENTILES.items()
                        if isinstance(detail.get(k), (int, float))}
    bound = detail.get("effective_target_latency_ns")
    trial.latency_bound_ms = bound / 1e6 if isinstance(bound, (int, float)) and bound > 0 else None
    if trial.scenario == "Server":
        trial.early_stopping_met = bool(detail.get("early_stopping_met"))
    trial.query_count = detail.get("result_query_count")
    if not trial.valid:
        trial.invalid_reason = _invalid_reason(summary)


def _invalid_reason(summary: dict[str, str]) -> str:
    checks = {"Performance constraints satisfied": "latency bound", "Min duration satisfied": "min duration",
              "Min queries satisfied": "min queries", "Early stopping satisfied": "early stopping"}
    failed = [label for key, label in checks.items() if summary.get(key, "Yes").lower().startswith("no")]
    return ", ".join(failed) or "see log"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def require_success(trial: Trial) -> Trial:
    if trial.error:
        raise RunFailed(f"tuning trial #{trial.number} failed: {trial.error}")
    return trial
