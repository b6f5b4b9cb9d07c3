"""Faults during a run, through the real command line (issue #19): a full disk, Ctrl-C and SIGTERM,
a backend that stops answering, two writers in one output folder, leftovers of killed commands,
an output folder that cannot be written, bad --set values, a decompression-bomb image.

Runs use the ResNet-50 benchmark's config with ``--set backend=simulated``: a real LoadGen run
in a real ``mlperf-bnas run`` process, with a backend whose speed (and hang) is known, so no
model needs building. Each such run is its own process importing torch and OpenVINO (15-40 s
on 2 busy cores), so those tests are marked ``slow``; the ones that fail before a run starts
stay in the fast subset. The full disk is a real one: a tmpfs mounted for the test (root, or
CAP_SYS_ADMIN); where no tmpfs can be mounted, a file-size limit (RLIMIT_FSIZE) on the run
process makes LoadGen's writes fail the same way.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, run_cli

BENCH = REPO / "code" / "resnet50-openvino"
SYSTEM = "fault_cpu"
# A run of the simulated backend (1 worker, 5 ms + 0.5 ms per sample, batch 4: ~570 samples/s)
# that lasts a few seconds; LONG runs for 10 minutes unless stopped.
SHORT = """\
resnet50.*.min_duration = 3000
resnet50.*.min_query_count = 100
resnet50.Offline.target_qps = 600
resnet50.Server.target_qps = 100
resnet50.Server.target_latency = 100
"""
LONG = SHORT.replace("min_duration = 3000", "min_duration = 600000")
SIMULATED = ["--set", "backend=simulated", "--set", "backend_options.workers=1", "--set", "backend_options.fixed_ms=5"]


def _conf(tmp_path: Path, text: str, name: str = "user.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run_args(out: Path, conf: Path, scenario: str = "Offline", *extra: str) -> list[str]:
    return ["run", "--benchmark", str(BENCH), "--output-dir", str(out), "--system", SYSTEM, "--scenario", scenario,
            "--user-conf", str(conf), *SIMULATED, *extra]


def _results(out: Path, scenario: str = "Offline") -> Path:
    return out / "results" / SYSTEM / "resnet50" / scenario / "performance" / "run_1"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _start(args: list[str], log: Path, **kw) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "mlperf_bnas", *args], stdout=fh, stderr=subprocess.STDOUT,
                            cwd=REPO, **kw)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def _one_error_line(proc, expect: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert lines and expect in lines[-1], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


# ---------------------------------------------------------------------------
# Ctrl-C and SIGTERM
# ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scenario, signum, status", [("Offline", signal.SIGINT, 130), ("Server", signal.SIGTERM, 143)])
def test_signal_stops_a_run_within_seconds(tmp_path, scenario, signum, status):
    out = tmp_path / "out"
    earlier = scenario == "Offline"
    if earlier:
        run_cli(*_run_args(out, _conf(tmp_path, SHORT), scenario))       # an earlier, complete result
        before = _digest(_results(out, scenario))
    log = tmp_path / "run.log"
    proc = _start(_run_args(out, _conf(tmp_path, LONG, "long.conf"), scenario), log)
    _wait_for(log, "run started", proc)
    time.sleep(1.0)                                                        # mid-run: samples in flight
    sent = time.monotonic()
    proc.send_signal(signum)
    rc = proc.wait(timeout=60)
    took = time.monotonic() - sent
    text = log.read_text()
    assert rc == status, text[-3000:]
    # Offline: LoadGen returns as soon as its one query is answered; Server keeps to its
    # schedule, so the run gives LoadGen 5 s and then ends the process itself.
    assert took < 15, f"{took:.1f} s to stop:\n{text[-2000:]}"
    assert "Traceback" not in text
    assert "failed" not in text.lower(), text[-2000:]       # stopped samples are no inference failures
    if earlier:
        assert _digest(_results(out, scenario)) == before    # nothing published, nothing archived
    else:
        assert not _results(out, scenario).exists()
    partial = list((out / "build" / "archive").glob("interrupted-*/run_1/mlperf_log_detail.txt"))
    assert len(partial) == 1, text[-2000:]
    assert not list(_results(out, scenario).parent.glob(".run_1.*"))      # no private folder left behind


@pytest.mark.slow
def test_ctrl_c_on_the_process_group_as_a_terminal_sends_it(tmp_path):
    """Ctrl-C in a terminal signals the whole process group (run_offline.sh's `exec`ed python too)."""
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    proc = _start(_run_args(out, _conf(tmp_path, LONG)), log, start_new_session=True)
    _wait_for(log, "run started", proc)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert not _results(out).exists()


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(tmp_path):
    """Server keeps LoadGen to its schedule for the 5 s grace; a second Ctrl-C does not wait."""
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    proc = _start(_run_args(out, _conf(tmp_path, LONG), "Server"), log)
    _wait_for(log, "run started", proc)
    proc.send_signal(signal.SIGINT)
    _wait_for(log, "SIGINT: stopping the run", proc, timeout=30)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert time.monotonic() - sent < 4
    assert "SIGINT again: stopping now" in log.read_text()
    assert list((out / "build" / "archive").glob("interrupted-*/run_1"))


@pytest.mark.slow
def test_ctrl_c_stops_tune_and_its_trial_cleanly(tmp_path):
    """Ctrl-C reaches tune's process group; tune passes it on to the trial's own group once and
    waits until the trial has archived its partial logs."""
    bench = tmp_path / "simulated-test"
    bench.mkdir()
    (bench / "config.yaml").write_text(
        "benchmark: simulated-test\nloadgen_model: resnet50\nmodel: resnet50\ndataset: imagenet\n"
        "backend: simulated\naccuracy: imagenet\npostprocess: none\n"
        "backend_options: {fixed_ms: 5, workers: 1, batch_size: 4}\n"
        "tuning:\n  trial_duration_ms: 600000\n  Offline:\n    backend_options: {workers: [1, 2]}\n")
    (bench / "user.conf").write_text("resnet50.*.performance_sample_count_override = 64\n")
    out = tmp_path / "out"
    log = tmp_path / "tune.log"
    proc = _start(["tune", "--benchmark", str(bench), "--output-dir", str(out), "--system", SYSTEM,
                   "--user-conf", str(bench / "user.conf"), "--scenario", "Offline"], log, start_new_session=True)
    deadline = time.monotonic() + 300

    def running_trial():       # the short probes come first; a 600 s grid trial is the one to stop
        for path in out.glob("build/simulated-test/tuning/*/*/trial_*_grid/run.log"):
            if "run started" in path.read_text():
                return path
        return None

    while (trial_log := running_trial()) is None:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert time.monotonic() - sent < 20
    text = trial_log.read_text()
    assert "SIGINT: stopping the run" in text and "again" not in text, text
    assert list((out / "build" / "archive").glob("interrupted-*/logs/mlperf_log_detail.txt"))


# ---------------------------------------------------------------------------
# a backend that stops answering
# ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_watchdog_fails_a_run_whose_backend_stops_answering(tmp_path, scenario):
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_cli(*_run_args(out, _conf(tmp_path, LONG), scenario, "--set", "backend_options.hang_after=50",
                              "--watchdog-floor", "2"), check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the backend stopped answering" in proc.stderr
    assert time.monotonic() - started < 120            # not the 600 s the conf asks for
    assert not _results(out, scenario).exists()
    assert list((out / "build" / "archive").glob("failed-*/run_1"))


# ---------------------------------------------------------------------------
# a full disk
# ---------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs of its own, or None where this process may not mount one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave_bytes: int = 0) -> None:
    """Write a filler file until only ``leave_bytes`` are free (0: until the disk is full)."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    block = b"\0" * (1 << 16)
    with open(disk / f"filler-{uuid.uuid4().hex}", "wb") as fh:
        try:
            remaining = max(0, free - leave_bytes)
            while remaining > 0:
                fh.write(block[:min(len(block), remaining)])
                remaining -= len(block)
            if not leave_bytes:
                while True:
                    fh.write(block)
                    fh.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_full_disk_before_a_run_fails_early_and_keeps_the_earlier_result(tmp_path, small_disk):
    if small_disk is None:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    out = small_disk / "out"
    conf = _conf(tmp_path, SHORT)
    run_cli(*_run_args(out, conf))
    before = _digest(_results(out))
    _fill(small_disk, leave_bytes=64 << 10)                  # a few KB left, as in the report
    started = time.monotonic()
    proc = run_cli(*_run_args(out, conf), check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _one_error_line(proc, "MiB free")
    assert "backend:" not in proc.stderr                      # failed before the backend was set up
    assert time.monotonic() - started < 60
    assert _digest(_results(out)) == before
    assert not list((out / "build" / "archive").glob("*/run_1"))   # the earlier result was not moved


@pytest.mark.slow
def test_disk_filling_during_a_run_publishes_nothing(tmp_path, small_disk):
    out = (small_disk if small_disk is not None else tmp_path) / "out"
    conf = _conf(tmp_path, SHORT)
    run_cli(*_run_args(out, conf))
    before = _digest(_results(out))
    log = tmp_path / "run.log"
    if small_disk is not None:
        proc = _start(_run_args(out, conf), log)
        _wait_for(log, "run started", proc)
        _fill(small_disk)                                     # another program fills the disk
    else:
        # No tmpfs: the run's own file-size limit makes its log writes fail (EFBIG) instead.
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))
        proc = _start(_run_args(out, conf), log, preexec_fn=limit)
    rc = proc.wait(timeout=300)
    text = log.read_text()
    assert rc == 1, text[-3000:]
    assert "incomplete, so nothing was published" in text and "Traceback" not in text
    assert _digest(_results(out)) == before                  # the earlier result is still in place ...
    assert not list((out / "build" / "archive").glob("2*/run_1"))   # ... and not archived
    assert list((out / "build" / "archive").glob("incomplete-*/run_1"))


# ---------------------------------------------------------------------------
# the output folder
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_second_writer_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "first.log"
    first = _start(_run_args(out, _conf(tmp_path, LONG)), log)
    try:
        _wait_for(log, "run started", first)
        second = run_cli(*_run_args(out, _conf(tmp_path, SHORT, "short.conf")), check=False)
        assert second.returncode == 2
        line = _one_error_line(second, "another mlperf-bnas command is writing to this output folder")
        assert f"pid {first.pid}" in line and "run --scenario Offline" in line
        # A killed holder leaves no stale lock: the kernel releases it with the process.
        first.kill()
        first.wait(timeout=30)
        third = run_cli(*_run_args(out, _conf(tmp_path, SHORT, "short.conf")), check=False)
        assert third.returncode == 0, third.stderr[-3000:]
    finally:
        if first.poll() is None:
            first.kill()


def test_leftovers_of_killed_commands_are_reported_then_cleaned_with_the_flag(tmp_path):
    out = tmp_path / "out"
    leftovers = [_results(out).parent / ".run_1.k2j3h4g5", out / "build" / ".submission-me.partial-abcd_123",
                 out / "build" / "resnet50-openvino" / "model" / ".int8.building.x9y8z7w6"]
    for path in leftovers:
        path.mkdir(parents=True)
        (path / "mlperf_log_detail.txt").write_text("half")
    archived = out / "build" / "archive" / "20260101-000000" / "run_1"
    archived.mkdir(parents=True)
    # Any writing command reports them (package is the quickest: it then finds no results).
    package = ["package", "--output-dir", str(out), "--system", SYSTEM]
    proc = run_cli(*package, check=False)
    assert "3 partial folder(s)/file(s) left by interrupted commands" in proc.stderr
    assert "--clean-partial" in proc.stderr
    assert all(p.exists() for p in leftovers)                 # reported only: the user decides
    run_cli(*package, "--clean-partial", check=False)
    assert not any(p.exists() for p in leftovers)
    assert archived.is_dir()                                   # archived results are not leftovers


def test_output_dir_that_is_a_file_or_read_only_fails_before_any_model_loads(tmp_path):
    conf = _conf(tmp_path, SHORT)
    afile = tmp_path / "afile"
    afile.write_text("x")
    real = ["run", "--benchmark", str(BENCH), "--system", SYSTEM, "--scenario", "Offline", "--user-conf", str(conf)]
    proc = run_cli(*real, "--output-dir", str(afile), check=False)
    assert proc.returncode == 2
    _one_error_line(proc, f"{afile}: OUTPUT_DIR (--output-dir) is a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        started = time.monotonic()
        proc = run_cli(*real, "--output-dir", str(ro / "out"), check=False)
        assert proc.returncode == 2
        _one_error_line(proc, "read-only")
        assert "OpenVINO" not in proc.stderr and time.monotonic() - started < 60
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


# ---------------------------------------------------------------------------
# bad values: one line naming where they came from
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("setting, expect", [
    # These two reach the run process (torch and OpenVINO imported): slow; the others fail on parsing.
    pytest.param("model_options.seed=abc", "--set: model_options.seed must be an integer, got 'abc'",
                 marks=pytest.mark.slow),
    pytest.param("backend_options.num_streams=two", "--set: backend_options.num_streams must be an integer or null",
                 marks=pytest.mark.slow),
    ("bogus=1", "--set bogus: unknown key 'bogus'"),
    ("backend_options=3", "--set backend_options: 'backend_options' must be a mapping"),
])
def test_bad_set_values_blame_the_command_line(tmp_path, setting, expect):
    proc = run_cli(*_run_args(tmp_path / "out", _conf(tmp_path, SHORT))[:-len(SIMULATED)], "--set", setting,
                   check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_error_line(proc, expect)
    assert "config.yaml" not in line


@pytest.mark.slow
def test_user_conf_for_another_model_warns_and_typo_names_the_line(tmp_path):
    conf = _conf(tmp_path, "retinanet.Offline.target_qps = 1\nresnet5O.Offline.target_qps = 50\n")
    proc = run_cli(*_run_args(tmp_path / "out", conf, "Offline", "--set", "backend=null"), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{conf}:2: 'resnet5O' is not a LoadGen model name" in proc.stderr and "did you mean 'resnet50'" in proc.stderr
    assert f"{conf}: no line applies to resnet50 Offline" in proc.stderr
    assert f"{conf}: line(s) 1 set retinanet, not resnet50" in proc.stderr
    bad = _conf(tmp_path, "resnet50.Offline.target_qps = -5\n", "bad.conf")
    proc = run_cli(*_run_args(tmp_path / "out", bad), check=False)
    assert proc.returncode == 2
    _one_error_line(proc, f"{bad}:1: target_qps = -5: a rate (queries per second) must be greater than 0")


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path):
    from PIL import Image

    from mlperf_bnas.data.synthetic import synthetic_image

    root = tmp_path / "imagenet"
    root.mkdir()
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(4)]
    for i, name in enumerate(names):
        synthetic_image(3, i).save(root / name, "JPEG")
    # 200 million pixels in 24 KB: more than twice PIL's limit, so PIL refuses to decode it.
    Image.new("1", (20000, 10000)).save(root / "bomb.png", "PNG")
    (root / "bomb.png").replace(root / names[2])
    (root / "val_map.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    proc = run_cli("dataset", "--benchmark", str(BENCH), "--output-dir", str(tmp_path / "out"), "--system", SYSTEM,
                   "--data-dir", str(root), "--no-progress", check=False)
    assert proc.returncode == 2
    _one_error_line(proc, f"{root / names[2]}: cannot decode image (DecompressionBombError")
