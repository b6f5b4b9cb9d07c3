"""Bad input: one clear line, exit status 2, nothing already on disk lost or half-written."""

from __future__ import annotations

import pytest
import torch
import torchvision

from conftest import REPO, run_cli
from mlperf_bnas.data.synthetic import synthetic_image

BENCH = REPO / "code" / "resnet50-openvino"
SYSTEM = "test_cpu"
IMAGES = 8


def _fails(*args: str, expect: str):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    last = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert last and expect in last[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return last[-1]


def _common(out, *extra):
    return ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", SYSTEM, *extra]


@pytest.fixture
def real_copy(tmp_path):
    """A small ImageNet-form folder, as a user would hand it in."""
    root = tmp_path / "imagenet"
    root.mkdir()
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(IMAGES)]
    for i, name in enumerate(names):
        synthetic_image(3, i).save(root / name, "JPEG")
    (root / "val_map.txt").write_text("".join(f"{n} {i * 7}\n" for i, n in enumerate(names)))
    return root


def test_unknown_config_key(tmp_path):
    _fails("dataset", *_common(tmp_path, "--set", "dataset_options.colour=1"), expect="dataset_options.colour")
    _fails("dataset", *_common(tmp_path, "--set", "bogus=1"), expect="unknown key 'bogus'")


def test_missing_dataset_folder(tmp_path):
    msg = _fails("dataset", *_common(tmp_path, "--data-dir", str(tmp_path / "nope")), expect="ImageNet folder not found")
    assert str(tmp_path / "nope") in msg


def test_val_map_entry_without_image(real_copy, tmp_path):
    (real_copy / "ILSVRC2012_val_00000005.JPEG").unlink()
    _fails("dataset", *_common(tmp_path / "out", "--data-dir", str(real_copy)),
           expect="ILSVRC2012_val_00000005.JPEG")


def test_corrupt_jpeg_keeps_the_earlier_cache(real_copy, tmp_path):
    out = tmp_path / "out"
    run_cli("dataset", *_common(out, "--data-dir", str(real_copy), "--no-progress"))
    cache_root = out / "build" / "resnet50-openvino" / "cache" / "imagenet"
    (cache_dir,) = list(cache_root.iterdir())
    before = (cache_dir / "samples.npy").read_bytes()
    (real_copy / "ILSVRC2012_val_00000007.JPEG").write_bytes(b"\xff\xd8\xff\xe0broken")
    _fails("dataset", *_common(out, "--data-dir", str(real_copy), "--no-progress"),
           expect="ILSVRC2012_val_00000007.JPEG: cannot decode image")
    assert [p.name for p in cache_root.iterdir()] == [cache_dir.name]
    assert (cache_dir / "samples.npy").read_bytes() == before


def test_checkpoint_of_the_wrong_architecture(tmp_path):
    ckpt = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), ckpt)
    _fails("build", *_common(tmp_path / "out", "--checkpoint", str(ckpt), "--set",
                             f"dataset_options.synthetic_count={IMAGES}"), expect="not a torchvision ResNet-50")
    assert not (tmp_path / "out" / "build" / "resnet50-openvino" / "model" / "fp32").exists()


def test_checkpoint_that_is_not_a_checkpoint(tmp_path):
    ckpt = tmp_path / "junk.pt"
    ckpt.write_bytes(b"not a zip")
    _fails("build", *_common(tmp_path / "out", "--checkpoint", str(ckpt)), expect="not a loadable PyTorch checkpoint")


def test_user_conf_loadgen_rejects_leaves_results_alone(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("resnet50.Offline.target_qps = fast\n")
    earlier = tmp_path / "out" / "results" / SYSTEM / "resnet50" / "Offline" / "performance" / "run_1"
    earlier.mkdir(parents=True)
    (earlier / "mlperf_log_summary.txt").write_text("Result is : VALID\n")
    _fails("run", *_common(tmp_path / "out", "--scenario", "Offline", "--user-conf", str(conf)),
           expect=f"{conf}:1: target_qps = fast: not a number")
    offline = earlier.parent.parent
    assert sorted(str(p.relative_to(offline)) for p in offline.rglob("*")) == [
        "performance", "performance/run_1", "performance/run_1/mlperf_log_summary.txt"]
    assert (earlier / "mlperf_log_summary.txt").read_text() == "Result is : VALID\n"


def test_model_not_built(real_copy, tmp_path):
    _fails("run", *_common(tmp_path / "out", "--scenario", "Offline", "--user-conf", str(BENCH / "user.smoke.conf"),
                           "--data-dir", str(real_copy)), expect="model not built")


def test_data_dir_without_val_map(tmp_path):
    _fails("dataset", *_common(tmp_path / "out", "--data-dir", str(tmp_path)), expect="val_map.txt: not found")
