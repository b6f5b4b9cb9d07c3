"""Ctrl-C, SIGTERM and a backend that stops answering, during one LoadGen run.

While ``StartTest`` runs, the main thread is inside LoadGen's C++ code, where a
Python signal handler cannot run, and a ``KeyboardInterrupt`` raised in a SUT
callback would only be counted as a failed inference. So during a run
``RunGuard`` replaces the SIGINT/SIGTERM handlers with ones that only record the
signal, and takes the signal from Python's wakeup fd on its own monitor thread,
which acts at once:

1. the SUT answers every outstanding sample now (``SUTBase.abort``) and every later
   query as it arrives, and the backend drops queued work, so LoadGen can finish;
2. if LoadGen has not returned within ``grace_s`` (a Server run keeps to its
   schedule of queries; a backend call may block), ``on_hard_exit`` moves the
   partial logs to the archive and the process exits with 128 + the signal number
   (130 for SIGINT, 143 for SIGTERM); a second signal does that at once.

The same thread is the watchdog: when samples have waited for an answer for far
longer than the slowest wait seen so far in this run (``factor`` times it, at
least ``floor_s``; before the first answer the warm-up's batch time is the
yardstick), the backend has stopped answering: the outstanding samples are
answered empty and counted as failed, and the run fails (exit 1) the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from mlperf_bnas.loadgen.sut import SUTBase

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The watchdog fires after this many times the slowest wait for an answer seen so far ...
WATCHDOG_FACTOR = 20.0
#: ... and never before this many seconds without any answer.
WATCHDOG_FLOOR_S = 30.0
#: How long LoadGen gets to return on its own after the outstanding samples were answered.
GRACE_S = 5.0
_TICK_S = 0.25


class RunGuard:
    def __init__(self, sut: SUTBase, on_hard_exit: Callable[[str], Path | None],
                 floor_s: float = WATCHDOG_FLOOR_S, factor: float = WATCHDOG_FACTOR, grace_s: float = GRACE_S):
        self.sut = sut
        self.on_hard_exit = on_hard_exit
        self.floor_s = floor_s
        self.factor = factor
        self.grace_s = grace_s
        self.signum: int | None = None          # the first signal received
        self.stall: str | None = None           # the watchdog's finding
        self._deadline: float | None = None
        self._done = threading.Event()
        self._exit_lock = threading.Lock()
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup: int | None = None
        self._rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None
        self._thread = threading.Thread(target=self._monitor, name="run-guard", daemon=True)

    # -- entering and leaving ------------------------------------------------
    def __enter__(self) -> "RunGuard":
        if threading.current_thread() is threading.main_thread():
            self._rsock, self._wsock = socket.socketpair()
            self._wsock.setblocking(False)
            self._rsock.settimeout(_TICK_S)
            self._old_wakeup = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
            for signum in SIGNALS:
                self._old_handlers[signum] = signal.signal(signum, _record)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        if self._rsock is not None:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._rsock.close()
            self._wsock.close()  # type: ignore[union-attr]

    # -- the monitor thread ----------------------------------------------------
    def _monitor(self) -> None:
        while not self._done.is_set():
            if self._rsock is not None:
                try:
                    data = self._rsock.recv(64)
                except (socket.timeout, BlockingIOError):
                    data = b""
                except OSError:
                    data = b""
                    self._done.wait(_TICK_S)
            else:
                data = b""
                self._done.wait(_TICK_S)
            if self._done.is_set():
                return
            for signum in data:
                if signum in SIGNALS:
                    self._on_signal(signum)
            if self.signum is None and self.stall is None:
                self._check_stall()
            if self._deadline is not None and time.monotonic() > self._deadline:
                self._hard_exit()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None or self.stall is not None:
            print(f"\n{name} again: stopping now", file=sys.stderr, flush=True)
            self.signum = self.signum or signum
            self._hard_exit()
            return
        self.signum = signum
        answered = self.sut.abort(f"interrupted by {name}")
        print(f"\n{name}: stopping the run; {answered} outstanding sample(s) answered at once; nothing is "
              "published, the partial logs go to the archive", file=sys.stderr, flush=True)
        self._deadline = time.monotonic() + self.grace_s

    def _check_stall(self) -> None:
        stall = self.sut.stall()
        if stall is None:
            return
        waited, slowest = stall
        limit = max(self.factor * slowest, self.floor_s)
        if waited <= limit:
            return
        self.stall = (f"the backend stopped answering: no answer for {waited:.0f} s (the slowest wait for an answer "
                      f"before was {slowest:.3g} s; the watchdog allows max({self.factor:g} x that, "
                      f"{self.floor_s:g} s) = {limit:.0f} s)")
        self.sut.stall_reason = self.stall
        log.error("%s; answering the outstanding samples and stopping the run", self.stall)
        self.sut.abort(self.stall, failed=True)
        self._deadline = time.monotonic() + self.grace_s

    def _hard_exit(self) -> None:
        """LoadGen did not return: keep the partial logs and end the process."""
        with self._exit_lock:
            reason = (f"interrupted by {signal.Signals(self.signum).name}" if self.signum is not None
                      else str(self.stall))
            try:
                kept = self.on_hard_exit(reason)
            except Exception as exc:  # noqa: BLE001 - exiting anyway; say what was lost
                kept = None
                print(f"error: could not move the partial logs to the archive: {exc}", file=sys.stderr)
            where = f"; partial logs kept in {kept}" if kept else ""
            if self.signum is not None:
                print(f"interrupted: LoadGen stopped without finishing its schedule{where}",
                      file=sys.stderr, flush=True)
                code = 128 + self.signum
            else:
                print(f"error: run failed: {self.stall}{where}", file=sys.stderr, flush=True)
                code = 1
            logging.shutdown()
            sys.stdout.flush()
            os._exit(code)


def _record(signum, frame) -> None:
    """The Python-level handler during a run: the monitor thread acts on the wakeup fd."""
