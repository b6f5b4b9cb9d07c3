"""Preprocessed-sample cache: every source image preprocessed once, kept as one ``.npy``.

Layout: ``<cache_root>/<spec.key>/{samples.npy, meta.json}``. ``meta.json``
records the full ``PreprocessSpec``, the ordered sample names and a checksum of
the source files (name, size, modification time). The cache is reused only when
all three match; otherwise it is rebuilt in a private folder beside it and swapped
in (``fileio.staged_dir``), so an interrupted build never leaves a half-written cache
that a later run could mistake for a complete one.

Images are decoded and preprocessed in parallel worker processes (``spawn``, so
a parent that already runs torch/OpenMP threads is never forked), with a tqdm
progress bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mlperf_bnas import outdir
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import staged_dir

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_CHUNK = 64


@dataclass(frozen=True)
class SourceItem:
    """One source image: its dataset-level name and where it is on disk."""

    name: str
    path: Path


def source_checksum(items: Sequence[SourceItem]) -> str:
    """Identity of the source files: names, sizes and modification times, in order."""
    h = hashlib.sha256()
    for item in items:
        try:
            st = item.path.stat()
        except OSError as exc:
            raise UserError(f"{item.path}: cannot read ({exc.strerror}); restore the file or remove its entry "
                            "from the dataset's list") from None
        h.update(f"{item.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class CachedSamples:
    """A finished cache, memory-mapped: the ``loadgen.qsl.SampleSource`` of a dataset."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())
        self.spec = PreprocessSpec.from_dict(self.meta["spec"])
        self.names: list[str] = self.meta["names"]
        self._array = np.load(self.cache_dir / "samples.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape[1:])

    def load(self, indices: Sequence[int]) -> np.ndarray:
        """Samples ``indices`` stacked on a new leading axis (a copy in RAM)."""
        return np.array(self._array[np.asarray(indices, dtype=np.int64)])


def _is_valid(cache_dir: Path, spec: PreprocessSpec, names: list[str], checksum: str) -> bool:
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file() or not (cache_dir / "samples.npy").is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (meta.get("format") == CACHE_FORMAT and meta.get("spec") == spec.to_dict()
            and meta.get("source_checksum") == checksum and meta.get("names") == names)


def _preprocess_chunk(samples_path: str, spec_dict: dict, start: int, paths: list[str]) -> tuple[int, str | None, str | None]:
    """Worker: preprocess ``paths`` into rows ``start...`` of the memory-mapped output.

    Returns ``(count, failed_path, reason)``; errors are returned, not raised, so
    the parent can name the file in one clear message.
    """
    spec = PreprocessSpec.from_dict(spec_dict)
    out = np.load(samples_path, mmap_mode="r+")
    for k, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.load()
                out[start + k] = spec.apply(img)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                MemoryError) as exc:
            # DecompressionBombError: far more pixels than any photo (PIL's guard against images
            # built to exhaust memory); it is not an OSError, so it is named here explicitly.
            return k, path, f"{type(exc).__name__}: {exc}"
    out.flush()
    return len(paths), None, None


def build_cache(dataset: str, items: Sequence[SourceItem], spec: PreprocessSpec, cache_root: Path,
                workers: int | None = None, progress: bool = True, chunk: int = _CHUNK) -> CachedSamples:
    """Preprocess ``items`` with ``spec`` into ``cache_root/<spec.key>/`` (or reuse it)."""
    items = list(items)
    if not items:
        raise UserError(f"dataset {dataset!r} has no images to preprocess; check its folder and list file")
    names = [it.name for it in items]
    checksum = source_checksum(items)
    cache_dir = Path(cache_root) / spec.key
    if _is_valid(cache_dir, spec, names, checksum):
        log.info("reusing preprocessed cache %s (%d samples)", cache_dir, len(items))
        return CachedSamples(cache_dir)

    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    # The cache is a memory-mapped file written by the workers: on a full disk the write
    # kills the worker with SIGBUS (no error to catch), after minutes or hours of work. So the
    # whole size is required up front (an earlier cache stays until the new one is complete).
    need = len(items) * int(np.prod(spec.sample_shape)) * np.dtype(spec.dtype).itemsize + (1 << 20)
    outdir.require_free_space(cache_dir.parent, need,
                              f"the {len(items)} preprocessed {dataset} samples of the cache {spec.key}")
    with staged_dir(cache_dir) as tmp:   # an earlier cache stays until this one is complete
        samples_path = tmp / "samples.npy"
        arr = np.lib.format.open_memmap(samples_path, mode="w+", dtype=np.dtype(spec.dtype),
                                        shape=(len(items), *spec.sample_shape))
        del arr
        chunks = [(s, [str(it.path) for it in items[s:s + chunk]]) for s in range(0, len(items), chunk)]
        workers = workers if workers is not None else (os.cpu_count() or 1)
        bar = tqdm(total=len(items), desc=f"preprocessing {dataset}", unit="img", disable=not progress)
        failure: tuple[str, str] | None = None
        if workers <= 1 or len(chunks) == 1:
            for start, paths in chunks:
                n, bad, why = _preprocess_chunk(str(samples_path), spec.to_dict(), start, paths)
                bar.update(n)
                if bad:
                    failure = (bad, why)
                    break
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
                futures = [pool.submit(_preprocess_chunk, str(samples_path), spec.to_dict(), start, paths)
                           for start, paths in chunks]
                for fut in as_completed(futures):
                    n, bad, why = fut.result()
                    bar.update(n)
                    if bad and failure is None:
                        failure = (bad, why)
                        for f in futures:
                            f.cancel()
        bar.close()
        if failure:
            raise UserError(f"{failure[0]}: cannot decode image ({failure[1]}); replace the file or remove "
                            "its line from the dataset's list, then rerun")
        meta = {"format": CACHE_FORMAT, "dataset": dataset, "spec": spec.to_dict(), "spec_key": spec.key,
                "source_checksum": checksum, "count": len(items), "dtype": spec.dtype,
                "shape": [len(items), *spec.sample_shape], "names": names}
        (tmp / "meta.json").write_text(json.dumps(meta))
    log.info("preprocessed %d samples into %s", len(items), cache_dir)
    return CachedSamples(cache_dir)
