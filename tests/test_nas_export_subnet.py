"""Sub-network export: the command line (train -> info -> export -> load_subnet) on the
digits demo model, and OpenVINO conversion of an extracted sub-network through the
project's OpenVINO facade matching torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlperf_bnas.nas.demo import DIGITS_SIZE, DigitsResNet
from mlperf_bnas.nas.export import load_subnet, read_subnet_checkpoint
from mlperf_bnas.nas.supernet.network import SuperNetwork
from tests.conftest import run_cli
from tests.test_nas_train_progressive import config_dict

ELASTICITY = {"width": {"min_width": 8, "width_step": 8}, "kernel": {"max_num_kernels": 2}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A (very briefly) trained super-network written by `mlperf-bnas nas train`."""
    root = tmp_path_factory.mktemp("nas_export")
    torch.manual_seed(0)
    weights = root / "pretrained.pt"
    torch.save(DigitsResNet().state_dict(), weights)
    stages = [{"train_dims": ["kernel", "depth", "width"], "epochs": 1, "depth_indicator": 2, "width_indicator": 3,
               "reorg_weights": True, "bn_adapt": True}]
    cfg = root / "config.json"
    cfg.write_text(json.dumps(config_dict(stages)))
    run_cli("nas", "train", "--config", str(cfg), "--output-dir", str(root / "run"), "--pretrained", str(weights),
            "--no-progress")
    return root


def test_train_writes_checkpoints_and_log(trained):
    run = trained / "run"
    assert (run / "supernet.pt").is_file() and (run / "supernet_last.pt").is_file()
    history = json.loads((run / "train_log.json").read_text())
    assert len(history) == 1 and {"top1_max", "top1_min", "macs_max", "macs_min"} <= set(history[0])
    assert history[0]["macs_min"] < history[0]["macs_max"]


def test_info_describes_the_trained_space(trained):
    info = json.loads(run_cli("nas", "info", "--supernet", str(trained / "run" / "supernet.pt")).stdout)
    assert [len(g) for g in info["block_groups"]] == [3, 2]
    assert info["indicators"]["width"] == 3  # the trained stage's space, not more
    assert all(len(g["widths"]) >= 2 for g in info["width_groups"])


def test_export_cli_round_trip(trained):
    out = trained / "subnet_min.pt"
    proc = run_cli("nas", "export", "--supernet", str(trained / "run" / "supernet.pt"), "--subnet", "min",
                   "--output", str(out))
    report = json.loads(proc.stdout)
    ckpt = read_subnet_checkpoint(out)
    assert ckpt["base_model"] == "digits_resnet" and ckpt["subnet_config"] == report["subnet_config"]
    assert ckpt["preprocess"]["input_size"] == [3, DIGITS_SIZE, DIGITS_SIZE]
    subnet = load_subnet(out)
    assert sum(p.numel() for p in subnet.parameters()) == report["params"]
    supernet = SuperNetwork.load(trained / "run" / "supernet.pt", DigitsResNet)
    supernet.model.eval()
    supernet.activate(report["subnet_config"])
    x = torch.rand(4, 3, DIGITS_SIZE, DIGITS_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(subnet(x), supernet.model(x), rtol=1e-5, atol=1e-5)
    # Never overwrite what is there.
    again = run_cli("nas", "export", "--supernet", str(trained / "run" / "supernet.pt"), "--subnet", "max",
                    "--output", str(out), check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    assert read_subnet_checkpoint(out)["subnet_config"] == report["subnet_config"]


def test_export_rejects_configs_outside_the_space(trained):
    bad = run_cli("nas", "export", "--supernet", str(trained / "run" / "supernet.pt"), "--subnet",
                  '{"width": [5, 5, 5, 5, 5, 5, 5, 5]}', "--output", str(trained / "bad.pt"), check=False)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "width[0]=5" in errors[0]
    assert "Traceback" not in bad.stderr
    assert not (trained / "bad.pt").exists()


@pytest.mark.slow
def test_openvino_conversion_matches_torch():
    ovb = pytest.importorskip("mlperf_bnas.backends.openvino")
    torch.manual_seed(0)
    supernet = SuperNetwork.from_model(DigitsResNet().eval(), ELASTICITY, torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    config = supernet.space.sample(np.random.default_rng(11))
    config["kernel"] = [3]
    subnet = supernet.extract_subnet(config)
    x = torch.rand(2, 3, DIGITS_SIZE, DIGITS_SIZE)
    with torch.no_grad():
        expected = subnet(x).numpy()
        ov_model = ovb.convert_torch(subnet, x[:1])
    compiled = ovb.core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x.numpy())[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_train_refuses_an_existing_run_and_resumes_it(trained):
    args = ["nas", "train", "--config", str(trained / "config.json"), "--output-dir", str(trained / "run"),
            "--pretrained", str(trained / "pretrained.pt"), "--no-progress"]
    before = (trained / "run" / "supernet_last.pt").read_bytes()
    refused = run_cli(*args, check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert (trained / "run" / "supernet_last.pt").read_bytes() == before
    resumed = run_cli(*args, "--resume")  # the schedule is complete: nothing left to train
    assert json.loads(resumed.stdout[resumed.stdout.index("{"):])["last_epoch"]["epoch"] == 1
    assert len(json.loads((trained / "run" / "train_log.json").read_text())) == 1
