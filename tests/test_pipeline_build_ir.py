"""backends.openvino.build_openvino_ir (what the NAS search uses for latency) and the OpenVINO backend contract."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from mlperf_bnas.backends import create_backend
from mlperf_bnas.backends.openvino import count_ops
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.backends.openvino import build_openvino_ir
from mlperf_bnas.quantize.qconfig import QuantizationConfig

SPEC = PreprocessSpec(size=32, resize=36, channel_order="BGR", mean=(123.675, 116.28, 103.53),
                      scale=(58.395, 57.12, 57.375))


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


@pytest.fixture(scope="module")
def irs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (8, *SPEC.sample_shape), dtype=np.uint8)
    net = _tiny_net()
    fp32 = build_openvino_ir(net, SPEC, None, out / "fp32")
    int8 = build_openvino_ir(net, SPEC, calibration, out / "int8", QuantizationConfig(subset_size=6),
                             record={"note": "test"})
    return net, fp32, int8


def test_fp32_ir_matches_torch_with_preprocessing_in_graph(irs):
    net, fp32, _ = irs
    backend = create_backend("openvino", fp32.parent, {"batch_size": 3, "inference_precision": "f32"})
    samples = np.random.default_rng(1).integers(0, 256, (3, *SPEC.sample_shape), dtype=np.uint8)
    got = []
    backend.submit(samples, 3, lambda out, err: got.append((np.array(out), err)))
    backend.drain()
    with torch.no_grad():
        ref = net(torch.from_numpy(SPEC.to_float_nchw(samples))).numpy()
    assert got[0][1] is None
    np.testing.assert_allclose(got[0][0], ref, rtol=1e-4, atol=1e-4)
    record = json.loads((fp32.parent / "quantization.json").read_text())
    assert record["precision"] == "fp32" and record["quantization"] is None and record["fake_quantize_ops"] == 0


def test_int8_ir_has_fake_quantize_and_a_record(irs):
    _, _, int8 = irs
    assert count_ops(int8.parent, "FakeQuantize") >= 3
    record = json.loads((int8.parent / "quantization.json").read_text())
    assert record["note"] == "test"
    assert record["quantization"]["calibration_samples_used"] == 6
    assert record["quantization"]["config"]["subset_size"] == 6
    assert record["preprocess_key"] == SPEC.key


def test_partial_batches_and_exactly_one_completion_each(irs):
    _, fp32, _ = irs
    backend = create_backend("openvino", fp32.parent, {"batch_size": 4, "num_requests": 2})
    lock = threading.Lock()
    calls: dict[int, int] = {}
    samples = np.zeros((4, *SPEC.sample_shape), np.uint8)

    def done_for(k):
        def done(out, err):
            assert err is None and len(out) == (k % 4) + 1
            with lock:
                calls[k] = calls.get(k, 0) + 1
        return done

    for k in range(20):
        n = (k % 4) + 1
        backend.submit(samples[:n], n, done_for(k))
    backend.drain()
    assert calls == {k: 1 for k in range(20)}


def test_failing_submit_raises_so_the_sut_completes_it(irs):
    _, fp32, _ = irs
    backend = create_backend("openvino", fp32.parent, {"batch_size": 1})
    with pytest.raises(RuntimeError):
        backend.submit(np.zeros((1, 7, 7, 3), np.uint8), 1, lambda out, err: None)
    backend.drain()


def test_backend_option_and_model_errors(irs, tmp_path):
    _, fp32, _ = irs
    with pytest.raises(UserError, match="backend_options.bogus"):
        create_backend("openvino", fp32.parent, {"bogus": 1})
    with pytest.raises(UserError, match="performance_hint"):
        create_backend("openvino", fp32.parent, {"performance_hint": "FAST"})
    with pytest.raises(UserError, match="model not built"):
        create_backend("openvino", tmp_path, {})


def test_quantization_config_validation():
    assert QuantizationConfig.from_options({"preset": "mixed", "subset_size": 10}).to_nncf_kwargs()["preset"] == "mixed"
    with pytest.raises(UserError, match="quantization.presets"):
        QuantizationConfig.from_options({"presets": "mixed"})
    with pytest.raises(UserError, match="subset_size"):
        QuantizationConfig.from_options({"subset_size": 0})


def test_every_build_records_its_precision_policy(irs, tmp_path):
    """fp32: true f32; int8: f32 on a CPU without AMX-BF16 (measured otherwise); bf16: its own build."""
    from mlperf_bnas.backends.cpu import cpu_info

    net, fp32, int8 = irs
    policy = {p: json.loads((x.parent / "quantization.json").read_text())["precision_policy"]
              for p, x in (("fp32", fp32), ("int8", int8))}
    assert policy["fp32"]["inference_precision"] == "f32"
    if not cpu_info().native_bf16:
        assert policy["int8"]["inference_precision"] == "f32" and "amx_bf16" in policy["int8"]["reason"]
    else:
        assert policy["int8"]["measured"]["rounds"] >= 1
    bf16 = build_openvino_ir(net, SPEC, None, tmp_path / "bf16", precision="bf16")
    record = json.loads((bf16.parent / "quantization.json").read_text())
    assert record["precision"] == "bf16" and record["fake_quantize_ops"] == 0
    assert record["precision_policy"]["inference_precision"] == "bf16"
    backend = create_backend("openvino", bf16.parent, {"batch_size": 1})
    assert "precision_policy" in backend.describe()["inference_precision_from"]
    backend.close()
