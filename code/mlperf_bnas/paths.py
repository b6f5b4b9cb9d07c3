"""Where every file goes, in one place (see docs/architecture.md, "Output layout").

* ``SubmissionTree``: the MLPerf submission layout under one folder (``results/``,
  ``compliance/``, ``measurements/``, ``systems/``, ``code/``). A packaged submitter folder
  has it, and so do the ``results/`` and ``compliance/`` of ``$OUTPUT_DIR``: LoadGen runs
  write straight into the form the submission needs.
* ``OutputRoot``: what ``$OUTPUT_DIR`` holds besides one benchmark's files: the results
  tree, ``build/archive/``, the packaged ``submission/``, the report, NAS work.
* ``OutputPaths``: one benchmark's outputs on one system (results, compliance logs,
  build products: data, caches, models, tuning trials).

Nothing else in the package builds an output path by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mlperf_bnas.enums import Mode, Precision, Scenario, parse
from mlperf_bnas.errors import UserError

#: The repository (a checkout, or the packaged copy of the harness): benchmark directories are
#: ``code/<benchmark>/``, the system overrides ``systems/overrides.yaml``.
REPO = Path(__file__).resolve().parents[2]
#: The one performance run a v5.1 result holds, under its scenario folder.
PERFORMANCE_RUN = Path("performance") / "run_1"
#: The build record every backend writes beside its built model.
BUILD_RECORD = "quantization.json"


def benchmark_dirs(repo: Path = REPO) -> list[Path]:
    """Every benchmark directory of the repository (``code/<benchmark>/config.yaml``)."""
    return sorted(p.parent for p in (Path(repo) / "code").glob("*/config.yaml"))


def benchmark_dir(name: str, repo: Path = REPO) -> Path:
    """``code/<name>/`` of the repository (it may not exist)."""
    return Path(repo) / "code" / name


def system_overrides(repo: Path = REPO) -> Path:
    """The user-editable fields of every system description (``systems/overrides.yaml``)."""
    return Path(repo) / "systems" / "overrides.yaml"


def mode_dir(folder: Path, mode: str) -> Path:
    """``<folder>/performance/run_1`` or ``<folder>/accuracy``: the logs of one mode inside a
    scenario folder, or inside a compliance test folder (which has the same form)."""
    return Path(folder) / (PERFORMANCE_RUN if parse(Mode, mode) == Mode.PERFORMANCE else Path("accuracy"))


def sized_conf_name(system: str) -> str:
    """The file name of the conf ``mlperf-bnas size`` generates for ``system``."""
    return f"user.{system}.sized.conf"


def tuned_conf_path(benchmark_dir: Path, system: str) -> Path:
    """The user.conf ``mlperf-bnas tune`` writes for ``system`` beside the benchmark's own (its
    evidence beside it, ``.json``): the file a run then names as ``USER_CONF``."""
    return Path(benchmark_dir) / f"user.{system}.tuned.conf"


@dataclass(frozen=True)
class SubmissionTree:
    """The MLPerf v5.1 submission layout under ``root`` (a submitter folder, or ``$OUTPUT_DIR``).

    ``results`` overrides where ``results/`` is (``mlperf-bnas check --full-results DIR``
    names a results folder of any name).
    """

    root: Path
    results: Path | None = None

    @classmethod
    def submitters(cls, submission_root: Path, division: str = "open") -> list["SubmissionTree"]:
        """The submitter folders under ``<submission_root>/<division>/`` that hold results."""
        return [cls(p) for p in sorted(Path(submission_root).glob(f"{division}/*")) if (p / "results").is_dir()]

    @property
    def results_root(self) -> Path:
        return Path(self.results) if self.results is not None else Path(self.root) / "results"

    @property
    def measurements_root(self) -> Path:
        return Path(self.root) / "measurements"

    def benchmark_results_dir(self, system: str, model: str) -> Path:
        """``results/<system>/<model>``: one folder per scenario run."""
        return self.results_root / system / model

    def result_dir(self, system: str, model: str, scenario: str) -> Path:
        """``results/<system>/<model>/<Scenario>``."""
        return self.benchmark_results_dir(system, model) / scenario

    def performance_dir(self, system: str, model: str, scenario: str) -> Path:
        return mode_dir(self.result_dir(system, model, scenario), Mode.PERFORMANCE)

    def accuracy_dir(self, system: str, model: str, scenario: str) -> Path:
        return mode_dir(self.result_dir(system, model, scenario), Mode.ACCURACY)

    def benchmark_compliance_dir(self, system: str, model: str) -> Path:
        """``compliance/<system>/<model>``: one folder per scenario."""
        return Path(self.root) / "compliance" / system / model

    def compliance_dir(self, system: str, model: str, scenario: str, test: str | None = None) -> Path:
        """``compliance/<system>/<model>/<Scenario>[/<TEST>]``."""
        base = self.benchmark_compliance_dir(system, model) / scenario
        return base / test if test else base

    def measurements_dir(self, system: str, model: str, scenario: str) -> Path:
        return self.measurements_root / system / model / scenario

    @property
    def systems_dir(self) -> Path:
        return Path(self.root) / "systems"

    def system_file(self, system: str) -> Path:
        return self.systems_dir / f"{system}.json"

    @property
    def code_dir(self) -> Path:
        """The harness snapshot (``code/mlperf_bnas/``) and one folder per benchmark (``code/<model>/``)."""
        return Path(self.root) / "code"

    @property
    def calibration_doc(self) -> Path:
        return Path(self.root) / "calibration.md"


@dataclass(frozen=True)
class SearchOutputs:
    """What one ``mlperf-bnas nas search`` writes into its output folder (the report reads them back)."""

    folder: Path

    @property
    def results_csv(self) -> Path:
        """Every measured sub-network (``--results_path`` may put it elsewhere; the record names it)."""
        return Path(self.folder) / "search_results.csv"

    @property
    def pareto_csv(self) -> Path:
        return Path(self.folder) / "pareto.csv"

    @property
    def pareto_png(self) -> Path:
        return Path(self.folder) / "pareto.png"

    @property
    def best_config(self) -> Path:
        return Path(self.folder) / "best_config.json"

    @property
    def best_subnet(self) -> Path:
        return Path(self.folder) / "best_subnet.pt"

    @property
    def record(self) -> Path:
        """``nas_record.json``: what the submission's calibration notes quote."""
        return Path(self.folder) / "nas_record.json"

    @property
    def linas_log(self) -> Path:
        return Path(self.folder) / "linas_predictors.csv"

    def latency_cache(self, rank: int = 0) -> Path:
        """Measured latencies, one file per process (ranks never write the same file)."""
        return Path(self.folder) / ("latency_cache.json" if rank == 0 else f"latency_cache.rank{rank}.json")

    @property
    def latency_build(self) -> Path:
        """Models built to measure latency on the benchmark's runtime."""
        return Path(self.folder) / "latency_build"

    @staticmethod
    def supernet_stamp(results_csv: Path) -> Path:
        """Beside the results CSV: which super-network it was measured on (a resume must match)."""
        return Path(results_csv).with_name(Path(results_csv).stem + ".supernet.json")


@dataclass(frozen=True)
class OutputRoot:
    """``$OUTPUT_DIR``: results tree, archive, packaged submission, report, NAS work."""

    output_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir).resolve())

    @property
    def tree(self) -> SubmissionTree:
        """``results/`` and ``compliance/`` in submission form."""
        return SubmissionTree(self.output_dir)

    @property
    def staging_dir(self) -> Path:
        """Private work folders that are renamed into place (same file system as the outputs)."""
        return self.output_dir / "build"

    @property
    def archive_dir(self) -> Path:
        """Earlier results moved aside by a re-run (never deleted)."""
        return self.output_dir / "build" / "archive"

    @property
    def lock_file(self) -> Path:
        """``build/.mlperf-bnas.lock``: held (flock) by the one command writing this folder (``outdir.OutputLock``)."""
        return self.staging_dir / ".mlperf-bnas.lock"

    @property
    def written_folders(self) -> tuple[Path, ...]:
        """The top-level folders commands write into (where interrupted ones leave private folders)."""
        return (self.tree.results_root, self.tree.root / "compliance", self.submission_root, self.staging_dir)

    def archive_slot(self, prefix: str) -> Path:
        """A new, not yet existing folder ``build/archive/<prefix><time>[-n]`` to move something aside into."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slot, n = self.archive_dir / f"{prefix}{stamp}", 1
        while slot.exists():
            slot, n = self.archive_dir / f"{prefix}{stamp}-{n}", n + 1
        return slot

    @property
    def submission_root(self) -> Path:
        """The folder ``mlperf-bnas check --input`` takes (it holds ``open/``)."""
        return self.output_dir / "submission"

    def submitter_dir(self, submitter: str, division: str = "open") -> Path:
        if not submitter or "/" in submitter or submitter in (".", ".."):
            raise UserError(f"submitter {submitter!r} is not usable as a folder name; use a plain name")
        return self.submission_root / division / submitter

    @property
    def report_file(self) -> Path:
        return self.output_dir / "report" / "index.html"

    @property
    def nas_dir(self) -> Path:
        """BootstrapNAS work (the embedded demo's super-network and sub-networks)."""
        return self.output_dir / "build" / "bootstrapnas"

    # -- per benchmark, any system ---------------------------------------------
    def benchmark_build_dir(self, benchmark: str) -> Path:
        """``build/<benchmark>/``: data, caches, models, tuning trials of one benchmark."""
        return self.output_dir / "build" / benchmark

    def benchmark_build_dirs(self) -> list[Path]:
        """Every ``build/<benchmark>/`` present (not the archive, NAS work or private folders)."""
        skip = {self.archive_dir.name, self.nas_dir.name}
        return sorted(p for p in self.staging_dir.glob("*")
                      if p.is_dir() and p.name not in skip and not p.name.startswith("."))

    def model_dir_of(self, benchmark: str, precision: str) -> Path:
        """``build/<benchmark>/model/<precision>/``: the built model and its ``BUILD_RECORD``."""
        return self.benchmark_build_dir(benchmark) / "model" / parse(Precision, precision)

    def synthetic_data_dirs(self, benchmark: str) -> list[Path]:
        """The synthetic datasets generated for ``benchmark`` (``build/<benchmark>/data/<dataset>/``)."""
        return sorted(p for p in (self.benchmark_build_dir(benchmark) / "data").glob("*") if p.is_dir())

    def sized_records(self, system: str) -> list[Path]:
        """The records of the confs ``mlperf-bnas size`` generated for ``system`` (one per benchmark)."""
        return sorted(p.with_suffix(".json") for p in self.staging_dir.glob(f"*/sizing/{system}/{sized_conf_name(system)}"))

    def tuning_records(self, system: str) -> list[Path]:
        """The evidence of every ``mlperf-bnas tune`` run for ``system`` (one per benchmark)."""
        return sorted(self.staging_dir.glob(f"*/tuning/{system}/tuning.json"))


@dataclass(frozen=True)
class OutputPaths(OutputRoot):
    """One benchmark's outputs on one system."""

    system: str
    benchmark: str          # benchmark directory name, e.g. "resnet50-openvino"
    loadgen_model: str      # LoadGen / checker model name, e.g. "resnet50"

    def __post_init__(self) -> None:
        super().__post_init__()
        for label, value in (("system", self.system), ("benchmark", self.benchmark),
                             ("loadgen_model", self.loadgen_model)):
            if not value or "/" in value or value in (".", ".."):
                raise UserError(f"{label} name {value!r} is not usable as a folder name; "
                                "pass a plain name (e.g. --system my_cpu)")

    @classmethod
    def of(cls, cfg, output_dir: str | Path, system: str) -> "OutputPaths":
        """The outputs of benchmark configuration ``cfg`` (a ``config.BenchmarkConfig``)."""
        return cls(Path(output_dir), system, cfg.benchmark, cfg.loadgen_model)

    # -- results and compliance (submission tree) ---------------------------
    def scenario_dir(self, scenario: str) -> Path:
        return self.tree.result_dir(self.system, self.loadgen_model, parse(Scenario, scenario))

    def results_dir(self, scenario: str, mode: str) -> Path:
        """``results/<system>/<model>/<Scenario>/performance/run_1`` or ``.../accuracy``."""
        return mode_dir(self.scenario_dir(scenario), mode)

    def compliance_dir(self, scenario: str, test: str | None = None) -> Path:
        return self.tree.compliance_dir(self.system, self.loadgen_model, parse(Scenario, scenario), test)

    # -- build products -------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        return self.benchmark_build_dir(self.benchmark)

    def data_dir(self, dataset: str) -> Path:
        """Generated synthetic dataset (same on-disk layout as the real one)."""
        return self.build_dir / "data" / dataset

    def cache_root(self, dataset: str) -> Path:
        """Parent of ``<spec-hash>/`` preprocessed caches for ``dataset``."""
        return self.build_dir / "cache" / dataset

    def model_dir(self, precision: str) -> Path:
        return self.model_dir_of(self.benchmark, precision)

    def model_variant_dir(self, label: str) -> Path:
        """A model built another way beside the benchmark's own (a speed comparison's other runtime)."""
        return self.build_dir / "model" / label

    def seeded_weights(self, model: str, seed: int) -> Path:
        """Seeded random weights, generated once when no checkpoint is given."""
        return self.build_dir / "model" / "seeded" / f"{model}-seed{seed}.pt"

    @property
    def calibration_dir(self) -> Path:
        """Downloaded calibration lists (``download_*_calibration_list.sh``)."""
        return self.build_dir / "calibration"

    @property
    def tuning_dir(self) -> Path:
        """``mlperf-bnas tune`` trial logs of this system, one folder per tuning run."""
        return self.build_dir / "tuning" / self.system

    @property
    def tuning_record(self) -> Path:
        """The latest tuning run's evidence (``OutputRoot.tuning_records`` finds them all)."""
        return self.tuning_dir / "tuning.json"

    @property
    def compliance_work_dir(self) -> Path:
        """Private working folders of compliance runs (their audit.config lives there)."""
        return self.build_dir / "compliance"

    @property
    def sizing_dir(self) -> Path:
        """LoadGen settings sized on this machine (``mlperf-bnas size``): the generated conf, its
        evidence, earlier confs it replaced (``archive/``) and the probe runs' logs."""
        return self.build_dir / "sizing" / self.system

    @property
    def sized_conf(self) -> Path:
        """The generated per-system conf the embedded default runs with (``USER_CONF`` unset); its
        record (the evidence) is beside it with ``.json``."""
        return self.sizing_dir / sized_conf_name(self.system)

    @property
    def sizing_archive_dir(self) -> Path:
        """Sized confs (and their records) a re-sizing replaced; runs made with them still match them."""
        return self.sizing_dir / "archive"

    def sizing_probe_dir(self, stamp: str) -> Path:
        """The LoadGen logs of one sizing's probe runs."""
        return self.sizing_dir / "probes" / stamp

    @property
    def sizing_measurements(self) -> Path:
        """Cached probe results of settings a user's conf runs with (``size --check``)."""
        return self.sizing_dir / "measurements.json"
