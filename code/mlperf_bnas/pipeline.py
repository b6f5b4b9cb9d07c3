"""The pipeline as library functions: weights -> dataset -> build -> SUT. Commands are thin wrappers.

Everything a step writes goes under ``OutputPaths`` (``paths.py``); every step
can be rerun and reuses what is current (caches keyed by spec and source,
synthetic data keyed by the labelling model), and writes atomically. The
backend builds its own model (``Backend.build``); this module prepares what
every build needs once: the FP32 module, the preprocessing, the calibration
samples the dataset chooses, and the build record's provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlperf_bnas.config import BenchmarkConfig, check_options
from mlperf_bnas.data import DATASETS, CachedSamples, Dataset, PreprocessSpec
from mlperf_bnas.enums import Precision, parse
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint, sha256_file
from mlperf_bnas.models import ModelEntry
from mlperf_bnas.paths import OutputPaths
from mlperf_bnas.quantize.qconfig import QuantizationConfig

log = logging.getLogger(__name__)

_announced: set[str] = set()


# ---------------------------------------------------------------------------
# components of a benchmark configuration
# ---------------------------------------------------------------------------
def model_entry(cfg: BenchmarkConfig) -> ModelEntry:
    from mlperf_bnas.models import create_model
    return create_model(cfg.model, cfg.model_options, where=f"{cfg.benchmark_dir / 'config.yaml'}",
                        sources=cfg.sources)


def dataset_class(cfg: BenchmarkConfig) -> type[Dataset]:
    return DATASETS.get(cfg.dataset)


def dataset_options(cfg: BenchmarkConfig) -> Any:
    return check_options("dataset_options", cfg.dataset_options, dataset_class(cfg).Options,
                         f"{cfg.benchmark_dir / 'config.yaml'}", cfg.sources)


def quantization_config(cfg: BenchmarkConfig) -> QuantizationConfig:
    return QuantizationConfig.from_options(cfg.quantization, where=f"{cfg.benchmark_dir / 'config.yaml'}",
                                           sources=cfg.sources)


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Weights:
    """Where the FP32 weights came from: a user checkpoint, or seeded weights saved in build/."""

    path: Path
    sha256: str
    seeded: bool

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256,
                "source": "seeded random weights (no CHECKPOINT)" if self.seeded else "user checkpoint"}


def resolve_weights(cfg: BenchmarkConfig, paths: OutputPaths, checkpoint: str | Path | None) -> Weights:
    """The checkpoint file to build from. Without one, seeded weights are generated once and kept.

    Keeping them in ``build/<benchmark>/model/seeded/`` makes every later step
    (labels, build, accuracy) use identical weights and lets quantization.json
    name them by sha256.
    """
    if checkpoint:
        path = Path(checkpoint).resolve()
        if not path.is_file():
            raise UserError(f"{path}: checkpoint not found; fix CHECKPOINT (or unset it for seeded weights)")
        return Weights(path, sha256_file(path), seeded=False)
    import torch

    entry = model_entry(cfg)
    path = paths.seeded_weights(cfg.model, entry.weights_seed)
    if not path.is_file():
        module = entry.build(None)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        torch.save(module.state_dict(), tmp)
        os.replace(tmp, path)
    elif str(path) not in _announced:
        _announced.add(str(path))
        print(f"WARNING: no CHECKPOINT given: using SEEDED RANDOM {cfg.model} weights ({path}). "
              "Accuracy numbers measure INT8-vs-FP32 agreement only.", file=sys.stderr)
    return Weights(path, sha256_file(path), seeded=True)


def _subnet(entry: ModelEntry, checkpoint: Path) -> dict | None:
    """The checkpoint as an exported NAS sub-network the model accepts, or None for plain weights
    (and for a model that takes no sub-networks: its own loader judges the file)."""
    from mlperf_bnas.nas.export import subnet_or_none

    if entry.subnet_base is None:
        return None

    obj = load_checkpoint(checkpoint, "PyTorch checkpoint",
                          "pass a torch.save'd state dict or an exported NAS sub-network, or unset CHECKPOINT")
    subnet = subnet_or_none(obj, checkpoint)
    if subnet is not None and subnet["base_model"] != entry.subnet_base:
        accepted = f"sub-networks of {entry.subnet_base}" if entry.subnet_base else "no sub-network"
        raise UserError(f"{checkpoint}: a NAS sub-network of {subnet['base_model']!r}, but model "
                        f"{type(entry).__name__} takes {accepted}; use it with its own benchmark")
    return subnet


def build_module(entry: ModelEntry, checkpoint: str | Path | None):
    """The FP32 torch module (eval mode): an exported NAS sub-network rebuilt from its checkpoint,
    or the model entry's own build from plain weights (seeded ones without a checkpoint)."""
    if checkpoint is not None:
        subnet = _subnet(entry, Path(checkpoint))
        if subnet is not None:
            from mlperf_bnas.nas.export import build_subnet

            return build_subnet(subnet, where=str(checkpoint), entry=entry)
    return entry.build(Path(checkpoint) if checkpoint is not None else None)


def built_entry(cfg: BenchmarkConfig, checkpoint: str | Path | None) -> ModelEntry:
    """The descriptor of the model a build makes: config.yaml's, or, for an exported NAS
    sub-network, with the sub-network's own architecture options (``ModelEntry.for_subnet``)."""
    entry = model_entry(cfg)
    subnet = _subnet(entry, Path(checkpoint)) if checkpoint is not None else None
    return entry.for_subnet(subnet, str(checkpoint)) if subnet is not None else entry


def checkpoint_spec(entry: ModelEntry, checkpoint: str | Path | None) -> PreprocessSpec:
    """What one cached sample is: the model's spec, or the one a NAS sub-network was exported with."""
    if checkpoint is not None:
        subnet = _subnet(entry, Path(checkpoint))
        if subnet is not None and subnet.get("preprocess"):
            try:
                return entry.subnet_preprocess_spec(dict(subnet["preprocess"]))
            except (TypeError, ValueError, KeyError) as exc:
                raise UserError(f"{checkpoint}: invalid 'preprocess' in the sub-network file ({exc})") from None
    return entry.preprocess_spec()


def load_torch_model(cfg: BenchmarkConfig, paths: OutputPaths, checkpoint: str | Path | None):
    """``(FP32 torch module in eval mode, Weights)``."""
    weights = resolve_weights(cfg, paths, checkpoint)
    return build_module(model_entry(cfg), weights.path), weights


# ---------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------
def synthetic_root(cfg: BenchmarkConfig, paths: OutputPaths) -> Path:
    return paths.data_dir(cfg.dataset)


def cache_root(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None) -> Path:
    # Synthetic and real data never share a cache folder (their sources differ anyway).
    return paths.cache_root(cfg.dataset if data_dir else f"{cfg.dataset}-synthetic")


def open_dataset(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None,
                 checkpoint: str | Path | None = None, create: bool = True) -> Dataset:
    """The real dataset at ``data_dir``, or the synthetic one (generated when missing or stale)."""
    cls = dataset_class(cfg)
    options = dataset_options(cfg)
    if data_dir:
        return cls.open(Path(data_dir), options)
    root = synthetic_root(cfg, paths)
    if create:
        weights = resolve_weights(cfg, paths, checkpoint)
        stamp = {"model": cfg.model, "weights_sha256": weights.sha256}
        if not cls.synthetic_is_current(root, options, stamp):
            log.info("generating synthetic %s data in %s (labels: FP32 %s predictions)", cfg.dataset, root, cfg.model)
            entry = model_entry(cfg)
            module = build_module(entry, weights.path)
            spec = checkpoint_spec(entry, None if weights.seeded else weights.path)
            cls.make_synthetic(root, options, entry.make_labeller(module, spec), stamp)
    elif not root.is_dir():
        raise UserError(f"{root}: no synthetic dataset yet; run `mlperf-bnas dataset` (or pass --data-dir)")
    return cls.open(root, options)


def preprocess_spec(cfg: BenchmarkConfig, checkpoint: str | Path | None) -> PreprocessSpec:
    return checkpoint_spec(model_entry(cfg), checkpoint)


def prepare_dataset(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None,
                    checkpoint: str | Path | None, progress: bool = True) -> tuple[Dataset, CachedSamples]:
    """Open (or generate) the dataset and preprocess it into its spec-keyed cache."""
    dataset = open_dataset(cfg, paths, data_dir, checkpoint)
    spec = preprocess_spec(cfg, checkpoint)
    workers = getattr(dataset.options, "workers", None)
    cache = dataset.preprocess_to_cache(spec, cache_root(cfg, paths, data_dir), workers=workers, progress=progress)
    return dataset, cache


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
def build(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None,
          checkpoint: str | Path | None, precision: str) -> Path:
    """Build the model for ``cfg.backend`` at ``precision`` into ``build/<benchmark>/model/<precision>/``."""
    from mlperf_bnas.backends import BACKENDS
    from mlperf_bnas.backends.base import BuildContext

    precision = parse(Precision, precision)
    backend_cls = BACKENDS.get(cfg.backend)
    qcfg = quantization_config(cfg)
    dataset, cache = prepare_dataset(cfg, paths, data_dir, checkpoint)
    entry = built_entry(cfg, checkpoint)      # the record names what is built
    module, weights = load_torch_model(cfg, paths, checkpoint)
    record: dict[str, Any] = {"benchmark": cfg.benchmark, "model": cfg.model,
                              "model_options": {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in dataclasses.asdict(entry.options).items()},
                              "weights": weights.describe(), "dataset": cfg.dataset}
    calibration = None
    if precision == Precision.INT8:
        calibration = dataset.calibration_set(cache, qcfg.subset_size, paths.calibration_dir,
                                              list_name=entry.calibration_list)
        if len(calibration.names) < qcfg.subset_size:
            log.warning("quantization.subset_size=%d but only %d calibration image(s) exist: using %d",
                        qcfg.subset_size, len(calibration.names), len(calibration.names))
        log.info("calibrating on %d sample(s) from %s", len(calibration.names), calibration.source)
        record["calibration"] = calibration.record()
    ctx = BuildContext(cfg=cfg, entry=entry, precision=precision, torch_model=module, spec=cache.spec,
                       out_dir=paths.model_dir(precision), quantization=qcfg, record=record,
                       calibration=calibration)
    return backend_cls.build(ctx)


# ---------------------------------------------------------------------------
# SUT
# ---------------------------------------------------------------------------
class ZeroSamples:
    """Stand-in SampleSource for backends that never read their input (the null backend)."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def load(self, indices) -> np.ndarray:
        return np.zeros((len(indices), 1), np.uint8)


def performance_sample_count(cfg: BenchmarkConfig) -> int:
    """The benchmark's LoadGen performance sample count (MLPerf's rule for its ``loadgen_model``)."""
    from mlperf_bnas.submission.rules import MLPERF_MODEL, PERFORMANCE_SAMPLE_COUNT

    benchmark = MLPERF_MODEL.get(cfg.loadgen_model)
    if benchmark not in PERFORMANCE_SAMPLE_COUNT:
        raise UserError(f"{cfg.benchmark_dir / 'config.yaml'}: loadgen_model {cfg.loadgen_model!r} is not an MLPerf "
                        f"benchmark this harness knows; use one of {', '.join(sorted(MLPERF_MODEL))}")
    return PERFORMANCE_SAMPLE_COUNT[benchmark]


def open_sut(cfg: BenchmarkConfig, scenario: str, paths: OutputPaths, precision: str = "int8",
             data_dir: str | Path | None = None, checkpoint: str | Path | None = None,
             model_path: str | Path | None = None):
    """``(sut, qsl, backend)`` ready for LoadGen: dataset cached, model compiled and warmed up.

    ``model_path`` overrides the built model of ``precision`` (benchmarks, NAS latency).
    With a backend that does not read input (``backend=null``) no dataset or model is touched.
    """
    from mlperf_bnas.backends import BACKENDS, create_backend
    from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS
    from mlperf_bnas.loadgen.qsl import QSL
    from mlperf_bnas.loadgen.sut import check_stream_batch, make_sut

    where = f"{cfg.benchmark_dir / 'config.yaml'} (backend_options)"
    config_file = str(cfg.benchmark_dir / "config.yaml")
    postprocess = POSTPROCESSORS.get(cfg.postprocess)
    backend_cls = BACKENDS.get(cfg.backend)
    perf_count = performance_sample_count(cfg)
    if not backend_cls.reads_input:
        # Harness-only measurement (`--set backend=null`) on a real benchmark's config: the
        # real backend's options do not apply to it; say which ones are left out.
        known = {f.name for f in dataclasses.fields(backend_cls.Options)}
        dropped = sorted(set(cfg.backend_options) - known)
        if dropped:
            log.warning("backend %s: ignoring backend_options %s (they belong to another backend)",
                        cfg.backend, ", ".join(dropped))
        options = {k: v for k, v in cfg.backend_options.items() if k in known}
        check_stream_batch(scenario, int(options.get("batch_size", 1)), config_file)
        backend = create_backend(cfg.backend, None, options, where, cfg.sources)
        qsl = QSL(ZeroSamples(perf_count), perf_count)
        started = time.monotonic()
        backend.warmup(None)
        sut = make_sut(scenario, backend, qsl, postprocess, config_file)
        sut.expected_batch_s = time.monotonic() - started
        return sut, qsl, backend
    precision = parse(Precision, precision)
    # Cheap checks first, before minutes of dataset preparation and compilation: the backend
    # options, and the build (synthetic data would be relabelled for weights the build lacks).
    options = check_options("backend_options", cfg.backend_options, backend_cls.Options, where, cfg.sources)
    check_stream_batch(scenario, getattr(options, "batch_size", 1), config_file)
    if model_path is None and backend_cls.builds_model():   # a backend without a build has no build to check
        require_current_build(cfg, paths, precision, data_dir, checkpoint)
    _dataset, cache = prepare_dataset(cfg, paths, data_dir, checkpoint)
    backend = create_backend(cfg.backend, Path(model_path) if model_path else paths.model_dir(precision),
                             cfg.backend_options, where, cfg.sources)
    try:
        backend.check_build(cfg.model, model_entry(cfg).options, precision)
    except BaseException:
        backend.close()
        raise
    qsl = QSL(cache, perf_count)
    warm = cache.load([i % len(cache) for i in range(backend.batch_size)])
    started = time.monotonic()
    backend.warmup(warm)
    sut = make_sut(scenario, backend, qsl, postprocess, config_file)
    sut.expected_batch_s = time.monotonic() - started     # the watchdog's yardstick (loadgen/guard.py)
    return sut, qsl, backend


def require_current_build(cfg: BenchmarkConfig, paths: OutputPaths, precision: str,
                          data_dir: str | Path | None, checkpoint: str | Path | None) -> None:
    """Refuse a build made from other weights, model options, precision or preprocessing than
    this run would use (``buildrecord.py``), naming the command that rebuilds it."""
    from mlperf_bnas.buildrecord import BuildInputs, require_current

    if not paths.model_dir(precision).is_dir():
        return          # nothing built: the backend says how to build it (no weights to hash for that)
    weights = resolve_weights(cfg, paths, checkpoint)
    now = BuildInputs(model=cfg.model, precision=precision, weights_sha256=weights.sha256,
                      weights_source="seeded weights, no CHECKPOINT" if weights.seeded else f"CHECKPOINT={weights.path}",
                      preprocess_key=preprocess_spec(cfg, checkpoint).key,
                      model_options=dataclasses.asdict(built_entry(cfg, checkpoint).options))
    command = ["mlperf-bnas", "build", "--benchmark", str(cfg.benchmark_dir), "--output-dir", str(paths.output_dir),
               "--system", paths.system, "--precision", precision]
    if data_dir:
        command += ["--data-dir", str(data_dir)]
    if checkpoint:
        command += ["--checkpoint", str(checkpoint)]
    from_command_line = any(source == "command line" for source in cfg.sources.values())
    rebuild = (f"{cfg.benchmark_dir / 'run_calibration.sh'} with the same CHECKPOINT, DATA_DIR and OUTPUT_DIR, or "
               f"`{' '.join(command)}`" + (" with the same --set options" if from_command_line else ""))
    require_current(paths.model_dir(precision), now, rebuild)
