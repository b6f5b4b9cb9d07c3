"""The pipeline as library functions: dataset -> build -> SUT. Commands are thin wrappers.

Everything a step writes goes under ``OutputPaths`` (``paths.py``); every step
can be rerun and reuses what is current (caches keyed by spec and source,
synthetic data keyed by the labelling model), and writes atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlperf_bnas.config import BenchmarkConfig, check_options
from mlperf_bnas.data import DATASETS, CachedSamples, Dataset, PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import write_atomic
from mlperf_bnas.paths import OutputPaths
from mlperf_bnas.quantize.config import QuantizationConfig
from mlperf_bnas.registry import Registry

log = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp32")
_announced: set[str] = set()


# ---------------------------------------------------------------------------
# command-line plumbing shared by the pipeline commands (dataset, build, run, accuracy, ...)
# ---------------------------------------------------------------------------
def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """``--benchmark DIR --output-dir DIR --system NAME [--data-dir DIR] [--checkpoint FILE] [--set k=v]``."""
    p.add_argument("--benchmark", required=True, metavar="DIR", help="benchmark directory, e.g. code/resnet50-openvino")
    p.add_argument("--output-dir", default=".", metavar="DIR", help="root of results/, build/, compliance/ (default: .)")
    p.add_argument("--system", default="local_cpu", metavar="NAME", help="system name used in results/<system>/")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="real dataset folder (default: synthetic data)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="model weights: state dict or exported NAS sub-network (default: seeded weights)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. backend_options.num_streams=2 (repeatable)")


def config_from_args(args: argparse.Namespace, scenario: str | None = None,
                     tuned: tuple[dict[str, Any], str] | None = None) -> tuple[BenchmarkConfig, OutputPaths]:
    """The benchmark's config for ``scenario``: config.yaml, then ``tuned`` = (backend options, their
    source) when the run uses a tuned conf, then ``--set`` (the command line always wins)."""
    from mlperf_bnas.config import load_config, parse_set_options

    sets = parse_set_options(args.set)
    cfg = load_config(args.benchmark, scenario)
    if tuned and tuned[0]:
        cfg = cfg.with_overrides({"backend_options": tuned[0]}, tuned[1])
    if sets:
        cfg = cfg.with_overrides(sets, "command line")
    return cfg, output_paths(cfg, args.output_dir, args.system)


def run_config_from_args(args: argparse.Namespace, scenario: str) -> tuple[BenchmarkConfig, OutputPaths]:
    """``config_from_args`` for a LoadGen run with ``args.user_conf``: a conf written by
    `mlperf-bnas tune` carries the backend settings its target_qps was measured with, and
    they apply (running that target_qps on other settings would be another system)."""
    from mlperf_bnas.loadgen.userconf import tuned_backend_options

    user_conf = Path(args.user_conf)
    tuned = tuned_backend_options(user_conf, scenario) if user_conf.is_file() else {}
    if tuned:
        log.info("backend options from the tuned conf %s: %s", user_conf, tuned)
    return config_from_args(args, scenario, (tuned, f"{user_conf} (tuned)"))


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def output_paths(cfg: BenchmarkConfig, output_dir: str | Path, system: str) -> OutputPaths:
    return OutputPaths(Path(output_dir), system, cfg.benchmark, cfg.loadgen_model)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")



def model_entry(cfg: BenchmarkConfig):
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
    seed = getattr(entry.options, "seed", 0)
    path = paths.build_dir / "model" / "seeded" / f"{cfg.model}-seed{seed}.pt"
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


def load_torch_model(cfg: BenchmarkConfig, paths: OutputPaths, checkpoint: str | Path | None):
    """``(FP32 torch module in eval mode, Weights)``."""
    weights = resolve_weights(cfg, paths, checkpoint)
    return model_entry(cfg).build(weights.path), weights


# ---------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------
def synthetic_root(cfg: BenchmarkConfig, paths: OutputPaths) -> Path:
    return paths.data_dir(cfg.dataset)


def cache_root(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None) -> Path:
    # Synthetic and real data never share a cache folder (their sources differ anyway).
    return paths.cache_root(cfg.dataset if data_dir else f"{cfg.dataset}-synthetic")


def make_labeller(cfg: BenchmarkConfig, module, spec: PreprocessSpec, batch: int = 16) -> Callable:
    """labeller(image paths) -> top-1 class of the FP32 model per image (synthetic ground truth)."""
    import torch
    from PIL import Image

    entry = model_entry(cfg)
    if hasattr(entry, "make_labeller"):
        # Models whose ground truth is not a class id (detectors) label their own way.
        return entry.make_labeller(module, spec)

    def label(image_paths):
        labels: list[int] = []
        for start in range(0, len(image_paths), batch):
            samples = []
            for p in image_paths[start:start + batch]:
                with Image.open(p) as img:
                    samples.append(spec.apply(img))
            with torch.no_grad():
                out = module(entry.to_torch_input(np.stack(samples), spec))
            labels.extend(int(v) for v in out.argmax(1))
        return labels

    return label


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
            module = model_entry(cfg).build(weights.path)
            spec = model_entry(cfg).preprocess_spec(weights.path if not weights.seeded else None)
            cls.make_synthetic(root, options, make_labeller(cfg, module, spec), stamp)
    elif not root.is_dir():
        raise UserError(f"{root}: no synthetic dataset yet; run `mlperf-bnas dataset` (or pass --data-dir)")
    return cls.open(root, options)


def preprocess_spec(cfg: BenchmarkConfig, checkpoint: str | Path | None) -> PreprocessSpec:
    return model_entry(cfg).preprocess_spec(Path(checkpoint) if checkpoint else None)


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
def _replace_dir(tmp: Path, dest: Path) -> None:
    """Swap a finished build folder into place (the previous build is derived data: removed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_openvino_ir(torch_model, preprocess_spec: PreprocessSpec, calibration_batch: np.ndarray | None,
                      out_dir: str | Path, quantization_config: QuantizationConfig | None = None,
                      record: dict[str, Any] | None = None) -> Path:
    """Torch module -> OpenVINO IR in ``out_dir`` (FP32, or INT8 when ``calibration_batch`` is given).

    ``convert_model`` -> ``nncf.quantize`` (calibration samples as cached: they are
    converted to the model's float input here) -> PrePostProcessor putting the
    preprocessing into the graph -> ``model.xml`` + ``quantization.json``,
    written to a private folder and swapped in. Returns the path of ``model.xml``.
    """
    import torch

    from mlperf_bnas.backends import openvino as ovb

    out_dir = Path(out_dir)
    qcfg = quantization_config or QuantizationConfig()
    started = time.time()
    example = torch.from_numpy(preprocess_spec.to_float_nchw(
        np.zeros((1, *preprocess_spec.sample_shape), np.dtype(preprocess_spec.dtype))))
    torch_model = torch_model.eval()
    with torch.no_grad():
        ov_model = ovb.convert_torch(torch_model, example)
    info: dict[str, Any] = dict(record or {})
    info.update({"precision": "int8" if calibration_batch is not None else "fp32",
                 "openvino_version": ovb.OPENVINO_VERSION, "torch_version": torch.__version__,
                 "python": platform.python_version(), "preprocess": preprocess_spec.to_dict(),
                 "preprocess_key": preprocess_spec.key,
                 "preprocessing_in_graph": "u8 {layout} {order} input -> f32 -> RGB -> (x - mean) / scale -> NCHW"
                 .format(layout=preprocess_spec.layout, order=preprocess_spec.channel_order)})
    if calibration_batch is not None:
        from mlperf_bnas.quantize.nncf import quantize_openvino

        bs = qcfg.calibration_batch_size
        samples = calibration_batch[:qcfg.subset_size]
        inputs = [preprocess_spec.to_float_nchw(samples[i:i + bs]) for i in range(0, len(samples), bs)]
        ov_model, qrecord = quantize_openvino(ov_model, inputs, qcfg)
        info["quantization"] = qrecord
    else:
        info["quantization"] = None
    ov_model = ovb.add_preprocessing(ov_model, preprocess_spec)
    info["fake_quantize_ops"] = ovb.count_ops(ov_model, "FakeQuantize")
    info["input"] = ovb.input_description(ov_model)
    info["build_seconds"] = round(time.time() - started, 1)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building.", dir=out_dir.parent))
    try:
        ovb.save_ir(ov_model, tmp / ovb.IR_NAME)
        info["ir_bin_sha256"] = sha256_file(tmp / ovb.IR_NAME.replace(".xml", ".bin"))
        write_json_atomic(tmp / "quantization.json", info)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / ovb.IR_NAME


@dataclass
class BuildContext:
    """Everything a backend's builder needs for one precision."""

    cfg: BenchmarkConfig
    paths: OutputPaths
    precision: str
    torch_model: Any
    weights: Weights
    spec: PreprocessSpec
    dataset: Dataset
    cache: CachedSamples
    out_dir: Path
    quantization: QuantizationConfig
    calibration_indices: list[int] = field(default_factory=list)


#: backend name -> builder(BuildContext) -> built model path. Other backends register theirs.
BUILDERS: Registry[Callable[[BuildContext], Path]] = Registry("model builder")
BUILDERS.register_lazy("pytorch", "mlperf_bnas.backends.pytorch")


@BUILDERS.register("openvino")
def _build_openvino(ctx: BuildContext) -> Path:
    calibration = None
    record: dict[str, Any] = {"benchmark": ctx.cfg.benchmark, "model": ctx.cfg.model,
                              "model_options": dataclasses.asdict(model_entry(ctx.cfg).options),
                              "weights": ctx.weights.describe(), "dataset": ctx.cfg.dataset}
    if ctx.precision == "int8":
        calibration = ctx.cache.load(ctx.calibration_indices)
        record["calibration"] = {"count": len(ctx.calibration_indices),
                                 "qsl_indices": ctx.calibration_indices,
                                 "names": [ctx.cache.names[i] for i in ctx.calibration_indices]}
    return build_openvino_ir(ctx.torch_model, ctx.spec, calibration, ctx.out_dir, ctx.quantization, record)


def build(cfg: BenchmarkConfig, paths: OutputPaths, data_dir: str | Path | None,
          checkpoint: str | Path | None, precision: str) -> Path:
    """Build the model for ``cfg.backend`` at ``precision`` into ``build/<benchmark>/model/<precision>/``."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    builder = BUILDERS.get(cfg.backend)
    qcfg = quantization_config(cfg)
    dataset, cache = prepare_dataset(cfg, paths, data_dir, checkpoint)
    module, weights = load_torch_model(cfg, paths, checkpoint)
    indices: list[int] = []
    if precision == "int8":
        cal_list = None
        if hasattr(dataset, "default_calibration_list"):
            cal_list = dataset.default_calibration_list(paths.calibration_dir)
        indices = dataset.calibration_indices(cal_list)[:qcfg.subset_size]
        log.info("calibrating on %d sample(s) from %s", len(indices), cal_list)
    ctx = BuildContext(cfg=cfg, paths=paths, precision=precision, torch_model=module, weights=weights,
                       spec=preprocess_spec(cfg, checkpoint), dataset=dataset, cache=cache,
                       out_dir=paths.model_dir(precision), quantization=qcfg, calibration_indices=indices)
    return builder(ctx)


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
        perf_count = _performance_sample_count(cfg)
        qsl = QSL(ZeroSamples(perf_count), perf_count)
        started = time.monotonic()
        backend.warmup(None)
        sut = make_sut(scenario, backend, qsl, postprocess, config_file)
        sut.expected_batch_s = time.monotonic() - started
        return sut, qsl, backend
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    # Cheap checks first, before minutes of dataset preparation and compilation: the backend
    # options, and the build (synthetic data would be relabelled for weights the build lacks).
    options = check_options("backend_options", cfg.backend_options, backend_cls.Options, where, cfg.sources)
    check_stream_batch(scenario, getattr(options, "batch_size", 1), config_file)
    if model_path is None and cfg.backend in BUILDERS:     # a backend without a build has no build to check
        require_current_build(cfg, paths, precision, data_dir, checkpoint)
    _dataset, cache = prepare_dataset(cfg, paths, data_dir, checkpoint)
    backend = create_backend(cfg.backend, Path(model_path) if model_path else paths.model_dir(precision),
                             cfg.backend_options, where, cfg.sources)
    try:
        backend.check_build(cfg.model, model_entry(cfg).options, precision)
    except BaseException:
        backend.close()
        raise
    qsl = QSL(cache, _performance_sample_count(cfg))
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

    weights = resolve_weights(cfg, paths, checkpoint)
    now = BuildInputs(model=cfg.model, precision=precision, weights_sha256=weights.sha256,
                      weights_source="seeded weights, no CHECKPOINT" if weights.seeded else f"CHECKPOINT={weights.path}",
                      preprocess_key=preprocess_spec(cfg, checkpoint).key,
                      model_options=dataclasses.asdict(model_entry(cfg).options))
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


def _performance_sample_count(cfg: BenchmarkConfig) -> int:
    try:
        return model_entry(cfg).performance_sample_count
    except UserError:
        return 1024
