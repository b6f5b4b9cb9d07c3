"""Assemble an MLPerf v5.1 open-division submission tree from finished runs.

Input (``$OUTPUT_DIR``, see docs/architecture.md)::

    results/<system>/<loadgen_model>/<Scenario>/{performance/run_1,accuracy}   full LoadGen logs
    compliance/<system>/<loadgen_model>/<Scenario>/TEST0x/                     compliance runs
    build/<benchmark>/model/...                                                build records

Output: ``$OUTPUT_DIR/submission/open/<submitter>/`` with code/, systems/,
measurements/, results/ (accuracy logs truncated, hashes recorded), compliance/
and calibration.md; see docs/submission.md for every file.

Packaging is atomic: the tree is built in a hidden sibling folder and swapped
in by rename only when complete, so a failed or interrupted packaging leaves an
earlier submission untouched; the earlier tree itself is moved to
``build/archive/`` rather than deleted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlperf_bnas.config import BenchmarkConfig, load_config
from mlperf_bnas.enums import Mode, Scenario, values
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import bad_symlinks, write_atomic
from mlperf_bnas.loadgen import completeness, userconf
from mlperf_bnas.loadgen.logs import RESULT_FIELD, read_detail_log
from mlperf_bnas.paths import REPO, OutputPaths, OutputRoot, SubmissionTree, benchmark_dirs, system_overrides
from mlperf_bnas.submission import provenance
from mlperf_bnas.submission.rules import MLPERF_MODEL
from mlperf_bnas.submission.system import describe_system, load_overrides
from mlperf_bnas.submission.truncation import write_truncated

log = logging.getLogger(__name__)

PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
# Benchmark-directory files that are build products or local state, not code.
_CODE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "build", "output")


@dataclass(frozen=True)
class PackageRequest:
    output_dir: Path
    system: str
    submitter: str
    overrides: Path
    benchmarks: tuple[BenchmarkConfig, ...]
    precision: str = "int8"
    repo: Path = REPO

    @property
    def outputs(self) -> OutputRoot:
        return OutputRoot(self.output_dir)

    @classmethod
    def resolve(cls, output_dir: Path | None, system: str | None, submitter: str | None,
                overrides: Path | None, benchmarks: list[Path], precision: str = "int8") -> "PackageRequest":
        from mlperf_bnas.submission.system import default_system_name

        out = (output_dir or REPO).resolve()
        overrides = (overrides or system_overrides()).resolve()
        submitter = submitter or str(load_overrides(overrides).get("submitter", "")).strip()
        if not submitter:
            raise UserError(f"{overrides}: set 'submitter' (or pass --submitter); it names the submission folder")
        OutputRoot(out).submitter_dir(submitter)    # a usable folder name, or a UserError saying so
        system = system or default_system_name()
        dirs = benchmarks or benchmark_dirs()
        configs = tuple(load_config(d) for d in dirs)
        return cls(out, system, submitter, overrides, configs, precision)


@dataclass
class Packaged:
    """What went into the tree, for the one-screen summary."""
    root: Path
    submission_root: Path                   # the folder holding open/ (what the checker takes)
    entries: list[tuple[str, str, str, str]] = field(default_factory=list)  # model, scenario, user.conf, metric
    archived: Path | None = None

    def __str__(self) -> str:
        lines = [f"submission written to {self.root}"]
        for model, scenario, conf, metric in self.entries:
            lines.append(f"  {model:<10} {scenario:<8} {metric:<32} user.conf: {conf}")
        if self.archived:
            lines.append(f"earlier submission moved to {self.archived}")
        lines.append("check it with: mlperf-bnas check --input " + str(self.submission_root))
        return "\n".join(lines)


def _results_for(req: PackageRequest) -> dict[str, BenchmarkConfig]:
    """loadgen_model -> the benchmark whose results are packaged for it."""
    found: dict[str, BenchmarkConfig] = {}
    for cfg in req.benchmarks:
        model_dir = req.outputs.tree.benchmark_results_dir(req.system, cfg.loadgen_model)
        if not model_dir.is_dir():
            continue
        if cfg.loadgen_model not in MLPERF_MODEL:
            raise UserError(f"{cfg.benchmark_dir / 'config.yaml'}: loadgen_model {cfg.loadgen_model!r} is not an MLPerf "
                            f"benchmark name; use one of {', '.join(sorted(MLPERF_MODEL))}")
        if cfg.loadgen_model in found:
            raise UserError(f"both {found[cfg.loadgen_model].benchmark_dir.name} and {cfg.benchmark_dir.name} write "
                            f"{model_dir}; pass --benchmark to say which one produced these results")
        found[cfg.loadgen_model] = cfg
    if not found:
        raise UserError(f"{req.outputs.tree.results_root / req.system}: no results for system {req.system!r}; "
                        "run the benchmarks first (or pass --system / --output-dir to point at them)")
    return found


def _require(path: Path, produce: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: missing; {produce}")
    return path


def _require_complete(folder: Path, mode: str, scenario: str) -> None:
    """Package only complete results (``loadgen/completeness.py``): a run cut off by a full disk
    or an interruption, or without a result value, is refused with what is wrong."""
    problems = completeness.problems(folder, mode, scenario)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{problems[0]}{more}; this {scenario} {mode} result is incomplete, so it cannot be "
                        f"packaged: rerun it (mlperf-bnas run --scenario {scenario} --mode {mode})")


def _require_no_bad_links(top: Path, within: Path) -> None:
    """Refuse links that loop or leave ``within``: a submission must hold its own files."""
    bad = bad_symlinks(top, within)
    if bad:
        listing = "; ".join(f"{path}: {what}" for path, what in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UserError(f"{listing}{more}; replace the link(s) with the files themselves, then package again")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _git_commit(repo: Path) -> str:
    """``<commit>`` or ``<commit> with uncommitted changes in code/`` (the snapshot is the working tree)."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "code"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git unavailable)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" with uncommitted changes in code/" if dirty.stdout.strip() else "")


def _pick_user_conf(cfg: BenchmarkConfig, scenario: str, perf_detail: Path, paths: OutputPaths) -> Path:
    """The user.conf whose settings agree with the performance log (see userconf.py)."""
    candidates: list[Path] = []
    if os.environ.get("USER_CONF"):
        candidates.append(Path(os.environ["USER_CONF"]).resolve())
    candidates += sorted(cfg.benchmark_dir.glob("user*.conf"))
    # The embedded default's conf, generated on this machine by `mlperf-bnas size` (and the
    # earlier ones it replaced, kept under archive/: runs made with them still match them).
    candidates += sorted(paths.sizing_dir.glob("user*.conf")) + sorted(paths.sizing_archive_dir.rglob("user*.conf"))
    detail = read_detail_log(perf_detail)
    best: tuple[int, Path] | None = None
    reasons = []
    for path in dict.fromkeys(candidates):
        if not path.is_file():
            continue
        try:
            conf = userconf.read(path)
        except UserError as exc:
            reasons.append(f"{path.name}: {exc}")
            continue
        bad = userconf.mismatches(conf, detail, cfg.loadgen_model, scenario)
        if bad:
            reasons.append(f"{path.name}: {bad[0]}")
            continue
        matched = len(conf.settings(cfg.loadgen_model, scenario))
        if best is None or matched > best[0]:
            best = (matched, path)
    if best is None:
        raise UserError(f"{perf_detail}: no user.conf in {cfg.benchmark_dir} (or $USER_CONF) matches the settings of this run "
                        f"({'; '.join(reasons) or 'no user*.conf found'}); set USER_CONF to the file the run used")
    return best[1]


def _measurement_readme(cfg: BenchmarkConfig, scenario: str, system: str, conf: Path, commit: str) -> str:
    from mlperf_bnas.tune.sizing import is_sized_conf

    bench = cfg.benchmark_dir.name
    sized = is_sized_conf(conf)
    names = sorted(p.name for p in cfg.benchmark_dir.glob("run*.sh"))
    # Pipeline order: build, this scenario's runs, then compliance.
    scripts = ([n for n in names if "calibration" in n or "build" in n]
               + [n for n in names if scenario.lower() in n.lower()]
               + [f"{n} {scenario}" for n in names if "compliance" in n])
    return "\n".join([
        f"# {cfg.loadgen_model} {scenario} on {system}",
        "",
        f"Harness: mlperf-bnas (git commit `{commit}`), benchmark directory `code/{bench}/` of the repository;",
        f"a copy of that directory is in this submission's `code/{cfg.loadgen_model}/`.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "./prepare_env.sh                      # pinned environment (code/requirements.txt)",
        f"export SYSTEM={system}",
        "export OUTPUT_DIR=$PWD/output         # where results/, compliance/ and build/ go",
        *(["unset DATA_DIR                        # synthetic data (a smoke run, not a valid result)"] if sized else
          ["export DATA_DIR=/path/to/dataset      # unset = synthetic data (smoke run, not a valid result)"]),
        "export CHECKPOINT=/path/to/weights    # unset = seeded weights",
        *([f"unset USER_CONF                       # settings sized on the machine ({conf.name})"]
          if sized else [f"export USER_CONF=code/{bench}/{conf.name}"]),
        *(f"code/{bench}/{s}" for s in scripts),
        "tools/package_submission.sh           # this tree",
        "tools/submission_checker.sh           # our v5.1 checker",
        "```",
        "",
        *([f"The LoadGen settings of this run are in `user.conf` beside this file (`code/{bench}/{conf.name}`)."]
          if not sized else [
              "The LoadGen settings of this run are in `user.conf` beside this file: the conf `mlperf-bnas size` "
              f"generated on the machine ({conf.name}, in `$OUTPUT_DIR/build/{bench}/sizing/{system}/`): "
              f"`code/{bench}/user.smoke.conf` plus the target_qps measured there; its comment lines say how "
              "each number was measured (probe, figure, CPU model, core count, date). On another machine the "
              "run scripts measure that machine and write its own."]),
        "",
    ])


def _write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def _package_code(cfg: BenchmarkConfig, dest: Path, commit: str, repo: Path) -> None:
    _require_no_bad_links(cfg.benchmark_dir, cfg.benchmark_dir)
    shutil.copytree(cfg.benchmark_dir, dest, ignore=_CODE_IGNORE)
    _remove_empty_dirs(dest)
    write_atomic(dest / "SOURCE.md", "\n".join([
        f"# {cfg.loadgen_model}: code",
        "",
        f"This folder is a copy of `code/{cfg.benchmark_dir.name}/` (configuration, user.conf files and run scripts).",
        "All Python lives in the `mlperf_bnas` package; its snapshot is in `../mlperf_bnas/`",
        f"(install with `pip install -e ../` from this folder, pins in `../requirements.txt`); repository commit `{commit}`.",
        "",
        f"Pipeline: dataset `{cfg.dataset}` -> model `{cfg.model}` -> backend `{cfg.backend}` -> LoadGen "
        f"(`{cfg.loadgen_model}`) -> accuracy `{cfg.accuracy}`.",
        "",
    ]))


def _package_harness(code_dir: Path, repo: Path) -> None:
    """A snapshot of the harness package beside the benchmark folders, so the code is self-contained."""
    src = repo / "code"
    _require_no_bad_links(src / "mlperf_bnas", src / "mlperf_bnas")
    shutil.copytree(src / "mlperf_bnas", code_dir / "mlperf_bnas", ignore=_CODE_IGNORE)
    _remove_empty_dirs(code_dir / "mlperf_bnas")
    for name in ("pyproject.toml", "requirements.txt"):
        if (src / name).is_file():
            _copy(src / name, code_dir / name)


def _remove_empty_dirs(top: Path) -> None:
    """The checker rejects empty folders (e.g. a package directory holding only __pycache__)."""
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def build_tree(req: PackageRequest, folder: Path) -> Packaged:
    """Write the submitter folder into ``folder`` (an empty folder)."""
    packaged = Packaged(req.outputs.submitter_dir(req.submitter), req.outputs.submission_root)
    tree, runs = SubmissionTree(folder), req.outputs.tree
    benchmarks = _results_for(req)
    commit = _git_commit(req.repo)
    system_desc = describe_system(req.system, req.overrides, req.output_dir)
    if system_desc["submitter"] != req.submitter:
        system_desc["submitter"] = req.submitter
    _package_harness(tree.code_dir, req.repo)
    calibration_sections = []
    for model, cfg in sorted(benchmarks.items()):
        res_src = runs.benchmark_results_dir(req.system, model)
        _require_no_bad_links(res_src, req.output_dir)
        comp_root = runs.benchmark_compliance_dir(req.system, model)
        if comp_root.is_dir():
            _require_no_bad_links(comp_root, req.output_dir)
        scenarios = sorted(p.name for p in res_src.iterdir() if p.is_dir() and p.name in values(Scenario))
        unknown = sorted(p.name for p in res_src.iterdir() if p.is_dir() and p.name not in values(Scenario))
        if unknown:
            raise UserError(f"{res_src}: unexpected folder(s) {', '.join(unknown)}; only "
                            f"{', '.join(values(Scenario))} are packaged")
        if not scenarios:
            raise UserError(f"{res_src}: no scenario results; run a scenario first (run_offline.sh, run_singlestream.sh, ...)")
        prov = provenance.read(req.output_dir, cfg, req.precision)
        engine = provenance.engine_software(prov)
        if engine:
            # A model run in an environment of its own (IPEX): its software joins the system's.
            system_desc["framework"] += f"; {model} ({engine['engine'].split(':')[0]}): {engine['framework']}"
            system_desc["other_software_stack"] += f"; {model}: {engine['environment']}"
        _package_code(cfg, tree.code_dir / model, commit, req.repo)
        calibration_sections.append(provenance.calibration_section(model, cfg, prov))
        for scenario in scenarios:
            perf = runs.performance_dir(req.system, model, scenario)
            for name in PERF_FILES:
                _require(perf / name, f"run the {scenario} performance test (mlperf-bnas run --mode performance)")
            _require_complete(perf, Mode.PERFORMANCE, scenario)
            for name in PERF_FILES:
                _copy(perf / name, tree.performance_dir(req.system, model, scenario) / name)
            acc = runs.accuracy_dir(req.system, model, scenario)
            acc_dst = tree.accuracy_dir(req.system, model, scenario)
            for name in (*ACC_LOG_FILES, "mlperf_log_accuracy.json"):
                _require(acc / name, f"run the {scenario} accuracy test (mlperf-bnas run --mode accuracy)")
            _require_complete(acc, Mode.ACCURACY, scenario)
            for name in ACC_LOG_FILES:
                _copy(_require(acc / name, f"run the {scenario} accuracy test (mlperf-bnas run --mode accuracy)"),
                      acc_dst / name)
            write_truncated(acc / "accuracy.txt", _require(acc / "mlperf_log_accuracy.json",
                            f"run the {scenario} accuracy test (mlperf-bnas run --mode accuracy)"), acc_dst)
            conf = _pick_user_conf(cfg, scenario, perf / "mlperf_log_detail.txt",
                                   OutputPaths.of(cfg, req.output_dir, req.system))
            meas = tree.measurements_dir(req.system, model, scenario)
            _copy(conf, meas / "user.conf")
            write_atomic(meas / "README.md", _measurement_readme(cfg, scenario, req.system, conf, commit))
            _write_json(meas / f"{req.system}_{cfg.benchmark_dir.name}_{scenario}.json", provenance.measurement_fields(prov))
            comp_src = runs.compliance_dir(req.system, model, scenario)
            if comp_src.is_dir():
                shutil.copytree(comp_src, tree.compliance_dir(req.system, model, scenario),
                                ignore=shutil.ignore_patterns("mlperf_log_trace.json", ".*"))
            metric = read_detail_log(perf / "mlperf_log_detail.txt")
            key = RESULT_FIELD[scenario]
            packaged.entries.append((model, scenario, conf.name, f"{key}={metric.get(key)}"))
    write_atomic(tree.calibration_doc, provenance.calibration_document(calibration_sections))
    _write_json(tree.system_file(req.system), system_desc)   # after the loop: engines add their software
    return packaged


def package_submission(req: PackageRequest) -> Packaged:
    final = req.outputs.submitter_dir(req.submitter)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Built under build/ (same file system, so the final move is a rename), never inside
    # submission/: a half-built tree there would look like a second submitter to a checker.
    staging = req.outputs.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".submission-{req.submitter}.partial-", dir=staging))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700; the tree is meant to be shared
    try:
        packaged = build_tree(req, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        archived = req.outputs.archive_slot("submission-") / req.submitter
        archived.parent.mkdir(parents=True, exist_ok=True)
        # Two renames: between them the earlier tree is already safe in the archive.
        shutil.move(str(final), str(archived))
        packaged.archived = archived
    os.replace(tmp, final)
    return packaged
