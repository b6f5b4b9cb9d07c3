"""``dynast``: DyNAS-T's command line taken verbatim on the digits demo super-network.

DyNAS-T's flags and metric names (``accuracy_top1``), its defaults and its results CSV layout;
``--supernet`` by name or checkpoint, DyNAS-T's own names refused in one line; and the same
search as ``mlperf-bnas nas search`` (one implementation: identical results for identical settings).
"""

from __future__ import annotations

import ast
import contextlib
import csv
import datetime
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_cli

HEADER = ["Sub-network", "Date", "Model Parameters", "Latency (ms)", "MACs", "Top-1 Acc (%)"]
#: Small, fast settings (DyNAS-T's flags), the same for both commands.
SMALL = ["--search_tactic", "evolutionary", "--search_algo", "nsga2", "--num_evals", "8", "--population", "4",
         "--seed", "3", "--test_fraction", "0.5", "--num_bn_samples", "64", "--acc_delta", "60",
         "--eval_batch_size", "32"]


def _has_target(name: str) -> bool:
    from mlperf_bnas.nas.search.plan import supernet_names

    return name in supernet_names()


@pytest.fixture(scope="session")
def supernet_path(digits_supernet) -> Path:
    return digits_supernet


def dynast(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dynast <args>`` in this process (``commands.dynast.main``), output captured."""
    from mlperf_bnas.commands import dynast as command

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger()
    root.addHandler(handler)
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = command.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        root.removeHandler(handler)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["dynast", *args], int(code or 0), out.getvalue(), err.getvalue())


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="session")
def dynast_run(supernet_path, tmp_path_factory) -> Path:
    """DyNAS-T's command line as its README writes it, on the demo super-network by name."""
    root = tmp_path_factory.mktemp("dynast_out")
    named = root / "build" / "bootstrapnas" / "digits" / "supernet.pt"      # where run_demo.sh puts it
    named.parent.mkdir(parents=True)
    shutil.copy(supernet_path, named)
    work = tmp_path_factory.mktemp("dynast")
    proc = dynast("--supernet", "digits_resnet", "--optimization_metrics", "accuracy_top1", "macs",
                  "--measurements", "accuracy_top1", "macs", "params", "latency", "--batch_size", "8",
                  "--latency_iterations", "3", "--latency_warmup", "1",
                  "--results_path", str(work / "results.csv"), *SMALL, env={"OUTPUT_DIR": str(root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.mark.slow
def test_results_csv_has_dynast_layout(dynast_run, supernet_path):
    table = rows(dynast_run / "results.csv")
    assert table[0] == HEADER
    assert (dynast_run / "results.csv").read_bytes().splitlines(keepends=True)[0].endswith(b"\r\n")  # csv's dialect
    ours = list(csv.DictReader(open(dynast_run / "search_results.csv", newline="")))
    assert len(table) - 1 == len(ours) == 9                                  # the maximum + 8 searched, once each
    for row, mine in zip(table[1:], ours):
        config = ast.literal_eval(row[0])                                     # a Python dict, as DyNAS-T printed it
        assert list(config) == ["kernel", "width", "depth"] and config == json.loads(mine["config"])
        datetime.datetime.fromisoformat(row[1])                               # str(datetime.now())
        params, latency, macs, top1 = float(row[2]), float(row[3]), float(row[4]), float(row[5])
        assert params == float(mine["params"]) and macs == float(mine["macs"]) and macs == int(macs)
        assert top1 == pytest.approx(float(mine["accuracy"])) and 0 <= top1 <= 100
        assert latency == pytest.approx(float(mine["latency"])) and latency > 0
    record = json.loads((dynast_run / "nas_record.json").read_text())
    assert record["search"]["tool"] == "dynast" and record["command"].startswith("dynast --supernet digits_resnet")
    assert record["search"]["settings"]["latency"]["batch_size"] == 8
    assert record["search"]["settings"]["eval_batch_size"] == 32
    assert (dynast_run / "best_subnet.pt").is_file()


@pytest.mark.slow
def test_nas_search_runs_the_same_search(dynast_run, supernet_path, tmp_path):
    out = tmp_path / "nas"
    run_cli("nas", "search", "--supernet", str(supernet_path), "--output-dir", str(out),
            "--optimization_metrics", "accuracy", "macs", "--measurements", "accuracy", "macs", "params", "latency",
            "--latency_batch_size", "8", "--latency_iterations", "3", "--latency_warmup", "1", *SMALL)
    drop_latency = lambda rs: [{k: v for k, v in r.items() if k != "latency"} for r in rs]   # timings differ
    mine = drop_latency(csv.DictReader(open(out / "search_results.csv", newline="")))
    theirs = drop_latency(csv.DictReader(open(dynast_run / "search_results.csv", newline="")))
    assert mine == theirs
    assert json.loads((out / "best_config.json").read_text())["config"] == \
        json.loads((dynast_run / "best_config.json").read_text())["config"]


def test_dynast_defaults_are_dynast_s(tmp_path):
    from mlperf_bnas.commands.dynast import build_parser
    from mlperf_bnas.commands.nas import search_request
    from mlperf_bnas.nas.search.settings import build_settings

    request = search_request(build_parser().parse_args(["--supernet", "x.pt", "--results_path", "r.csv"]), dynast=True)
    s = build_settings({}, request.settings, defaults=request.defaults)
    assert (s.seed, s.num_evals, s.population, s.tactic, s.algorithm) == (42, 250, 50, "linas", "nsga2")
    assert s.optimization_metrics == ("accuracy", "macs")
    assert s.measured == ("accuracy", "macs", "params", "latency")
    assert (s.latency.batch_size, s.eval_batch_size, s.test_fraction) == (128, 128, 1.0)
    assert request.output_dir == Path("r.csv").resolve().parent and not request.stored_config_defaults


@pytest.mark.parametrize("args, message", [
    (["--supernet", "ofa_resnet50"], "--supernet ofa_resnet50: OFA's ResNet-50 super-network is downloaded"),
    (["--supernet", "ofa_mbv3_d234_e346_k357_w1.2"], "OFA's MobileNetV3 super-network"),
    (["--supernet", "ofa_proxyless_d234_e346_k357_w1.3"], "OFA's ProxylessNAS super-network"),
    (["--supernet", "transformer_lt_wmt_en_de"], "Transformer-LT (WMT En-De) super-network is not shipped"),
    (["--supernet", "bert_base_sst2"], "BERT-base (SST-2) super-network is not shipped"),
    (["--supernet", "resnet50"], "--supernet resnet50: no trained super-network at"),
    (["--supernet", "mobilenet_v9"], "neither a super-network name"),
    pytest.param(["--supernet", "retinanet"], "--supernet retinanet: the retinanet benchmark model has no "
                 "BootstrapNAS search target in this version", id="retinanet-no-target",
                 marks=pytest.mark.skipif(_has_target("retinanet"), reason="retinanet has a search target")),
    pytest.param(["--supernet", "retinanet"], "--supernet retinanet: no trained super-network at ",
                 id="retinanet-not-trained",
                 marks=pytest.mark.skipif(not _has_target("retinanet"), reason="retinanet has no search target")),
    ([], "--supernet: name the super-network"),
    (["--supernet", "x.pt", "--device", "cuda"], "--device cuda: not supported"),
    (["--supernet", "x.pt", "--mp_calibration_samples", "10"], "--mp_calibration_samples: not supported"),
])
def test_what_is_not_shipped_is_one_line(tmp_path, args, message):
    proc = dynast(*args, "--results_path", str(tmp_path / "r.csv"), env={"OUTPUT_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    if "not shipped" in message or "downloaded" in message:
        assert "digits_resnet|resnet50" in lines[0]
    assert not (tmp_path / "r.csv").exists()


def test_dynast_module_entry_point():
    """`python -m mlperf_bnas.commands.dynast` (the `dynast` console script's function)."""
    proc = subprocess.run([sys.executable, "-m", "mlperf_bnas.commands.dynast", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0 and "--optimization_metrics" in proc.stdout and "--results_path" in proc.stdout


def test_dynast_ends_like_every_command_on_sigterm(monkeypatch, capsys, tmp_path):
    """``dynast`` ends through ``cli.run_command``, as ``mlperf-bnas`` does: SIGTERM during the
    search raises ``Interrupted`` (the search's cleanup runs) and exits 143 with one line."""
    import signal
    import time

    import mlperf_bnas.commands.nas as nas_command
    import mlperf_bnas.nas.search.plan as plan
    from mlperf_bnas.commands import dynast as dynast_command

    def search(_request):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    monkeypatch.setattr(nas_command, "search_request", lambda args, **kw: None)
    monkeypatch.setattr(plan, "search", search)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert dynast_command.main(["--supernet", "digits_resnet", "--results_path", str(tmp_path / "r.csv")]) == 143
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted: stopped by SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) == before   # the handler is put back
