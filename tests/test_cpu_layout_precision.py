"""The OpenVINO precision policy (backends/openvino.py, "Precision policy") and the CPU facts it reads.

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

from mlperf_bnas.backends import openvino as ovb
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
    rec = ovb.choose_precision(tiny_ir, "fp32", cpu=AMX)
    assert rec["inference_precision"] == "f32" and "true f32" in rec["reason"]


def test_int8_without_amx_bf16_keeps_f32_and_says_why(tiny_ir):
    rec = ovb.choose_precision(tiny_ir, "int8", cpu=AMD)
    assert rec["inference_precision"] == "f32"
    assert "amx_bf16" in rec["reason"] and "AMD EPYC 7B13" in rec["reason"]
    assert rec["measured"] is None and rec["cpu"]["amx_bf16"] is False


def test_int8_on_amx_is_measured_and_thresholds_decide(tiny_ir):
    samples = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    kw = dict(batch=4, seconds=0.2, rounds=2, cpu=AMX)
    never = ovb.choose_precision(tiny_ir, "int8", samples, min_speedup=1e9, **kw)
    assert never["inference_precision"] == "f32"
    m = never["measured"]
    assert len(m["samples_per_s"]["f32"]) == len(m["samples_per_s"]["bf16"]) == 2
    assert all(v > 0 for v in m["samples_per_s"]["f32"] + m["samples_per_s"]["bf16"])
    assert 0.0 <= m["top1_agreement_bf16_vs_f32"] <= 1.0 and m["agreement_samples"] == 16
    always = ovb.choose_precision(tiny_ir, "int8", samples, min_speedup=0.0, min_agreement=0.0, **kw)
    assert always["inference_precision"] == "bf16" and "bf16" in always["reason"]
    # Without samples there is no fidelity evidence, so bf16 is never chosen.
    blind = ovb.choose_precision(tiny_ir, "int8", None, min_speedup=0.0, min_agreement=0.0, **kw)
    assert blind["inference_precision"] == "f32"


def test_bf16_build_says_what_it_runs_as_here(tiny_ir):
    rec = ovb.choose_precision(tiny_ir, "bf16", cpu=cpu_info())
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


# -- instance layout (backends/layout.py) on made-up topologies -----------------------------
def _xeon(sockets=2, cores=4, threads=2):
    from mlperf_bnas.backends.cpu import Core, Topology

    out, cpu_count = [], sockets * cores
    for s in range(sockets):
        for c in range(cores):
            first = s * cores + c
            out.append(Core(tuple(first + t * cpu_count for t in range(threads)), s, s))
    return Topology(tuple(out), tuple(range(sockets)))


def test_layout_cuts_consecutive_core_groups_per_node():
    from mlperf_bnas.backends.layout import plan

    lay = plan(4, 2, topo=_xeon())
    assert lay.groups == ((0, 1), (2, 3), (4, 5), (6, 7)) and lay.nodes == (0, 0, 1, 1) and lay.spare == ()
    lay = plan(3, 2, topo=_xeon(), hyperthreads=True)
    assert lay.groups[0] == (0, 8, 1, 9)
    assert lay.spare == (6, 7, 14, 15)                 # the unused core and its hyper-thread
    lay = plan(2, None, numa_node=1, topo=_xeon())
    assert lay.groups == ((4, 5), (6, 7))
    assert "instance(s) on CPUs 0-1 (node 0)" in plan(1, 2, topo=_xeon()).describe()


def test_a_layout_the_machine_cannot_hold_is_one_line_naming_the_topology():
    from mlperf_bnas.backends.layout import plan
    from mlperf_bnas.errors import UserError

    with pytest.raises(UserError) as err:
        plan(5, 2, topo=_xeon())
    msg = str(err.value)
    assert "\n" not in msg and "need 10 physical cores" in msg and "8 physical cores (16 CPUs) on 2 socket(s)" in msg
    with pytest.raises(UserError, match="numa_node 3 does not exist here; this machine has 8 physical cores"):
        plan(1, 1, numa_node=3, topo=_xeon())
    with pytest.raises(UserError, match="NUMA node 0 has 4"):
        plan(3, 2, numa_node=0, topo=_xeon())


# -- allocator preload (backends/allocator.py, commands/allocator_env.py) -------------------
def test_missing_allocator_is_a_warning_that_says_how_to_install(monkeypatch, caplog, tmp_path):
    import argparse

    from mlperf_bnas.backends import allocator
    from mlperf_bnas.commands import allocator_env

    monkeypatch.setattr(allocator, "LIB_DIRS", (str(tmp_path),))
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    assert allocator.library("jemalloc") is None
    assert "apt-get install libjemalloc2" in allocator.missing_message("jemalloc")
    assert allocator.in_effect("jemalloc") == "system malloc (jemalloc requested, library not found)"
    monkeypatch.setattr(allocator_env, "_backend_options", lambda args: {"allocator": "jemalloc"})
    args = argparse.Namespace(benchmark="x")
    with caplog.at_level("WARNING"):
        assert allocator_env.run_with_allocator("run", args, ["run"], replace_process=False) is None
    assert "apt-get install libjemalloc2" in caplog.text


def test_allocator_and_openmp_env_are_set_by_one_rerun(monkeypatch, tmp_path):
    import argparse
    import subprocess

    from mlperf_bnas.backends import allocator
    from mlperf_bnas.commands import allocator_env

    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setattr(allocator, "LIB_DIRS", (str(tmp_path),))
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(allocator_env.GUARD, raising=False)
    monkeypatch.setattr(allocator_env, "_backend_options",
                        lambda args: {"allocator": "jemalloc", "openmp_env": {"OMP_WAIT_POLICY": "PASSIVE"}})
    seen = {}

    def fake_run(cmd, env):
        seen.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(allocator_env.subprocess, "run", fake_run)
    args = argparse.Namespace(benchmark="x")
    assert allocator_env.run_with_allocator("run", args, ["run", "--scenario", "Offline"], False) == 0
    assert seen["env"]["LD_PRELOAD"] == str(lib) and seen["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "oversize_threshold" in seen["env"]["MALLOC_CONF"] and seen["env"][allocator_env.GUARD] == "1"
    assert seen["cmd"][-3:] == ["run", "--scenario", "Offline"]
    # In the re-run process the library is preloaded and nothing runs a third time.
    monkeypatch.setenv("LD_PRELOAD", str(lib))
    assert allocator.in_effect("jemalloc") == f"jemalloc ({lib}, LD_PRELOAD)"
    monkeypatch.setenv(allocator_env.GUARD, "1")
    assert allocator_env.run_with_allocator("run", args, ["run"], False) is None
    # build never needs it
    monkeypatch.delenv(allocator_env.GUARD)
    assert allocator_env.run_with_allocator("build", args, ["build"], False) is None
