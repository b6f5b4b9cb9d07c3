"""Run one LoadGen test: settings from ``user.conf``, logs published atomically and only when complete.

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
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlperf_loadgen as lg

from mlperf_bnas import outdir
from mlperf_bnas.enums import Mode, Scenario, parse
from mlperf_bnas.errors import Interrupted, RunFailed, UserError
from mlperf_bnas.loadgen import completeness, userconf
from mlperf_bnas.loadgen.guard import WATCHDOG_FLOOR_S, RunGuard
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
    scenario: str               # "Offline" | "Server" | "SingleStream" | "MultiStream"
    mode: str                   # "performance" | "accuracy"
    user_conf: Path
    log_dir: Path               # final folder, e.g. results/<sys>/resnet50/Offline/performance/run_1
    archive_dir: Path           # earlier results found at log_dir are moved here, never deleted
    audit_config: Path | None = None   # compliance only: TEST01/TEST04 settings
    # LoadGen's per-query trace (mlperf_log_trace.json, ~1.3 KB a query): off unless asked,
    # since a full Server run makes gigabytes; it gives the report a true latency histogram.
    trace: bool = False
    # The watchdog's least patience, in seconds without any answer (loadgen/guard.py).
    watchdog_floor_s: float = WATCHDOG_FLOOR_S
    # The most bytes one sample's response takes (the model's max_response_bytes): sizes the
    # free-space check before an accuracy run, whose log holds every response.
    response_bytes: int = 4


def load_settings(req: RunRequest) -> lg.TestSettings:
    """``TestSettings`` from ``req.user_conf``, after checking the conf the way LoadGen reads it
    (``loadgen/userconf.py``): a line LoadGen would reject or misread is an error naming it."""
    global _from_config_done
    if _from_config_done:
        raise RuntimeError("FromConfig(user.conf) may run once per process; start one process per LoadGen test")
    parse(Scenario, req.scenario)
    parse(Mode, req.mode)
    conf = Path(req.user_conf)
    parsed = userconf.read(conf)
    warnings, notes = userconf.run_notes(parsed, req.loadgen_model, req.scenario)
    for note in notes:
        log.info("%s", note)
    for warning in warnings:
        log.warning("%s", warning)
    settings = lg.TestSettings()
    _from_config_done = True
    rc = settings.FromConfig(str(conf), req.loadgen_model, req.scenario)
    if rc != 0:
        raise UserError(f"{conf}: LoadGen rejected this user.conf (FromConfig returned {rc}) although every line "
                        "passed our check; please report it with the file")
    settings.scenario = SCENARIOS[req.scenario]
    settings.mode = MODES[req.mode]
    return settings


def _archive_slot(archive_dir: Path, label: str, name: str) -> Path:
    """A fresh ``<archive>/<label>-<time>[-n]/<name>`` (its parent created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"{label}-{stamp}" if label else stamp
    target = archive_dir / prefix / name
    n = 1
    while target.exists():
        target = archive_dir / f"{prefix}-{n}" / name
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _keep(tmp: Path, req: RunRequest, label: str) -> Path:
    """Move the logs of a run that is not published to the archive; returns where."""
    target = _archive_slot(req.archive_dir, label, req.log_dir.name)
    shutil.move(str(tmp), str(target))
    return target


def _publish(tmp: Path, dest: Path, archive_dir: Path) -> None:
    """Move finished logs into place; an earlier result there goes to the archive, not the bin."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        target = _archive_slot(archive_dir, "", dest.name)
        shutil.move(str(dest), str(target))
        log.warning("earlier results at %s moved to %s", dest, target)
    os.replace(tmp, dest)


def _expected_queries(settings: lg.TestSettings, req: RunRequest) -> int:
    """Roughly how many samples a performance run issues (for the trace's size)."""
    seconds = settings.min_duration_ms / 1000
    if req.scenario == "Offline":
        return int(settings.offline_expected_qps * seconds * 1.1)
    if req.scenario in ("SingleStream", "MultiStream"):
        # One query at a time, each expected to take the conf's target_latency.
        expected_ns = (settings.single_stream_expected_latency_ns if req.scenario == "SingleStream"
                       else settings.multi_stream_expected_latency_ns)
        return int(max(settings.min_query_count, 1.1 * seconds * 1e9 / max(1, expected_ns)))
    return int(max(settings.min_query_count, settings.server_target_qps * seconds))


def _free_space_hint(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free on the file system of {folder}; is it full?)"


def run_test(req: RunRequest, sut: SUTBase, qsl: QSL, settings: lg.TestSettings | None = None) -> dict[str, str]:
    """Run LoadGen, then publish the logs to ``req.log_dir``. Returns the parsed summary.

    The logs are written into a private folder beside ``log_dir`` and moved into
    place only once the run has finished, every inference succeeded and the logs
    are complete (``loadgen/completeness.py``: a full disk leaves them empty or cut
    off). Any other run's logs go to the archive (``failed-``, ``incomplete-``,
    ``interrupted-``), and an earlier result at ``log_dir`` stays where it is. Ctrl-C,
    SIGTERM and a backend that stops answering end the run within seconds
    (``loadgen/guard.py``); an interrupted run raises ``Interrupted``.
    """
    settings = settings if settings is not None else load_settings(req)
    req.log_dir.parent.mkdir(parents=True, exist_ok=True)
    outdir.require_free_space(req.log_dir.parent,
                              completeness.estimate_bytes(req.mode, qsl.total_count, req.response_bytes,
                                                          _expected_queries(settings, req), req.trace),
                              f"this {req.mode} run's logs")
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

    def keep_partial(reason: str) -> Path:
        return _keep(tmp, req, "interrupted" if reason.startswith("interrupted") else "failed")

    guard = RunGuard(sut, keep_partial, floor_s=req.watchdog_floor_s)
    lg_sut = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    lg_qsl = lg.ConstructQSL(qsl.total_count, qsl.performance_count, qsl.load_samples, qsl.unload_samples)
    # Everything loaded so far (torch, OpenVINO, the model, the samples) lives until the end:
    # move it out of the collector's reach, so an occasional full collection during the run
    # walks only the objects the run itself makes, not a million long-lived ones (a pause
    # that would land on some query's latency).
    gc.collect()
    gc.freeze()
    try:
        with guard:
            log.info("LoadGen %s %s run started (logs: %s)", req.scenario, req.mode, tmp)
            lg.StartTestWithLogSettings(lg_sut, lg_qsl, settings, log_settings, audit)
            if sut.stopping is None:
                sut.backend.drain()
    except BaseException:
        if tmp.exists():
            _keep(tmp, req, "failed")
        raise
    finally:
        gc.unfreeze()
        sut.close()
        lg.DestroyQSL(lg_qsl)
        lg.DestroySUT(lg_sut)
    if guard.signum is not None:
        kept = _keep(tmp, req, "interrupted")
        raise Interrupted(guard.signum, f"stopped by {signal.Signals(guard.signum).name} "
                                        f"({sut.stopped_samples} sample(s) answered empty); nothing was "
                                        f"published; partial logs kept in {kept}")
    try:
        sut.raise_if_failed()
    except Exception:
        failed = _keep(tmp, req, "failed")
        log.error("logs of the failed run kept in %s", failed)
        raise
    incomplete = completeness.problems(tmp, req.mode, req.scenario)
    if incomplete:
        kept = _keep(tmp, req, "incomplete")
        earlier = f"; the earlier result at {req.log_dir} is unchanged" if req.log_dir.exists() else ""
        raise RunFailed(f"the run's logs are incomplete, so nothing was published: "
                        f"{incomplete[0].replace(str(tmp), str(kept))}{_free_space_hint(req.log_dir.parent)}"
                        f"{' (and ' + str(len(incomplete) - 1) + ' more problem(s))' if len(incomplete) > 1 else ''}"
                        f"; logs kept in {kept}{earlier}")
    _publish(tmp, req.log_dir, req.archive_dir)
    return read_summary(req.log_dir / "mlperf_log_summary.txt")
