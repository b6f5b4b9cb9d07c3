"""RetinaNet end to end through the command line: synthetic data -> FP32/INT8 build -> real LoadGen runs
-> accuracy. One session-scoped build (one NNCF quantization) at 256 px is shared; one run compiles with
Inductor, the others run the exported graph eagerly; one smoke run uses the full 800x800 input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from conftest import REPO, run_cli
from mlperf_bnas.backends.pytorch import PROGRAM_NAME, PyTorchBackend, count_quantized_convolutions, load_program
from mlperf_bnas.loadgen.logs import read_detail_log

# RetinaNet builds (INT8 and FP32, a full-size 800x800 one) and LoadGen runs: minutes.
pytestmark = pytest.mark.slow

BENCH = REPO / "code" / "retinanet-pytorch-cpu"
SMOKE_CONF = BENCH / "user.smoke.conf"
SIZE = 256
IMAGES = 4


def _args(out, *extra, size=SIZE, images=IMAGES):
    return ["--benchmark", str(BENCH), "--output-dir", str(out), "--system", "t",
            "--set", f"model_options.image_size={size}", "--set", f"dataset_options.synthetic_count={images}", *extra]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("retinanet")
    run_cli("dataset", *_args(out, "--no-progress"))
    run_cli("build", *_args(out, "--precision", "all"))
    return out


def _model_dir(out, precision):
    return out / "build" / "retinanet-pytorch-cpu" / "model" / precision


def _map(text: str) -> float:
    return float(re.search(r"^mAP=([\d.]+)%$", text, re.M).group(1))


def test_int8_program_really_contains_quantized_convolutions(built):
    info = json.loads((_model_dir(built, "int8") / "quantization.json").read_text())
    q = info["quantization"]
    assert info["int8_convolutions"] == info["convolutions"] == 111
    assert q["activations"] == "symmetric" and q["overflow_fix"] == "disable" and q["bias_correction"] == "none"
    assert q["calibration_samples_used"] == IMAGES and q["quantized_weights"] == 111
    # The calibration section every build record has (calibration.md quotes its names).
    assert info["calibration"]["count"] == IMAGES and len(info["calibration"]["names"]) == IMAGES
    program = load_program(_model_dir(built, "int8") / PROGRAM_NAME)
    assert count_quantized_convolutions(program)["int8_convolutions"] == 111
    # Weights per-tensor: one scale repeated over the output channels, zero point 0, range [-127, 127].
    scales = [b for name, b in program.named_buffers() if "_int8_weight_scale_" in name]
    assert len(scales) == 111 and all(torch.all(s == s[0]) for s in scales)
    # Pre-processing stays float: the first quantize reads the normalised input (mul -> add), not the pixels.
    first_q = next(n for n in program.graph.nodes if "quantize_per_tensor" in str(n.target))
    assert "add" in str(first_q.args[0].target)
    fp32 = json.loads((_model_dir(built, "fp32") / "quantization.json").read_text())
    assert fp32["int8_convolutions"] == 0 and fp32["quantization"] is None


def test_offline_accuracy_int8_inductor_and_fp32(built):
    """INT8 (compiled) reproduces the FP32 detections the synthetic ground truth came from."""
    run_cli("run", *_args(built, "--scenario", "Offline", "--mode", "accuracy", "--user-conf", str(SMOKE_CONF)))
    int8 = run_cli("accuracy", *_args(built, "--scenario", "Offline")).stdout
    acc_dir = built / "results" / "t" / "retinanet" / "Offline" / "accuracy"
    assert (acc_dir / "accuracy.txt").read_text() == int8
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in int8
    # Post-processing on a completion thread (not the instance's) must give the same answers.
    run_cli("run", *_args(built, "--scenario", "Offline", "--mode", "accuracy", "--user-conf", str(SMOKE_CONF),
                          "--precision", "fp32", "--set", "backend_options.engine=eager",
                          "--set", "backend_options.completion_threads=1"))
    fp32 = run_cli("accuracy", *_args(built, "--scenario", "Offline")).stdout
    assert _map(fp32) > 99.0, fp32           # the ground truth is FP32's own detections
    # INT8 of the seeded model on 4 calibration images: ~49% mAP (AP@0.5 ~77%) measured; a broken
    # quantization (wrong scales, lost outputs) scores near 0.
    assert 30.0 < _map(int8) < 100.0, int8
    # The INT8 result was archived by the FP32 re-run, never deleted.
    assert any((built / "build" / "archive").rglob("accuracy.txt"))


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_server_performance_two_instances(built, tmp_path, mode):
    conf = tmp_path / "server.conf"      # a short Server run: 24 queries at 2 QPS (256 px, eager)
    conf.write_text("retinanet.*.performance_sample_count_override = 4\nretinanet.Server.min_duration = 2000\n"
                    "retinanet.Server.min_query_count = 24\nretinanet.Server.target_qps = 2\n"
                    "retinanet.Server.target_latency = 20000\n")
    proc = run_cli("run", *_args(built, "--scenario", "Server", "--mode", "performance", "--user-conf", str(conf),
                                 "--set", "backend_options.engine=eager", "--set", "backend_options.instances=2",
                                 "--set", "backend_options.threads=1", "--set", f"backend_options.mode={mode}"))
    run_dir = built / "results" / "t" / "retinanet" / "Server" / "performance" / "run_1"
    summary = (run_dir / "mlperf_log_summary.txt").read_text()
    assert "Scenario : Server" in summary and "Completed samples per second" in summary
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    assert int(detail.get("effective_qsl_rng_seed")) == 1780908523862526354      # the v5.1 seeds
    assert not detail.errors
    assert "'instances': 2" in proc.stderr + proc.stdout and f"'mode': '{mode}'" in proc.stderr + proc.stdout


def test_instances_as_processes_answer_exactly_as_threads(built):
    """Offline accuracy runs (every sample's detections in LoadGen's accuracy log) with 2 instance
    processes of 1 core each, post-processing in the instances, and with 2 instance threads:
    byte-identical responses."""
    logs = {}
    for mode in ("thread", "process"):
        proc = run_cli("run", *_args(built, "--scenario", "Offline", "--mode", "accuracy", "--user-conf",
                                     str(SMOKE_CONF), "--set", "backend_options.engine=eager",
                                     "--set", "backend_options.instances=2", "--set", "backend_options.threads=1",
                                     "--set", "backend_options.completion_threads=1",
                                     "--set", f"backend_options.mode={mode}"))
        acc = built / "results" / "t" / "retinanet" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
        logs[mode] = sorted((e["qsl_idx"], e["data"]) for e in json.loads(acc.read_text()))
        assert f"'mode': '{mode}'" in proc.stderr + proc.stdout
    assert len(logs["process"]) >= IMAGES and all(data for _i, data in logs["process"])
    assert logs["process"] == logs["thread"]


def test_ctrl_c_stops_a_run_and_its_instance_processes(built, tmp_path):
    """Ctrl-C on the terminal's process group mid-run: the run ends with 130 within seconds, and
    the instance processes (in process groups of their own) are stopped by it, none left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    conf = tmp_path / "long.conf"
    conf.write_text("retinanet.*.performance_sample_count_override = 4\nretinanet.Offline.min_duration = 600000\n"
                    "retinanet.Offline.target_qps = 2\n")
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlperf_bnas", "run",
                                 *_args(built, "--scenario", "Offline", "--mode", "performance", "--user-conf",
                                        str(conf), "--set", "backend_options.engine=eager",
                                        "--set", "backend_options.instances=2", "--set", "backend_options.threads=1",
                                        "--set", "backend_options.mode=process")],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "run started" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        text = log.read_text()
        assert "run started" in text, text[-3000:]
        pids = [int(p) for p in re.findall(r"pytorch instance \d \(pid (\d+)", text)]
        assert len(set(pids)) == 2, text[-3000:]
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    alive = [p for p in set(pids) if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().split(")")[-1].split()[0] != "Z"]
    assert not alive, f"instance processes {alive} outlived the stopped run"
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("completion_threads", [0, 2])
def test_backend_completes_each_batch_exactly_once_even_on_errors(built, completion_threads):
    backend = PyTorchBackend(_model_dir(built, "fp32"), PyTorchBackend.Options(
        engine="eager", instances=2, threads=1, completion_threads=completion_threads))
    calls: list = []
    good = np.zeros((1, 3, SIZE, SIZE), np.uint8)
    bad = np.zeros((1, 3, SIZE + 32, SIZE), np.uint8)     # wrong shape: the program raises
    try:
        for batch in (good, bad, good, bad):
            backend.submit(batch, 1, lambda out, err: calls.append((out, err)))
        backend.drain()
    finally:
        backend.close()
    assert len(calls) == 4
    assert sum(err is None and out is not None for out, err in calls) == 2
    assert sum(err is not None and out is None for out, err in calls) == 2


def test_full_size_800_smoke(tmp_path):
    """The real input size through dataset -> FP32 build -> Offline performance (2 images, eager)."""
    out = tmp_path / "full"
    args = _args(out, size=800, images=2)
    conf = tmp_path / "user.conf"         # two queries: an 800x800 FP32 image takes seconds here
    conf.write_text("retinanet.*.performance_sample_count_override = 2\nretinanet.*.min_query_count = 2\n"
                    "retinanet.*.min_duration = 0\nretinanet.Offline.target_qps = 0.5\n")
    run_cli("build", *args, "--precision", "fp32")
    run_cli("run", *args, "--scenario", "Offline", "--mode", "performance", "--user-conf", str(conf),
            "--precision", "fp32", "--set", "backend_options.engine=eager",
            "--set", "backend_options.warmup_iterations=1")
    summary = (out / "results" / "t" / "retinanet" / "Offline" / "performance" / "run_1" /
               "mlperf_log_summary.txt").read_text()
    assert "Samples per second" in summary
    spec = json.loads((out / "build" / "retinanet-pytorch-cpu" / "model" / "fp32" / "quantization.json").read_text())
    assert spec["preprocess"]["size"] == 800 and spec["model_options"]["fpn_levels"] == [3, 4, 5, 6, 7]
