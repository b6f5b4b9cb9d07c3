"""config.yaml resolution: precedence, sources, and clear errors for unknown keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mlperf_bnas.config import check_options, load_config, parse_set_options
from mlperf_bnas.errors import UserError
from mlperf_bnas.registry import Registry

BASE = """\
benchmark: demo
loadgen_model: resnet50
model: resnet50
dataset: imagenet
backend: null
accuracy: imagenet
backend_options: {batch_size: 4, output_size: 1}
scenarios:
  Server:
    backend_options: {batch_size: 1}
"""


@pytest.fixture
def bench(tmp_path):
    (tmp_path / "config.yaml").write_text(BASE)
    return tmp_path


def test_precedence_and_sources(bench):
    offline = load_config(bench, "Offline")
    assert offline.backend_options == {"batch_size": 4, "output_size": 1}
    server = load_config(bench, "Server", parse_set_options(["backend_options.output_size=3"]))
    assert server.backend_options == {"batch_size": 1, "output_size": 3}
    assert server.sources["backend_options.batch_size"] == "config.yaml scenarios.Server"
    assert server.sources["backend_options.output_size"] == "command line"
    assert server.sources["model"] == "config.yaml"


def test_unknown_top_level_key_names_file_and_key(bench):
    (bench / "config.yaml").write_text(BASE + "modle: oops\n")
    with pytest.raises(UserError, match=r"config.yaml: unknown key 'modle'"):
        load_config(bench, "Offline")


def test_unknown_scenario_and_missing_file(bench, tmp_path_factory):
    (bench / "config.yaml").write_text(BASE + "  Singlestream: {}\n")      # the scenario is SingleStream
    with pytest.raises(UserError, match="unknown scenario"):
        load_config(bench)
    with pytest.raises(UserError, match="config.yaml: benchmark configuration not found"):
        load_config(tmp_path_factory.mktemp("empty"))


def test_set_option_needs_key_value():
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_set_options(["backend_options.num_streams"])
    assert parse_set_options(["a.b=2", "c=x"]) == {"a": {"b": 2}, "c": "x"}


def test_check_options_rejects_unknown_keys():
    @dataclass(frozen=True)
    class Opts:
        streams: int = 1

    assert check_options("backend_options", {"streams": 2}, Opts, "f.yaml").streams == 2
    with pytest.raises(UserError, match=r"f.yaml: unknown key\(s\) backend_options.stream; valid keys: streams"):
        check_options("backend_options", {"stream": 2}, Opts, "f.yaml")


def test_registry_lists_valid_names():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(1)
    reg.register_lazy("b", "json")
    with pytest.raises(UserError, match="unknown widget 'c'; valid widget names: a, b"):
        reg.get("c")
