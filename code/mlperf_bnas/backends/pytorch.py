"""The PyTorch CPU backend (registered "pytorch") and its model builder.

Build (``PyTorchBackend.build``, run by ``mlperf-bnas build``): the model entry's
FP32 module is exported with ``torch.export`` -- for INT8 first rewritten so no
module is used twice (the entry's ``prepare_for_quantization``) and quantized by
NNCF ``quantize_pt2e`` with ``X86InductorQuantizer`` (``quantize/nncf.py``) --
and saved as an ``ExportedProgram`` (``model.pt2``, ``torch.export.save``) with
``quantization.json``. A run loads that program, so it never re-quantizes.

Run: the program is loaded and, with ``engine: inductor`` (default),
``torch.compile``d with Inductor freezing (constant weights, which is what lets
the INT8 q/dq patterns lower to oneDNN INT8 convolutions), then warmed up before
LoadGen starts. ``engine: eager`` runs the exported graph op by op (the FP32
baseline). ``engine: ipex`` builds and runs a TorchScript file instead (Intel
Extension for PyTorch's static INT8, ``torch.jit.trace`` + ``freeze``), in the
IPEX environment of its own (torch 2.8): see ``backends/ipex.py``.

Parallelism: ``instances`` instances, each running whole batches with ``threads`` intra-op
(OpenMP) threads, pinned (``pin``, default) to a core group of its own cut from the sysfs
topology (``backends/layout.py``: ``instances x cores_per_instance``, optionally one NUMA
node); post-processing on completion threads, on the cores left over when there are any.
``mode`` says what an instance is:

* ``thread`` (default): a worker thread of this process. Instances share the compiled program
  (one compilation; its weights are read-only constants, each call allocates its own
  activations) and the GIL, which they hold only between batches. Torch's thread count is
  process-global in name but OpenMP's is per calling thread, and Inductor bakes ``threads``
  into its kernels at compile time, so ``instances x threads`` is realised as ``instances``
  concurrent OpenMP teams of ``threads`` threads each.
* ``process``: a process of its own, as in Intel's harness (``backends/instances.py``): pinned
  before torch starts, it loads and compiles the model itself and runs the SUT's
  post-processing too, so only LoadGen responses come back; inputs reach it through shared
  memory. An instance that dies fails the run with its name and log, never hangs it.

``done`` is called exactly once per batch, with the outputs (or, when the backend adopted
the SUT's postprocessor, the responses) or the exception.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlperf_bnas.backends import allocator, layout, torch_precision
from mlperf_bnas.backends.base import BACKENDS, Backend, BuildContext, Completion, InFlight, take_queued
from mlperf_bnas.buildrecord import build_folder
from mlperf_bnas.config import check_options
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import sha256_file
from mlperf_bnas.paths import BUILD_RECORD
from mlperf_bnas.registry import Registry

log = logging.getLogger(__name__)

PROGRAM_NAME = "model.pt2"
ENGINES = ("inductor", "eager", "ipex")
#: How instances run: threads of this process, or processes of their own (backends/instances.py).
MODES = ("thread", "process")
#: Engines with a build and a backend of their own (a subclass of PyTorchBackend with its own
#: ``build(ctx)``), imported only when chosen.
ENGINE_BACKENDS: Registry[type] = Registry("pytorch engine")
ENGINE_BACKENDS.register_lazy("ipex", "mlperf_bnas.backends.ipex")


def _register_quantized_ops() -> None:
    """``quantized_decomposed`` ops used by INT8 programs live in torchao since torch left torch.ao."""
    import torchao.quantization.pt2e  # noqa: F401  (registers torch.ops.quantized_decomposed)
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  (Inductor INT8 lowerings)


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
def export_program(module: torch.nn.Module, example: torch.Tensor) -> Any:
    with torch.no_grad():
        return torch.export.export(module, (example,))


def load_program(path: Path) -> torch.nn.Module:
    """Our own saved ``ExportedProgram`` as a callable module (built by ``mlperf-bnas build``)."""
    _register_quantized_ops()
    try:
        program = torch.export.load(str(path))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: cannot load the built program ({type(exc).__name__}: {str(exc)[:160]}); "
                        "rebuild it with run_calibration.sh / mlperf-bnas build") from None
    return program.module()


def count_quantized_convolutions(module: torch.nn.Module) -> dict[str, int]:
    """Convolutions whose weight comes from an INT8 dequantize, and all convolutions, in an FX graph."""
    graph = module.graph
    convs = [n for n in graph.nodes if n.op == "call_function" and "convolution" in str(n.target) or
             n.op == "call_function" and "conv2d" in str(n.target)]
    quantized = [n for n in convs if len(n.args) > 1 and "dequantize" in str(getattr(n.args[1], "target", ""))]
    return {"convolutions": len(convs), "int8_convolutions": len(quantized)}


def calibration_inputs(ctx: BuildContext) -> tuple[list[torch.Tensor], list[str]]:
    """The calibration batches (model inputs, ``calibration_batch_size`` each) and their sample names:
    the samples the dataset chose from its calibration set (``ctx.calibration``), at most
    ``quantization.subset_size``. Every pytorch engine calibrates on these."""
    qcfg = ctx.quantization
    samples = ctx.calibration.samples[:qcfg.subset_size]
    bs = qcfg.calibration_batch_size
    inputs = [ctx.entry.to_torch_input(samples[i:i + bs], ctx.spec) for i in range(0, len(samples), bs)]
    return inputs, list(ctx.calibration.names[:len(samples)])


def precision_policy(ctx: BuildContext, program: Any, batch: int, max_batches: int = 4) -> dict[str, Any]:
    """Whether the build's float parts run in bf16 autocast (``backends/torch_precision.py``): measured
    on up to ``max_batches`` calibration batches of the program's batch size, compiled as a run is."""
    batches: list[torch.Tensor] = []
    if ctx.calibration is not None:
        samples = ctx.calibration.samples
        batches = [ctx.entry.to_torch_input(samples[i:i + batch], ctx.spec)
                   for i in range(0, len(samples) - batch + 1, batch)][:max_batches]

    def make_runner(precision: str):
        compiled = compile_program(program.module(), "inductor")

        def run(x: torch.Tensor) -> Any:
            with torch_precision.autocast(precision):
                return compiled(x)
        return run

    return torch_precision.choose(ctx.precision, make_runner, batches)


def build_pytorch(ctx: BuildContext) -> Path:
    """FP32: export the module. INT8: rewrite, quantize (NNCF pt2e), export. Saved to ``ctx.out_dir``.

    ``engine: ipex`` builds a TorchScript file instead (``backends/ipex.py``).
    """
    if ctx.precision == "bf16":
        raise UserError("--precision bf16: the pytorch backend builds int8 and fp32 (its float parts run in "
                        "f32); bf16 builds are OpenVINO's for now (docs/performance.md)")
    entry = ctx.entry
    options = check_options("backend_options", ctx.cfg.backend_options, PyTorchBackend.Options, ctx.where)
    if options.engine in ENGINE_BACKENDS:
        return ENGINE_BACKENDS.get(options.engine).build(ctx)
    batch = options.batch_size
    example = entry.example_input(batch)
    started = time.time()
    info: dict[str, Any] = {**ctx.record, "precision": ctx.precision, "batch_size": batch,
                            "torch_version": torch.__version__,
                            "preprocess": ctx.spec.to_dict(), "preprocess_key": ctx.spec.key,
                            "format": "torch.export ExportedProgram (torch.export.save)"}
    module = ctx.torch_model.eval()
    if ctx.precision == "int8":
        from mlperf_bnas.quantize.nncf import quantize_torch_fx

        qcfg = ctx.quantization
        bs = qcfg.calibration_batch_size
        inputs, _names = calibration_inputs(ctx)
        target = entry.prepare_for_quantization(module)
        ignored = list(entry.quantization_ignored_modules())
        quantized, record = quantize_torch_fx(target, entry.example_input(bs), inputs, qcfg, ignored)
        record["model_rewrites"] = entry.quantization_rewrites()
        info["quantization"] = record
        module = quantized
    else:
        info["quantization"] = None
    program = export_program(module, example)
    info["precision_policy"] = precision_policy(ctx, program, batch)
    info.update(count_quantized_convolutions(program.module()))
    info["fake_quantize_ops"] = info["quantization"]["quantize_ops"] if info["quantization"] else 0
    if ctx.precision == "int8" and info["int8_convolutions"] == 0:
        raise RuntimeError("quantization produced no INT8 convolution; see the NNCF log above")
    info["build_seconds"] = round(time.time() - started, 1)
    out_dir = Path(ctx.out_dir)
    with build_folder(out_dir, info) as tmp:
        torch.export.save(program, str(tmp / PROGRAM_NAME))
        info["program_sha256"] = sha256_file(tmp / PROGRAM_NAME)
    log.info("built %s %s program in %s (%s convolutions, %s INT8)", ctx.cfg.model, ctx.precision, out_dir,
             info["convolutions"], info["int8_convolutions"])
    return out_dir / PROGRAM_NAME


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------
def compile_program(module: torch.nn.Module, engine: str) -> Any:
    """The callable that runs batches: Inductor (freezing), or the graph as is (eager)."""
    if engine == "eager":
        return module
    if engine != "inductor":
        raise ValueError(f"compile_program: engine {engine!r} does not run an exported program")
    import torch._inductor.config as inductor_config

    # Freezing turns the weights into constants: the INT8 q/dq patterns only lower to
    # oneDNN INT8 convolutions (and FP32 convs only get prepacked) with it. Process-wide
    # on purpose: a run process compiles only this program.
    inductor_config.freezing = True
    return torch.compile(module, backend="inductor")


@BACKENDS.register("pytorch")
class PyTorchBackend(Backend):
    #: The program is exported and quantized for one batch size (the backend refuses a mismatch),
    #: and an engine with a builder of its own (ipex: a TorchScript file) needs its own build.
    BUILD_OPTIONS = ("batch_size", "engine")

    @classmethod
    def build_identity(cls, options: Any) -> dict[str, Any]:
        # inductor and eager run the same exported program; an ENGINE_BACKENDS engine builds its own file.
        engine = options.engine if options.engine in ENGINE_BACKENDS else "inductor/eager (one exported program)"
        return {"batch_size": options.batch_size, "engine": engine}

    @dataclass(frozen=True)
    class Options:
        #: Worker threads, each running whole batches.
        instances: int = 1
        #: Intra-op (OpenMP) threads per instance; default: the cores divided among the instances.
        threads: int | None = None
        batch_size: int = 1
        #: inductor (torch.compile, default), eager (the exported graph op by op), ipex (a TorchScript
        #: file built and run with Intel Extension for PyTorch, in its own environment: backends/ipex.py).
        engine: str = "inductor"
        #: Warm-up iterations before LoadGen starts (compilation happens in the first).
        warmup_iterations: int = 2
        #: Threads that run completions (the SUT's post-processing: RetinaNet's decode + NMS) so an
        #: instance starts its next batch at once; 0 runs them in the instance's own thread.
        completion_threads: int = 0
        #: Pin each instance to a core group of its own (backends/layout.py: Intel's layout,
        #: ``instances x cores_per_instance`` whole cores from the sysfs topology); completion
        #: threads then run on the cores no instance uses, when there are any.
        pin: bool = True
        #: Physical cores per instance; None: the usable cores divided among the instances.
        cores_per_instance: int | None = None
        #: Use only this NUMA node's cores; None: every node.
        numa_node: int | None = None
        #: Give an instance both hardware threads of its cores (one OpenMP thread each).
        hyperthreads: bool = False
        #: jemalloc, tcmalloc (from the system's packages) or a library path, preloaded by
        #: re-running the command (commands/allocator_env.py); null: the system allocator.
        allocator: str | None = None
        #: Environment for OpenMP set before the process starts, e.g. {OMP_WAIT_POLICY: PASSIVE}.
        openmp_env: dict | None = None
        #: Float parts (what is not INT8) in f32 or bf16 (torch.autocast); null: the build's precision
        #: policy (backends/torch_precision.py: f32 unless an AMX-BF16 CPU measured bf16 faster and close).
        float_precision: str | None = None
        #: thread: instances are threads of this process sharing one compiled program; process: each
        #: instance is a process of its own (backends/instances.py), pinned before torch starts, loading
        #: and compiling the model itself and running the post-processing too (Intel's harness layout).
        mode: str = "thread"

        def __post_init__(self) -> None:
            if self.instances < 1:
                raise ValueError(f"instances must be >= 1, got {self.instances}")
            if self.threads is not None and self.threads < 1:
                raise ValueError(f"threads must be >= 1, got {self.threads}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.engine not in ENGINES:
                raise ValueError(f"engine {self.engine!r} not one of {', '.join(ENGINES)}")
            if self.warmup_iterations < 1:
                raise ValueError(f"warmup_iterations must be >= 1, got {self.warmup_iterations}")
            if self.completion_threads < 0:
                raise ValueError(f"completion_threads must be >= 0, got {self.completion_threads}")
            if self.allocator is not None and self.allocator not in ("jemalloc", "tcmalloc") \
                    and "/" not in self.allocator:
                raise ValueError(f"allocator {self.allocator!r} not one of jemalloc, tcmalloc, a library path, null")
            if self.cores_per_instance is not None and self.cores_per_instance < 1:
                raise ValueError(f"cores_per_instance must be >= 1 or null, got {self.cores_per_instance}")
            if self.float_precision is not None and self.float_precision not in torch_precision.PRECISIONS:
                raise ValueError(f"float_precision {self.float_precision!r} not one of "
                                 f"{', '.join(torch_precision.PRECISIONS)}, null")
            if self.mode not in MODES:
                raise ValueError(f"mode {self.mode!r} not one of {', '.join(MODES)}")

    @classmethod
    def from_options(cls, model_path: Path | None, options: "PyTorchBackend.Options") -> Backend:
        if options.engine in ENGINE_BACKENDS and cls is PyTorchBackend:
            return ENGINE_BACKENDS.get(options.engine)(model_path, options)
        return cls(model_path, options)

    @classmethod
    def build(cls, ctx: BuildContext) -> Path:
        return build_pytorch(ctx)

    def __init__(self, model_path: Path | None, options: "PyTorchBackend.Options"):
        if model_path is None:
            raise UserError("the pytorch backend needs a built model; run mlperf-bnas build first")
        self.info: dict[str, Any] = {}
        self.options = options
        self.batch_size = options.batch_size
        self.parallelism = options.instances
        # The layout is checked even unpinned: more cores than the machine has is an error.
        self.layout = layout.plan(options.instances, options.cores_per_instance, options.numa_node,
                                  options.hyperthreads)
        self.threads = options.threads or len(self.layout.groups[0])
        log.info("pytorch instances: %s%s%s", self.layout.describe(), "" if options.pin else " (not pinned)",
                 " (processes)" if options.mode == "process" else "")
        self._pool = None
        self.float_precision, self.float_precision_source = "f32", "not loaded yet"
        if options.mode == "process":
            self._start_processes(Path(model_path))
            self._set_float_precision()
            return
        torch.set_num_threads(self.threads)
        with torch.no_grad():
            self._model = self._load_model(Path(model_path))
        self._set_float_precision()
        self._queue: queue.Queue = queue.Queue()
        # One intra-op thread per completion thread: the instances already use every core, and
        # two OpenMP pools spinning on the same cores would slow both.
        self._completions = (concurrent.futures.ThreadPoolExecutor(
            options.completion_threads, "pytorch-completion", initializer=self._completion_thread_start)
            if options.completion_threads else None)
        self._inflight = InFlight()
        self._workers = [threading.Thread(target=self._work, args=(i,), name=f"pytorch-instance-{i}", daemon=True)
                         for i in range(options.instances)]
        for worker in self._workers:
            worker.start()

    def _set_float_precision(self) -> None:
        """The float parts' precision: the option, else the build's policy (each instance process
        decides the same from the same record)."""
        self.float_precision, self.float_precision_source = torch_precision.in_effect(
            self.options.float_precision, self.info)
        log.info("float parts in %s (%s)", self.float_precision, self.float_precision_source)

    def _start_processes(self, model_path: Path) -> None:
        """``mode: process``: one instance process per core group; this process loads no model."""
        from mlperf_bnas.backends.instances import ProcessInstances

        options = self.options
        # Each instance is one unpinned thread-mode instance of ``threads`` threads inside its process,
        # which pins itself to its group; the post-processing runs in its completion threads.
        child = dataclasses.replace(options, mode="thread", instances=1, threads=self.threads, completion_threads=0,
                                    pin=False, cores_per_instance=None, numa_node=None)
        self._completions = None
        self._workers = []
        self._pool = ProcessInstances(type(self), model_path, dataclasses.asdict(child), self.layout.groups,
                                      self.layout.spare if options.pin else None, options.completion_threads,
                                      options.pin, options.batch_size)
        self.info = self._pool.facts.get("info") or {}
        self.program_path = Path(self._pool.facts.get("program", model_path))

    def _load_model(self, path: Path) -> Any:
        """The callable that runs batches; sets ``program_path`` and ``info`` (the build record)."""
        program = path / PROGRAM_NAME if path.is_dir() else path
        if not program.is_file():
            other = next(iter(program.parent.glob("*.torchscript.pt")), None)
            if other is not None:
                raise UserError(f"{program.parent}: holds an IPEX TorchScript build ({other.name}), not an exported "
                                f"program for engine {self.options.engine}; rebuild (run_calibration.sh) or run "
                                "with ENGINE=ipex")
            raise UserError(f"{program}: built model not found; run run_calibration.sh (INT8) or "
                            "mlperf-bnas build --precision fp32 first")
        info_path = program.parent / BUILD_RECORD
        if info_path.is_file():
            self.info = json.loads(info_path.read_text())
            built_batch = self.info.get("batch_size")
            if built_batch is not None and built_batch != self.options.batch_size:
                raise UserError(f"{program}: built for batch_size {built_batch}, backend_options.batch_size is "
                                f"{self.options.batch_size}; rebuild with the same batch size")
        self.program_path = program
        return compile_program(load_program(program), self.options.engine)

    # -- inference -----------------------------------------------------------
    def _infer(self, batch: np.ndarray, size: int) -> tuple:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if x.shape[0] < self.batch_size:
            # The program is compiled for a fixed batch: pad the tail batch, drop the padding after.
            pad = torch.zeros((self.batch_size - x.shape[0], *x.shape[1:]), dtype=x.dtype)
            x = torch.cat([x, pad])
        with torch.no_grad(), torch_precision.autocast(self.float_precision):
            outputs = self._model(x)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        # Per-sample outputs keep the batch axis; constant outputs (RetinaNet's geometry) do not.
        return tuple(o[:size] if o.dim() > 0 and o.shape[0] == self.batch_size and o.dim() > 1 else o
                     for o in outputs)

    def _completion_thread_start(self) -> None:
        torch.set_num_threads(1)
        if self.options.pin and self.layout.spare:
            # Post-processing off the inference cores' critical path.
            os.sched_setaffinity(0, self.layout.spare)

    def _work(self, index: int = 0) -> None:
        if self.options.pin:
            # Linux affinity is per thread (0: the calling one); the OpenMP team this thread
            # starts inherits it, so the instance's threads stay on its cores.
            os.sched_setaffinity(0, self.layout.groups[index])
        torch.set_num_threads(self.threads)      # OpenMP's thread count is per calling thread
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, size, done = item
            outputs, error = None, None
            try:
                outputs = self._infer(batch, size)
            except BaseException as exc:  # noqa: BLE001 - handed to the SUT, which fails the run
                error = exc
            if self._completions is not None:
                self._completions.submit(self._inflight.complete, done, outputs, error)
            else:
                self._inflight.complete(done, outputs, error)

    def adopt_postprocess(self, postprocess: Any) -> bool:
        # Instance processes post-process themselves: RetinaNet's raw outputs are ~130 MB an image.
        return self._pool is not None and self._pool.adopt_postprocess(postprocess)

    def submit(self, batch: np.ndarray | None, size: int, done: Completion, indices: np.ndarray | None = None) -> None:
        if batch is None:
            raise ValueError("the pytorch backend reads its input; got no batch")
        if self._pool is not None:
            self._pool.submit(batch, size, done, indices)
            return
        self._inflight.add()
        self._queue.put((batch, size, done))

    def drain(self) -> None:
        if self._pool is not None:
            self._pool.drain()
            return
        self._inflight.drain()

    def cancel(self) -> None:
        """Drop queued batches (an Offline run queues all of them at once), so a stopped run
        waits for at most the batch each instance is running."""
        if self._pool is not None:
            self._pool.cancel()
            return
        for _batch, _size, done in take_queued(self._queue):
            self._inflight.complete(done, None, RuntimeError("cancelled: the run was stopped"))

    def warmup(self, batch: np.ndarray | None, iterations: int | None = None) -> None:
        """Compile (first call, in *this* thread), then run every instance concurrently so all start warm.

        Measured: a program Inductor compiles from a worker thread runs ~5x slower (in any
        thread) than the same program compiled from the main thread (INT8 800x800: 9.4 s vs
        1.8 s per image), so the compiling call must not go through the worker queue.
        """
        started = time.time()
        errors: list[BaseException] = []

        def done(_outputs: Any, error: BaseException | None) -> None:
            if error is not None:
                errors.append(error)

        if batch is None:
            raise ValueError("the pytorch backend needs a sample batch to warm up")
        if self._pool is not None:
            seconds = self._pool.warmup(batch, iterations or self.options.warmup_iterations)
            log.info("warm-up of %d instance process(es) (%s, incl. compilation) took %.1f s",
                     len(self._pool.instances), self.options.engine, seconds)
            return
        self._infer(batch, len(batch))
        for _ in range(iterations or self.options.warmup_iterations):
            for _ in self._workers:
                self.submit(batch, len(batch), done)
            self.drain()
        if errors:
            raise errors[0]
        log.info("warm-up (%s, incl. compilation) took %.1f s", self.options.engine, time.time() - started)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            return
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
        if self._completions is not None:
            self._completions.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "instances": self.options.instances, "threads": self.threads,
                "completion_threads": self.options.completion_threads,
                "layout": self.layout.describe() + ("" if self.options.pin else " (not pinned)"),
                "allocator": allocator.in_effect(self.options.allocator),
                "openmp_env": {k: os.environ.get(k) for k in (self.options.openmp_env or {})},
                "engine": self.options.engine, "program": str(self.program_path),
                "precision": self.info.get("precision"), "mode": self.options.mode,
                "float_precision": f"{self.float_precision} ({self.float_precision_source})",
                **({"processes": self._pool.describe()} if self._pool is not None else {})}
