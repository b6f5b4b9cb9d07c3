"""The readers behind issue #19, against the real thing: user.conf as LoadGen reads it, accuracy
logs read as a stream, log completeness, build records. Fast: in-process, plus one LoadGen process."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from mlperf_bnas.buildrecord import BuildInputs, differences
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen import accuracy_log, completeness, userconf

DRIVER = Path(__file__).with_name("loadgen_driver.py")

# ---------------------------------------------------------------------------
# user.conf: our reader against LoadGen's own
# ---------------------------------------------------------------------------
# (line, what our reader says, what LoadGen itself does with the line). Every line we accept,
# LoadGen reads to the same value. Every line we refuse, LoadGen rejects (without naming it),
# ignores without a word, misreads (reads another value than the one written), or accepts
# although the value makes no sense (a non-positive rate or latency, a percentile over 100).
CASES = [
    ("resnet50.Offline.target_qps = 50", None, "reads"),
    ("resnet50.Offline.target_qps = 2.5e1", None, "reads"),
    ("*.Offline.target_qps = 7", None, "reads"),
    ("resnet50.*.min_duration = 1500", None, "reads"),
    ("# a comment", None, "reads"),
    ("#alone", None, "reads"),                                   # one token: LoadGen stores nothing
    ("resnet50.Server.target_latency_percentile = 99", None, "reads"),
    ("resnet50.Offline.target_qps=50", "spaces around '='", "ignores"),
    ("resnet50.Offline.target_qps = 50 # guess", "comment after a value", "rejects"),
    ("#x resnet50.Offline.target_qps = 50", "only a lone '#'", "rejects"),
    ("resnet50.Offline.target_qps = abc", "not a number", "rejects"),
    ("resnet50.Offline.target_qsp = 50", "did you mean 'target_qps'", "ignores"),
    ("resnet50.offline.target_qps = 50", "unknown scenario 'offline'", "ignores"),
    ("resnet50.target_qps = 50", "is not <model>.<scenario>.<key>", "ignores"),
    ("resnet50.Offline.min_duration = -5", "must not be negative", "misreads"),
    ("resnet50.Offline.min_duration = 1.5e4", "whole number", "misreads"),
    ("resnet50.Offline.min_duration = 010", "octal", "misreads"),
    ("resnet50.Offline.target_qps = 50 60", "2 values", "misreads"),
    ("resnet50.Offline.target_qps = -5", "must be greater than 0", "accepts"),
    ("resnet50.Offline.target_qps = 0", "must be greater than 0", "accepts"),
    ("resnet50.Server.target_latency = 0", "must be greater than 0", "accepts"),
    ("resnet50.Server.target_latency_percentile = 150", "percentile", "accepts"),
]
_LOADGEN_READ = """
import json, sys
import mlperf_loadgen as lg
out = []
for path in sys.argv[1:]:
    s = lg.TestSettings()
    rc = s.FromConfig(path, "resnet50", "Offline")
    s2 = lg.TestSettings()
    s2.FromConfig(path, "resnet50", "Server")
    out.append({"rc": rc, "target_qps": s.offline_expected_qps, "min_duration": s.min_duration_ms,
                "target_latency": s2.server_target_latency_ns / 1e6,
                "target_latency_percentile": s2.server_target_latency_percentile * 100})
print(json.dumps(out))
"""
_OBSERVED = ("target_qps", "min_duration", "target_latency", "target_latency_percentile")


def test_user_conf_reader_agrees_with_loadgen(tmp_path):
    paths = []
    for n, (line, _, _) in enumerate(CASES):
        paths.append(tmp_path / f"case{n}.conf")
        paths[-1].write_text(line + "\n")
    default = tmp_path / "empty.conf"
    default.write_text("")
    # LoadGen applies its embedded mlperf.conf on a process's first FromConfig only: the first
    # read is thrown away, so every case is compared with the same defaults.
    proc = subprocess.run([sys.executable, "-c", _LOADGEN_READ, str(default), str(default), *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _first, base, *loadgen = json.loads(proc.stdout.splitlines()[-1])
    for (line, refusal, behaviour), path, lg in zip(CASES, paths, loadgen):
        changed = {k for k in _OBSERVED if lg[k] != pytest.approx(base[k])}
        written = line.split(" = ", 1)[1].split()[0] if " = " in line else None
        key = line.split(" = ", 1)[0].rsplit(".", 1)[-1] if written else None
        if behaviour == "reads":
            conf = userconf.read(path)
            assert lg["rc"] == 0, line
            for k in _OBSERVED:
                ours = conf.lookup("resnet50", "Server" if "latency" in k else "Offline", k)
                assert lg[k] == pytest.approx(float(ours.value) if ours else base[k]), (line, k)
            continue
        with pytest.raises(UserError, match=refusal.replace("(", r"\(").replace(")", r"\)")) as info:
            userconf.read(path)
        assert str(info.value).startswith(f"{path}:1: "), info.value      # every error names the line
        if behaviour == "rejects":
            assert lg["rc"] != 0, line
        elif behaviour == "ignores":
            assert lg["rc"] == 0 and not changed, (line, lg)
        elif behaviour == "misreads":
            assert lg["rc"] == 0 and key in changed and lg[key] != pytest.approx(float(written)), (line, lg)
        else:
            assert lg["rc"] == 0 and key in changed, (line, lg)


def test_lookup_follows_loadgens_precedence(tmp_path):
    conf = userconf.parse("*.*.min_duration = 1\nresnet50.*.min_duration = 2\n*.Offline.min_duration = 3\n"
                          "*.Offline.min_duration = 4\n", tmp_path / "u.conf")
    # exact > *.<scenario> > <model>.* > *.*; a later line with the same key wins
    assert conf.settings("resnet50", "Offline") == {"min_duration": "4"}
    assert conf.settings("resnet50", "Server") == {"min_duration": "2"}
    assert conf.settings("retinanet", "Server") == {"min_duration": "1"}


def test_run_notes_for_other_models_typos_and_no_line(tmp_path):
    conf = userconf.parse("retinanet.Offline.target_qps = 1\nresnet5O.Offline.target_qps = 50\n", tmp_path / "u.conf")
    warnings, notes = userconf.run_notes(conf, "resnet50", "Offline")
    assert any(w.startswith(f"{tmp_path / 'u.conf'}:2: 'resnet5O' is not a LoadGen model name") for w in warnings)
    assert any("no line applies to resnet50 Offline" in w for w in warnings)
    assert notes == [f"{tmp_path / 'u.conf'}: line(s) 1 set retinanet, not resnet50: this run does not use them"]
    good = userconf.parse("resnet50.Offline.target_qps = 5\n")
    assert userconf.run_notes(good, "resnet50", "Offline") == ([], [])


def test_benchmark_confs_read_cleanly(repo):
    for path in sorted((repo / "code").glob("*/user*.conf")):
        conf = userconf.read(path)
        model = path.parent.name.split("-")[0]
        for scenario in ("Offline", "Server"):
            warnings, _ = userconf.run_notes(conf, model, scenario)
            assert not warnings, (path, warnings)


def test_writer_never_writes_a_line_loadgen_would_misread():
    assert userconf.override_lines("resnet50", "Server", {"target_qps": 12.5}) == "resnet50.Server.target_qps = 12.5\n"
    with pytest.raises(UserError, match="must be greater than 0"):
        userconf.override_lines("resnet50", "Server", {"target_qps": -1.0})


# ---------------------------------------------------------------------------
# accuracy logs: streamed
# ---------------------------------------------------------------------------
def _loadgen_accuracy_run(tmp_path: Path, samples: int = 100) -> Path:
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_duration = 100\n*.Offline.target_qps = 10000\n")
    log_dir = tmp_path / "acc" / "run_1"
    proc = subprocess.run([sys.executable, str(DRIVER), "Offline", str(conf), str(log_dir), "--mode", "accuracy",
                           "--samples", str(samples)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return log_dir


def test_accuracy_log_reader_reads_loadgens_file_and_any_json_layout(tmp_path):
    log_dir = _loadgen_accuracy_run(tmp_path)
    path = log_dir / "mlperf_log_accuracy.json"
    entries = list(accuracy_log.entries(path))
    assert sorted(e.qsl_idx for e in entries) == list(range(100))
    assert all(e.values("float32").tolist() == [float(e.qsl_idx)] for e in entries)
    assert entries == [accuracy_log.Entry(e["seq_id"], e["qsl_idx"], e["data"])
                       for e in json.loads(path.read_text())]           # same as the whole-file parse
    one_line = tmp_path / "one_line.json"
    one_line.write_text(json.dumps(json.loads(path.read_text())))
    assert list(accuracy_log.entries(one_line)) == entries
    copy = tmp_path / "copy.json"
    assert accuracy_log.write_entries(copy, entries) == 100
    assert json.loads(copy.read_text()) == json.loads(path.read_text())
    assert completeness.problems(log_dir, "accuracy") == []


@pytest.mark.parametrize("text, problem", [
    ("[\n{ \"seq_id\" : 0, \"qsl_idx\" : 3, \"data\" : \"00\" },\n{ \"seq_id\" : 1, \"qsl", "entry 1 is not valid JSON"),
    ("[\n{ \"seq_id\" : 0, \"qsl_idx\" : 3, \"data\" : \"00\" }\n", "no closing ']'"),
    ("", "no opening '['"),
    ("[]\n[]", "text after the closing ']'"),
    ("[{\"qsl_idx\": \"3\", \"data\": \"00\"}]", "entry 0 is not a LoadGen response"),
])
def test_damaged_accuracy_logs_are_named(tmp_path, text, problem):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(text)
    with pytest.raises(UserError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        list(accuracy_log.entries(path))


def test_empty_accuracy_log_is_an_error_not_zero_percent(tmp_path):
    from mlperf_bnas.accuracy.top1 import top1

    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text("[]\n")
    assert list(accuracy_log.entries(path)) == []
    with pytest.raises(UserError, match="holds no responses"):
        top1(accuracy_log.entries(path), [0, 1, 2], where=str(path))


def test_accuracy_log_is_read_in_bounded_memory(tmp_path):
    """A ~60 MB log (RetinaNet-sized responses) read with well under its size in memory."""
    path = tmp_path / "mlperf_log_accuracy.json"
    data = "ab" * 20_000          # a 20 KB response, hex
    with open(path, "w") as fh:
        fh.write("[\n")
        fh.write(",\n".join(f'{{ "seq_id" : {i}, "qsl_idx" : {i}, "data" : "{data}" }}' for i in range(1500)))
        fh.write("\n]\n")
    size = path.stat().st_size
    assert size > 50 << 20
    tracemalloc.start()
    count = sum(1 for _ in accuracy_log.entries(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 1500
    assert peak < 16 << 20, f"peak {peak >> 20} MiB reading a {size >> 20} MiB log"


# ---------------------------------------------------------------------------
# log completeness
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def perf_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("perf")
    conf = tmp / "user.conf"
    conf.write_text("*.Offline.min_duration = 100\n*.Offline.target_qps = 10000\n")
    log_dir = tmp / "perf" / "run_1"
    proc = subprocess.run([sys.executable, str(DRIVER), "Offline", str(conf), str(log_dir)],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return log_dir


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("damage, problem", [
    (lambda d: (d / "mlperf_log_summary.txt").write_text(""), "mlperf_log_summary.txt: empty (0 bytes)"),
    (lambda d: (d / "mlperf_log_detail.txt").write_bytes((d / "mlperf_log_detail.txt").read_bytes()[:20000]),
     "cut off in the middle of a line"),
    (lambda d: (d / "mlperf_log_summary.txt").write_text(
        (d / "mlperf_log_summary.txt").read_text().split("Additional Stats")[0]), "cut off (no closing"),
    (lambda d: (d / "mlperf_log_detail.txt").write_text("".join(
        ln for ln in (d / "mlperf_log_detail.txt").read_text().splitlines(keepends=True)
        if "result_samples_per_second" not in ln)), "no result_samples_per_second value"),
])
def test_incomplete_logs_are_found(perf_run, tmp_path, damage, problem):
    assert completeness.problems(perf_run, "performance", "Offline") == []
    copy = _copy(perf_run, tmp_path / "run_1")
    damage(copy)
    found = completeness.problems(copy, "performance", "Offline")
    assert any(problem in p for p in found), found


# ---------------------------------------------------------------------------
# build records
# ---------------------------------------------------------------------------
def test_build_record_differences_name_each_input():
    record = {"model": "resnet50", "precision": "int8", "preprocess_key": "aaa", "weights": {"sha256": "1" * 64},
              "model_options": {"fpn_levels": [3, 4, 5, 6, 7], "seed": 0}}
    now = BuildInputs("resnet50", "int8", "1" * 64, "seeded", "aaa", {"fpn_levels": (3, 4, 5, 6, 7), "seed": 0})
    assert differences(record, now) == []                      # tuples and lists compare equal
    changed = BuildInputs("resnet50", "fp32", "2" * 64, "CHECKPOINT=/x.pt", "bbb", {"fpn_levels": (3, 4, 5, 6),
                                                                                   "seed": 0})
    found = " | ".join(differences(record, changed))
    for what in ("weights: built from sha256 111111111111", "CHECKPOINT=/x.pt", "precision", "preprocessing",
                 "fpn_levels built as [3, 4, 5, 6, 7], now [3, 4, 5, 6]"):
        assert what in found, found
