"""``mlperf-bnas tune``: search, then write ``user.<system>.tuned.conf`` and the evidence JSON.

Outputs (both carry a generated-by marker; a file without it is never replaced):

* ``<benchmark>/user.<system>.tuned.conf``: the user's conf plus the tuned ``target_qps`` per
  scenario and the chosen backend options (a comment line ``mlperf-bnas run`` reads).
  Run with ``USER_CONF=<that file>``; packaging then copies the conf that was run.
* ``<benchmark>/user.<system>.tuned.json``: every trial's settings and LoadGen figures,
  also copied to ``$OUTPUT_DIR/build/<benchmark>/tuning/<system>/tuning.json`` for the report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.backends import BACKENDS
from mlperf_bnas.config import BenchmarkConfig, check_options, load_config
from mlperf_bnas.errors import RunFailed, UserError
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.loadgen.userconf import base_conf_text, check_replaceable, tuned_conf_text
from mlperf_bnas.paths import OutputPaths, tuned_conf_path
from mlperf_bnas.tune.sizing import Machine, machine_line
from mlperf_bnas.tune.strategy import confirm, tune_offline, tune_server
from mlperf_bnas.tune.tuning_spec import SCENARIOS, parse_tuning
from mlperf_bnas.tune.trials import TrialRunner

GENERATED_BY = "mlperf-bnas tune"


@dataclass
class TuneRequest:
    benchmark_dir: Path
    output_dir: Path
    system: str
    user_conf: Path
    scenarios: tuple[str, ...] = SCENARIOS
    overrides: dict[str, Any] = field(default_factory=dict)     # --set KEY=VALUE, parsed
    set_args: list[str] = field(default_factory=list)           # the same, passed on to each run
    run_args: list[str] = field(default_factory=list)           # --data-dir / --checkpoint for each run
    conf_out: Path | None = None
    confirm: bool = False
    spec_overrides: dict[str, Any] = field(default_factory=dict)   # e.g. trial_duration_ms from the CLI


def _check_candidates(cfg: BenchmarkConfig, scenario: str, candidates: list[dict[str, Any]]) -> None:
    """Every candidate must be a valid set of backend options, and one the built model can run
    (same build-time options), before any trial starts."""
    backend_cls = BACKENDS.get(cfg.backend)
    where = f"{cfg.benchmark_dir / 'config.yaml'} tuning.{scenario}"
    built = backend_cls.build_identity(
        check_options("backend_options", dict(cfg.backend_options), backend_cls.Options, where))
    for candidate in candidates:
        options = check_options("backend_options", {**cfg.backend_options, **candidate}, backend_cls.Options, where)
        for key, value in backend_cls.build_identity(options).items():
            if value != built[key]:
                raise UserError(f"{where}.backend_options.{key}: {candidate.get(key, value)!r} cannot run: the "
                                f"{cfg.backend} backend builds the model for one {key} ({built[key]!r} here) and "
                                f"the tuner does not rebuild; leave {key} out of the grid, or build and tune each "
                                f"{key} separately")


def _load_existing(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("generated_by") != GENERATED_BY:
        raise UserError(f"{path}: exists and was not written by mlperf-bnas tune; move it away or "
                        "choose another file with --conf-out")
    return data


def tune(req: TuneRequest) -> dict[str, Any]:
    base_cfg = load_config(req.benchmark_dir, None, req.overrides)
    where = str(base_cfg.benchmark_dir / "config.yaml")
    spec = parse_tuning({**base_cfg.tuning, **req.spec_overrides}, where)
    conf_out = Path(req.conf_out) if req.conf_out else tuned_conf_path(base_cfg.benchmark_dir, req.system)
    json_out = conf_out.with_suffix(".json")
    # Check both outputs before spending minutes on trials.
    check_replaceable(conf_out)
    existing = _load_existing(json_out)
    base_conf = base_conf_text(req.user_conf)

    cfgs = {s: load_config(req.benchmark_dir, s, req.overrides) for s in req.scenarios}
    candidates = {s: spec.candidates(s) for s in req.scenarios}
    for scenario in req.scenarios:
        _check_candidates(cfgs[scenario], scenario, candidates[scenario])

    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = OutputPaths.of(base_cfg, req.output_dir, req.system)
    work_dir = paths.tuning_dir / stamp
    runner = TrialRunner(base_cfg.benchmark_dir, Path(req.output_dir).resolve(), req.system, base_cfg.loadgen_model,
                         base_conf, work_dir,
                         extra_args=[*req.run_args, *[a for s in req.set_args for a in ("--set", s)]],
                         timeout_s=max(600.0, spec.trial_duration_ms / 1000 * 60))
    n_grid = sum(len(c) for c in candidates.values())
    print(f"tune: {base_cfg.benchmark} on {req.system}: {', '.join(req.scenarios)}; {n_grid} candidate setting(s), "
          f"{spec.trial_duration_ms} ms trials; trial logs in {work_dir}", flush=True)

    results: dict[str, dict[str, Any]] = dict(existing.get("scenarios", {}))
    failed: dict[str, dict[str, Any]] = {}     # searches of this run that found nothing, with their trials
    machine = Machine.this()
    # The machine the trials ran on: a run with this conf elsewhere stops and says so
    # (mlperf-bnas size, before each run), since its target_qps were measured here.
    header = [f"benchmark: {base_cfg.benchmark}  system: {req.system}  updated: {stamp}",
              f"machine: {machine.describe()}",
              f"evidence (every trial): {json_out.name}",
              machine_line(machine)[2:]]

    def save() -> dict[str, Any]:
        """Write the conf and the evidence for what is tuned so far (each scenario as it finishes)."""
        trials = [t.as_dict() for t in runner.trials]
        for scenario in req.scenarios:
            if scenario in results and results[scenario].get("tuned_at") == stamp:
                # Every trial of the search (probes, losing candidates), not only the choice's evidence.
                wanted = set(results[scenario]["search_trials"])
                results[scenario]["trial_records"] = [t for t in trials if t["number"] in wanted]
        record = {
            "generated_by": GENERATED_BY, "benchmark": base_cfg.benchmark, "loadgen_model": base_cfg.loadgen_model,
            "system": req.system, "backend": base_cfg.backend, "benchmark_dir": str(base_cfg.benchmark_dir),
            "base_user_conf": str(Path(req.user_conf).resolve()),
            "tuned_conf": str(conf_out.resolve()), "updated": stamp, "trial_dir": str(work_dir),
            "spec": dataclasses.asdict(spec), "scenarios": results,
        }
        if failed:
            record["failed_searches"] = failed
        if "Offline" in results and "Server" in results and results["Offline"].get("samples_per_s"):
            record["server_offline_efficiency"] = results["Server"]["target_qps"] / results["Offline"]["samples_per_s"]
        tuned = {s: {"target_qps": results[s]["target_qps"], "backend_options": results[s]["backend_options"]}
                 for s in SCENARIOS if s in results}
        write_atomic(conf_out, tuned_conf_text(Path(req.user_conf).resolve(), base_conf, base_cfg.loadgen_model,
                                               header, tuned))
        text = json.dumps(record, indent=2) + "\n"
        write_atomic(json_out, text)
        write_atomic(paths.tuning_record, text)
        return record

    def numbers_since(first: int) -> list[int]:
        return [t.number for t in runner.trials[first:]]

    offline_choice = None
    if "Offline" in req.scenarios:
        first = len(runner.trials)
        choice = offline_choice = tune_offline(runner, spec, candidates["Offline"])
        if req.confirm:
            choice.target_qps, choice.confirmed, numbers = confirm(
                runner, spec, "Offline", choice.backend_options, choice.target_qps)
            choice.trials += numbers
        results["Offline"] = {**dataclasses.asdict(choice), "tuned_at": stamp, "search_trials": numbers_since(first)}
        record = save()
    if "Server" in req.scenarios:
        first = len(runner.trials)
        try:
            server = tune_server(runner, spec, candidates["Server"], offline_choice)
        except RunFailed as exc:
            _print_trials(runner)
            done = {n for r in results.values() if r.get("tuned_at") == stamp for n in r.get("trials", [])}
            failed["Server"] = {"error": str(exc), "tuned_at": stamp,
                                "trial_records": [t.as_dict() for t in runner.trials if t.number not in done]}
            save()
            print(f"tune: the Server search failed (its trials are recorded in {json_out})"
                  + ("; the Offline result is saved in " + str(conf_out) if "Offline" in req.scenarios else ""),
                  flush=True)
            raise
        if req.confirm:
            server.target_qps, server.confirmed, numbers = confirm(
                runner, spec, "Server", server.backend_options, server.target_qps)
            server.trials += numbers
        results["Server"] = {**dataclasses.asdict(server), "tuned_at": stamp, "search_trials": numbers_since(first)}
        record = save()
    _print_summary(record, runner, conf_out, json_out)
    return record


def _print_trials(runner: TrialRunner) -> None:
    print("\ntune: trials")
    for trial in runner.trials:
        print(f"  #{trial.number:<3} {trial.scenario:<7} {trial.purpose:<8} {trial.describe()}")


def _print_summary(record: dict[str, Any], runner: TrialRunner, conf_out: Path, json_out: Path) -> None:
    _print_trials(runner)
    print("tune: choice")
    for scenario, result in record["scenarios"].items():
        opts = " ".join(f"{k}={v}" for k, v in sorted(result["backend_options"].items())) or "(config defaults)"
        if scenario == "Offline":
            print(f"  Offline: {opts}: {result['samples_per_s']:.1f} samples/s measured (median) -> target_qps "
                  f"{result['target_qps']:.1f} (highest run x margin {record['spec']['offline_margin']}) "
                  f"[trials {', '.join(map(str, result['trials']))}]")
            for s in result.get("spread") or []:
                label = " ".join(f"{k}={v}" for k, v in sorted(s["backend_options"].items())) or "(config defaults)"
                print(f"    contender {label}: median {s['median']:.1f} (min {s['min']:.1f}, max {s['max']:.1f}, "
                      f"{len(s['runs'])} runs, spread {100 * (s['relative_spread'] or 0):.0f}%)")
        else:
            bound = result.get("latency_bound_ms")
            print(f"  Server: {opts}: target_qps {result['target_qps']:.1f} VALID at p99 <= "
                  f"{bound if bound is not None else '?'} ms (capacity {result['capacity_samples_per_s']:.1f}/s) "
                  f"[trials {', '.join(map(str, result['trials']))}]")
            for r in result.get("repeats") or []:
                p99 = [f"{x['p99_ms']:.1f}" if x["p99_ms"] is not None else "?" for x in r["runs"]]
                print(f"    repeats at {r['target_qps']:.1f} QPS: {r['valid_runs']} of {len(r['runs'])} VALID, p99 "
                      f"median {r['median_p99_ms'] or 0:.1f} ms (runs {', '.join(p99)} ms, spread "
                      f"{100 * (r['relative_spread'] or 0):.0f}%)")
        if result.get("confirmed") is not None:
            print(f"    full-length confirmation: {'VALID' if result['confirmed'] else 'NOT VALID'}")
    if "server_offline_efficiency" in record:
        print(f"  Server/Offline efficiency: {record['server_offline_efficiency']:.3f}")
    print(f"tune: wrote {conf_out} and {json_out}")
    # The conf carries the backend options too: `mlperf-bnas run` applies them from it.
    for scenario in record["scenarios"]:
        script = "run_offline.sh" if scenario == "Offline" else "run_server.sh"
        print(f"  {scenario}: USER_CONF={conf_out} {Path(record['benchmark_dir']) / script}")
