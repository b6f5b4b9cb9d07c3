"""Atomic file writes (a finished file or the earlier one, never a half-written one) and tree hygiene."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# The process umask (read once: os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (str as UTF-8) to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bad_symlinks(top: Path, within: Path | None = None) -> list[tuple[Path, str]]:
    """Symbolic links under ``top`` that loop, are broken, or lead outside ``within`` (default:
    ``top``): ``[(link, what is wrong)]``. Links are never followed while walking, so a loop
    cannot trap the walk. A tree handed to someone else must hold its files, not point at ours."""
    top = Path(top)
    root = os.path.realpath(within if within is not None else top)
    found: list[tuple[Path, str]] = []
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    found.append((path, "a symbolic link that loops"))
                else:
                    found.append((path, f"a broken symbolic link (to {os.readlink(path)})"))
                continue
            real = os.path.realpath(path)
            if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
                found.append((path, f"a symbolic link that leaves the tree (to {real})"))
    return found
