"""Tuned conf files and the tuning spec, without LoadGen (fast, in-process)."""

from __future__ import annotations

import pytest

from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.userconf import (MARKER, base_conf_text, check_replaceable, read, trial_conf_text,
                                          tuned_backend_options, tuned_conf_text)
from mlperf_bnas.tune.tuning_spec import parse_tuning

BASE = "resnet50.*.min_duration = 10000\n# the user's guess\nresnet50.Server.target_qps = 28\n"


def settings_for(path, model, scenario):
    return read(path).settings(model, scenario)


def _tuned(tmp_path, base_path):
    text = tuned_conf_text(base_path, BASE, "resnet50", ["header"], {
        "Offline": {"target_qps": 44.0, "backend_options": {"num_streams": 2, "batch_size": 4}},
        "Server": {"target_qps": 19.5, "backend_options": {}}})
    path = tmp_path / "user.sys.tuned.conf"
    path.write_text(text)
    return path


def test_tuned_values_override_the_base_and_round_trip(tmp_path):
    base = tmp_path / "user.conf"
    base.write_text(BASE)
    conf = _tuned(tmp_path, base)
    assert conf.read_text().startswith(MARKER)
    assert settings_for(conf, "resnet50", "Server") == {"min_duration": "10000", "target_qps": "19.5"}
    assert settings_for(conf, "resnet50", "Offline")["target_qps"] == "44"
    assert tuned_backend_options(conf, "Offline") == {"num_streams": 2, "batch_size": 4}
    assert tuned_backend_options(conf, "Server") == {}
    assert tuned_backend_options(base, "Offline") == {}          # not ours: nothing applied
    # Tuning again from the tuned conf starts from the user's lines, not from old tuned values.
    assert base_conf_text(conf) == BASE
    trial = trial_conf_text(base_conf_text(conf), "resnet50", "Server", {"target_qps": 12.5, "min_query_count": 500})
    assert settings_for_text(tmp_path, trial) == {"min_duration": "10000", "target_qps": "12.5", "min_query_count": "500"}


def settings_for_text(tmp_path, text):
    path = tmp_path / "trial.conf"
    path.write_text(text)
    return settings_for(path, "resnet50", "Server")


def test_only_generated_files_are_replaceable(tmp_path):
    base = tmp_path / "user.conf"
    base.write_text(BASE)
    check_replaceable(_tuned(tmp_path, base))                     # ours: fine
    check_replaceable(tmp_path / "absent.conf")                   # nothing there: fine
    with pytest.raises(UserError, match="not written by mlperf-bnas tune"):
        check_replaceable(base)


def test_spec_grid_and_limits():
    spec = parse_tuning({"Offline": {"backend_options": {"num_streams": [1, 2], "batch_size": [1, 8]}}}, "c.yaml")
    assert spec.candidates("Offline") == [{"batch_size": 1, "num_streams": 1}, {"batch_size": 1, "num_streams": 2},
                                          {"batch_size": 8, "num_streams": 1}, {"batch_size": 8, "num_streams": 2}]
    assert spec.candidates("Server") == [{}]
    with pytest.raises(UserError, match="max_offline_trials"):
        parse_tuning({"max_offline_trials": 3, "Offline": {"backend_options": {"a": [1, 2], "b": [1, 2]}}}, "c.yaml")
    with pytest.raises(UserError, match="lists a value twice"):
        parse_tuning({"Server": {"backend_options": {"num_streams": [1, 1]}}}, "c.yaml")
    with pytest.raises(UserError, match="must be a mapping"):
        parse_tuning([1, 2], "c.yaml")
