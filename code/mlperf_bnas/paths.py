"""Where every output goes, in one place (see docs/architecture.md, "Output layout").

``OutputPaths`` answers "where do this benchmark's results / compliance logs /
build products / archived earlier results live" so no command builds paths by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlperf_bnas.errors import UserError

SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MODES = ("performance", "accuracy")
PRECISIONS = ("int8", "fp32")


@dataclass(frozen=True)
class OutputPaths:
    output_dir: Path
    system: str
    benchmark: str          # benchmark directory name, e.g. "resnet50-openvino"
    loadgen_model: str      # LoadGen / checker model name, e.g. "resnet50"

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir).resolve())
        for label, value in (("system", self.system), ("benchmark", self.benchmark),
                             ("loadgen_model", self.loadgen_model)):
            if not value or "/" in value or value in (".", ".."):
                raise UserError(f"{label} name {value!r} is not usable as a folder name; "
                                "pass a plain name (e.g. --system my_cpu)")

    # -- results and compliance (submission tree) ---------------------------
    def scenario_dir(self, scenario: str) -> Path:
        if scenario not in SCENARIOS:
            raise UserError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
        return self.output_dir / "results" / self.system / self.loadgen_model / scenario

    def results_dir(self, scenario: str, mode: str) -> Path:
        """``results/<system>/<model>/<Scenario>/performance/run_1`` or ``.../accuracy``."""
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        base = self.scenario_dir(scenario)
        return base / "performance" / "run_1" if mode == "performance" else base / "accuracy"

    def compliance_dir(self, scenario: str, test: str | None = None) -> Path:
        base = self.output_dir / "compliance" / self.system / self.loadgen_model / scenario
        return base / test if test else base

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
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        return self.build_dir / "model" / precision

    @property
    def calibration_dir(self) -> Path:
        """Downloaded calibration lists (``download_*_calibration_list.sh``)."""
        return self.build_dir / "calibration"

    @property
    def sizing_dir(self) -> Path:
        """LoadGen settings sized on this machine (``mlperf-bnas size``): the generated conf, its
        evidence, earlier confs it replaced (``archive/``) and the probe runs' logs."""
        return self.build_dir / "sizing" / self.system

    @property
    def sized_conf(self) -> Path:
        """The generated per-system conf the embedded default runs with (``USER_CONF`` unset)."""
        return self.sizing_dir / f"user.{self.system}.sized.conf"

    @property
    def archive_dir(self) -> Path:
        """Earlier results moved aside by a re-run (never deleted)."""
        return self.output_dir / "build" / "archive"
