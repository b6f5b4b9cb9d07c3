"""What every build relies on: calibration samples come from the dataset's calibration set
(one choice for every backend), a backend refuses options it does not know, and a
configuration error is an error, not a default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlperf_bnas.backends.base import BuildContext
from mlperf_bnas.config import load_config
from mlperf_bnas.data.imagenet import ImageNet
from mlperf_bnas.data.openimages import OpenImages
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.data.synthetic import synthetic_image
from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import OutputPaths

SPEC = PreprocessSpec(size=32, resize=None, interpolation="bilinear", layout="NCHW", dtype="uint8",
                      channel_order="RGB", mean=None, scale=None, normalize="graph")


def _images(folder: Path, seed: int, count: int) -> list[dict]:
    folder.mkdir(parents=True)
    out = []
    for i in range(count):
        name = f"{seed:08x}{i:08x}.jpg"
        synthetic_image(seed, i).resize((48, 40)).save(folder / name, "JPEG")
        out.append({"id": seed * 100 + i, "file_name": name, "height": 40, "width": 48})
    return out


def _openimages(root: Path) -> Path:
    """A real-form OpenImages folder: 3 validation images and a separate 2-image calibration split."""
    cats = [{"id": c, "name": f"c{c}"} for c in range(264)]
    (root / "annotations").mkdir(parents=True)
    for images, annotations in ((_images(root / "validation" / "data", 1, 3), "openimages-mlperf.json"),
                                (_images(root / "calibration" / "data", 2, 2), "openimages-calibration-mlperf.json")):
        (root / "annotations" / annotations).write_text(
            json.dumps({"images": images, "annotations": [], "categories": cats}))
    return root


def test_openimages_calibrates_on_its_calibration_split(tmp_path):
    dataset = OpenImages.open(_openimages(tmp_path / "oi"), OpenImages.Options(workers=1))
    cache = dataset.preprocess_to_cache(SPEC, tmp_path / "cache", workers=1, progress=False)
    calibration = dataset.calibration_set(cache, 5, None, progress=False)
    split = sorted((tmp_path / "oi" / "calibration" / "data").iterdir())
    assert calibration.names == [p.name for p in split]                  # not the validation images
    assert not set(calibration.names) & set(cache.names)
    with Image.open(split[1]) as img:
        np.testing.assert_array_equal(calibration.samples[1], SPEC.apply(img))
    assert calibration.record() == {"count": 2, "names": calibration.names,
                                    "source": str(tmp_path / "oi" / "annotations" / "openimages-calibration-mlperf.json")}
    assert dataset.calibration_set(cache, 1, None, progress=False).names == calibration.names[:1]


def test_openimages_without_its_calibration_split_is_an_error(tmp_path):
    root = _openimages(tmp_path / "oi")
    (root / "annotations" / "openimages-calibration-mlperf.json").unlink()
    dataset = OpenImages.open(root, OpenImages.Options(workers=1))
    cache = dataset.preprocess_to_cache(SPEC, tmp_path / "cache", workers=1, progress=False)
    with pytest.raises(UserError, match="calibration set not found"):
        dataset.calibration_set(cache, 5, None, progress=False)


def test_imagenet_calibrates_on_the_listed_validation_images(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 5)]
    for i, name in enumerate(names):
        synthetic_image(3, i).save(root / name, "JPEG")
    (root / "val_map.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "cal_image_list_option_1.txt").write_text(f"{names[3]}\n{names[1]}\n")
    dataset = ImageNet.open(root, ImageNet.Options(workers=1))
    cache = dataset.preprocess_to_cache(SPEC, tmp_path / "cache", workers=1, progress=False)
    calibration = dataset.calibration_set(cache, 10, lists)
    assert calibration.names == [names[3], names[1]]
    np.testing.assert_array_equal(calibration.samples, cache.load([3, 1]))
    assert calibration.source == str(lists / "cal_image_list_option_1.txt")


def _benchmark(tmp_path: Path, model: str, backend: str, options: dict) -> Path:
    bench = tmp_path / "bench"
    bench.mkdir(parents=True)
    (bench / "config.yaml").write_text(
        f'benchmark: bench\nloadgen_model: resnet50\nmodel: {model}\ndataset: imagenet\nbackend: "{backend}"\n'
        f"accuracy: imagenet\nbackend_options: {json.dumps(options)}\n")
    return bench


def test_pytorch_build_refuses_an_option_it_does_not_know(tmp_path):
    from mlperf_bnas.backends.pytorch import PyTorchBackend
    from mlperf_bnas.quantize import QuantizationConfig

    cfg = load_config(_benchmark(tmp_path, "resnet50", "pytorch", {"batch_size": 1, "num_streams": 2}))
    ctx = BuildContext(cfg=cfg, entry=None, precision="fp32", torch_model=None, spec=SPEC, out_dir=tmp_path / "m",
                       quantization=QuantizationConfig(), record={})
    with pytest.raises(UserError, match=r"config.yaml \(backend_options\): unknown key\(s\) backend_options.num_streams"):
        PyTorchBackend.build(ctx)
    assert not (tmp_path / "m").exists()


def test_a_backend_without_a_model_has_nothing_to_build(tmp_path):
    from mlperf_bnas.backends.null import NullBackend

    cfg = load_config(_benchmark(tmp_path, "resnet50", "null", {}))
    ctx = BuildContext(cfg=cfg, entry=None, precision="int8", torch_model=None, spec=SPEC, out_dir=tmp_path / "m",
                       quantization=None, record={})
    with pytest.raises(UserError, match="backend 'null' runs no built model"):
        NullBackend.build(ctx)


def test_an_unknown_benchmark_is_an_error_even_for_the_null_backend(tmp_path):
    """The benchmark names LoadGen's performance sample count; an unknown one used to mean 1024."""
    from mlperf_bnas import pipeline

    bench = _benchmark(tmp_path, "resnet50", "null", {})
    (bench / "config.yaml").write_text((bench / "config.yaml").read_text().replace("loadgen_model: resnet50",
                                                                                   "loadgen_model: resnet51"))
    cfg = load_config(bench)
    with pytest.raises(UserError, match="loadgen_model 'resnet51' is not an MLPerf benchmark this harness knows"):
        pipeline.open_sut(cfg, "Offline", OutputPaths.of(cfg, tmp_path / "out", "sys"))
    cfg = load_config(_benchmark(tmp_path / "x", "resnet50", "null", {}))
    assert pipeline.performance_sample_count(cfg) == 1024


def test_a_build_folder_is_published_whole_or_not_at_all(tmp_path):
    """Every backend's builder publishes through ``buildrecord.build_folder``: a finished build
    replaces the earlier one with its record written; a failed one leaves the earlier build and
    no private folder behind."""
    from mlperf_bnas.buildrecord import build_folder
    from mlperf_bnas.paths import BUILD_RECORD

    out = tmp_path / "model" / "int8"
    record = {"precision": "int8"}
    with build_folder(out, record) as tmp:
        (tmp / "model.bin").write_bytes(b"first")
        record["sha"] = "1"   # what the builder adds inside the block is in the record
    assert (out / "model.bin").read_bytes() == b"first"
    assert json.loads((out / BUILD_RECORD).read_text()) == {"precision": "int8", "sha": "1"}
    umask = os.umask(0o022)
    os.umask(umask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~umask)   # ordinary output, not mkdtemp's 0700

    with pytest.raises(KeyboardInterrupt), build_folder(out, {"precision": "int8"}) as tmp:
        (tmp / "model.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    assert (out / "model.bin").read_bytes() == b"first"
    assert sorted(p.name for p in out.parent.iterdir()) == ["int8"]
