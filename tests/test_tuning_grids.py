"""Every value in every shipped tuning grid can run.

``mlperf-bnas tune`` tries every combination of ``config.yaml``'s ``tuning`` grid as a short
LoadGen run on the built model, and does not rebuild between trials. So a grid may only hold
settings the built model accepts: the fast test checks each shipped grid against the tuner's
own check (which refuses build-time options such as the PyTorch program's batch size); the
slow one opens every candidate on a real build exactly as a trial's ``mlperf-bnas run`` does
(the backend compiled with those options and warmed up on cached samples).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, run_cli
from mlperf_bnas.config import load_config
from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import OutputPaths
from mlperf_bnas.tune.tuner import _check_candidates
from mlperf_bnas.tune.tuning_spec import SCENARIOS, parse_tuning

SHIPPED = sorted(p.parent for p in (REPO / "code").glob("*/config.yaml")
                 if "tuning" in (p.read_text()))


def grid(benchmark: Path, scenario: str) -> list[dict]:
    cfg = load_config(benchmark, scenario)
    return parse_tuning(cfg.tuning, str(benchmark / "config.yaml")).candidates(scenario)


def test_there_are_shipped_grids():
    assert {p.name for p in SHIPPED} >= {"resnet50-openvino", "retinanet-pytorch-cpu"}


@pytest.mark.parametrize("benchmark", SHIPPED, ids=lambda p: p.name)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_shipped_grid_value_passes_the_tuner_check(benchmark, scenario):
    _check_candidates(load_config(benchmark, scenario), scenario, grid(benchmark, scenario))


def test_retinanet_offline_grid_tries_one_core_instances():
    """2 single-threaded instances ran 1.5-1.9x one 2-threaded instance on the 2-core AMX Xeon:
    the layout must be among the tuner's candidates on 2 cores and on a big machine alike."""
    bench = REPO / "code" / "retinanet-pytorch-cpu"
    cfg = load_config(bench, "Offline")
    spec = parse_tuning(cfg.tuning, str(bench / "config.yaml"))
    for cores in (2, 128):
        instances = {c["instances"] for c in spec.candidates("Offline", cores)}
        assert instances == {1, max(1, cores // 2), cores}, (cores, instances)


def test_a_grid_varying_a_build_time_option_is_refused():
    bench = REPO / "code" / "retinanet-pytorch-cpu"
    cfg = load_config(bench, "Offline")
    with pytest.raises(UserError, match=r"tuning.Offline.backend_options.batch_size: 2 cannot run: the pytorch "
                                        r"backend builds the model for one batch_size \(1 here\)"):
        _check_candidates(cfg, "Offline", [{"batch_size": 1}, {"batch_size": 2}])


def test_a_grid_needing_another_engine_build_is_refused_and_one_sharing_the_build_is_not():
    bench = REPO / "code" / "retinanet-pytorch-cpu"
    cfg = load_config(bench, "Offline", {"backend_options": {"engine": "inductor"}})
    _check_candidates(cfg, "Offline", [{"engine": "inductor"}, {"engine": "eager"}])     # one exported program
    with pytest.raises(UserError, match=r"tuning.Offline.backend_options.engine: 'ipex' cannot run: the pytorch "
                                        r"backend builds the model for one engine"):
        _check_candidates(cfg, "Offline", [{"engine": "inductor"}, {"engine": "ipex"}])


def _open_every_candidate(benchmark: Path, out: Path, system: str, overrides: dict) -> list[str]:
    from mlperf_bnas.pipeline import open_sut

    opened = []
    for scenario in SCENARIOS:
        for candidate in grid(benchmark, scenario):
            cfg = load_config(benchmark, scenario, {**overrides, "backend_options": candidate})
            _sut, _qsl, backend = open_sut(cfg, scenario, OutputPaths.of(cfg, out, system))
            try:
                described = backend.describe()
            finally:
                backend.close()
            for key, value in candidate.items():
                if key in described:
                    assert str(described[key]) == str(value), (scenario, candidate, described)
            opened.append(f"{scenario} {candidate}")
    return opened


@pytest.mark.slow
def test_every_resnet50_grid_value_runs(resnet50_build):
    from conftest import RN50_IMAGES

    bench = REPO / "code" / "resnet50-openvino"
    opened = _open_every_candidate(bench, resnet50_build, "build",
                                   {"dataset_options": {"synthetic_count": RN50_IMAGES}})
    assert len(opened) == len(grid(bench, "Offline")) + len(grid(bench, "Server")) > 2


@pytest.mark.slow
def test_every_retinanet_grid_value_runs(tmp_path):
    bench = REPO / "code" / "retinanet-pytorch-cpu"
    sets = ["--set", "model_options.image_size=256", "--set", "dataset_options.synthetic_count=4"]
    common = ["--benchmark", str(bench), "--output-dir", str(tmp_path), "--system", "grid", *sets]
    run_cli("dataset", *common, "--no-progress")
    run_cli("build", *common, "--precision", "int8")
    opened = _open_every_candidate(bench, tmp_path, "grid", {"model_options": {"image_size": 256},
                                                             "dataset_options": {"synthetic_count": 4}})
    assert len(opened) == len(grid(bench, "Offline")) + len(grid(bench, "Server")) >= 2
