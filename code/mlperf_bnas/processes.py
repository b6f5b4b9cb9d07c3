"""Child processes (one LoadGen test per process) that end cleanly when their parent is stopped.

``subprocess.run`` kills its child with SIGKILL a quarter of a second after a Ctrl-C
reaches the parent, before the child (an ``mlperf-bnas run``) could answer its
samples and move its partial logs to the archive. ``run_child`` starts the child in
a process group of its own, so a terminal's Ctrl-C reaches the parent only, passes
that SIGINT (or a SIGTERM) on to the child exactly once, waits for the child to
finish stopping, and only then lets the interruption end the parent.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Sequence

from mlperf_bnas.errors import Interrupted

#: How long a stopped child gets to archive its logs before it is killed.
STOP_WAIT_S = 30.0


def run_child(argv: Sequence[str], timeout: float | None = None, **popen: Any) -> int | None:
    """Run ``argv`` to the end; its exit status, or None when ``timeout`` expired (it is then killed)."""
    popen.setdefault("process_group", 0)
    proc = subprocess.Popen(list(argv), **popen)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
