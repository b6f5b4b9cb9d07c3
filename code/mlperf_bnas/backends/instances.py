"""PyTorch backend instances as processes (``backend_options.mode: process``), as Intel's harness runs them.

Each instance is a process of its own (``backends/instance_child.py``), pinned to its
core group of the layout (``backends/layout.py``) before torch starts, with as many
OpenMP threads as the group has cores; it loads and compiles the model itself. So the
instances share no GIL, no allocator arenas and no OpenMP runtime, which is what Intel's
MLPerf CPU harnesses get from one process per instance.

Data path, with little copying:

* inputs: one shared file (``/dev/shm``) holds ``DEPTH`` input slots per instance; the
  parent copies a batch into a free slot of the instance that takes it (one ``memcpy``)
  and sends a few bytes (slot, shape, sample indices); the instance runs the model on
  the slot's memory without a copy. The file is unlinked as soon as every instance has
  mapped it, so nothing is left in ``/dev/shm`` whatever happens to the processes.
* outputs: the SUT's postprocessor runs in the instance (``adopt_postprocess``), on its
  completion threads, on the spare cores when there are any; only the LoadGen responses
  travel back (RetinaNet: at most 300 x 7 floats per image, instead of its 120,087 x 264
  class scores). Without a postprocessor the raw outputs come back as numpy arrays.

Every instance takes batches from one queue (so a slow instance takes fewer), at most
``DEPTH`` at a time, so the next batch is already there when one finishes.

Failures: an instance that dies (a crash, the OOM killer, a kill) is found by its
socket's end of file; its batches, every queued batch and every later one are
completed with an error naming the instance, its exit status and its log file (whose
last lines are quoted), so the SUT fails the run and LoadGen ends: never a hang.
A startup failure in an instance (the model missing, another build) is raised in the
parent with the instance's own message (a ``UserError`` stays one). ``close`` stops
the instances ("stop", then SIGTERM, then SIGKILL); they also die with the parent.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlperf_bnas.backends.base import Completion, InFlight, take_queued
from mlperf_bnas.errors import UserError

log = logging.getLogger(__name__)

#: Batches one instance holds at once: the one it runs and the next (input slots per instance).
DEPTH = 2
#: How long an instance gets to stop by itself after "stop" before SIGTERM, then SIGKILL.
STOP_WAIT_S = 10.0
#: Lines of a dead instance's log quoted in the error.
LOG_TAIL_LINES = 8


class InstanceDied(RuntimeError):
    """An instance process ended while it had work (or before it was asked to stop)."""


def _status(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


@dataclass
class _Instance:
    index: int
    cpus: tuple[int, ...]
    proc: subprocess.Popen
    conn: Connection
    log_path: Path
    free_slots: "queue.Queue[int]" = field(default_factory=queue.Queue)
    inflight: dict[int, tuple[Completion, int]] = field(default_factory=dict)
    control: "queue.Queue[tuple]" = field(default_factory=queue.Queue)      # startup/warm-up replies
    facts: dict[str, Any] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    dead: bool = False
    reported: bool = False          # it sent an error of its own before ending

    def name(self) -> str:
        return f"pytorch instance {self.index} (pid {self.proc.pid}, CPUs {','.join(map(str, self.cpus)) or 'any'})"


class ProcessInstances:
    """``len(groups)`` instance processes behind the backend contract (submit / drain / cancel / close)."""

    def __init__(self, backend_class: type, model_path: Path, child_options: dict[str, Any],
                 groups: tuple[tuple[int, ...], ...], post_cpus: tuple[int, ...] | None, completion_threads: int,
                 pin: bool, batch_size: int, start_timeout_s: float | None = None):
        self._queue: queue.Queue = queue.Queue()
        self._batch_size = batch_size
        self._slots_lock = threading.Lock()
        self._lock = threading.Lock()
        self._inflight = InFlight(self._lock)
        self._seq = 0
        self._failed: BaseException | None = None
        self._closing = False
        self._postprocess: tuple[str, str] | None = None
        self._slots: mmap.mmap | None = None
        self._slot_bytes = 0
        self._slot_meta: tuple[tuple[int, ...], str] | None = None      # sample shape, dtype of the slots
        self._log_dir = Path(tempfile.mkdtemp(prefix="mlperf-bnas-instances-"))
        self._keep_logs = False             # an instance died: its log is named in the error, so kept
        self._closed = False
        self.instances: list[_Instance] = []
        self._threads: list[threading.Thread] = []
        # Stopped without close (an interruption while the model loads): stop them and tidy up at exit.
        atexit.register(self.close)
        try:
            for index, cpus in enumerate(groups):
                self.instances.append(self._start(index, backend_class, model_path, child_options,
                                                  cpus if pin else (), post_cpus, completion_threads))
            for inst in self.instances:
                self._threads += [threading.Thread(target=self._read, args=(inst,), daemon=True,
                                                   name=f"instance-{inst.index}-reader"),
                                  threading.Thread(target=self._feed, args=(inst,), daemon=True,
                                                   name=f"instance-{inst.index}-feeder")]
            for thread in self._threads:
                thread.start()
            for inst in self.instances:
                inst.facts = self._reply(inst, "ready", start_timeout_s)[1]
                log.info("%s: loaded in %.1f s, %s threads%s", inst.name(), inst.facts.get("load_s", 0),
                         inst.facts.get("threads"),
                         f", allocator {inst.facts['allocator']}" if inst.facts.get("allocator") else "")
        except BaseException:
            self.close()
            raise

    # -- processes -----------------------------------------------------------
    def _start(self, index: int, backend_class: type, model_path: Path, options: dict[str, Any],
               cpus: tuple[int, ...], post_cpus: tuple[int, ...] | None, completion_threads: int) -> _Instance:
        import json

        parent_sock, child_sock = socket.socketpair()
        log_path = self._log_dir / f"instance-{index}.log"
        config = {"index": index, "fd": child_sock.fileno(), "cpus": list(cpus),
                  "post_cpus": list(post_cpus) if post_cpus else None,
                  "backend_class": f"{backend_class.__module__}:{backend_class.__qualname__}",
                  "model_path": str(model_path), "options": options, "completion_threads": completion_threads}
        env = dict(os.environ)                      # LD_PRELOAD / OpenMP settings reach the instance
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                          env.get("PYTHONPATH")]))
        with open(log_path, "wb") as out:
            # A process group of its own: a terminal's Ctrl-C reaches the parent only, which
            # stops the instances in order (processes.py does the same for a LoadGen run).
            proc = subprocess.Popen([sys.executable, "-m", "mlperf_bnas.backends.instance_child", json.dumps(config)],
                                    pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, process_group=0)
        child_sock.close()
        inst = _Instance(index, tuple(cpus), proc, Connection(parent_sock.detach()), log_path)
        for slot in range(DEPTH):
            inst.free_slots.put(index * DEPTH + slot)
        return inst

    def _reply(self, inst: _Instance, expected: str, timeout: float | None = None) -> tuple:
        """The instance's next control reply; its startup error raised here, with its own message."""
        try:
            reply = inst.control.get(timeout=timeout)
        except queue.Empty:
            raise InstanceDied(f"{inst.name()}: no '{expected}' reply within {timeout:.0f} s; its log: "
                               f"{inst.log_path}") from None
        if reply[0] == "error":
            _, kind, message = reply
            if kind == "UserError":
                raise UserError(message)
            raise RuntimeError(f"{inst.name()}: {kind}: {message} (its log: {inst.log_path})")
        if reply[0] == "died":
            raise reply[1]
        if reply[0] != expected:
            raise RuntimeError(f"{inst.name()}: expected '{expected}', got {reply[0]!r}")
        return reply

    def _read(self, inst: _Instance) -> None:
        """Replies of one instance: completions, and control replies for whoever waits for them."""
        while True:
            try:
                message = inst.conn.recv()
            except (EOFError, OSError):
                self._died(inst)
                return
            if message[0] == "done":
                _, seq, result, error = message
                with self._lock:
                    entry = inst.inflight.pop(seq, None)
                if entry is None:
                    continue
                done, slot = entry
                inst.free_slots.put(slot)
                self._complete(done, result, None if error is None else RuntimeError(
                    f"{inst.name()}: {error[0]}: {error[1]}"))
            else:
                if message[0] == "error":
                    inst.reported = True
                inst.control.put(message)

    def _died(self, inst: _Instance) -> None:
        try:
            rc = inst.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            rc = None
        with self._lock:
            inst.dead = True
            expected = self._closing and not inst.inflight
            orphans = list(inst.inflight.values())
            inst.inflight.clear()
        if expected:
            return
        tail = _tail(inst.log_path)
        error = InstanceDied(f"{inst.name()} died ({_status(rc)}); its log: {inst.log_path}"
                             + (f"; last lines: {tail}" if tail else ""))
        if not (inst.reported and not orphans):      # a startup error is raised with its own message
            log.error("%s", error)
            self._keep_logs = True
        with self._lock:
            if self._failed is None:
                self._failed = error
        inst.control.put(("died", error))
        for done, _slot in orphans:
            self._complete(done, None, error)
        self._fail_queued(error)
        inst.free_slots.put(-1)              # wakes its feeder, which then stops

    # -- inputs --------------------------------------------------------------
    def _ensure_slots(self, batch: np.ndarray) -> None:
        """Map the shared input slots for batches of ``batch_size`` samples like ``batch``'s (on the
        first batch; held while the instances map them, so no batch reaches one before its slots)."""
        with self._slots_lock:
            if self._slots is not None:
                return
            nbytes = int(batch[:1].nbytes) * self._batch_size
            shm = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
            fd, path = tempfile.mkstemp(prefix="mlperf-bnas-slots-", dir=shm)
            try:
                try:
                    os.ftruncate(fd, max(1, nbytes * DEPTH * len(self.instances)))
                    slots = mmap.mmap(fd, 0)
                finally:
                    os.close(fd)
                for inst in self.instances:
                    self._send(inst, ("slots", path, nbytes))
                for inst in self.instances:
                    self._reply(inst, "attached")
            finally:
                os.unlink(path)           # every instance has it mapped: nothing left behind in /dev/shm
            self._slot_meta = (tuple(batch.shape[1:]), batch.dtype.str)
            self._slot_bytes = nbytes
            self._slots = slots

    def _send(self, inst: _Instance, message: tuple) -> None:
        with inst.send_lock:
            inst.conn.send(message)

    def _feed(self, inst: _Instance) -> None:
        """Hand queued batches to one instance, at most ``DEPTH`` at a time."""
        while True:
            slot = inst.free_slots.get()
            if slot < 0:
                return
            item = self._queue.get()
            if item is None:
                self._queue.put(None)                 # for the other feeders
                return
            batch, size, indices, done = item
            with self._lock:
                failed = self._failed
            if failed is not None:
                inst.free_slots.put(slot)
                self._complete(done, None, failed)
                continue
            try:
                shape, dtype = self._slot_meta or ((), "")
                if tuple(batch.shape[1:]) != shape or batch.dtype.str != dtype or batch.nbytes > self._slot_bytes:
                    raise ValueError(f"batch {batch.dtype}{list(batch.shape)} does not fit the instances' input "
                                     f"slots ({dtype}{[len(batch), *shape]}, {self._slot_bytes} bytes)")
                start = slot * self._slot_bytes
                view = np.frombuffer(self._slots, dtype=batch.dtype, count=batch.size, offset=start)
                view[:] = batch.reshape(-1)
            except Exception as exc:  # noqa: BLE001 - this batch fails, the instance goes on
                inst.free_slots.put(slot)
                self._complete(done, None, exc)
                continue
            with self._lock:
                failed = self._failed
                if failed is None and not inst.dead:
                    self._seq += 1
                    seq = self._seq
                    inst.inflight[seq] = (done, slot)
            if failed is not None or inst.dead:
                self._complete(done, None, failed or InstanceDied(f"{inst.name()} has died"))
                continue
            try:
                self._send(inst, ("run", seq, slot, tuple(batch.shape), batch.dtype.str, size,
                                  None if indices is None else np.asarray(indices)))
            except OSError:
                with self._lock:             # the reader may have completed it already
                    entry = inst.inflight.pop(seq, None)
                if entry is not None:
                    self._complete(done, None, InstanceDied(f"{inst.name()}: cannot send it a batch"))

    def _fail_queued(self, error: BaseException) -> None:
        for item in take_queued(self._queue):
            self._complete(item[3], None, error)

    def _complete(self, done: Completion, outputs: Any, error: BaseException | None) -> None:
        self._inflight.complete(done, outputs, error)

    # -- the backend contract ------------------------------------------------
    def adopt_postprocess(self, postprocess: Callable) -> bool:
        """Run ``postprocess`` in the instances when it can be imported there by name."""
        module, qualname = getattr(postprocess, "__module__", None), getattr(postprocess, "__qualname__", "")
        if not module or "<" in qualname:
            return False
        target: Any = sys.modules.get(module)
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if target is not postprocess:
            return False
        if self._postprocess != (module, qualname):
            for inst in self.instances:
                self._send(inst, ("postprocess", module, qualname))
            self._postprocess = (module, qualname)
        return True

    def submit(self, batch: np.ndarray, size: int, done: Completion, indices: np.ndarray | None = None) -> None:
        self._inflight.add()
        with self._lock:
            failed = self._failed
        if failed is not None:
            self._complete(done, None, failed)
            return
        self._ensure_slots(batch)
        self._queue.put((batch, size, indices, done))

    def drain(self) -> None:
        self._inflight.drain()

    def cancel(self) -> None:
        self._fail_queued(RuntimeError("cancelled: the run was stopped"))

    def warmup(self, batch: np.ndarray, iterations: int) -> float:
        """Every instance compiles and warms up on ``batch``: the first alone (so the others find
        Inductor's compiled code in its cache), then the rest together. Returns the seconds taken."""
        started = time.monotonic()
        first, rest = self.instances[:1], self.instances[1:]
        for group in (first, rest):
            for inst in group:
                self._send(inst, ("warmup", batch, iterations))
            for inst in group:
                seconds = self._reply(inst, "warm")[1]
                log.info("%s: warm-up (incl. compilation) %.1f s", inst.name(), seconds)
        self._ensure_slots(batch)
        return time.monotonic() - started

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
        atexit.unregister(self.close)
        self._fail_queued(RuntimeError("the backend was closed before this batch ran"))
        self._queue.put(None)
        for inst in self.instances:
            try:
                self._send(inst, ("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + STOP_WAIT_S
        for inst in self.instances:
            try:
                inst.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                inst.proc.terminate()
                try:
                    inst.proc.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
                    inst.proc.wait()
            inst.free_slots.put(-1)
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT_S)
        for inst in self.instances:
            inst.conn.close()
        if self._keep_logs:
            log.info("instance logs kept in %s", self._log_dir)
        else:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def describe(self) -> list[dict[str, Any]]:
        return [{"instance": inst.index, "pid": inst.proc.pid, "cpus": inst.facts.get("cpus"),
                 "threads": inst.facts.get("threads"), "allocator": inst.facts.get("allocator") or "system malloc"}
                for inst in self.instances]

    @property
    def facts(self) -> dict[str, Any]:
        """The first instance's facts (all load the same model): build record and program path."""
        return self.instances[0].facts if self.instances else {}
