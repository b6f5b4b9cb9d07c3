"""Run one LoadGen test: settings from ``user.conf``, logs published atomically.

LoadGen applies its embedded ``mlperf.conf`` (the round's RNG seeds) only on the
first ``FromConfig`` of a process, so this module allows exactly one
``FromConfig(user.conf)`` per process: every LoadGen test runs in its own process
(``mlperf-bnas run`` is that process).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg

from mlperf_bnas.enums import Mode, Scenario, parse
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.logs import read_summary
from mlperf_bnas.loadgen.qsl import QSL
from mlperf_bnas.loadgen.sut import SUTBase

log = logging.getLogger(__name__)

MODES = {Mode.PERFORMANCE: lg.TestMode.PerformanceOnly, Mode.ACCURACY: lg.TestMode.AccuracyOnly}
# LoadGen's scenario names are MLPerf's.
SCENARIOS = {scenario: getattr(lg.TestScenario, scenario.value) for scenario in Scenario}
_from_config_done = False


@dataclass(frozen=True)
class RunRequest:
    loadgen_model: str          # "resnet50", "retinanet": LoadGen's embedded defaults key on it
    scenario: str               # "Offline" | "Server"
    mode: str                   # "performance" | "accuracy"
    user_conf: Path
    log_dir: Path               # final folder, e.g. results/<sys>/resnet50/Offline/performance/run_1
    archive_dir: Path           # earlier results found at log_dir are moved here, never deleted
    audit_config: Path | None = None   # compliance only: TEST01/TEST04 settings
    # LoadGen's per-query trace (mlperf_log_trace.json, ~1.3 KB a query): off unless asked,
    # since a full Server run makes gigabytes; it gives the report a true latency histogram.
    trace: bool = False


# Keys LoadGen 5.1's user.conf parser reads (test_settings_internal.cc, FromConfig). LoadGen
# silently ignores any other key, so a typo ("target_qsp") would quietly run with defaults.
USER_CONF_KEYS = frozenset("""
mode min_duration max_duration min_query_count max_query_count qsl_rng_seed sample_index_rng_seed
schedule_rng_seed accuracy_log_rng_seed accuracy_log_probability accuracy_log_sampling_target
print_timestamps performance_issue_unique performance_issue_same performance_issue_same_index
performance_sample_count_override performance_sample_count sample_concatenate_permutation
test05 test05_qsl_rng_seed test05_sample_index_rng_seed test05_schedule_rng_seed
target_latency_percentile target_latency target_qps samples_per_query max_async_queries
coalesce_queries server_num_issue_query_threads use_token_latencies ttft_latency tpot_latency
infer_token_latencies token_latency_scaling_factor enable_early_stopping early_stopping_min_queries
""".split())
USER_CONF_SCENARIOS = frozenset({"*", "SingleStream", "MultiStream", "Server", "Offline"})


def check_user_conf_keys(path: Path) -> None:
    """Reject keys LoadGen would silently ignore, naming the file and line."""
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or "=" not in line:
            continue  # LoadGen itself rejects malformed lines (FromConfig returns an error)
        key = line.split("=", 1)[0].strip()
        parts = key.split(".")
        if len(parts) != 3:
            raise UserError(f"{path}:{number}: {key!r} is not <model>.<scenario>.<key> "
                            "(e.g. resnet50.Offline.target_qps); fix the line")
        _model, scenario, name = parts
        if scenario not in USER_CONF_SCENARIOS:
            raise UserError(f"{path}:{number}: unknown scenario {scenario!r} in {key!r}; "
                            f"valid: {', '.join(sorted(USER_CONF_SCENARIOS))}")
        if name not in USER_CONF_KEYS:
            raise UserError(f"{path}:{number}: LoadGen has no setting {name!r} (it would be ignored "
                            f"silently); valid settings: {', '.join(sorted(USER_CONF_KEYS))}")


def load_settings(req: RunRequest) -> lg.TestSettings:
    global _from_config_done
    if _from_config_done:
        raise RuntimeError("FromConfig(user.conf) may run once per process; start one process per LoadGen test")
    parse(Scenario, req.scenario)
    parse(Mode, req.mode)
    conf = Path(req.user_conf)
    if not conf.is_file():
        raise UserError(f"{conf}: user.conf not found; set USER_CONF to an existing file")
    check_user_conf_keys(conf)
    settings = lg.TestSettings()
    _from_config_done = True
    rc = settings.FromConfig(str(conf), req.loadgen_model, req.scenario)
    if rc != 0:
        raise UserError(f"{conf}: LoadGen rejected this user.conf (FromConfig returned {rc}); "
                        "fix the line LoadGen reported above (format: <model>.<scenario>.<key> = <value>)")
    settings.scenario = SCENARIOS[req.scenario]
    settings.mode = MODES[req.mode]
    return settings


def _publish(tmp: Path, dest: Path, archive_dir: Path) -> None:
    """Move finished logs into place; an earlier result there goes to the archive, not the bin."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = archive_dir / stamp / dest.name
        n = 1
        while target.exists():
            target = archive_dir / f"{stamp}-{n}" / dest.name
            n += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dest), str(target))
        log.warning("earlier results at %s moved to %s", dest, target)
    os.replace(tmp, dest)


def run_test(req: RunRequest, sut: SUTBase, qsl: QSL, settings: lg.TestSettings | None = None) -> dict[str, str]:
    """Run LoadGen, then publish the logs to ``req.log_dir``. Returns the parsed summary.

    The logs are written into a private folder beside ``log_dir`` and moved into
    place only once the run has finished and every inference succeeded; a failed
    run's logs go to the archive, so nothing published is half-written.
    """
    settings = settings if settings is not None else load_settings(req)
    req.log_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{req.log_dir.name}.", dir=req.log_dir.parent))
    if Path("audit.config").exists() and req.audit_config is None:
        log.warning("ignoring ./audit.config: compliance settings are applied only by `mlperf-bnas compliance`")
    # LoadGen reads audit settings from this path if it exists. For ordinary runs it
    # names a file that cannot exist, so a stray ./audit.config never changes a result.
    audit = str(req.audit_config) if req.audit_config else str(tmp / "no-audit.config")

    output = lg.LogOutputSettings()
    output.outdir = str(tmp)
    output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = output
    log_settings.enable_trace = req.trace

    lg_sut = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    lg_qsl = lg.ConstructQSL(qsl.total_count, qsl.performance_count, qsl.load_samples, qsl.unload_samples)
    # Everything loaded so far (torch, OpenVINO, the model, the samples) lives until the end:
    # move it out of the collector's reach, so an occasional full collection during the run
    # walks only the objects the run itself makes, not a million long-lived ones (a pause
    # that would land on some query's latency).
    gc.collect()
    gc.freeze()
    try:
        lg.StartTestWithLogSettings(lg_sut, lg_qsl, settings, log_settings, audit)
        sut.backend.drain()
    finally:
        gc.unfreeze()
        sut.close()
        lg.DestroyQSL(lg_qsl)
        lg.DestroySUT(lg_sut)
    try:
        sut.raise_if_failed()
    except Exception:
        failed = req.archive_dir / ("failed-" + time.strftime("%Y%m%d-%H%M%S")) / req.log_dir.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), str(failed))
        log.error("logs of the failed run kept in %s", failed)
        raise
    _publish(tmp, req.log_dir, req.archive_dir)
    return read_summary(req.log_dir / "mlperf_log_summary.txt")
