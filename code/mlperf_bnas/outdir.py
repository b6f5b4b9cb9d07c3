"""The output folder: usable, with room, one writer at a time, and no unseen leftovers.

* ``check_output_dir`` / ``require_writable``: the folder is a folder and can be
  written, found before any model loads (not after minutes of compiling).
* ``require_free_space``: fail early when a run clearly cannot write its logs (a
  full disk would otherwise leave them empty; ``loadgen/completeness.py`` catches
  that too, but only after the run).
* ``OutputLock``: one command writes into an output folder at a time. The lock is
  an ``flock`` on ``build/.mlperf-bnas.lock``, so it dies with its process (a
  SIGKILL leaves no stale lock); the file names the holder for the second
  command's message. Child processes of the holder (tuning trials, compliance
  tests) inherit it through ``MLPERF_BNAS_OUTPUT_LOCK``.
* ``stale_partials`` / ``remove``: private folders and files an interrupted or
  killed command left behind (``.run_1.xxxxxxxx``, ``.submission-*.partial-*``,
  ``.int8.building.*``, compliance work folders...). With the lock held none of
  them can belong to a live command; they are reported, and removed only when the
  user passes ``--clean-partial``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import OutputRoot

log = logging.getLogger(__name__)

LOCK_ENV = "MLPERF_BNAS_OUTPUT_LOCK"
#: Names ``tempfile.mkdtemp``/``mkstemp`` give our private folders and files: ``.<name>.<8 chars>``.
_TEMP_NAME = re.compile(r"^\..+[._-][a-z0-9_]{8}$")
_COMPLIANCE_WORK = re.compile(r"^TEST0\d-(Offline|Server)-[a-z0-9_]{8}$")
_SCAN_DEPTH = 7


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_output_dir(output_dir: str | Path) -> Path:
    """The output folder, created if missing; a ``UserError`` when it is a file or cannot be written."""
    path = Path(output_dir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: OUTPUT_DIR (--output-dir) is a file, not a folder; point it at a folder")
    require_writable(path, "OUTPUT_DIR (--output-dir)")
    return path


def require_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        hint = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
                errno.EDQUOT: "the disk quota is exhausted", errno.ENOTDIR: "part of the path is a file"}
        raise UserError(f"{folder}: cannot write here ({hint.get(exc.errno, _reason(exc))}); "
                        f"choose a writable {what}") from None


def free_bytes(folder: Path) -> int:
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def require_free_space(folder: Path, need: int, what: str) -> None:
    """``UserError`` when the file system of ``folder`` has less than ``need`` bytes free."""
    free = free_bytes(folder)
    if free < need:
        raise UserError(f"{folder}: only {free / 2**20:.1f} MiB free, and {what} need about "
                        f"{need / 2**20:.1f} MiB; free some space or choose another OUTPUT_DIR")


# ---------------------------------------------------------------------------
# one writer
# ---------------------------------------------------------------------------
class OutputLock:
    """``with OutputLock(output_dir, "run --scenario Offline"):`` -- exclusive use of the folder."""

    def __init__(self, output_dir: Path, command: str):
        self.output_dir = Path(output_dir).absolute()
        self.path = OutputRoot(self.output_dir).lock_file
        self.command = command
        self.inherited = os.environ.get(LOCK_ENV) == str(self.output_dir)
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        if self.inherited:
            return self          # our parent holds it (tuning trials, compliance tests)
        require_writable(self.path.parent, "OUTPUT_DIR (--output-dir)")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot create the output folder's lock file ({_reason(exc)}); "
                            "choose a writable OUTPUT_DIR") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(f"{self.output_dir}: another mlperf-bnas command is writing to this output folder "
                            f"({holder}); wait until it finishes, or use another OUTPUT_DIR "
                            f"(lock: {self.path})") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: mlperf-bnas {self.command} "
                         f"(since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        except OSError:
            pass            # a full disk: the flock holds all the same, only the holder's name is missing
        self._fd = fd
        os.environ[LOCK_ENV] = str(self.output_dir)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.environ.pop(LOCK_ENV, None)
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)          # releases the flock
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


# ---------------------------------------------------------------------------
# leftovers of interrupted commands
# ---------------------------------------------------------------------------
def stale_partials(output_dir: Path) -> list[Path]:
    """Private folders/files of commands that did not finish (call it with the lock held)."""
    found: list[Path] = []
    root = OutputRoot(output_dir)

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.path == str(root.lock_file):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if _TEMP_NAME.match(entry.name) or (is_dir and folder.name == "compliance"
                                                and _COMPLIANCE_WORK.match(entry.name)):
                found.append(Path(entry.path))
            elif is_dir and depth < _SCAN_DEPTH and entry.path != str(root.archive_dir):
                walk(Path(entry.path), depth + 1)

    for top in root.written_folders:
        if top.is_dir():
            walk(top, 0)
    return found


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*"))


def report_or_remove(output_dir: Path, remove: bool) -> list[Path]:
    """Say which leftovers there are; remove them when ``remove``. Returns them."""
    stale = stale_partials(output_dir)
    if not stale:
        return stale
    top = OutputRoot(output_dir).output_dir          # the resolved folder stale_partials walked
    listing = ", ".join(str(p.relative_to(top)) for p in stale[:5]) + (
        f" and {len(stale) - 5} more" if len(stale) > 5 else "")
    if remove:
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        log.info("removed %d partial folder(s)/file(s) left by interrupted commands: %s", len(stale), listing)
    else:
        total = sum(_size(p) for p in stale)
        print(f"WARNING: {output_dir}: {len(stale)} partial folder(s)/file(s) left by interrupted commands "
              f"({total / 2**20:.1f} MiB): {listing}; pass --clean-partial to remove them", file=sys.stderr)
    return stale
