"""PyTorch backend instances as processes (``backend_options.mode: process``, backends/instances.py).

Real processes on a tiny exported program (a convolution, batch 2): two instances pinned to
one core each, the same outputs as the thread mode, post-processing in the instances, a
killed instance as a clear error instead of a hang, a startup error with the instance's own
message, instances ending with their parent, and the allocator preload reaching them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlperf_bnas.backends import allocator
from mlperf_bnas.backends.pytorch import PROGRAM_NAME, PyTorchBackend, export_program
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.postprocess import argmax

BATCH = 2


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-program")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    torch.export.save(export_program(model, torch.zeros(BATCH, 3, 16, 16)), str(d / PROGRAM_NAME))
    (d / "quantization.json").write_text(json.dumps({"batch_size": BATCH, "precision": "fp32"}))
    return d


def _batches(n: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((BATCH if i < n - 1 else 1, 3, 16, 16)).astype(np.float32) for i in range(n)]


def _backend(program: Path, mode: str, **options) -> PyTorchBackend:
    return PyTorchBackend(program, PyTorchBackend.Options(engine="eager", instances=2, threads=1, batch_size=BATCH,
                                                          mode=mode, **options))


def _run(backend: PyTorchBackend, batches: list[np.ndarray], indexed: bool = False) -> list:
    results: list = [None] * len(batches)

    def done_for(k):
        return lambda out, err: results.__setitem__(k, (out, err))

    for k, batch in enumerate(batches):
        if indexed:
            backend.submit(batch, len(batch), done_for(k), indices=np.arange(len(batch)) + 10 * k)
        else:
            backend.submit(batch, len(batch), done_for(k))
    backend.drain()
    return results


def test_two_processes_on_two_cores_give_the_thread_modes_outputs(program):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    batches = _batches()
    threads = _backend(program, "thread")
    try:
        threads.warmup(batches[0])
        expected = _run(threads, batches)
    finally:
        threads.close()
    procs = _backend(program, "process")
    try:
        procs.warmup(batches[0])
        got = _run(procs, batches)
        described = procs.describe()
        # Post-processing in the instances: the SUT's postprocessor, by name, on the real indices.
        assert procs.adopt_postprocess(argmax)
        responses = _run(procs, batches, indexed=True)
    finally:
        procs.close()
    # Each instance a process of its own, pinned to a core of its own, one thread each.
    instances = described["processes"]
    assert described["mode"] == "process" and len(instances) == 2
    assert [p["cpus"] for p in instances] == [[0], [1]] and all(p["threads"] == 1 for p in instances)
    assert len({p["pid"] for p in instances} | {os.getpid()}) == 3
    for (out, err), (ref, ref_err), batch in zip(got, expected, batches):
        assert err is None and ref_err is None
        assert len(out) == len(ref) == 1 and out[0].shape == (len(batch), 5)
        np.testing.assert_array_equal(out[0], ref[0].numpy())
    for k, ((resp, err), (ref, _)) in enumerate(zip(responses, expected)):
        assert err is None
        np.testing.assert_array_equal(resp, argmax(ref, np.arange(len(ref[0])) + 10 * k))
    # Nothing left in /dev/shm: the input slots' file is unlinked once mapped.
    assert not list(Path("/dev/shm").glob("mlperf-bnas-slots-*")) if Path("/dev/shm").is_dir() else True


def test_a_dead_instance_is_a_clear_error_naming_it_and_its_log_never_a_hang(program):
    backend = _backend(program, "process")
    try:
        backend.warmup(_batches(1)[0])
        victim = backend.describe()["processes"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        results: list = []
        finished = threading.Event()

        def run():
            results.extend(_run(backend, _batches(12)))
            finished.set()

        threading.Thread(target=run, daemon=True).start()
        assert finished.wait(60), "a dead instance left batches unanswered: the run would hang"
        errors = [err for _out, err in results if err is not None]
        assert errors, "no batch failed although an instance was killed"
        message = str(errors[-1])
        assert "pytorch instance 1" in message and f"pid {victim}" in message and "SIGKILL" in message
        log_file = Path(message.split("its log: ")[1].split(";")[0])
        assert log_file.name == "instance-1.log" and log_file.is_file()
        # Every later batch fails at once, with the same error.
        late: list = []
        backend.submit(_batches(1)[0], BATCH, lambda out, err: late.append(err))
        backend.drain()
        assert late and "pytorch instance 1" in str(late[0])
    finally:
        backend.close()
    assert log_file.is_file()                 # kept: the error names it
    import shutil

    shutil.rmtree(log_file.parent)


def test_a_startup_error_is_the_instances_own_one_line_message(tmp_path):
    with pytest.raises(UserError) as threads:
        _backend(tmp_path, "thread")
    with pytest.raises(UserError) as procs:
        _backend(tmp_path, "process")
    assert str(procs.value) == str(threads.value) and "built model not found" in str(procs.value)


def test_instances_end_with_their_parent(program, tmp_path):
    """A parent killed outright (no close, no atexit) leaves no instance behind (PR_SET_PDEATHSIG)."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\nfrom pathlib import Path\nfrom mlperf_bnas.backends.pytorch import PyTorchBackend\n"
        f"b = PyTorchBackend(Path({str(program)!r}), PyTorchBackend.Options(engine='eager', instances=2, threads=1, "
        f"batch_size={BATCH}, mode='process'))\n"
        "print(' '.join(str(p['pid']) for p in b.describe()['processes']), b._pool._log_dir, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        *words, log_dir = parent.stdout.readline().split()
        pids = [int(p) for p in words]
        assert len(pids) == 2
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in pids if _alive(p)]
        assert not alive, f"instances {alive} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    import shutil

    shutil.rmtree(log_dir, ignore_errors=True)      # a parent killed outright cannot tidy up


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_allocator_preload_reaches_the_instances(program, monkeypatch):
    lib = allocator.library("jemalloc") or allocator.library("tcmalloc")
    if lib is None:
        pytest.skip("neither jemalloc nor tcmalloc is installed (apt-get install libjemalloc2)")
    # What commands/allocator_env.py does before a run: the variable set for the whole process tree.
    monkeypatch.setenv("LD_PRELOAD", str(lib))
    backend = PyTorchBackend(program, PyTorchBackend.Options(engine="eager", instances=1, threads=1, batch_size=BATCH,
                                                             mode="process"))
    try:
        assert Path(backend.describe()["processes"][0]["allocator"]).name == lib.name
    finally:
        backend.close()


def test_loaded_library_reads_the_process_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
                    "7f02-7f03 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.loaded_library(maps) == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.loaded_library(maps) is None


# -- the PyTorch precision policy (backends/torch_precision.py) ---------------------------
def _tiny_runners():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()

    def make_runner(precision):
        from mlperf_bnas.backends.torch_precision import autocast

        def run(x):
            with autocast(precision):
                return model(x)
        return run
    return make_runner, [torch.randn(2, 3, 32, 32) for _ in range(2)]


def test_precision_policy_keeps_f32_without_amx_and_says_why():
    from mlperf_bnas.backends.cpu import CpuInfo
    from mlperf_bnas.backends.torch_precision import choose

    amd = CpuInfo("AMD EPYC 7B13", frozenset({"avx2", "fma"}))
    make_runner, batches = _tiny_runners()
    rec = choose("int8", make_runner, batches, cpu=amd)
    assert rec["float_precision"] == "f32" and rec["measured"] is None
    assert "no amx_bf16 flag" in rec["reason"] and "AMD EPYC 7B13" in rec["reason"]
    assert choose("fp32", make_runner, batches)["float_precision"] == "f32"


def test_precision_policy_on_amx_is_measured_and_its_thresholds_decide():
    from mlperf_bnas.backends.cpu import CpuInfo
    from mlperf_bnas.backends.torch_precision import choose

    amx = CpuInfo("Intel Xeon (claimed AMX)", frozenset({"avx2", "amx_int8", "amx_bf16"}))
    make_runner, batches = _tiny_runners()
    rec = choose("int8", make_runner, batches, cpu=amx, rounds=3)
    m = rec["measured"]
    assert len(m["seconds"]["f32"]) == len(m["seconds"]["bf16"]) == 3
    assert 0 < m["relative_error_bf16_vs_f32"] < 0.05          # bf16 rounding, not garbage
    expected = "bf16" if m["bf16_speedup_median"] >= 1.05 and m["relative_error_bf16_vs_f32"] <= 0.02 else "f32"
    assert rec["float_precision"] == expected
    # Thresholds decide: no speed-up demanded and any error allowed -> bf16; none allowed -> f32.
    assert choose("int8", make_runner, batches, cpu=amx, min_speedup=0.0, max_error=1.0)["float_precision"] == "bf16"
    assert choose("int8", make_runner, batches, cpu=amx, min_speedup=0.0, max_error=0.0)["float_precision"] == "f32"


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_backend_applies_the_option_else_the_builds_policy(program, tmp_path, mode):
    build = tmp_path / "build"
    build.mkdir()
    (build / PROGRAM_NAME).write_bytes((program / PROGRAM_NAME).read_bytes())
    (build / "quantization.json").write_text(json.dumps({"batch_size": BATCH, "precision": "int8",
                                                         "precision_policy": {"float_precision": "bf16"}}))
    x = _batches(1)[0]
    results = {}
    for option, expected in ((None, "bf16 (the build's precision_policy)"), ("f32", "f32 (backend_options.float_precision)")):
        backend = PyTorchBackend(build, PyTorchBackend.Options(engine="eager", instances=1, threads=1, batch_size=BATCH,
                                                               mode=mode, float_precision=option))
        try:
            assert backend.describe()["float_precision"] == expected
            out: list = []
            backend.submit(x, BATCH, lambda o, e: out.append((o, e)))
            backend.drain()
        finally:
            backend.close()
        (result, err), = out
        assert err is None
        results[expected[:4]] = torch.as_tensor(np.asarray(result[0].float() if mode == "thread" else result[0]))
        if mode == "thread":
            assert result[0].dtype == (torch.bfloat16 if expected.startswith("bf16") else torch.float32)
    # bf16 rounding: close to f32, not equal to it.
    f32, bf16 = results["f32 "], results["bf16"]
    assert not torch.equal(f32, bf16) and float((bf16 - f32).norm() / f32.norm()) < 0.05
