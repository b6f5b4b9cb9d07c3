"""Size a benchmark's LoadGen settings on the machine it runs on (``mlperf-bnas size``).

Machines differ by 10x and more, so no ``target_qps`` of the embedded default (synthetic
data, short runs) is written down anywhere: the run scripts measure this machine first and
write a generated per-system conf, ``build/<benchmark>/sizing/<system>/user.<system>.sized.conf``:
the benchmark's ``user.smoke.conf`` (the short-run settings, which hold no machine speed)
plus the measured ``target_qps`` of each scenario, with comment lines that say where each
number came from (the probe, the measured figure, CPU model, core count, date). Every run
of the embedded default uses that file as ``USER_CONF``, so packaging copies it into
``measurements/`` as the conf actually run.

How the numbers are measured: short LoadGen runs in this process (no ``FromConfig``: their
settings are set directly, so the one-``FromConfig``-per-process rule of the real runs is
untouched), through the same SUT, QSL and backend settings as the runs they size:

* **throughput** (per backend setting): a warm-up Offline run, then two Offline runs of
  about ``PROBE_SECONDS``; the best of them counts (noise on a shared or virtual machine
  only ever lowers a figure);
* **latency** (the Server setting): a SingleStream run, one query at a time: the time one
  query takes on an idle system (min, median, p90).

What is derived from them:

* **Offline** ``target_qps = margin x measured samples/s``. LoadGen issues one
  query of ``max(min_query_count, 1.1 x target_qps x min_duration)`` samples and the run
  is VALID only if it lasts ``min_duration``, i.e. only if the run is at most 1.1 x
  target_qps fast. The margin (``offline_margin``) is ``OFFLINE_MARGIN`` (2) for a smoke
  run: it lets the real run be up to 2.2x faster than the probe and costs seconds. At the
  real rules' 600 s it would cost minutes on every run (TEST01 and TEST04 repeat it): the
  query would last 2.2 x 600 s = 22 min at the probe's speed. There it is
  ``OFFLINE_MARGIN_FULL`` (1.25): ~14 min, still VALID for a run up to 1.375x faster than
  the probe; a faster one is re-sized and re-run (``EXIT_RESIZE``), as MLPerf submitters
  set ``target_qps`` near the throughput they measured.
* **Server** ``target_qps = SERVER_FRACTION x`` the highest Poisson arrival rate an M/D/c
  queue holds at the conf's latency bound (``tune/queueing.py``), with ``c`` = queries the
  backend serves at once (capacity x single-query latency, Little's law) and ``D`` = the
  larger of the median single-query latency and ``c`` / capacity, at a stricter percentile
  than the bound's (LoadGen's early stopping, on a few hundred queries, needs the observed
  tail well inside it). Half of the analytic maximum: a smoke run must be VALID, not at
  the limit (``tune.sh`` finds the limit).
* **SingleStream / MultiStream** ``target_latency = measured median query latency /
  STREAM_MARGIN``, from a probe of that scenario itself (one query of 1 or 8 samples at a
  time, with that scenario's backend settings). ``target_latency`` is LoadGen's *expected*
  latency, not a bound: LoadGen generates queries for ``2 x min_duration`` at that expected
  latency, ``2 x min_duration / target_latency`` of them (at least ``min_query_count``), and
  ends the run as soon as ``min_duration`` and ``min_query_count`` are both met, so a run
  lasts ``max(min_duration, min_query_count x latency)`` whatever the margin, and is INVALID
  only when the generated queries run out first: the margin lets the real run be up to 4x
  faster than the probe. A scenario whose ``min_query_count`` (what LoadGen's early
  stopping needs at the conf's percentile) would take longer than ``MAX_STREAM_RUN_S`` at
  the measured latency is reported as not runnable here, like a Server bound.
* A machine whose fastest single query already exceeds the latency bound cannot hold it at
  any load: there is no Server ``target_qps``; ``mlperf-bnas size --scenario Server``
  prints one line naming the bound and the measured latency and exits with
  ``EXIT_INFEASIBLE`` (``run.sh`` then skips that benchmark's Server runs).

A generated conf is reused only while it is current: same machine (CPU model, sockets,
cores, threads, usable CPUs), same base conf, same built model, same backend settings.
Otherwise it is re-sized, and the earlier one is moved to ``archive/`` (never deleted: the
runs made with it still match it when packaged). A conf the user wrote is never written.

With a conf the user wrote (``USER_CONF``), ``mlperf-bnas size --check`` measures the same
way (cached per machine, model and setting) and warns before the run when its
``target_qps`` is out of this machine's reach, with the measured figure; a conf generated
on another machine (``mlperf-bnas tune`` and ``size`` record the machine in it) stops the
run with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.config import BenchmarkConfig
from mlperf_bnas.enums import Precision, Scenario
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import sha256_file, write_atomic
from mlperf_bnas.loadgen import userconf
from mlperf_bnas.loadgen.userconf import MARKER as TUNE_MARKER
from mlperf_bnas.loadgen.logs import DetailLog
from mlperf_bnas.loadgen.userconf import override_lines
from mlperf_bnas.paths import BUILD_RECORD, OutputPaths
from mlperf_bnas.submission.rules import LATENCY_CONSTRAINT_NS, MIN_DURATION_MS, MLPERF_MODEL, \
    OFFLINE_MIN_SAMPLES_PER_QUERY
from mlperf_bnas.submission.system import machine_identity
from mlperf_bnas.loadgen.sut import SAMPLES_PER_QUERY
from mlperf_bnas.tune.queueing import max_server_qps

log = logging.getLogger(__name__)

MARKER = "# Generated by mlperf-bnas size"
GENERATED_BY = "mlperf-bnas size"
#: `mlperf-bnas size --scenario S` exits with this when S cannot be run on this machine.
EXIT_INFEASIBLE = 3
#: `mlperf-bnas run` exits with this when a run made with a generated conf was INVALID only
#: because the machine ran faster than the conf was sized for (``faster_than_sized``): the run
#: scripts then re-size (fresh probes, ``mlperf-bnas size --force``) and run it again, once.
EXIT_RESIZE = 4
#: Offline target_qps = this x the measured throughput for a smoke run (see the module docstring).
OFFLINE_MARGIN = 2.0
#: ... and this for a run at the real rules' minimum duration (MIN_DURATION_MS or longer).
OFFLINE_MARGIN_FULL = 1.25
#: Server target_qps = this x the analytic maximum at the latency bound.
SERVER_FRACTION = 0.5
#: The analytic maximum is searched up to this utilisation (see ``queueing.max_server_qps``).
MAX_UTILISATION = 0.9
#: A Server target so low that the conf's min_query_count would take longer than this is not
#: a runnable smoke setting either: reported like a bound no load can meet.
MAX_SERVER_RUN_S = 1800.0
#: SingleStream / MultiStream target_latency = the measured median query latency / this.
STREAM_MARGIN = 2.0
#: A smoke SingleStream / MultiStream run longer than this at the measured latency is not run.
MAX_STREAM_RUN_S = 1800.0
#: Queries of the SingleStream / MultiStream latency probes (LoadGen runs at least this many; a
#: MultiStream query is 8 samples, so fewer of them give its median as well).
STREAM_PROBE_QUERIES = {"SingleStream": 16, "MultiStream": 4}
#: Length of each timed throughput probe, and the latency probe's minimum duration.
PROBE_SECONDS = 3.0
LATENCY_PROBE_MS = 1500
LATENCY_PROBE_QUERIES = 8
#: LoadGen's own slack factor on the Offline query size (test_settings_internal.cc, kSlack).
LOADGEN_OFFLINE_SLACK = 1.1
#: SingleStream / MultiStream: LoadGen generates queries for this x min_duration at the expected
#: latency (loadgen.cc, GenerateQueries: ``duration_multiplier``, 2 for every scenario but
#: Server) and stops issuing once min_query_count and min_duration are met
#: (issue_query_controller.cc: "Ending naturally").
LOADGEN_STREAM_GENERATION = 2.0
_MACHINE_LINE = "# mlperf-bnas machine "
_KEY_LINE = "# mlperf-bnas sizing-key "
_BASE_BEGIN = "# ---- base conf (copied from {}) ----"
_BASE_END = "# ---- end of base conf ----"
_SCENARIOS = tuple(Scenario)
#: What the generated conf sizes: every scenario, so each run script finds its numbers there.
SIZED_SCENARIOS = _SCENARIOS
_STREAMS = ("SingleStream", "MultiStream")
#: LoadGen's own min_query_count where mlperf.conf sets none (TestSettings, loadgen/test_settings.h).
LOADGEN_MIN_QUERY_COUNT = 100
#: LoadGen's embedded mlperf.conf (v5.1) values the stream scenarios fall back to.
_STREAM_DEFAULTS = {"SingleStream": {"target_latency": 10.0, "min_query_count": LOADGEN_MIN_QUERY_COUNT,
                                     "percentile": 90.0,
                                     "samples_per_query": SAMPLES_PER_QUERY["SingleStream"]},
                    "MultiStream": {"target_latency": 80.0, "min_query_count": 662, "percentile": 99.0,
                                    "samples_per_query": SAMPLES_PER_QUERY["MultiStream"]}}
_STREAM_MODEL_DEFAULTS = {("retinanet", "MultiStream"): {"target_latency": 528.0}}


# --------------------------------------------------------------------------- the machine
@dataclass(frozen=True)
class Machine:
    cpu_model: str
    sockets: int
    cores: int
    threads: int
    usable_cpus: int

    @classmethod
    def this(cls) -> "Machine":
        return cls(**machine_identity())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Machine | None":
        try:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError):
            return None

    def describe(self) -> str:
        return (f"{self.cpu_model}, {self.sockets} socket(s) x {self.cores // max(1, self.sockets)} core(s), "
                f"{self.threads} hardware thread(s), {self.usable_cpus} usable CPU(s)")

    def differences(self, other: "Machine") -> list[str]:
        labels = {"cpu_model": "CPU model", "sockets": "sockets", "cores": "physical cores",
                  "threads": "hardware threads", "usable_cpus": "usable CPUs"}
        return [f"{labels[f.name]} {getattr(other, f.name)!r} there, {getattr(self, f.name)!r} here"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def machine_line(machine: Machine) -> str:
    """The comment line that records, in a generated conf, the machine its numbers were measured on."""
    return _MACHINE_LINE + json.dumps(dataclasses.asdict(machine), sort_keys=True)


def _json_comment(conf: Path, prefix: str) -> dict[str, Any] | None:
    try:
        lines = conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            try:
                value = json.loads(line[len(prefix):])
            except json.JSONDecodeError:
                raise UserError(f"{conf}: damaged line {line[:60]!r}; delete the file (it is generated) "
                                "or re-create it") from None
            return value if isinstance(value, dict) else None
    return None


def conf_machine(conf: Path) -> Machine | None:
    """The machine a generated conf (``mlperf-bnas size`` or ``tune``) was measured on; None for any other conf."""
    data = _json_comment(conf, _MACHINE_LINE)
    return Machine.from_dict(data) if data else None


def is_sized_conf(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(MARKER)
    except OSError:
        return False


def check_conf_machine(conf: Path, benchmark_dir: Path) -> None:
    """Stop when ``conf`` was generated on another machine: its target_qps were measured there."""
    recorded = conf_machine(conf)
    if recorded is None:
        return
    here = Machine.this()
    diff = here.differences(recorded)
    if diff:
        tool = "mlperf-bnas tune" if _first_line(conf).startswith(TUNE_MARKER) else "mlperf-bnas size"
        raise UserError(
            f"{conf}: generated by {tool} on another machine ({'; '.join(diff)}), so its target_qps values were "
            f"measured there, not here. Re-run {benchmark_dir}/tune.sh on this machine (or unset USER_CONF for the "
            "embedded default, which sizes itself here); to use the file anyway, copy it and delete its "
            f"'{_MACHINE_LINE.strip()}' line")


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except OSError:
        return ""


# --------------------------------------------------------------------------- conf settings
@dataclass(frozen=True)
class ConfSettings:
    """The LoadGen settings of one scenario that sizing needs: the conf's, else LoadGen's defaults."""

    target_qps: float | None
    min_duration_ms: float
    min_query_count: int
    target_latency_ms: float | None          # Server: the bound; SingleStream/MultiStream: the expected latency
    latency_percentile: float                # 0.99 for 99
    samples_per_query: int = 1               # MultiStream: 8

    @classmethod
    def read(cls, conf: Path, model: str, scenario: str) -> "ConfSettings":
        raw = userconf.read(conf).settings(model, scenario)     # as LoadGen resolves them

        def number(key: str, default: float | None) -> float | None:
            if key not in raw:
                return default
            try:
                return float(raw[key])
            except ValueError:
                raise UserError(f"{conf}: {model}.{scenario}.{key} = {raw[key]!r} is not a number; fix the line") from None

        mlperf = MLPERF_MODEL.get(model)
        if scenario in _STREAMS:
            d = {**_STREAM_DEFAULTS[scenario], **_STREAM_MODEL_DEFAULTS.get((mlperf, scenario), {})}
            pct = number("target_latency_percentile", d["percentile"])
            return cls(target_qps=None, min_duration_ms=number("min_duration", float(MIN_DURATION_MS)),
                       min_query_count=int(number("min_query_count", d["min_query_count"])),
                       target_latency_ms=number("target_latency", d["target_latency"]),
                       latency_percentile=pct / 100.0 if pct > 1 else pct,
                       samples_per_query=int(number("samples_per_query", d["samples_per_query"])))
        # LoadGen's embedded mlperf.conf defaults (loadgen/mlperf.conf of the v5.1 release).
        default_latency = LATENCY_CONSTRAINT_NS.get(mlperf, {}).get("Server", 10_000_000) / 1e6
        default_mqc = OFFLINE_MIN_SAMPLES_PER_QUERY if scenario == "Offline" and mlperf else LOADGEN_MIN_QUERY_COUNT
        default_pct = 99.0 if scenario == "Server" else 90.0
        pct = number("target_latency_percentile", default_pct)
        return cls(target_qps=number("target_qps", None),
                   min_duration_ms=number("min_duration", float(MIN_DURATION_MS)),
                   min_query_count=int(number("min_query_count", default_mqc)),
                   target_latency_ms=number("target_latency", default_latency) if scenario == "Server" else None,
                   latency_percentile=pct / 100.0 if pct > 1 else pct)


# --------------------------------------------------------------------------- measurements
@dataclass
class Probe:
    setting: str                    # which scenario's backend settings ("Offline" / "Server")
    kind: str                       # "warm-up", "throughput" or "latency"
    samples: int
    wall_s: float
    samples_per_s: float | None
    latency_ms: dict[str, float]
    log_dir: str


@dataclass
class Measured:
    """One scenario's backend settings, measured on this machine."""

    options: dict[str, Any]
    samples_per_s: float                     # best throughput probe
    workers: int                             # backend.parallelism
    latency_ms: dict[str, float] | None      # one query at a time (Server: SingleStream probe; SingleStream /
                                             # MultiStream: a probe of the scenario itself, per query)
    describe: dict[str, Any]                 # backend.describe()
    probes: list[Probe] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measured":
        probes = [Probe(**p) for p in data.get("probes", [])]
        return cls(**{**{k: v for k, v in data.items() if k != "probes"}, "probes": probes})


def _significant(value: float, digits: int = 3) -> float:
    if value <= 0:
        return 0.0
    return round(value, max(0, digits - 1 - int(math.floor(math.log10(value)))))


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def measure(cfgs: dict[str, BenchmarkConfig], paths: OutputPaths, data_dir: str | None, checkpoint: str | None,
            latency_for: set[str], work_dir: Path) -> dict[str, Measured]:
    """Probe each scenario's backend settings with short LoadGen runs in this process.

    Scenarios with identical backend settings share one backend and one set of probes.
    """
    import mlperf_loadgen as lg

    from mlperf_bnas import pipeline
    from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS
    from mlperf_bnas.loadgen.runner import RunRequest, run_test
    from mlperf_bnas.loadgen.logs import read_detail_log
    from mlperf_bnas.loadgen.sut import make_sut

    groups: dict[str, list[str]] = {}
    for scenario, cfg in cfgs.items():
        groups.setdefault(_options_key(cfg.backend_options), []).append(scenario)
    results: dict[str, Measured] = {}
    counter = [0]
    for scenarios in groups.values():
        cfg = cfgs[scenarios[0]]
        setting = "/".join(scenarios)
        started = time.monotonic()
        sut, qsl, backend = pipeline.open_sut(cfg, "Offline", paths, "int8", data_dir, checkpoint)
        print(f"size: {cfg.benchmark} {setting} settings: {backend.describe()} (model loaded in "
              f"{time.monotonic() - started:.1f}s)", flush=True)
        postprocess = POSTPROCESSORS.get(cfg.postprocess)
        probes: list[Probe] = []

        def run(kind: str, settings, probe_sut, latency_scenario: str = "SingleStream") -> Probe:
            counter[0] += 1
            label = f"{kind}-{latency_scenario}" if kind == "latency" else kind
            log_dir = work_dir / f"probe_{counter[0]:02d}_{setting.replace('/', '-')}_{label}"
            req = RunRequest(loadgen_model=cfg.loadgen_model,
                             scenario=latency_scenario if kind == "latency" else "Offline", mode="performance",
                             user_conf=log_dir / "none", log_dir=log_dir, archive_dir=work_dir / "archive")
            t0 = time.monotonic()
            run_test(req, probe_sut, qsl, settings)
            detail = read_detail_log(log_dir / "mlperf_log_detail.txt")
            lat = {name: detail.get(key) / 1e6 for name, key in
                   (("min", "result_min_latency_ns"), ("p50", "result_50.00_percentile_latency_ns"),
                    ("p90", "result_90.00_percentile_latency_ns"))
                   if isinstance(detail.get(key), (int, float))}
            if kind == "latency" and detail.get("effective_scenario") == "MultiStream":
                # A MultiStream query's latency is its slowest sample's: the per-query figures.
                lat = {name: detail.get(key) / 1e6 for name, key in
                       (("min", "result_min_query_latency_ns"), ("p50", "result_50.00_percentile_per_query_latency_ns"),
                        ("p90", "result_90.00_percentile_per_query_latency_ns"))
                       if isinstance(detail.get(key), (int, float))}
            rate = detail.get("result_samples_per_second") if kind != "latency" else None
            count = detail.get("result_query_count") if kind == "latency" else detail.get("effective_samples_per_query")
            probe = Probe(setting, kind, int(count or 0), round(time.monotonic() - t0, 2),
                          float(rate) if isinstance(rate, (int, float)) else None,
                          {k: round(v, 3) for k, v in lat.items()}, str(log_dir))
            shown = (f"{probe.samples_per_s:.2f} samples/s" if probe.samples_per_s is not None else
                     "latency " + ", ".join(f"{k} {v:.1f} ms" for k, v in probe.latency_ms.items()))
            print(f"  probe #{counter[0]} {setting} {kind}: {probe.samples} sample(s), {shown} [{probe.wall_s:.1f}s]",
                  flush=True)
            probes.append(probe)
            return probe

        def offline_settings(samples: int):
            s = lg.TestSettings()
            s.scenario = lg.TestScenario.Offline
            s.mode = lg.TestMode.PerformanceOnly
            # LoadGen issues max(min_query_count, 1.1 x expected_qps x min_duration) samples: exactly `samples`.
            s.offline_expected_qps = 1
            s.min_duration_ms = 1
            s.min_query_count = samples
            return s

        try:
            first = max(4, 2 * backend.batch_size * max(1, backend.parallelism))
            warm = run("warm-up", offline_settings(first), sut)
            estimate = warm.samples_per_s or 1.0
            timed = max(first, int(math.ceil(estimate * PROBE_SECONDS)))
            rates = [warm.samples_per_s or 0.0]
            for _ in range(2):
                p = run("throughput", offline_settings(timed), make_sut("Offline", backend, qsl, postprocess))
                rates.append(p.samples_per_s or 0.0)
            best = max(rates)
            if best <= 0:
                raise UserError(f"{cfg.benchmark}: the sizing probes measured no throughput; see {work_dir}")
            # One query at a time: MultiStream's own queries of 8 where MultiStream is sized, a
            # SingleStream probe (one sample alone) for SingleStream and Server.
            latency: dict[str, dict[str, float]] = {}
            for wanted in ("SingleStream", "MultiStream"):
                users = [x for x in scenarios if x in latency_for and (x == "MultiStream") == (wanted == "MultiStream")]
                if not users:
                    continue
                s = lg.TestSettings()
                s.mode = lg.TestMode.PerformanceOnly
                s.min_duration_ms = LATENCY_PROBE_MS
                if wanted == "MultiStream":
                    s.scenario = lg.TestScenario.MultiStream
                    s.multi_stream_samples_per_query = _STREAM_DEFAULTS["MultiStream"]["samples_per_query"]
                    s.multi_stream_expected_latency_ns = int(1e9 / best * s.multi_stream_samples_per_query)
                    s.min_query_count = STREAM_PROBE_QUERIES["MultiStream"]
                else:
                    s.scenario = lg.TestScenario.SingleStream
                    s.single_stream_expected_latency_ns = int(1e9 / best * max(1, backend.parallelism))
                    s.min_query_count = (STREAM_PROBE_QUERIES["SingleStream"] if "SingleStream" in users
                                         else LATENCY_PROBE_QUERIES)
                probe_sut = make_sut("Server" if users == ["Server"] else wanted, backend, qsl, postprocess)
                figures = run("latency", s, probe_sut, wanted).latency_ms
                for user in users:
                    latency[user] = figures
            for scenario in scenarios:
                results[scenario] = Measured(dict(cfg.backend_options), round(best, 4), max(1, backend.parallelism),
                                             latency.get(scenario), backend.describe(), probes)
        finally:
            backend.close()
    return results


# --------------------------------------------------------------------------- sizing
@dataclass
class OfflineSizing:
    target_qps: float
    measured_samples_per_s: float
    query_samples: int
    expected_s: float
    why: str


@dataclass
class ServerSizing:
    target_qps: float | None                 # None: not feasible at this bound
    bound_ms: float
    percentile: float
    analytic_max_qps: float
    service_ms: float
    workers: int
    capacity_samples_per_s: float
    latency_ms: dict[str, float]
    expected_s: float | None
    why: str
    infeasible: str | None = None            # the one line when no load is feasible


@dataclass
class StreamSizing:
    """SingleStream / MultiStream: the expected latency LoadGen pre-generates its queries with."""
    target_latency_ms: float | None          # None: not runnable here at smoke size
    measured_latency_ms: dict[str, float]
    queries: int
    expected_s: float | None
    why: str
    infeasible: str | None = None


def size_stream(m: Measured, settings: ConfSettings, scenario: str, model: str, benchmark_dir: Path,
                machine: Machine) -> StreamSizing:
    latency = m.latency_ms or {}
    p50 = latency.get("p50")
    if not p50 or p50 <= 0:
        raise UserError(f"{model} {scenario}: the latency probe measured no query latency; see the probe logs")
    target = _significant(p50 / STREAM_MARGIN)
    queries = max(settings.min_query_count, math.ceil(LOADGEN_STREAM_GENERATION * settings.min_duration_ms / target))
    # LoadGen stops issuing once both minimums are met: the generated surplus is never run.
    expected = max(settings.min_duration_ms / 1000.0, settings.min_query_count * p50 / 1000.0)
    per = f"{settings.samples_per_query} samples" if settings.samples_per_query > 1 else "1 sample"
    if expected > MAX_STREAM_RUN_S:
        line = (f"{model} {scenario}: not run: its {settings.min_query_count} queries (the minimum LoadGen's early "
                f"stopping needs at the {settings.latency_percentile * 100:g}th percentile) take {p50:.3g} ms each "
                f"({per}; median of the {scenario} probe on {machine.cpu_model}, {machine.cores} core(s)), "
                f"{expected / 60:.0f} min in all. Fix: a faster machine or {scenario} setting (config.yaml "
                f"scenarios.{scenario}), or a USER_CONF with a lower {model}.{scenario}.target_latency_percentile "
                "and min_query_count (a smoke run only)")
        return StreamSizing(None, latency, queries, round(expected, 1), line, line)
    why = (f"the {scenario} probe's median query latency {p50:.4g} ms ({per} a query, the {scenario} settings) / "
           f"{STREAM_MARGIN:g}: LoadGen generates {queries} queries, ~{queries * p50 / 1000:.0f} s at the "
           f"measured latency, and ends the run once min_duration {settings.min_duration_ms / 1000:g} s and "
           f"min_query_count {settings.min_query_count} are met (~{expected:.0f} s); they run out first only if "
           f"the run is {LOADGEN_STREAM_GENERATION * STREAM_MARGIN:.1f}x faster than the probe")
    return StreamSizing(target, latency, queries, round(expected, 1), why)


def offline_margin(min_duration_ms: float) -> float:
    """The Offline sizing margin for a conf with this min_duration (see the module docstring)."""
    return OFFLINE_MARGIN_FULL if min_duration_ms >= MIN_DURATION_MS else OFFLINE_MARGIN


def size_offline(m: Measured, settings: ConfSettings) -> OfflineSizing:
    margin = offline_margin(settings.min_duration_ms)
    target = _significant(margin * m.samples_per_s)
    samples = max(settings.min_query_count, math.ceil(LOADGEN_OFFLINE_SLACK * target * settings.min_duration_ms / 1000))
    expected = samples / m.samples_per_s
    why = (f"{margin:g} x {m.samples_per_s:.4g} samples/s measured (best of the LoadGen Offline probes "
           f"with the Offline settings), so LoadGen's one query ({samples} samples) lasts ~{expected:.0f} s at the "
           f"measured rate, >= min_duration {settings.min_duration_ms / 1000:g} s unless the run is "
           f"{LOADGEN_OFFLINE_SLACK * margin:.3g}x faster than the probe")
    return OfflineSizing(target, m.samples_per_s, samples, round(expected, 1), why)


def server_limits(m: Measured, settings: ConfSettings) -> tuple[float, float, int, float]:
    """(analytic max QPS at the bound, service ms, servers, percentile used) for these settings."""
    latency = m.latency_ms or {}
    p50 = latency.get("p50") or 1000.0 * m.workers / m.samples_per_s
    workers = max(1, min(m.workers, round(m.samples_per_s * p50 / 1000.0))) if m.workers > 1 else 1
    service_ms = max(p50, 1000.0 * workers / m.samples_per_s)
    # LoadGen's early stopping judges the percentile from a few hundred queries with a
    # confidence margin: aim at a stricter percentile than the bound's.
    percentile = 1.0 - (1.0 - settings.latency_percentile) / 2.0
    bound_ms = settings.target_latency_ms or 0.0
    qps = (max_server_qps(service_ms / 1000.0, workers, bound_ms / 1000.0, percentile, rel_tol=0.02,
                          max_utilisation=MAX_UTILISATION, grid_points_per_service=20)
           if bound_ms > service_ms else 0.0)
    return qps, service_ms, workers, percentile


def infeasible_line(model: str, benchmark_dir: Path, settings: ConfSettings, latency: dict[str, float],
                    service_ms: float, machine: Machine) -> str:
    fastest = latency.get("min", service_ms)
    median = latency.get("p50", service_ms)
    pct = f"{settings.latency_percentile * 100:g}th percentile"
    return (f"{model} Server: not run: this machine cannot meet the {settings.target_latency_ms:g} ms latency bound "
            f"({pct}) at any load: one query alone takes {median:.1f} ms (fastest {fastest:.1f} ms; "
            f"SingleStream probe on {machine.cpu_model}, {machine.cores} core(s)). Fix: a faster machine or Server "
            f"setting ({benchmark_dir}/tune.sh --scenario Server tries config.yaml's tuning.Server grid), or a "
            f"USER_CONF with a larger {model}.Server.target_latency")


def size_server(m: Measured, settings: ConfSettings, model: str, benchmark_dir: Path, machine: Machine) -> ServerSizing:
    qps, service_ms, workers, percentile = server_limits(m, settings)
    latency = m.latency_ms or {}
    bound = settings.target_latency_ms or 0.0
    common = dict(bound_ms=bound, percentile=settings.latency_percentile, analytic_max_qps=round(qps, 3),
                  service_ms=round(service_ms, 3), workers=workers, capacity_samples_per_s=m.samples_per_s,
                  latency_ms=latency)
    fastest = latency.get("min", service_ms)
    if qps <= 0 or fastest >= bound:
        line = infeasible_line(model, benchmark_dir, settings, latency, service_ms, machine)
        return ServerSizing(target_qps=None, expected_s=None, why=line, infeasible=line, **common)
    target = _significant(SERVER_FRACTION * qps)
    expected = max(settings.min_duration_ms / 1000.0, settings.min_query_count / target)
    if expected > MAX_SERVER_RUN_S:
        line = (f"{model} Server: not run: at the {target:.3g} QPS this machine holds at the {bound:g} ms latency "
                f"bound ({service_ms:.3g} ms per query measured on {machine.cpu_model}, {machine.cores} core(s)), "
                f"its {settings.min_query_count} queries would take {expected / 3600:.1f} h. Fix: a faster machine "
                f"or Server setting ({benchmark_dir}/tune.sh --scenario Server), or a USER_CONF with a larger "
                f"{model}.Server.target_latency")
        return ServerSizing(target_qps=None, expected_s=round(expected, 1), why=line, infeasible=line, **common)
    why = (f"{SERVER_FRACTION:g} x {qps:.4g} QPS, the M/D/{workers} maximum with p{percentile * 100:g} latency <= "
           f"{bound:g} ms (LoadGen's early stopping needs the tail inside the bound) for {service_ms:.3g} ms per "
           f"query (SingleStream probe median {latency.get('p50', float('nan')):.3g} ms; capacity "
           f"{m.samples_per_s:.4g} samples/s with the Server settings); ~{expected:.0f} s for "
           f"{settings.min_query_count} queries")
    return ServerSizing(target_qps=target, expected_s=round(expected, 1), why=why, **common)


# --------------------------------------------------------------------------- the generated conf
def model_id(paths: OutputPaths) -> str:
    """The built INT8 model, by its build record (a rebuild changes it); "none" without one."""
    record = paths.model_dir(Precision.INT8) / BUILD_RECORD
    return sha256_file(record) if record.is_file() else "none"


def sizing_key(machine: Machine, base_conf: Path, model: str, cfgs: dict[str, BenchmarkConfig]) -> dict[str, Any]:
    return {"version": 1, "machine": dataclasses.asdict(machine), "base_conf_sha256": sha256_file(base_conf),
            "model": model, "backend_options": {s: json.loads(_options_key(c.backend_options)) for s, c in cfgs.items()}}


def key_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    if not old:
        return ["no sizing record"]
    out = []
    if old.get("version") != new["version"]:
        out.append("sizing method changed")
    machine_old = Machine.from_dict(old.get("machine") or {})
    if machine_old is None:
        out.append("no machine record")
    else:
        diff = Machine.from_dict(new["machine"]).differences(machine_old)
        if diff:
            out.append("measured on another machine (" + "; ".join(diff) + ")")
    if old.get("base_conf_sha256") != new["base_conf_sha256"]:
        out.append("the base conf changed")
    if old.get("model") != new["model"]:
        out.append("the model was rebuilt")
    if old.get("backend_options") != new["backend_options"]:
        out.append("the backend settings changed")
    return out


def conf_text(base_path: Path, base: str, model: str, header: list[str], machine: Machine, key: dict[str, Any],
              targets: dict[str, dict[str, float]]) -> str:
    out = [MARKER + ": LoadGen settings measured on this machine for the embedded default; "
           "re-sizing replaces this file.\n",
           "# To change a value, copy this file, edit the copy and set USER_CONF to it.\n"]
    out += [f"# {line}\n" for line in header]
    out.append(machine_line(machine) + "\n")
    out.append(_KEY_LINE + json.dumps(key, sort_keys=True) + "\n")
    out.append(_BASE_BEGIN.format(base_path) + "\n")
    out.append(base if base.endswith("\n") or not base else base + "\n")
    out.append(_BASE_END + "\n")
    for scenario, values in targets.items():
        out.append(override_lines(model, scenario, values))
    return "".join(out)


@dataclass
class SizeRequest:
    cfgs: dict[str, BenchmarkConfig]        # scenario -> resolved config (backend settings of that run)
    paths: OutputPaths
    base_conf: Path
    data_dir: str | None = None
    checkpoint: str | None = None
    force: bool = False


def record_path(conf: Path) -> Path:
    return conf.with_suffix(".json")


def read_record(conf: Path) -> dict[str, Any] | None:
    path = record_path(conf)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("generated_by") == GENERATED_BY else None


def _archive(paths: OutputPaths, files: list[Path]) -> Path | None:
    present = [f for f in files if f.exists()]
    if not present:
        return None
    dest = paths.sizing_archive_dir / time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while dest.exists():
        dest = paths.sizing_archive_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
        n += 1
    dest.mkdir(parents=True)
    for f in present:
        shutil.move(str(f), str(dest / f.name))
    return dest


def ensure_sized(req: SizeRequest) -> tuple[Path, dict[str, Any], bool]:
    """The generated conf for ``req`` (sized now if missing or stale). Returns (conf, record, sized_now)."""
    conf = req.paths.sized_conf
    if conf.exists() and not is_sized_conf(conf):
        raise UserError(f"{conf}: exists and was not written by mlperf-bnas size (no '{MARKER}' first line); "
                        "move it away: the embedded default writes its sized conf there")
    any_cfg = next(iter(req.cfgs.values()))
    machine = Machine.this()
    key = sizing_key(machine, req.base_conf, model_id(req.paths), req.cfgs)
    record = read_record(conf) if conf.is_file() else None
    reasons = key_differences(record.get("key") if record else None, key) if conf.is_file() else ["not sized yet"]
    if not reasons and not req.force:
        return conf, record, False
    if conf.is_file():
        print(f"size: re-sizing {conf.name}: {'; '.join(reasons) if reasons else 'forced'}", flush=True)
    else:
        print(f"size: no sized settings for {any_cfg.benchmark} on this machine yet: measuring "
              f"({machine.describe()})", flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work_dir = req.paths.sizing_probe_dir(stamp)
    model = any_cfg.loadgen_model
    settings = {s: ConfSettings.read(req.base_conf, model, s) for s in req.cfgs}
    measured = measure(req.cfgs, req.paths, req.data_dir, req.checkpoint, {"Server", *_STREAMS} & set(req.cfgs),
                       work_dir)
    bench_dir = any_cfg.benchmark_dir
    sized: dict[str, Any] = {}
    targets: dict[str, dict[str, float]] = {}
    header = [f"benchmark: {any_cfg.benchmark}  system: {req.paths.system}  sized: {time.strftime('%Y-%m-%d %H:%M:%S')}",
              f"machine: {machine.describe()}",
              f"evidence (every probe): {record_path(conf).name}; probe logs: {work_dir}"]
    for scenario in _SCENARIOS:
        if scenario not in req.cfgs:
            continue
        m = measured[scenario]
        if scenario == "Offline":
            result = size_offline(m, settings[scenario])
        elif scenario == "Server":
            result = size_server(m, settings[scenario], model, bench_dir, machine)
        else:
            result = size_stream(m, settings[scenario], scenario, model, bench_dir, machine)
        sized[scenario] = {**dataclasses.asdict(result), "measured": m.as_dict(),
                           "settings": dataclasses.asdict(settings[scenario])}
        key_name, value = (("target_latency", result.target_latency_ms) if scenario in _STREAMS
                           else ("target_qps", result.target_qps))
        if value is not None:
            targets[scenario] = {key_name: value}
            header.append(f"{scenario} {key_name} = {value:g}: {result.why}")
        else:
            header.append(f"{scenario}: NOT SIZED: {result.infeasible}")
    base = req.base_conf.read_text(encoding="utf-8", errors="replace")
    text = conf_text(req.base_conf.resolve(), base, model, header, machine, key, targets)
    new_record = {"generated_by": GENERATED_BY, "benchmark": any_cfg.benchmark, "loadgen_model": model,
                  "system": req.paths.system, "sized_at": stamp, "machine": dataclasses.asdict(machine),
                  "key": key, "base_conf": str(req.base_conf.resolve()), "conf": str(conf),
                  "method": {"offline_margin": OFFLINE_MARGIN, "offline_margin_full_rules": OFFLINE_MARGIN_FULL,
                             "server_fraction": SERVER_FRACTION,
                             "stream_margin": STREAM_MARGIN,
                             "probe_seconds": PROBE_SECONDS, "latency_probe_ms": LATENCY_PROBE_MS},
                  "scenarios": sized, "probe_dir": str(work_dir)}
    archived = _archive(req.paths, [conf, record_path(conf)])
    if archived:
        print(f"size: the earlier sized conf moved to {archived}", flush=True)
    write_atomic(record_path(conf), json.dumps(new_record, indent=1) + "\n")
    write_atomic(conf, text)
    print_sizing(new_record)
    return conf, new_record, True


def print_sizing(record: dict[str, Any]) -> None:
    print(f"size: {record['benchmark']} on {Machine.from_dict(record['machine']).describe()} "
          f"(sized {record['sized_at']}): {record['conf']}", flush=True)
    for scenario, result in record["scenarios"].items():
        if result.get("target_qps") is not None:
            print(f"  {scenario}: target_qps {result['target_qps']:g} = {result['why']}", flush=True)
        elif result.get("target_latency_ms") is not None:
            print(f"  {scenario}: target_latency {result['target_latency_ms']:g} ms = {result['why']}", flush=True)
        else:
            print(f"  {scenario}: {result['infeasible']}", flush=True)


#: LoadGen's runtime error when a stream scenario's pre-generated queries end too early (loadgen.cc).
RAN_OUT_OF_QUERIES = "Ran out of generated queries"


def faster_than_sized(conf: Path, detail: DetailLog | None, scenario: str, failures: list[str]) -> str | None:
    """Why the run whose detail log is ``detail`` should be re-sized and made again, or None.

    Only for a conf ``size`` generated, and only when the run's one failed condition is
    ``Min duration satisfied``: the Offline query, or the pre-generated stream queries, ran out
    before ``min_duration`` because the machine is now faster than when it was probed (a
    neighbour stopped, the frequency rose) by more than the sizing margin. That is a fault of
    the sizing, not of the machine; fresh probes fix it. ``failures`` are the conditions the run
    failed (``explain``'s ``Failure.condition``), in LoadGen's words.
    """
    if scenario not in ("Offline", *_STREAMS) or not is_sized_conf(conf):
        return None
    # A stream scenario that runs out of pre-generated queries also logs LoadGen's runtime error
    # "Ran out of generated queries to issue before the minimum query count and test duration
    # were reached": the same cause, not another failure.
    ran_out = bool(detail and detail.errors) and all(
        RAN_OUT_OF_QUERIES in str(e.get("value")) for e in detail.errors)
    conditions = [f.split(":")[0].strip() for f in failures]
    conditions = [c for c in conditions if not (ran_out and c.startswith("LoadGen logged"))]
    if conditions != ["Min duration satisfied"]:
        return None
    sized = ((read_record(conf) or {}).get("scenarios") or {}).get(scenario) or {}
    if scenario == "Offline":
        probed, now = sized.get("measured_samples_per_s"), detail.get("result_samples_per_second") if detail else None
        speed = (f"{now:.4g} samples/s now, {probed:.4g} when sized" if isinstance(now, (int, float))
                 and isinstance(probed, (int, float)) else "")
    else:
        probed = (sized.get("measured_latency_ms") or {}).get("p50")
        # MultiStream was sized per query of 8 (its probe's per-query figures): compare like with like.
        key = ("result_50.00_percentile_per_query_latency_ns" if scenario == "MultiStream"
               else "result_50.00_percentile_latency_ns")
        now_ns = detail.get(key) if detail else None
        speed = (f"median query latency {now_ns / 1e6:.4g} ms now, {probed:.4g} ms when sized"
                 if isinstance(now_ns, (int, float)) and isinstance(probed, (int, float)) else "")
    return (f"{scenario} ran faster than {conf.name} was sized for" + (f" ({speed})" if speed else "") +
            f", beyond the sizing margin, so it ended before min_duration")


def infeasible(record: dict[str, Any], scenario: str) -> str | None:
    result = (record.get("scenarios") or {}).get(scenario) or {}
    return result.get("infeasible")


# --------------------------------------------------------------------------- a user's conf
def cached_measurement(paths: OutputPaths, cfgs: dict[str, BenchmarkConfig], data_dir: str | None,
                       checkpoint: str | None, latency_for: set[str]) -> dict[str, Measured]:
    """Measurements of these settings on this machine and model: from the cache when present, else probed now."""
    cache_path = paths.sizing_measurements
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    machine = Machine.this()
    model = model_id(paths)

    def key(cfg: BenchmarkConfig, scenario: str) -> str:
        return json.dumps({"machine": dataclasses.asdict(machine), "model": model,
                           "options": json.loads(_options_key(cfg.backend_options)),
                           "latency": scenario in latency_for}, sort_keys=True)

    out: dict[str, Measured] = {}
    missing: dict[str, BenchmarkConfig] = {}
    for scenario, cfg in cfgs.items():
        hit = cache.get(key(cfg, scenario))
        if hit:
            out[scenario] = Measured.from_dict(hit["measured"])
            print(f"size: using this machine's earlier measurement of the {scenario} settings "
                  f"({hit['at']}; {cache_path})", flush=True)
        else:
            missing[scenario] = cfg
    if missing:
        print(f"size: measuring this machine for the {', '.join(missing)} settings before the run "
              f"({machine.describe()})", flush=True)
        fresh = measure(missing, paths, data_dir, checkpoint, latency_for,
                        paths.sizing_probe_dir(time.strftime("%Y%m%d-%H%M%S")))
        for scenario, m in fresh.items():
            cache[key(cfgs[scenario], scenario)] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "measured": m.as_dict()}
            out[scenario] = m
        write_atomic(cache_path, json.dumps(cache, indent=1) + "\n")
    return out


def check_user_conf(conf: Path, cfg: BenchmarkConfig, scenario: str, m: Measured,
                    machine: Machine) -> tuple[list[str], str | None]:
    """(warnings, infeasible line) for running ``conf``'s ``scenario`` on this machine."""
    model = cfg.loadgen_model
    settings = ConfSettings.read(conf, model, scenario)
    bench = cfg.benchmark_dir
    warnings: list[str] = []
    if scenario in _STREAMS:
        p50 = (m.latency_ms or {}).get("p50")
        expected = settings.target_latency_ms or 0.0
        if p50 and expected > 0:
            queries = max(settings.min_query_count,
                          math.ceil(LOADGEN_STREAM_GENERATION * settings.min_duration_ms / expected))
            if queries * p50 < settings.min_duration_ms:
                warnings.append(
                    f"{conf}: {model}.{scenario}.target_latency = {expected:g} ms, but one query takes {p50:.3g} ms "
                    f"here ({scenario} probe median, {machine.cpu_model}): LoadGen's {queries} generated queries "
                    f"will end after ~{queries * p50 / 1000:.0f} s, before min_duration "
                    f"{settings.min_duration_ms / 1000:g} s, so the run will be INVALID. Set "
                    f"{model}.{scenario}.target_latency to at most {_significant(p50 / STREAM_MARGIN):g}")
        return warnings, None
    target = settings.target_qps if settings.target_qps is not None else 1.0   # LoadGen's default
    figure = f"this machine measured {m.samples_per_s:.4g} samples/s with the {scenario} settings ({machine.cpu_model})"
    if scenario == "Offline":
        samples = max(settings.min_query_count, math.ceil(LOADGEN_OFFLINE_SLACK * target * settings.min_duration_ms / 1000))
        expected = samples / m.samples_per_s
        duration = settings.min_duration_ms / 1000
        if expected < duration:
            warnings.append(
                f"{conf}: {model}.Offline.target_qps = {target:g}, but {figure}: LoadGen's query of {samples} samples "
                f"will take ~{expected:.0f} s, under min_duration {duration:g} s, so the run will be INVALID. Set "
                f"{model}.Offline.target_qps to at least {_significant(m.samples_per_s * 1.0):g} "
                f"(e.g. {_significant(offline_margin(settings.min_duration_ms) * m.samples_per_s):g}), or run "
                f"{bench}/tune.sh --scenario Offline")
        elif expected > 1.5 * duration:
            warnings.append(
                f"{conf}: {model}.Offline.target_qps = {target:g} is out of reach: {figure}, so LoadGen's query of "
                f"{samples} samples will take ~{expected / 60:.1f} min instead of ~{duration / 60:.1f} min (VALID, "
                f"only longer). Set it near {_significant(offline_margin(settings.min_duration_ms) * m.samples_per_s):g} "
                "or run "
                f"{bench}/tune.sh --scenario Offline")
        return warnings, None
    qps, service_ms, workers, percentile = server_limits(m, settings)
    latency = m.latency_ms or {}
    if qps <= 0 or latency.get("min", service_ms) >= (settings.target_latency_ms or 0):
        return warnings, infeasible_line(model, bench, settings, latency, service_ms, machine)
    if target > m.samples_per_s:
        warnings.append(
            f"{conf}: {model}.Server.target_qps = {target:g} is out of reach: {figure}, so no Server run can keep up "
            f"and this one will be INVALID. The M/D/{workers} estimate for the {settings.target_latency_ms:g} ms bound "
            f"is ~{qps:.3g} QPS; run {bench}/tune.sh --scenario Server for the highest VALID target")
    elif target > qps:
        warnings.append(
            f"{conf}: {model}.Server.target_qps = {target:g} is above what this machine holds at the "
            f"{settings.target_latency_ms:g} ms bound: ~{qps:.3g} QPS (M/D/{workers} estimate, p{percentile * 100:g}, "
            f"from {service_ms:.3g} ms per query measured and {m.samples_per_s:.4g} samples/s capacity, "
            f"{machine.cpu_model}); the run will likely be INVALID. Run {bench}/tune.sh --scenario Server")
    return warnings, None
