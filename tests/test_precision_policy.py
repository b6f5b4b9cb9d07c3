"""The OpenVINO precision policy (backends/openvino_precision.py) and the CPU facts it reads.

A tiny IR stands in for a model: the policy's decisions do not depend on its size. On a
CPU without AMX-BF16 (this project's AMD EPYC) the INT8 build must choose f32 and say why;
the measuring path (AMX-BF16 CPUs only) is exercised with a CPU description that claims
the flag, and its thresholds decide as documented.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from mlperf_bnas.backends import openvino_precision as policy
from mlperf_bnas.backends.base import create_backend
from mlperf_bnas.backends.cpu import CpuInfo, cpu_info, topology

AMD = CpuInfo("AMD EPYC 7B13", frozenset({"avx2", "fma"}))
AMX = CpuInfo("Intel Xeon (claimed AMX)", frozenset({"avx2", "avx512_vnni", "amx_int8", "amx_bf16"}))


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory) -> Path:
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([-1, 16], ov.Type.f32, name="x")
    w = ops.constant(rng.standard_normal((16, 10)).astype(np.float32))
    model = ov.Model([ops.softmax(ops.matmul(x, w, False, False), 1)], [x], "tiny")
    xml = tmp_path_factory.mktemp("ir") / "model.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def test_fp32_build_is_true_f32(tiny_ir):
    rec = policy.choose(tiny_ir, "fp32", cpu=AMX)
    assert rec["inference_precision"] == "f32" and "true f32" in rec["reason"]


def test_int8_without_amx_bf16_keeps_f32_and_says_why(tiny_ir):
    rec = policy.choose(tiny_ir, "int8", cpu=AMD)
    assert rec["inference_precision"] == "f32"
    assert "amx_bf16" in rec["reason"] and "AMD EPYC 7B13" in rec["reason"]
    assert rec["measured"] is None and rec["cpu"]["amx_bf16"] is False


def test_int8_on_amx_is_measured_and_thresholds_decide(tiny_ir):
    samples = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    kw = dict(batch=4, seconds=0.2, rounds=2, cpu=AMX)
    never = policy.choose(tiny_ir, "int8", samples, min_speedup=1e9, **kw)
    assert never["inference_precision"] == "f32"
    m = never["measured"]
    assert len(m["samples_per_s"]["f32"]) == len(m["samples_per_s"]["bf16"]) == 2
    assert all(v > 0 for v in m["samples_per_s"]["f32"] + m["samples_per_s"]["bf16"])
    assert 0.0 <= m["top1_agreement_bf16_vs_f32"] <= 1.0 and m["agreement_samples"] == 16
    always = policy.choose(tiny_ir, "int8", samples, min_speedup=0.0, min_agreement=0.0, **kw)
    assert always["inference_precision"] == "bf16" and "bf16" in always["reason"]
    # Without samples there is no fidelity evidence, so bf16 is never chosen.
    blind = policy.choose(tiny_ir, "int8", None, min_speedup=0.0, min_agreement=0.0, **kw)
    assert blind["inference_precision"] == "f32"


def test_bf16_build_says_what_it_runs_as_here(tiny_ir):
    rec = policy.choose(tiny_ir, "bf16", cpu=cpu_info())
    assert rec["inference_precision"] == "bf16" and rec["runs_as_here"] in ("bf16", "f32")
    if not cpu_info().native_bf16:
        assert "amx_bf16" in rec["reason"]


def test_backend_applies_the_recorded_policy(tiny_ir, tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for suffix in (".xml", ".bin"):
        (model_dir / f"model{suffix}").write_bytes(tiny_ir.with_suffix(suffix).read_bytes())
    backend = create_backend("openvino", model_dir, {"batch_size": 2})
    assert backend.describe()["inference_precision_from"].startswith("default f32")
    backend.close()
    (model_dir / "quantization.json").write_text(json.dumps(
        {"precision_policy": {"inference_precision": "f32", "reason": "because"}}))
    backend = create_backend("openvino", model_dir, {"batch_size": 2})
    info = backend.describe()
    assert "because" in info["inference_precision_from"] and "float32" in info["inference_precision_hint"]
    # Two infer requests per stream by default; the Server SUT's parallelism stays one per stream.
    assert backend.num_requests == 2 * backend.parallelism
    backend.close()
    backend = create_backend("openvino", model_dir, {"batch_size": 2, "inference_precision": "f32",
                                                     "requests_per_stream": 1})
    assert backend.describe()["inference_precision_from"] == "backend_options.inference_precision"
    assert backend.num_requests == backend.parallelism
    backend.close()


def test_topology_reads_this_machine():
    topo = topology()
    assert topo.cores and all(c.cpus for c in topo.cores)
    assert "physical cores" in topo.describe()
