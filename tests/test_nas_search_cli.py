"""``mlperf-bnas nas search`` end to end on the digits demo super-network.

The super-network is built once per session the way the demo builds it (the digits CNN,
briefly pre-trained, turned into a super-network by ``SuperNetwork.from_model`` with the
demo config's elasticity); progressive-shrinking training is the supernet tests' business
and is skipped here to keep this file fast, so small sub-networks are inaccurate and the
tests pass ``--acc_delta`` wide enough for a real choice.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_cli

DEMO_CONFIG = REPO / "code" / "bootstrapnas" / "configs" / "digits_progressive_shrinking.json"
SMALL = ["--num_evals", "16", "--population", "8", "--num_bn_samples", "128", "--test_fraction", "0.5", "--seed", "5"]


@pytest.fixture(scope="session")
def supernet_path(tmp_path_factory) -> Path:
    from mlperf_bnas.nas.demo import DIGITS_PREPROCESS, DIGITS_SIZE, pretrain_digits_model
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    cfg = json.loads(DEMO_CONFIG.read_text())
    model, _ = pretrain_digits_model(epochs=2, seed=0)
    supernet = SuperNetwork.from_model(model, cfg["bootstrapNAS"]["training"]["elasticity"],
                                       torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    path = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    supernet.save(path, extra={"base_model": "digits_resnet", "preprocess": dict(DIGITS_PREPROCESS),
                               "config": str(DEMO_CONFIG)})
    return path


def search(supernet: Path, out: Path, *extra: str, check: bool = True, env: dict | None = None):
    return run_cli("nas", "search", "--supernet", str(supernet), "--output-dir", str(out), *extra, check=check,
                   env=env)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def front_key(path: Path, metrics=("accuracy", "macs")) -> list[tuple]:
    return [(r["config"], *(float(r[m]) for m in metrics)) for r in read_rows(path)]


@pytest.fixture(scope="session")
def nsga2_run(supernet_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nsga2")
    search(supernet_path, out, *SMALL, "--acc_delta", "60")
    return out


@pytest.mark.slow
def test_outputs_are_consistent_and_the_export_computes_what_was_measured(nsga2_run, supernet_path):
    from mlperf_bnas.nas.demo import digits_loaders
    from mlperf_bnas.nas.evaluate import top1
    from mlperf_bnas.nas.export import load_subnet

    out = nsga2_run
    for name in ("search_results.csv", "pareto.csv", "pareto.png", "best_config.json", "best_subnet.pt",
                 "nas_record.json"):
        assert (out / name).is_file(), name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_rows(out / "search_results.csv")
    assert rows[0]["source"] == "reference" and len(rows) == 17          # the maximum + 16 searched
    F = np.array([[-float(r["accuracy"]), float(r["macs"])] for r in rows])
    front = read_rows(out / "pareto.csv")
    assert front
    for r in front:                                                       # nothing measured dominates it
        f = np.array([-float(r["accuracy"]), float(r["macs"])])
        assert not np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1))

    best = json.loads((out / "best_config.json").read_text())
    bound = best["ref_acc"] - best["acc_delta"]
    eligible = [r for r in rows if float(r["accuracy"]) >= bound]
    cheapest = min(eligible, key=lambda r: float(r["macs"]))
    assert json.loads(cheapest["config"]) == best["config"]
    assert best["config"] != json.loads(rows[0]["config"])                # a real choice, not the fallback

    record = json.loads((out / "nas_record.json").read_text())
    assert record["subnet_config"] == best["config"]
    assert record["search"]["tactic"] == "evolutionary" and record["search"]["algorithm"] == "nsga2"
    assert record["search"]["seed"] == 5 and record["search"]["full_evaluations"] == 16
    import hashlib
    assert record["supernet"]["sha256"] == hashlib.sha256(supernet_path.read_bytes()).hexdigest()
    assert record["subnet_sha256"] == hashlib.sha256((out / "best_subnet.pt").read_bytes()).hexdigest()

    # The exported file, rebuilt without the super-network, scores what the search measured.
    subnet = load_subnet(out / "best_subnet.pt")
    _, val = digits_loaders(batch_size=64, seed=0)
    x, y = val.dataset.tensors
    n = int(round(len(y) * 0.5))                                          # --test_fraction 0.5
    val = [(x[:n], y[:n])]
    assert top1(subnet, val) == pytest.approx(best["metrics"]["accuracy"], abs=1e-9)


@pytest.mark.slow
def test_resume_replays_the_csv_and_nothing_is_overwritten(nsga2_run, supernet_path):
    before = (nsga2_run / "search_results.csv").read_text()
    proc = search(supernet_path, nsga2_run, *SMALL, "--acc_delta", "60", check=False)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert (nsga2_run / "search_results.csv").read_text() == before
    proc = search(supernet_path, nsga2_run, *SMALL, "--acc_delta", "60", "--resume")
    assert "(0 now)" in proc.stdout                                       # everything read back, nothing re-measured
    assert (nsga2_run / "search_results.csv").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "spawn"])
def test_distributed_gives_the_single_process_front(nsga2_run, supernet_path, tmp_path, launcher):
    out = tmp_path / launcher
    args = ["--supernet", str(supernet_path), "--output-dir", str(out), *SMALL, "--acc_delta", "60", "--distributed"]
    if launcher == "torchrun":
        torchrun = Path(sys.executable).with_name("torchrun")
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        # --standalone: torchrun picks a free port itself (--master_port 0 hangs its workers).
        proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "mlperf_bnas",
                               "nas", "search", *args], capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        run_cli("nas", "search", *args, "--nproc", "2")
    assert front_key(out / "pareto.csv") == front_key(nsga2_run / "pareto.csv")
    assert json.loads((out / "best_config.json").read_text())["config"] == \
        json.loads((nsga2_run / "best_config.json").read_text())["config"]
    assert json.loads((out / "nas_record.json").read_text())["search"]["distributed_processes"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("flags", [
    ["--search_tactic", "linas", "--measurements", "accuracy", "macs", "latency", "--latency_iterations", "3",
     "--latency_warmup", "1", "--linas_inner_evals", "300"],
    ["--search_tactic", "random", "--search_algo", "moead", "--optimization_metrics", "accuracy", "macs", "params"],
], ids=["linas-latency", "random-3-objectives"])
def test_tactics_and_algorithms_on_the_demo(supernet_path, tmp_path, flags):
    search(supernet_path, tmp_path, *SMALL, *flags)
    rows = read_rows(tmp_path / "search_results.csv")
    assert 2 < len(rows) <= 17
    assert (tmp_path / "best_subnet.pt").is_file()
    if "linas" in flags:
        log = read_rows(tmp_path / "linas_predictors.csv")
        assert {r["metric"] for r in log} == {"accuracy", "macs"} and {r["round"] for r in log} == {"2"}
        assert all(float(r["latency"]) > 0 for r in rows)
        cache = json.loads((tmp_path / "latency_cache.json").read_text())
        assert len(cache) == len(rows) and {v["runtime"] for v in cache.values()} == {"torch"}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ga", "cmaes", "nsga2", "age", "unsga3", "ctaea", "moead"])
def test_every_algorithm_on_the_demo_supernet(supernet_path, tmp_path, algo):
    """In-process (no start-up cost): each algorithm drives a short search of the demo super-network."""
    from mlperf_bnas.nas.search.pareto import front_indices, objective_matrix
    from mlperf_bnas.nas.search.tactics import LocalPool, run_search
    from mlperf_bnas.nas.search.settings import ALGORITHM_OBJECTIVES, build_settings
    from mlperf_bnas.nas.search.measure import SupernetEvaluator
    from mlperf_bnas.nas.search.targets import SEARCH_TARGETS, model_builder
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    ckpt = torch.load(supernet_path, map_location="cpu", weights_only=True)
    supernet = SuperNetwork.load(supernet_path, model_builder("digits_resnet", ckpt["state_dict"]))
    bn, val = SEARCH_TARGETS.get("digits_resnet")().loaders(None, 0.25, 0)
    metrics = {1: ["accuracy"], 2: ["accuracy", "macs"], 3: ["accuracy", "macs", "params"]}[ALGORITHM_OBJECTIVES[algo][0]]
    s = build_settings({}, {"algorithm": algo, "optimization_metrics": metrics, "num_evals": 8, "population": 4,
                            "num_bn_samples": 64})
    outcome = run_search(supernet.space, LocalPool(SupernetEvaluator(supernet, s.measured, bn, val, 64)), s,
                         tmp_path / "r.csv")
    assert 2 <= outcome.num_full_evaluations <= 8
    F = objective_matrix(outcome.records, metrics)
    assert len(outcome.front) == len({tuple(F[i]) for i in front_indices(F)}) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--search_algo", "ga", "--optimization_metrics", "accuracy", "macs", "params"],
     "algorithm 'ga' optimises 1 objective(s), but optimization_metrics has 3 (accuracy, macs, params); "
     "with 3 objective(s) use one of: unsga3, ctaea, moead"),
    (["--population", "50", "--num_evals", "10"], "population (50) must not be greater than num_evals (10)"),
    (["--latency_runtime", "openvino", "--measurements", "latency"], "use --latency_runtime torch"),
])
def test_bad_settings_fail_with_one_line(supernet_path, tmp_path, flags, message):
    proc = search(supernet_path, tmp_path, *flags, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "search_results.csv").exists()


def test_missing_supernet_is_a_user_error(tmp_path):
    proc = search(tmp_path / "nope.pt", tmp_path, check=False)
    assert proc.returncode == 2 and "super-network checkpoint not found" in proc.stderr
