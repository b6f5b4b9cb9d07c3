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

#: The one performance run a v5.1 result holds, under its scenario folder.
PERFORMANCE_RUN = Path("performance") / "run_1"


def run_dir(folder: Path, mode: str) -> Path:
    """``<folder>/performance/run_1`` or ``<folder>/accuracy``: the logs of one mode inside a
    scenario folder, or inside a compliance test folder (which has the same form)."""
    return Path(folder) / (PERFORMANCE_RUN if parse(Mode, mode) == Mode.PERFORMANCE else Path("accuracy"))


@dataclass(frozen=True)
class SubmissionTree:
    """The MLPerf v5.1 submission layout under ``root`` (a submitter folder, or ``$OUTPUT_DIR``).

    ``results`` overrides where ``results/`` is (``mlperf-bnas check --full-results DIR``
    names a results folder of any name).
    """

    root: Path
    results: Path | None = None

    @property
    def results_root(self) -> Path:
        return Path(self.results) if self.results is not None else Path(self.root) / "results"

    def result_dir(self, system: str, model: str, scenario: str) -> Path:
        """``results/<system>/<model>/<Scenario>``."""
        return self.results_root / system / model / scenario

    def performance_dir(self, system: str, model: str, scenario: str) -> Path:
        return run_dir(self.result_dir(system, model, scenario), Mode.PERFORMANCE)

    def accuracy_dir(self, system: str, model: str, scenario: str) -> Path:
        return run_dir(self.result_dir(system, model, scenario), Mode.ACCURACY)

    def compliance_dir(self, system: str, model: str, scenario: str, test: str | None = None) -> Path:
        """``compliance/<system>/<model>/<Scenario>[/<TEST>]``."""
        base = Path(self.root) / "compliance" / system / model / scenario
        return base / test if test else base

    def measurements_dir(self, system: str, model: str, scenario: str) -> Path:
        return Path(self.root) / "measurements" / system / model / scenario

    @property
    def systems_dir(self) -> Path:
        return Path(self.root) / "systems"

    def system_file(self, system: str) -> Path:
        return self.systems_dir / f"{system}.json"

    @property
    def code_dir(self) -> Path:
        return Path(self.root) / "code"

    @property
    def calibration_doc(self) -> Path:
        return Path(self.root) / "calibration.md"


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
        return run_dir(self.scenario_dir(scenario), mode)

    def compliance_dir(self, scenario: str, test: str | None = None) -> Path:
        return self.tree.compliance_dir(self.system, self.loadgen_model, parse(Scenario, scenario), test)

    # -- build products -------------------------------------------------------
    @property
    def build_dir(self) -> Path:
        return self.output_dir / "build" / self.benchmark

    def data_dir(self, dataset: str) -> Path:
        """Generated synthetic dataset (same on-disk layout as the real one)."""
        return self.build_dir / "data" / dataset

    def cache_root(self, dataset: str) -> Path:
        """Parent of ``<spec-hash>/`` preprocessed caches for ``dataset``."""
        return self.build_dir / "cache" / dataset

    def model_dir(self, precision: str) -> Path:
        return self.build_dir / "model" / parse(Precision, precision)

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
        """``mlperf-bnas tune`` trial logs and records of this system."""
        return self.build_dir / "tuning" / self.system

    @property
    def compliance_work_dir(self) -> Path:
        """Private working folders of compliance runs (their audit.config lives there)."""
        return self.build_dir / "compliance"
