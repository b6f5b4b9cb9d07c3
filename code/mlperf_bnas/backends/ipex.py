"""``engine: ipex`` of the pytorch backend: a TorchScript file built and run with Intel Extension for PyTorch.

The seed submission's pipeline (Intel's RetinaNet ``run_calibration.sh``
"calibrates and generates a torchscript model"), in the IPEX environment of its
own (``./prepare_env.sh --ipex``: torch 2.8 + IPEX 2.8; ``mlperf-bnas`` moves
there by itself, see ``commands/engine_env.py``).

Build (``build_torchscript``, from ``mlperf-bnas build`` with engine ipex):

* INT8: IPEX's own static quantization (``ipex.quantization.prepare`` ->
  calibration -> ``convert``) with the seed's NNCF settings: symmetric
  per-tensor activations with NNCF's mean-of-min/max ranges
  (``SeedActivationObserver``), symmetric per-tensor INT8 weights on
  [-127, 127] (``max|w| / 127``), pre/post-processing in float, on the same
  calibration samples as the Inductor build (``pytorch.calibration_inputs``).
  Not NNCF itself: NNCF's torch 2.8 path (``quantize_pt2e``) emits torchao's
  ``quantized_decomposed`` ops, which IPEX's TorchScript passes leave alone, so
  the "INT8" TorchScript would run FP32 convolutions between fake-quantize
  ops (checked: docs/ipex.md). IPEX's ``convert`` emits the
  ``aten::quantize_per_tensor``/``dequantize`` pairs its oneDNN Graph (LLGA)
  fusion turns into INT8 kernels.
* FP32: ``ipex.optimize`` (oneDNN weight prepacking). IPEX's INT8 recipe has no
  ``ipex.optimize`` step: ``convert`` plus the fusion at run time do that work.
* Then ``torch.jit.trace`` + ``torch.jit.freeze``, saved as
  ``model.torchscript.pt`` with ``quantization.json`` (the build record:
  versions, CPU, settings, calibration samples, convolution counts, sha256) in
  ``build/<benchmark>/model/<precision>/``, written to a private folder and
  swapped in.

Run (``IPEXBackend``): ``torch.jit.load`` of that file, after checking the
record: same torch and IPEX versions, same file (sha256), same model, model
options, precision and batch size; anything else is refused naming the file and
what differs. It never rebuilds. The first calls profile the graph and let IPEX
fuse it (warm-up, before LoadGen starts). Threads, instances and completion
threads are the pytorch backend's.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.ao.quantization import MinMaxObserver, QConfig, QConfigMapping

from mlperf_bnas.backends import ipex_env
from mlperf_bnas.backends.base import BuildContext
from mlperf_bnas.backends.cpu import cpu_info
from mlperf_bnas.backends.pytorch import ENGINE_BACKENDS, PROGRAM_NAME, PyTorchBackend, calibration_inputs
from mlperf_bnas.buildrecord import build_folder
from mlperf_bnas.config import check_options
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import sha256_file
from mlperf_bnas.paths import BUILD_RECORD

log = logging.getLogger(__name__)

TORCHSCRIPT_NAME = "model.torchscript.pt"
ENGINE = "ipex"
FORMAT = "TorchScript (torch.jit.trace + torch.jit.freeze), Intel Extension for PyTorch"
#: The rebuild command every refusal names.
REBUILD = "rebuild it with ENGINE=ipex ./run_calibration.sh (mlperf-bnas build --set backend_options.engine=ipex)"
#: The seed's weights: symmetric per-tensor INT8 on [-127, 127], scale = max|w| / 127, zero point 0.
WEIGHT_OBSERVER = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                                           quant_min=-127, quant_max=127)


class SeedActivationObserver(MinMaxObserver):
    """NNCF's symmetric activation ranges, as an observer IPEX's static quantization accepts.

    NNCF (``preset: performance``) quantizes activations symmetrically, with the
    range from the *mean* over calibration batches of each batch's min and max
    (``RangeEstimatorParametersSet.MEAN_MINMAX``, its default for per-tensor
    activations), unsigned (zero point 0, ``max / 255``) where every value seen
    was >= 0 (after a ReLU) and signed otherwise (``max|x| / 127.5``, zero point
    128 in IPEX's uint8). torch's ``MinMaxObserver`` takes the extreme over all
    batches and always centres a symmetric range, which halves the resolution
    of the post-ReLU activations. Cheap, unlike IPEX's default ``HistogramObserver``
    (271 s for 8 images of 800x800 on the Xeon: ~4.7 h for MLPerf's 500).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", torch.quint8)
        kwargs.setdefault("qscheme", torch.per_tensor_symmetric)
        super().__init__(**kwargs)
        self.register_buffer("sum_min", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("sum_max", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("batches", torch.tensor(0))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        # Python numbers and in-place fills only: IPEX's prepare hands in a tensor subclass, and
        # arithmetic on it would turn the buffers into that subclass (which cannot be deep-copied).
        low, high = (float(v) for v in torch.aminmax(x_orig.detach()))   # one pass over the tensor
        self.sum_min.fill_(float(self.sum_min) + low)
        self.sum_max.fill_(float(self.sum_max) + high)
        self.batches.fill_(int(self.batches) + 1)
        self.min_val.fill_(float(self.sum_min) / int(self.batches))
        self.max_val.fill_(float(self.sum_max) / int(self.batches))
        return x_orig

    @torch.jit.export
    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batches > 0 and float(self.min_val) >= 0.0:
            scale = torch.clamp(self.max_val / 255.0, min=float(self.eps)).reshape(1)
            return scale, torch.zeros(1, dtype=torch.int64)
        return super().calculate_qparams()


def qconfig_mapping() -> QConfigMapping:
    return QConfigMapping().set_global(QConfig(activation=SeedActivationObserver, weight=WEIGHT_OBSERVER))


#: What the build records about the quantization scheme (``quantization.json``).
SCHEME = {"activations": "symmetric per-tensor; range = mean over calibration batches of each batch's min and max "
                         "(NNCF MEAN_MINMAX); uint8 zero point 0 (max/255) when never negative, else zero point 128 "
                         "(max|x|/127.5)",
          "weights": "int8 symmetric per-tensor, scale = max|w| / 127 (min-max), zero point 0",
          "overflow_fix": "disable",
          "bias_correction": "none",
          "preprocessing": "float (the x/255, mean/std multiply-add before the first quantize)",
          "batchnorm": "folded into the convolutions by ipex.quantization.prepare"}


def count_convolutions(graph: Any) -> dict[str, int]:
    """Convolutions in a frozen TorchScript graph, those whose weight is a dequantized INT8 tensor, and
    the activation quantizers (``aten::quantize_per_tensor``, which IPEX fuses into INT8 kernels)."""
    convs = [n for n in graph.nodes() if n.kind() in ("aten::_convolution", "aten::conv2d")]
    int8 = 0
    for node in convs:
        if list(node.inputs())[1].node().kind() == "aten::dequantize":
            int8 += 1
    # ipex.optimize (FP32) swaps every convolution for IPEX's own, with prepacked weights.
    ipex_convs = sum(1 for n in graph.nodes() if n.kind() == "torch_ipex::convolution_forward")
    quantize = sum(1 for n in graph.nodes() if n.kind() == "aten::quantize_per_tensor")
    return {"convolutions": len(convs) + ipex_convs, "int8_convolutions": int8, "fake_quantize_ops": quantize}


def fusion_groups(module: Any, example: torch.Tensor, calls: int = 3) -> int:
    """oneDNN Graph (LLGA) fusion groups IPEX made once the profiling executor has seen ``calls`` runs."""
    with torch.no_grad():
        for _ in range(calls):
            module(example)
    graph = torch.jit.last_executed_optimized_graph()
    return sum(1 for n in graph.nodes() if n.kind() == "ipex::LlgaFusionGroup")


def _json_options(options: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(options).items()}


class _ExpectedWarnings:
    """Collect a build's warnings: the known ones (docs/ipex.md) are counted, any other is shown."""

    def __enter__(self) -> "_ExpectedWarnings":
        self._ctx = warnings.catch_warnings(record=True)
        self._caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)
        self.counts: Counter[str] = Counter()
        for w in self._caught:
            text = str(w.message)
            known = next((p for p in ipex_env.EXPECTED_WARNINGS if re.search(p, text)), None)
            if known and not log.isEnabledFor(logging.DEBUG):
                self.counts[f"{w.category.__name__}: {text[:70]}"] += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def build_torchscript(ctx: BuildContext, batch_size: int) -> Path:
    """Quantize (INT8) or optimize (FP32) with IPEX, trace, freeze, save with the build record
    (``ctx.record``'s provenance and calibration, plus what IPEX did)."""
    ipex = ipex_env.import_ipex()
    isa = ipex_env.check_cpu()
    started = time.time()
    entry = ctx.entry
    example = entry.example_input(batch_size)
    module = ctx.torch_model.eval()
    info: dict[str, Any] = {
        **ctx.record, "precision": ctx.precision,   # benchmark, model, options, weights, dataset, calibration
        "batch_size": batch_size, "engine": ENGINE, "format": FORMAT, "program": TORCHSCRIPT_NAME,
        "torch_version": torch.__version__, "ipex_version": ipex.__version__,
        "torchvision_version": ipex_env.versions()["torchvision"], "python": platform.python_version(),
        "environment": sys.prefix, "cpu": {"model": cpu_info().model, "isa_flags": isa,
                                           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "preprocess": ctx.spec.to_dict(), "preprocess_key": ctx.spec.key}
    with _ExpectedWarnings() as caught, torch.no_grad():
        if ctx.precision == "int8":
            qcfg = ctx.quantization
            inputs, names = calibration_inputs(ctx)
            target = entry.prepare_for_quantization(module)
            prepared = ipex.quantization.prepare(target, qconfig_mapping(),
                                                 example_inputs=entry.example_input(qcfg.calibration_batch_size),
                                                 inplace=False)
            t0 = time.time()
            log.info("IPEX %s static INT8: calibrating on %d sample(s)", ipex.__version__, len(names))
            for x in inputs:
                prepared(x)
            calibration_s = time.time() - t0
            model = ipex.quantization.convert(prepared, inplace=True)   # the prepared copy is not needed after
            info["quantization"] = {
                "tool": "intel-extension-for-pytorch", "tool_version": ipex.__version__,
                "api": "ipex.quantization.prepare -> calibrate -> convert (static INT8)",
                "config": qcfg.to_dict(), **SCHEME,
                "why_not_nncf": "NNCF's torch 2.8 path (quantize_pt2e) emits torchao quantized_decomposed ops that "
                                "IPEX's TorchScript fusion does not lower (FP32 convolutions between fake-quantize "
                                "ops); see docs/ipex.md",
                "calibration_samples_used": len(names), "calibration_seconds": round(calibration_s, 1),
                "observers": {"activation": "SeedActivationObserver (mlperf_bnas.backends.ipex)",
                              "weight": "torch MinMaxObserver(qint8, per_tensor_symmetric, -127..127)"}}
            info["model_rewrites"] = entry.quantization_rewrites()
            info["ipex_optimize"] = "not applied: IPEX's static INT8 recipe is prepare/convert, then trace + freeze"
        else:
            model = ipex.optimize(module, dtype=torch.float32, inplace=False)
            info["quantization"] = None
            info["ipex_optimize"] = "ipex.optimize(model, dtype=torch.float32)"
        traced = torch.jit.trace(model, example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        info.update(count_convolutions(frozen.graph))
        info["llga_fusion_groups"] = fusion_groups(frozen, example) if ctx.precision == "int8" else 0
    info["warnings_hidden"] = dict(caught.counts)
    if caught.counts:
        log.info("hid %d expected warning(s) of IPEX and TorchScript (docs/ipex.md; -v shows them)",
                 sum(caught.counts.values()))
    if ctx.precision == "int8" and (info["int8_convolutions"] == 0 or info["llga_fusion_groups"] == 0):
        raise RuntimeError(f"IPEX produced no INT8 convolution ({info['int8_convolutions']} dequantized weights, "
                           f"{info['llga_fusion_groups']} oneDNN fusion groups); see the log above")
    info["build_seconds"] = round(time.time() - started, 1)
    out_dir = Path(ctx.out_dir)
    with build_folder(out_dir, info) as tmp:
        torch.jit.save(frozen, str(tmp / TORCHSCRIPT_NAME))
        info["program_sha256"] = sha256_file(tmp / TORCHSCRIPT_NAME)
    log.info("built %s %s TorchScript with IPEX %s in %s (%d convolutions, %d INT8, %d oneDNN fusion groups)",
             ctx.cfg.model, ctx.precision, ipex.__version__, out_dir, info["convolutions"],
             info["int8_convolutions"], info["llga_fusion_groups"])
    return out_dir / TORCHSCRIPT_NAME


@ENGINE_BACKENDS.register(ENGINE)
class IPEXBackend(PyTorchBackend):
    """The pytorch backend running a TorchScript file built by ``build_torchscript`` (``engine: ipex``)."""

    @classmethod
    def build(cls, ctx: BuildContext) -> Path:
        options = check_options("backend_options", ctx.cfg.backend_options, PyTorchBackend.Options, ctx.where)
        return build_torchscript(ctx, options.batch_size)

    def _load_model(self, path: Path) -> Any:
        program = path / TORCHSCRIPT_NAME if path.is_dir() else path
        if not program.is_file():
            if (program.parent / PROGRAM_NAME).is_file():
                raise UserError(f"{program.parent}: holds an exported program for engine inductor/eager "
                                f"({PROGRAM_NAME}), not an IPEX TorchScript file; {REBUILD}")
            raise UserError(f"{program}: not found; build it first: {REBUILD}")
        record_path = program.parent / BUILD_RECORD
        if not record_path.is_file():
            raise UserError(f"{record_path}: missing (the build record of {program.name}); {REBUILD}")
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{record_path}: unreadable build record ({exc}); {REBUILD}") from None
        ipex = ipex_env.import_ipex()
        built = {"engine": record.get("engine"), "torch": record.get("torch_version"),
                 "IPEX": record.get("ipex_version"), "batch_size": record.get("batch_size")}
        here = {"engine": ENGINE, "torch": torch.__version__, "IPEX": ipex.__version__,
                "batch_size": self.options.batch_size}
        differ = [f"{k} {built[k]} (built) vs {here[k]} (now)" for k in built if built[k] != here[k]]
        if differ:
            raise UserError(f"{program}: built for another setup: {'; '.join(differ)}; {REBUILD}")
        if record.get("program_sha256") != sha256_file(program):
            raise UserError(f"{program}: its sha256 differs from the build record's ({record_path.name}): the file was "
                            f"changed or replaced since it was built; {REBUILD}")
        self.info = record
        self.program_path = program
        ipex_env.quiet_expected_warnings()
        try:
            return torch.jit.load(str(program), map_location="cpu")
        except (RuntimeError, OSError, ValueError) as exc:
            raise UserError(f"{program}: cannot load the TorchScript file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]}); {REBUILD}") from None

    def check_build(self, model: str, model_options: Any, precision: str) -> None:
        """Refuse a TorchScript file built for another model, other model options or another precision."""
        expected = {"model": model, "precision": str(precision), **{f"model_options.{k}": v
                                                               for k, v in _json_options(model_options).items()}}
        built = {"model": self.info.get("model"), "precision": self.info.get("precision"),
                 **{f"model_options.{k}": v for k, v in (self.info.get("model_options") or {}).items()}}
        differ = [f"{k} {built.get(k)!r} (built) vs {expected.get(k)!r} (now)"
                  for k in sorted(set(expected) | set(built)) if built.get(k) != expected.get(k)]
        if differ:
            raise UserError(f"{self.program_path}: built for another model: {'; '.join(differ[:4])}"
                            f"{' ...' if len(differ) > 4 else ''}; {REBUILD}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "format": FORMAT, "torch": torch.__version__,
                "ipex": self.info.get("ipex_version"), "environment": sys.prefix}
