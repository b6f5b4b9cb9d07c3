"""One PyTorch backend instance as a process of its own (``backend_options.mode: process``).

Started by ``backends/instances.py`` as ``python -m mlperf_bnas.backends.instance_child
CONFIG_JSON``, in a process group of its own (a terminal's Ctrl-C reaches the parent
only, which decides when instances stop), with its output in a log file. It pins itself
to its core group *before* torch starts its OpenMP pool (so every OpenMP thread inherits
the group), builds the same backend class as the parent names (``PyTorchBackend`` or an
engine subclass such as IPEX) as one unpinned thread-mode instance of ``threads``
threads, and so loads and compiles the model itself, from its own main thread.

Protocol on its socket (``multiprocessing.connection``, pickled tuples):

* parent -> child: ``("warmup", batch, iterations)``, ``("slots", path, slot_bytes)`` (the
  shared input file, mapped once), ``("postprocess", module, qualname)`` (the SUT's
  postprocessor, run here so only the responses travel back), ``("run", seq, slot, shape,
  dtype, size, indices)`` and ``("stop",)``;
* child -> parent: ``("ready", facts)``, ``("warm", seconds)``, ``("attached",)``,
  ``("done", seq, result, error)`` and ``("error", type, message)`` before it exits
  on a startup failure. ``result`` is the postprocessor's responses, or the raw
  outputs as numpy arrays when no postprocessor was given; ``error`` is
  ``(type name, message)`` or None.

Its inference runs in the main thread, one batch after the other; post-processing runs
in ``completion_threads`` threads (inline when 0), on the spare cores when the layout
left any, so the next batch starts at once. The parent dying ends it (``PR_SET_PDEATHSIG``
and the socket's end of file).
"""

from __future__ import annotations

import signal
import sys


def _die_with_parent() -> None:
    """SIGTERM when the parent exits, however it exits (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)     # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the parent stops us ("stop", or its death)
    _die_with_parent()
    import json
    import os

    cfg = json.loads(argv[0])
    if cfg.get("cpus"):
        # Before torch is imported: the OpenMP pool it creates inherits this affinity.
        os.sched_setaffinity(0, cfg["cpus"])
    import importlib
    import logging
    import mmap
    import threading
    import time
    from multiprocessing.connection import Connection

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s instance {cfg['index']} %(levelname)s %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("mlperf_bnas.instance")
    conn = Connection(int(cfg["fd"]))
    started = time.monotonic()
    try:
        from pathlib import Path

        import numpy as np

        import torch

        from mlperf_bnas.backends import allocator

        module, _, name = cfg["backend_class"].partition(":")
        cls = getattr(importlib.import_module(module), name)
        options = cls.Options(**cfg["options"])
        backend = cls(Path(cfg["model_path"]), options)
        facts = {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)), "threads": backend.threads,
                 "info": backend.info, "program": str(backend.program_path),
                 "allocator": allocator.loaded_library(), "load_s": round(time.monotonic() - started, 2)}
        conn.send(("ready", facts))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it there
        log.exception("instance %s failed to start", cfg["index"])
        try:
            conn.send(("error", type(exc).__name__, str(exc)))
        except OSError:
            pass
        return 1

    send_lock = threading.Lock()
    post_cpus = cfg.get("post_cpus")
    postprocess = None
    slots: np.ndarray | None = None
    slot_bytes = 0

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    def post_thread_start() -> None:
        import torch

        torch.set_num_threads(1)
        if post_cpus:
            os.sched_setaffinity(0, post_cpus)      # post-processing off the inference cores

    def finish(seq: int, outputs, error, indices) -> None:
        result = None
        if error is None:
            try:
                if postprocess is not None:
                    result = postprocess(outputs, indices)
                else:
                    # numpy has no bfloat16: such outputs come back as float32 (exactly representable)
                    result = tuple((o.detach().float() if o.dtype.is_floating_point and o.dtype != torch.float64
                                    else o.detach()).numpy() if hasattr(o, "detach") else np.asarray(o)
                                   for o in outputs)
            except Exception as exc:  # noqa: BLE001 - the SUT counts it as a failed batch
                error = exc
        send(("done", seq, result, None if error is None else (type(error).__name__, str(error))))

    import concurrent.futures

    completions = (concurrent.futures.ThreadPoolExecutor(int(cfg["completion_threads"]), "instance-completion",
                                                         initializer=post_thread_start)
                   if cfg["completion_threads"] else None)
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return 0                                 # the parent is gone
            kind = message[0]
            if kind == "stop":
                return 0
            if kind == "run":
                _, seq, slot, shape, dtype, size, indices = message
                outputs, error = None, None
                try:
                    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
                    if slots is None or count > slot_bytes:
                        raise RuntimeError(f"input slot {slot} not mapped or too small for {shape}")
                    batch = np.frombuffer(slots, dtype=dtype, count=int(np.prod(shape)),
                                          offset=slot * slot_bytes).reshape(shape)
                    outputs = backend._infer(batch, size)
                except Exception as exc:  # noqa: BLE001 - handed to the SUT, which fails the run
                    error = exc
                if completions is not None and error is None:
                    completions.submit(finish, seq, outputs, None, indices)
                else:
                    finish(seq, outputs, error, indices)
            elif kind == "warmup":
                _, batch, iterations = message
                t0 = time.monotonic()
                try:
                    backend.warmup(batch, iterations)
                except Exception as exc:  # noqa: BLE001
                    send(("error", type(exc).__name__, str(exc)))
                    continue
                send(("warm", round(time.monotonic() - t0, 2)))
            elif kind == "slots":
                _, path, slot_bytes = message
                with open(path, "r+b") as f:
                    slots = mmap.mmap(f.fileno(), 0)
                send(("attached",))
            elif kind == "postprocess":
                _, module, qualname = message
                target = importlib.import_module(module)
                for part in qualname.split("."):
                    target = getattr(target, part)
                postprocess = target
            else:
                raise RuntimeError(f"unknown message {kind!r} from the parent")
    finally:
        if completions is not None:
            completions.shutdown(wait=True)
        backend.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
