"""RetinaNet BootstrapNAS end to end on tiny data, through the command line:

super-network (torch.fx, one FPN level removed) -> progressive shrinking (distillation from the
full seeded RetinaNet on synthetic images) -> search (mAP against the full model's detections,
latency on the benchmark's own PyTorch backend) -> export -> ``code/retinanet-pytorch-cpu``
build with the sub-network as CHECKPOINT -> LoadGen Offline run -> packaging provenance.

Everything runs at a reduced image size (``SIZE``) on a handful of images, and the training
is a few steps at a small learning rate: this tests the chain, not the quality of the result
(the seeded teacher's detections are noise-level, and a step at the shipped config's learning
rate moves its tiny box-regression weights by a quarter of their norm).
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow      # trains, searches and builds RetinaNets: minutes

CONFIG = REPO / "code" / "bootstrapnas" / "configs" / "retinanet_progressive_shrinking.json"
BENCH = REPO / "code" / "retinanet-pytorch-cpu"
SIZE = 128
LEVELS = [3, 4, 5, 6]
TINY = [
    f"input_info.sample_size=[1,3,{SIZE},{SIZE}]", "batch_size=2", "dataset=synthetic",
    "dataset_options={synthetic_images: 4, held_out: 2}", "bootstrapNAS.training.train_steps=1",
    "bootstrapNAS.training.schedule.list_stage_descriptions=["
    "{train_dims: [depth], epochs: 1, depth_indicator: 2, init_lr: 1.0e-5, epochs_lr: 1},"
    "{train_dims: [depth, width], epochs: 1, depth_indicator: 2, width_indicator: 4, reorg_weights: true,"
    " init_lr: 1.0e-5, epochs_lr: 1}]",
]


def _sets(pairs):
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("retinanet-nas")
    run_cli("nas", "train", "--config", str(CONFIG), "--output-dir", str(out / "train"), "--no-progress",
            *_sets(TINY))
    # Two generations of two: the reference (maximum) and a few sampled sub-networks, each built
    # by the benchmark's PyTorch builder and timed on its backend.
    run_cli("nas", "search", "--supernet", str(out / "train" / "supernet.pt"), "--output_dir", str(out / "search"),
            "--optimization_metrics", "accuracy", "latency", "--num_evals", "2", "--population", "2",
            "--test_fraction", "1.0", "--latency_runtime", "pytorch", "--latency_precision", "fp32",
            "--latency_iterations", "2", "--latency_warmup", "1")
    return out


def test_supernet_is_the_retinanet_with_one_level_removed(searched):
    ckpt = torch.load(searched / "train" / "supernet.pt", weights_only=True)
    extra = ckpt["extra"]
    assert extra["base_model"] == "retinanet" and extra["model_options"]["fpn_levels"] == LEVELS
    assert ckpt["example_input_shape"] == [1, 3, SIZE, SIZE]
    log = json.loads((searched / "train" / "train_log.json").read_text())
    history = log["history"] if isinstance(log, dict) else log
    # Both stages ran; the maximum keeps all of the network, the minimum is much cheaper.
    assert [h["stage"] for h in history] == [1, 2]
    assert history[-1]["macs_min"] < 0.5 * history[-1]["macs_max"]


def test_search_record_and_subnet_on_the_pytorch_runtime(searched):
    search = searched / "search"
    record = json.loads((search / "nas_record.json").read_text())
    assert record["base_model"] == "retinanet" and record["accuracy_metric"].startswith("mAP")
    assert record["search"]["latency"]["runtime"] == "pytorch"
    assert record["metrics"]["latency"] > 0 and 0.0 <= record["metrics"]["accuracy"] <= 100.0
    cache = json.loads((search / "latency_cache.json").read_text())
    assert cache and all(v["runtime"] == "pytorch" for v in cache.values())
    subnet = torch.load(search / "best_subnet.pt", weights_only=True)
    assert subnet["base_model"] == "retinanet" and subnet["model_options"]["fpn_levels"] == LEVELS
    assert subnet["subnet_config"] == record["subnet_config"]
    # Every grouped convolution keeps a multiple of 4 channels per group (the config's
    # channels_per_group_multiple): oneDNN runs anything else in INT8 with its reference kernel.
    grouped = [v for k, v in subnet["state_dict"].items() if k.endswith("conv2.weight") and ".layer" in k]
    assert grouped and all(w.shape[1] % 4 == 0 and (w.shape[0] // 32) % 4 == 0 for w in grouped)


def test_benchmark_builds_and_runs_the_subnet(searched, tmp_path):
    """The benchmark directory takes the sub-network as CHECKPOINT: build (INT8), Offline run,
    and the packager's provenance names the sub-network, its super-network and its search."""
    from mlperf_bnas.config import load_config
    from mlperf_bnas.submission import provenance

    subnet = searched / "search" / "best_subnet.pt"
    out = tmp_path / "bench"
    args = ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "t",
            "--set", f"model_options.image_size={SIZE}", "--set", "dataset_options.synthetic_count=2",
            "--checkpoint", str(subnet)]
    run_cli("dataset", *args, "--no-progress")
    run_cli("build", *args, "--precision", "int8")
    conf = tmp_path / "user.conf"
    conf.write_text("retinanet.*.performance_sample_count_override = 2\nretinanet.*.min_query_count = 2\n"
                    "retinanet.*.min_duration = 0\nretinanet.Offline.target_qps = 1\n")
    run_cli("run", *args, "--scenario", "Offline", "--mode", "performance", "--user-conf", str(conf),
            "--set", "backend_options.engine=eager")
    summary = (out / "results" / "t" / "retinanet" / "Offline" / "performance" / "run_1" /
               "mlperf_log_summary.txt").read_text()
    assert "Samples per second" in summary

    record = json.loads((out / "build" / "retinanet-pytorch-cpu" / "model" / "int8" / "quantization.json").read_text())
    assert record["model_options"]["fpn_levels"] == LEVELS      # from the checkpoint's metadata
    cfg = load_config(BENCH)
    prov = provenance.read(out, cfg, "int8")
    nas = json.loads((searched / "search" / "nas_record.json").read_text())
    assert prov.subnet["subnet_config"] == nas["subnet_config"]
    assert prov.subnet["search"]["supernet_sha256"] == nas["supernet"]["sha256"]
    fields = provenance.measurement_fields(prov)
    assert nas["supernet"]["sha256"] in fields["weight_transformations"]
    assert "evolutionary/nsga2" in fields["weight_transformations"]
    assert fields["retraining"].startswith("yes")
    section = provenance.calibration_section("retinanet", cfg, prov)
    assert nas["supernet"]["sha256"] in section and "Sub-network (BootstrapNAS export)" in section


def test_a_subnet_of_another_model_is_refused_in_one_line(searched, tmp_path):
    ckpt = torch.load(searched / "search" / "best_subnet.pt", weights_only=True)
    ckpt["base_model"] = "resnet50"
    bad = tmp_path / "other.pt"
    torch.save(ckpt, bad)
    proc = run_cli("build", "--benchmark", str(BENCH), "--output-dir", str(tmp_path / "o"), "--system", "t",
                   "--set", f"model_options.image_size={SIZE}", "--set", "dataset_options.synthetic_count=2",
                   "--checkpoint", str(bad), "--precision", "fp32", check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("INFO ")]
    assert len(errors) == 1 and str(bad) in errors[0] and "'resnet50'" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
