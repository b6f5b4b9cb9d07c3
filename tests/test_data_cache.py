"""The preprocessed cache: reuse only when spec and sources match, atomic, parallel, clear errors."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from mlperf_bnas.data.cache import SourceItem, build_cache
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError

SPEC = PreprocessSpec(size=32, resize=40, channel_order="BGR")


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"img_{i:04d}.jpg"
        synthetic_image(9, i, 48, 80).save(path, "JPEG", quality=90)
        items.append(SourceItem(path.name, path))
    return items


def test_cache_content_reuse_and_parallel(tmp_path):
    items = _images(tmp_path / "src", 10)
    serial = build_cache("t", items, SPEC, tmp_path / "c1", workers=1, progress=False)
    parallel = build_cache("t", items, SPEC, tmp_path / "c2", workers=2, progress=False, chunk=3)
    assert len(serial) == 10 and serial.sample_shape == (32, 32, 3)
    np.testing.assert_array_equal(serial.load(range(10)), parallel.load(range(10)))
    from PIL import Image
    with Image.open(items[4].path) as img:
        np.testing.assert_array_equal(serial.load([4])[0], SPEC.apply(img))
    # Reused as is: the file is not rewritten.
    stamp = (serial.cache_dir / "samples.npy").stat().st_mtime_ns
    again = build_cache("t", items, SPEC, tmp_path / "c1", workers=1, progress=False)
    assert (again.cache_dir / "samples.npy").stat().st_mtime_ns == stamp


def test_spec_change_uses_another_folder(tmp_path):
    items = _images(tmp_path / "src", 3)
    a = build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False)
    b = build_cache("t", items, PreprocessSpec(size=32, resize=40, channel_order="RGB"), tmp_path / "c",
                    workers=1, progress=False)
    assert a.cache_dir != b.cache_dir
    np.testing.assert_array_equal(a.load([0])[0], b.load([0])[0][:, :, ::-1])


def test_source_change_rebuilds(tmp_path):
    items = _images(tmp_path / "src", 3)
    first = build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False).load([1])[0]
    synthetic_image(123, 456, 48, 80).save(items[1].path, "JPEG", quality=90)
    os.utime(items[1].path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    second = build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False).load([1])[0]
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_fails_clearly_and_keeps_the_previous_cache(tmp_path, workers):
    items = _images(tmp_path / "src", 6)
    good = build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False)
    before = good.load(range(6))
    items[3].path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(UserError, match="img_0003.jpg: cannot decode image"):
        build_cache("t", items, SPEC, tmp_path / "c", workers=workers, progress=False, chunk=2)
    # No half-written cache beside the old one; the old one still reads.
    assert [p.name for p in (tmp_path / "c").iterdir()] == [SPEC.key]
    from mlperf_bnas.data.cache import CachedSamples
    np.testing.assert_array_equal(CachedSamples(tmp_path / "c" / SPEC.key).load(range(6)), before)


def test_missing_source_is_a_user_error(tmp_path):
    items = _images(tmp_path / "src", 2)
    items[0].path.unlink()
    with pytest.raises(UserError, match="img_0000.jpg: cannot read"):
        build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False)


def test_a_disk_too_small_for_the_cache_is_refused_before_any_work(tmp_path, monkeypatch):
    """The cache is a memory-mapped file: on a full disk the worker writing it dies of SIGBUS
    (seen on a 2 MiB tmpfs: exit 135, a half-written ``.building.`` folder left filling the
    disk). At real sizes (ImageNet 50,000 x 147 KiB = 7.0 GiB; OpenImages 24,781 x 1.83 MiB =
    44.3 GiB) it is refused up front, naming the size, and an earlier cache stays."""
    from mlperf_bnas import outdir

    items = _images(tmp_path / "src", 3)
    earlier = build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False)
    synthetic_image(123, 456, 48, 80).save(items[1].path, "JPEG", quality=90)   # the cache is now stale
    os.utime(items[1].path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    need = 3 * 32 * 32 * 3 + (1 << 20)
    monkeypatch.setattr(outdir, "free_bytes", lambda folder: need - 1)
    with pytest.raises(UserError, match=r"only 1\.0 MiB free, and the 3 preprocessed t samples of the cache "
                                        rf"{SPEC.key} need about 1\.0 MiB"):
        build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [SPEC.key]   # no private folder left
    assert (earlier.cache_dir / "samples.npy").is_file()
    monkeypatch.setattr(outdir, "free_bytes", lambda folder: need)
    assert build_cache("t", items, SPEC, tmp_path / "c", workers=1, progress=False).load([1]).shape == (1, 32, 32, 3)
