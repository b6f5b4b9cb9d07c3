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

Why twice as many infer requests as the plugin's optimal number (one per stream):
``benchmark_app`` restarts a finished request inside OpenVINO's own C++ callback, so a
stream never waits. Here a finished request's callback first takes the GIL, answers
LoadGen, and only then is the request idle for the SUT's issue thread to wake up,
gather the next batch and start it: with one request per stream, the stream sits
idle for that whole Python round trip, every batch (and longer when the Python
threads must wait for a core the pinned inference threads hold). With a second
request per stream already queued inside the plugin, the stream goes straight on
to it and the Python work overlaps inference. ``parallelism`` (what the batching
Server SUT keeps in flight) stays at the optimal number, so Server batches still
form in the SUT's queue, not in the plugin's.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from mlperf_bnas.backends.cpu import CpuInfo, cpu_info
from mlperf_bnas.backends.base import BACKENDS, Backend, BuildContext, Completion
from mlperf_bnas.buildrecord import build_folder
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import sha256_file
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
                      record: dict[str, Any] | None = None, precision: str | None = None) -> Path:
    """Torch module -> OpenVINO IR in ``out_dir`` (FP32, or INT8 when ``calibration_batch`` is given;
    ``precision`` "bf16": the FP32 IR whose precision policy runs its float layers in bf16).

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
    info.update({"precision": str(precision or ("int8" if calibration_batch is not None else "fp32")),
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
    with build_folder(out_dir, info) as tmp:
        save_ir(ov_model, tmp / IR_NAME)
        # The float layers' precision, chosen now (measured on AMX-BF16 CPUs) and recorded; the
        # backend applies it (the precision policy below).
        info["precision_policy"] = choose_precision(tmp / IR_NAME, info["precision"], calibration_batch)
        info["ir_bin_sha256"] = sha256_file(tmp / IR_NAME.replace(".xml", ".bin"))
    return out_dir / IR_NAME


# ---------------------------------------------------------------------------
# Precision policy
# ---------------------------------------------------------------------------
# The precision policy of OpenVINO builds: in which precision a build's float layers run.
#
# OpenVINO's CPU plugin, left to itself, runs float layers in bf16 wherever the CPU has
# bf16 support, so an "FP32" build would not be FP32 and an INT8 build's float layers
# (first convolution, softmax, the parts NNCF leaves in float) would lose precision
# nobody chose. Here the choice is explicit, made once at build time, and recorded in
# the build record (``precision_policy``), which the backend then applies
# (``INFERENCE_PRECISION_HINT``) and the submission's measurements file repeats:
#
# * ``fp32`` build: f32, always (true FP32 is what the name promises).
# * ``bf16`` build: bf16 (the FP32 IR with bf16 float layers, a build of its own). On a CPU
#   without bf16 hardware OpenVINO may run it in f32; the record says what it really ran.
# * ``int8`` build: f32, unless the CPU has AMX-BF16 (``amx_bf16`` in /proc/cpuinfo) *and*
#   bf16 measured faster here (median of interleaved rounds, by ``min_speedup``) *and* the
#   INT8 model's answers kept (top-1 agreement with its own f32 run on the calibration
#   samples >= ``min_agreement``). Without AMX-BF16 nothing is measured: bf16 emulated or on
#   AVX512-BF16 alone does not pay for its loss, and the record says so.
MIN_SPEEDUP = 1.05
MIN_AGREEMENT = 0.99


def _compile_at(xml: Path, precision: str, batch: int) -> ov.CompiledModel:
    model = core().read_model(str(xml))
    shape = model.input(0).get_partial_shape()
    model.reshape({model.input(0): ov.PartialShape([ov.Dimension(batch), *list(shape)[1:]])})
    return core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision})


def effective_precision(compiled: ov.CompiledModel) -> str:
    """What the plugin really runs (it may ignore a bf16 hint on a CPU without bf16)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _throughput(compiled: ov.CompiledModel, batch_input: np.ndarray, seconds: float) -> float:
    """Samples per second with every infer request busy for ``seconds`` (an Offline-like load)."""
    n = 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, n)
    for _ in range(n):                                  # warm-up
        queue.start_async({0: batch_input})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: batch_input})
        done += 1
    queue.wait_all()
    return done * len(batch_input) / (time.perf_counter() - start)


def _policy_outputs(compiled: ov.CompiledModel, samples: np.ndarray) -> np.ndarray:
    request = compiled.create_infer_request()
    batch = compiled.input(0).get_partial_shape()[0].get_length()
    rows = []
    for i in range(0, len(samples) - len(samples) % batch, batch):
        rows.append(np.array(request.infer({0: samples[i:i + batch]})[compiled.output(0)]).reshape(batch, -1))
    return np.concatenate(rows) if rows else np.zeros((0, 1))


def agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Top-1 agreement of two runs' outputs (classification logits, one row per sample)."""
    if len(reference) == 0:
        return float("nan")
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1)))


def choose_precision(xml: Path, precision: str, samples: np.ndarray | None = None, *, batch: int = 4,
           seconds: float = 2.0, rounds: int = 3, cpu: CpuInfo | None = None,
           min_speedup: float = MIN_SPEEDUP, min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """The ``precision_policy`` record of the build at ``xml`` (see the module docstring)."""
    xml = Path(xml)
    cpu = cpu or cpu_info()
    record: dict[str, Any] = {"cpu": cpu.describe(), "measured": None}
    if precision == "fp32":
        return {**record, "inference_precision": "f32",
                "reason": "FP32 build: float layers in true f32 (INFERENCE_PRECISION_HINT f32), never OpenVINO's "
                          "bf16 default"}
    if precision == "bf16":
        runs_as = effective_precision(_compile_at(xml, "bf16", 1))
        reason = "bf16 build: the FP32 IR with its float layers in bf16"
        if not cpu.native_bf16:
            reason += (f"; this CPU ({cpu.model}) has no amx_bf16 flag, and OpenVINO runs it as {runs_as} here, "
                       "so this build is only meaningful on an AMX Xeon")
        return {**record, "inference_precision": "bf16", "runs_as_here": runs_as, "reason": reason}
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}")
    if not cpu.native_bf16:
        return {**record, "inference_precision": "f32",
                "reason": f"INT8 build on a CPU without AMX-BF16 (no amx_bf16 flag in /proc/cpuinfo: {cpu.model}): "
                          "float layers stay f32; bf16 is only considered, and measured, on AMX-BF16 CPUs"}
    compiled = {p: _compile_at(xml, p, batch) for p in ("f32", "bf16")}
    dtype = compiled["f32"].input(0).get_element_type().to_dtype()
    shape = [d.get_length() for d in list(compiled["f32"].input(0).get_partial_shape())]
    batch_input = (samples[:batch] if samples is not None and len(samples) >= batch
                   else np.zeros(shape, dtype)).astype(dtype, copy=False)
    speed: dict[str, list[float]] = {"f32": [], "bf16": []}
    for _ in range(rounds):                      # interleaved, so machine load hits both alike
        for p in speed:
            speed[p].append(_throughput(compiled[p], batch_input, seconds))
    speedup = statistics.median(speed["bf16"]) / statistics.median(speed["f32"])
    agree = float("nan")
    if samples is not None and len(samples) >= batch:
        agree = agreement(_policy_outputs(compiled["f32"], samples.astype(dtype, copy=False)),
                          _policy_outputs(compiled["bf16"], samples.astype(dtype, copy=False)))
    fidelity_ok = agree == agree and agree >= min_agreement
    chosen = "bf16" if speedup >= min_speedup and fidelity_ok else "f32"
    measured = {"samples_per_s": speed, "bf16_speedup_median": round(speedup, 4), "rounds": rounds,
                "seconds_per_run": seconds, "batch": batch, "top1_agreement_bf16_vs_f32": agree,
                "agreement_samples": 0 if samples is None else len(samples) - len(samples) % batch,
                "min_speedup": min_speedup, "min_agreement": min_agreement}
    why = (f"bf16 {speedup:.2f}x f32 (median of {rounds} interleaved rounds; needs >= {min_speedup}), top-1 "
           f"agreement with f32 {agree:.4f} (needs >= {min_agreement})")
    log.info("precision policy (INT8 float layers): %s: %s", chosen, why)
    return {**record, "inference_precision": chosen, "measured": measured,
            "reason": f"INT8 build on an AMX-BF16 CPU ({cpu.model}): {chosen}: {why}"}


# ---------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------
def _inference_precision(option: str | None, xml: Path) -> tuple[str, str]:
    """``(INFERENCE_PRECISION_HINT, where it came from)``: the option when set, else the build
    record's precision policy, else f32."""
    if option is not None:
        return option, "backend_options.inference_precision"
    record = xml.parent / BUILD_RECORD
    try:
        policy = json.loads(record.read_text(encoding="utf-8")).get("precision_policy") or {}
    except (OSError, ValueError, AttributeError):
        policy = {}             # no record or an unreadable one: f32 (require_current_build judges records)
    chosen = policy.get("inference_precision") if isinstance(policy, dict) else None
    if chosen in ("f32", "bf16", "f16"):
        return chosen, f"{record} (precision_policy: {policy.get('reason', 'no reason recorded')})"
    return "f32", "default f32 (the build records no precision policy)"


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
        #: Infer requests in the AsyncInferQueue; None: ``requests_per_stream`` x the compiled
        #: model's optimal number (see the module docstring for why more than one per stream).
        num_requests: int | None = None
        #: With ``num_requests`` unset: infer requests per optimal request (stream); 1 is what the
        #: harness used before (a stream idles while Python answers its last batch).
        requests_per_stream: int = 2
        #: Samples per inference (the IR is reshaped to it); Offline queries are split in such batches.
        batch_size: int = 1
        #: Compile for any batch of 1..batch_size instead of exactly batch_size, so a partial batch
        #: (Server's dynamic batching) costs what it holds instead of a padded full batch.
        dynamic_batch: bool = False
        inference_num_threads: int | None = None
        # CPU placement, passed to the plugin as is (None: the plugin decides). OpenVINO keeps its
        # own streams and pinning: it spreads THROUGHPUT streams over the NUMA nodes itself.
        #: ENABLE_CPU_PINNING: pin each stream's threads to its cores.
        enable_cpu_pinning: bool | None = None
        #: ENABLE_HYPER_THREADING: also use the second hardware thread of each core.
        enable_hyper_threading: bool | None = None
        #: ENABLE_CPU_RESERVATION: keep the streams' cores from other work of this process.
        enable_cpu_reservation: bool | None = None
        #: SCHEDULING_CORE_TYPE: ANY_CORE, PCORE_ONLY or ECORE_ONLY (hybrid CPUs).
        scheduling_core_type: str | None = None
        #: MODEL_DISTRIBUTION_POLICY: ["TENSOR_PARALLEL"] splits one inference over the sockets
        #: (a LATENCY stream spanning NUMA nodes); [] or None: one stream stays on one node.
        model_distribution_policy: tuple[str, ...] | None = None
        #: INFERENCE_PRECISION_HINT ("f32", "bf16", "f16"); None: the build's precision policy (its
        #: record's ``precision_policy``: the precision policy above), f32 for a model without
        #: one; never the plugin's default, which runs float layers in bf16 wherever the CPU has it.
        inference_precision: str | None = None
        warmup_iterations: int = 4

        def __post_init__(self) -> None:
            if self.performance_hint is not None and self.performance_hint not in _HINTS:
                raise ValueError(f"performance_hint {self.performance_hint!r} not one of {', '.join(_HINTS)}")
            for name in ("num_streams", "num_requests", "inference_num_threads", "requests_per_stream"):
                value = getattr(self, name)
                if value is not None and (not isinstance(value, int) or value < 1):
                    raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
            if self.inference_precision not in (None, "f32", "bf16", "f16"):
                raise ValueError(f"inference_precision {self.inference_precision!r} not one of f32, bf16, f16")
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
            if self.scheduling_core_type not in (None, "ANY_CORE", "PCORE_ONLY", "ECORE_ONLY"):
                raise ValueError(f"scheduling_core_type {self.scheduling_core_type!r} not one of "
                                 "ANY_CORE, PCORE_ONLY, ECORE_ONLY")
            if self.model_distribution_policy is not None and not set(self.model_distribution_policy) <= \
                    {"TENSOR_PARALLEL"}:
                raise ValueError(f"model_distribution_policy {self.model_distribution_policy!r}: "
                                 "a list of TENSOR_PARALLEL or empty")

    @classmethod
    def build(cls, ctx: BuildContext) -> Path:
        """The IR of ``ctx.torch_model`` (``build_openvino_ir``), INT8-calibrated on ``ctx.calibration``."""
        calibration = ctx.calibration.samples if ctx.calibration is not None else None
        return build_openvino_ir(ctx.torch_model, ctx.spec, calibration, ctx.out_dir, ctx.quantization, ctx.record,
                                 precision=ctx.precision)

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
        precision, self.precision_source = _inference_precision(options.inference_precision, self.model_path)
        config["INFERENCE_PRECISION_HINT"] = precision
        if options.enable_cpu_pinning is not None:
            config["ENABLE_CPU_PINNING"] = options.enable_cpu_pinning
        if options.enable_hyper_threading is not None:
            config["ENABLE_HYPER_THREADING"] = options.enable_hyper_threading
        if options.enable_cpu_reservation is not None:
            config["ENABLE_CPU_RESERVATION"] = options.enable_cpu_reservation
        if options.scheduling_core_type is not None:
            config["SCHEDULING_CORE_TYPE"] = options.scheduling_core_type
        if options.model_distribution_policy:       # the plugin refuses an empty set
            config["MODEL_DISTRIBUTION_POLICY"] = ",".join(options.model_distribution_policy)
        try:
            self.compiled = core().compile_model(model, options.device, config)
        except RuntimeError as exc:
            # OpenVINO's message is a stack of "Exception from <file>:<line>:" lines; the last
            # non-empty one says what is wrong.
            reason = [line for line in str(exc).splitlines() if line.strip()][-1:] or ["unknown error"]
            raise UserError(f"backend_options: OpenVINO could not compile {self.model_path} for "
                            f"{options.device} with {config} ({reason[0].strip()})") from None
        optimal = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.num_requests = options.num_requests or optimal * options.requests_per_stream
        # The batching Server SUT keeps this many batches in flight: one per stream, so a
        # batch still forming waits in the SUT's queue, where later samples can join it.
        self.parallelism = min(optimal, self.num_requests)
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
        for key in ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT",
                    "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING"):
            try:
                props[key.lower()] = str(self.compiled.get_property(key))
            except RuntimeError:
                pass
        return {"model": str(self.model_path), "device": self.options.device, "batch_size": self.batch_size,
                "inference_precision_from": self.precision_source,
                "dynamic_batch": self.options.dynamic_batch,
                "num_requests": self.num_requests, **props}
