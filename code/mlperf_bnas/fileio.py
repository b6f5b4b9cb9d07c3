"""Files in and out, each written once: atomic writes and folder swaps, file hashes, and the
readers for what a user hands us (checkpoints, JSON/YAML mappings) with one-line errors.

Imports nothing heavy at module level (``torch`` and ``yaml`` only inside the functions
that need them): ``mlperf-bnas package --default-system-name`` and the checker use this
module and must stay fast.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError

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


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON, written atomically (build records, caches)."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def replace_dir(tmp: Path, dest: Path) -> None:
    """Swap a finished folder ``tmp`` into place at ``dest`` (a sibling on the same file system).

    For derived data only (builds, caches, generated datasets): an earlier ``dest`` is
    moved aside first and removed once the new one is in place, so ``dest`` is always
    either the old folder or the new one, never a half-written mix.
    """
    tmp, dest = Path(tmp), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """A private folder beside ``dest`` (``.<name>.building.*``, ordinary permissions) to write
    derived data into (a build, a cache, a generated dataset); swapped in as ``dest`` by
    ``replace_dir`` when the block ends. When the block raises (or is interrupted) the folder
    is removed and an earlier ``dest`` stays as it was: a half-written folder is never seen."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building.", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in blocks: model files are large)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_checkpoint(path: Path, what: str, hint: str) -> Any:
    """``torch.load(path, weights_only=True)`` of a file a user hands us: tensors and plain data
    only, never code. A missing or unreadable file is a one-line ``UserError`` naming the
    file and ``what`` it should be, ending with ``hint`` (how to get a good one)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; {hint}")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, EOFError...)
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{path}: not a loadable {what} ({type(exc).__name__}: {first}); {hint}") from None


def read_mapping(path: Path, what: str, hint: str) -> dict[str, Any]:
    """A JSON (``.json``) or YAML (anything else) file whose top level is a mapping (an empty
    YAML file is ``{}``). Missing, unparsable or not a mapping: a one-line ``UserError``
    naming the file and ``what`` it should be; ``hint`` says where a good one comes from."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; {hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc}); check the file and its permissions") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); fix the file") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); fix the file") from None
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level of the {what}, found {type(data).__name__}")
    return data


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
