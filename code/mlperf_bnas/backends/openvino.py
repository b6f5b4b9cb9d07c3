"""The OpenVINO CPU backend, and the only module of the package that imports ``openvino``.

Two halves:

* The build (``OpenVINOBackend.build``, i.e. ``build_openvino_ir``): convert a torch
  module, quantize it (NNCF INT8), put the preprocessing (u8 NHWC BGR -> f32 NCHW RGB,
  mean/scale) into the graph with ``PrePostProcessor``, save the IR with its build record.
* ``OpenVINOBackend`` (registered "openvino"): compiles the IR once (reshaped to
  ``batch_size``), warms it up before LoadGen starts, and runs batches through an
  ``AsyncInferQueue``. ``submit`` returns at once (it blocks only while every
  infer request is busy, which is the back-pressure Offline needs); the queue's
  callback calls the SUT's ``done`` exactly once per batch, with the outputs or
  with the exception that stopped their retrieval.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from mlperf_bnas.backends.base import BACKENDS, Backend, BuildContext, Completion
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import replace_dir, sha256_file, write_json_atomic
from mlperf_bnas.paths import BUILD_RECORD
from mlperf_bnas.quantize.qconfig import QuantizationConfig

log = logging.getLogger(__name__)

OPENVINO_VERSION = ov.get_version()
IR_NAME = "model.xml"

_core: ov.Core | None = None
_core_lock = threading.Lock()


def core() -> ov.Core:
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


# ---------------------------------------------------------------------------
# IR building
# ---------------------------------------------------------------------------
def convert_torch(module: Any, example_input: Any) -> ov.Model:
    """``openvino.convert_model`` of a torch module traced with ``example_input`` (float NCHW).

    Every dimension but the batch is fixed to the example's; the backend fixes the batch.
    """
    shape = [-1, *example_input.shape[1:]]
    return ov.convert_model(module, example_input=example_input, input=[ov.PartialShape(shape)])


def add_preprocessing(model: ov.Model, spec: PreprocessSpec) -> ov.Model:
    """Make the graph take samples exactly as ``spec`` caches them.

    For ``normalize="graph"`` (ResNet-50): u8 input in the spec's layout and channel
    order; inside the graph: to f32, channels reversed to RGB, ``(x - mean) / scale``,
    layout to the model's NCHW.
    """
    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    cached_dtype = ov.Type.u8 if spec.dtype == "uint8" else ov.Type.f32
    color = ColorFormat.BGR if spec.channel_order == "BGR" else ColorFormat.RGB
    inp.tensor().set_element_type(cached_dtype).set_layout(ov.Layout(spec.layout)).set_color_format(color)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess()
    steps.convert_element_type(ov.Type.f32)
    if spec.channel_order == "BGR":
        steps.convert_color(ColorFormat.RGB)
    if spec.normalize == "graph" and spec.mean is not None:
        steps.mean(list(spec.mean)).scale(list(spec.scale))
    return ppp.build()


def save_ir(model: ov.Model, xml_path: Path) -> None:
    # Keep FP32 weights as FP32 (the default would compress them to FP16).
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def read_ir(path: Path) -> ov.Model:
    xml = ir_path(path)
    try:
        return core().read_model(str(xml))
    except RuntimeError as exc:
        raise UserError(f"{xml}: OpenVINO cannot read this IR ({str(exc).splitlines()[0]}); rebuild it "
                        "with `mlperf-bnas build`") from None


def ir_path(path: Path) -> Path:
    """A model folder or its ``model.xml`` -> the ``.xml`` file; ``UserError`` when absent."""
    path = Path(path)
    xml = path / IR_NAME if path.is_dir() else path
    if not xml.is_file():
        raise UserError(f"{xml}: model not built; run the benchmark's run_calibration.sh (mlperf-bnas build) first")
    return xml


def count_ops(model_or_path: ov.Model | Path, type_name: str) -> int:
    """How many ops of ``type_name`` (e.g. ``FakeQuantize``) the model holds."""
    model = model_or_path if isinstance(model_or_path, ov.Model) else read_ir(model_or_path)
    return sum(1 for op in model.get_ops() if op.get_type_name() == type_name)


def input_description(model_or_path: ov.Model | Path) -> dict[str, Any]:
    model = model_or_path if isinstance(model_or_path, ov.Model) else read_ir(model_or_path)
    inp = model.input(0)
    return {"shape": str(inp.get_partial_shape()), "element_type": inp.get_element_type().get_type_name()}


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

    out_dir = Path(out_dir)
    qcfg = quantization_config or QuantizationConfig()
    started = time.time()
    example = torch.from_numpy(preprocess_spec.to_float_nchw(
        np.zeros((1, *preprocess_spec.sample_shape), np.dtype(preprocess_spec.dtype))))
    torch_model = torch_model.eval()
    with torch.no_grad():
        ov_model = convert_torch(torch_model, example)
    info: dict[str, Any] = dict(record or {})
    info.update({"precision": "int8" if calibration_batch is not None else "fp32",
                 "openvino_version": OPENVINO_VERSION, "torch_version": torch.__version__,
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
    ov_model = add_preprocessing(ov_model, preprocess_spec)
    info["fake_quantize_ops"] = count_ops(ov_model, "FakeQuantize")
    info["input"] = input_description(ov_model)
    info["build_seconds"] = round(time.time() - started, 1)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building.", dir=out_dir.parent))
    try:
        save_ir(ov_model, tmp / IR_NAME)
        info["ir_bin_sha256"] = sha256_file(tmp / IR_NAME.replace(".xml", ".bin"))
        write_json_atomic(tmp / BUILD_RECORD, info)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / IR_NAME


# ---------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------
_HINTS = ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT")


@BACKENDS.register("openvino")
class OpenVINOBackend(Backend):
    @dataclass(frozen=True)
    class Options:
        device: str = "CPU"
        #: OpenVINO performance hint; None leaves the plugin default.
        performance_hint: str | None = "THROUGHPUT"
        #: CPU streams; None lets the hint decide.
        num_streams: int | None = None
        #: Infer requests in the AsyncInferQueue; None: the compiled model's optimal number.
        num_requests: int | None = None
        #: Samples per inference (the IR is reshaped to it); Offline queries are split in such batches.
        batch_size: int = 1
        #: Compile for any batch of 1..batch_size instead of exactly batch_size, so a partial batch
        #: (Server's dynamic batching) costs what it holds instead of a padded full batch.
        dynamic_batch: bool = False
        inference_num_threads: int | None = None
        enable_cpu_pinning: bool | None = None
        #: INFERENCE_PRECISION_HINT ("f32", "bf16", "f16"); None: the plugin's default, which on CPUs
        #: with bf16 support runs an FP32 IR's float layers in bf16.
        inference_precision: str | None = None
        warmup_iterations: int = 4

        def __post_init__(self) -> None:
            if self.performance_hint is not None and self.performance_hint not in _HINTS:
                raise ValueError(f"performance_hint {self.performance_hint!r} not one of {', '.join(_HINTS)}")
            for name in ("num_streams", "num_requests", "inference_num_threads"):
                value = getattr(self, name)
                if value is not None and (not isinstance(value, int) or value < 1):
                    raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
            if self.inference_precision not in (None, "f32", "bf16", "f16"):
                raise ValueError(f"inference_precision {self.inference_precision!r} not one of f32, bf16, f16")
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    @classmethod
    def build(cls, ctx: BuildContext) -> Path:
        """The IR of ``ctx.torch_model`` (``build_openvino_ir``), INT8-calibrated on ``ctx.calibration``."""
        calibration = ctx.calibration.samples if ctx.calibration is not None else None
        return build_openvino_ir(ctx.torch_model, ctx.spec, calibration, ctx.out_dir, ctx.quantization, ctx.record)

    def __init__(self, model_path: Path | None, options: "OpenVINOBackend.Options"):
        if model_path is None:
            raise UserError("the openvino backend needs a built model; run `mlperf-bnas build` first")
        self.options = options
        self.batch_size = options.batch_size
        self.model_path = ir_path(model_path)
        model = read_ir(self.model_path)
        shape = model.input(0).get_partial_shape()
        if shape.rank.is_dynamic or any(d.is_dynamic for d in list(shape)[1:]):
            raise UserError(f"{self.model_path}: input shape {shape} has dynamic non-batch dimensions; "
                            "rebuild the model with `mlperf-bnas build`")
        sample_shape = [d.get_length() for d in list(shape)[1:]]
        batch_dim = ov.Dimension(1, options.batch_size) if options.dynamic_batch else ov.Dimension(options.batch_size)
        model.reshape({model.input(0): ov.PartialShape([batch_dim, *(ov.Dimension(d) for d in sample_shape)])})
        self._input_shape = (options.batch_size, *sample_shape)
        self._input_dtype = model.input(0).get_element_type().to_dtype()
        config: dict[str, Any] = {}
        if options.performance_hint:
            config["PERFORMANCE_HINT"] = options.performance_hint
        if options.num_streams is not None:
            config["NUM_STREAMS"] = str(options.num_streams)
        if options.inference_num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = options.inference_num_threads
        if options.inference_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = options.inference_precision
        if options.enable_cpu_pinning is not None:
            config["ENABLE_CPU_PINNING"] = options.enable_cpu_pinning
        try:
            self.compiled = core().compile_model(model, options.device, config)
        except RuntimeError as exc:
            raise UserError(f"backend_options: OpenVINO could not compile {self.model_path} for "
                            f"{options.device} with {config} ({str(exc).splitlines()[0]})") from None
        self.num_requests = options.num_requests or int(
            self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.parallelism = self.num_requests
        self._queue = ov.AsyncInferQueue(self.compiled, self.num_requests)
        self._queue.set_callback(self._on_done)
        self._single_output = len(self.compiled.outputs) == 1
        log.info("OpenVINO %s: %s", OPENVINO_VERSION, self.describe())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    def warmup(self, batch: np.ndarray | None = None, iterations: int | None = None) -> None:
        if batch is None:
            batch = np.zeros(self._input_shape, self._input_dtype)
        n = self.options.warmup_iterations if iterations is None else iterations
        # Enough batches to touch every infer request at least once.
        super().warmup(batch, iterations=max(1, n))
        for _ in range(self.num_requests):
            self.submit(batch, len(batch), lambda _o, err: None)
        self.drain()

    def submit(self, batch: np.ndarray | None, size: int, done: Completion) -> None:
        if batch is None:
            raise ValueError("the openvino backend needs input samples")
        if size < self.batch_size and not self.options.dynamic_batch:
            padded = np.zeros(self._input_shape, batch.dtype)
            padded[:size] = batch[:size]
            batch = padded
        # share_inputs: OpenVINO reads the array in place; userdata keeps it alive until done.
        self._queue.start_async({0: batch}, (done, size, batch), share_inputs=True)

    def _on_done(self, request: ov.InferRequest, userdata: tuple) -> None:
        done, size, _batch = userdata
        outputs: Any = None
        error: BaseException | None = None
        try:
            if self._single_output:
                outputs = request.get_output_tensor(0).data[:size]
            else:
                outputs = [request.get_output_tensor(i).data[:size] for i in range(len(self.compiled.outputs))]
        except Exception as exc:  # noqa: BLE001 - reported through done, never lost
            error = exc
        try:
            # ``outputs`` are views of the request's buffers, valid until this callback returns:
            # the SUT post-processes them synchronously inside ``done``.
            done(outputs, error)
        except Exception:  # noqa: BLE001 - an exception here would kill OpenVINO's callback thread
            log.exception("completion callback raised")

    def drain(self) -> None:
        self._queue.wait_all()

    def close(self) -> None:
        self.drain()
        self._queue = None
        self.compiled = None

    def describe(self) -> dict[str, Any]:
        props = {}
        for key in ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT"):
            try:
                props[key.lower()] = str(self.compiled.get_property(key))
            except RuntimeError:
                pass
        return {"model": str(self.model_path), "device": self.options.device, "batch_size": self.batch_size,
                "dynamic_batch": self.options.dynamic_batch,
                "num_requests": self.num_requests, **props}
