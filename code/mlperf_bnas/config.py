"""Benchmark configuration: one declaration per setting, values traced to their source.

A benchmark directory (``code/<benchmark>/``) holds a ``config.yaml``::

    benchmark: resnet50-openvino
    loadgen_model: resnet50          # LoadGen/checker model name
    model: resnet50                  # models registry
    dataset: imagenet                # datasets registry
    backend: openvino                # backends registry
    accuracy: imagenet               # accuracy-script registry
    model_options: {...}             # validated by the model
    dataset_options: {...}           # validated by the dataset
    quantization: {...}              # validated by the quantizer
    backend_options: {...}           # validated by the backend
    scenarios:
      Server:
        backend_options: {...}       # per-scenario overrides

Precedence: command line (``--set key=value``), then the scenario section, then
the top level of ``config.yaml``, then the field default. ``None`` means "not
set". Unknown keys are errors naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlperf_bnas.enums import Scenario, parse, values
from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import read_mapping

OPTION_SECTIONS = ("model_options", "dataset_options", "quantization", "backend_options")


@dataclass(frozen=True)
class BenchmarkConfig:
    benchmark: str
    loadgen_model: str
    model: str
    dataset: str
    backend: str
    accuracy: str
    benchmark_dir: Path
    postprocess: str = "none"       # postprocessors registry (loadgen/postprocess.py)
    scenario: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # Candidate grids and search settings for `mlperf-bnas tune` (validated in mlperf_bnas/tune/tuning_spec.py).
    tuning: dict[str, Any] = field(default_factory=dict)
    # "where did this value come from", for `mlperf-bnas config show`.
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_overrides(self, overrides: dict[str, Any], source: str) -> "BenchmarkConfig":
        return _merge(self, overrides, source, self.benchmark_dir / "config.yaml")


_TOP_LEVEL = {f.name for f in dataclasses.fields(BenchmarkConfig)} - {"benchmark_dir", "scenario", "sources"}
_REQUIRED = ("benchmark", "loadgen_model", "model", "dataset", "backend", "accuracy")


def _merge(cfg: BenchmarkConfig, values: dict[str, Any], source: str, path: Path) -> BenchmarkConfig:
    changes: dict[str, Any] = {}
    sources = dict(cfg.sources)
    for key, value in values.items():
        if key in OPTION_SECTIONS:
            if not isinstance(value, dict):
                place = f"--set {key}" if source == "command line" else str(path)
                raise UserError(f"{place}: '{key}' must be a mapping, got {type(value).__name__}")
            merged = dict(changes.get(key, getattr(cfg, key)))
            for sub, subvalue in value.items():
                merged[sub] = subvalue
                sources[f"{key}.{sub}"] = source
            changes[key] = merged
        elif key in _TOP_LEVEL:
            changes[key] = value
            sources[key] = source
        else:
            where = f"--set {key}: unknown key {key!r}" if source == "command line" else \
                f"{path}: unknown key {key!r} ({source})"
            raise UserError(f"{where}; valid keys: {', '.join(sorted(_TOP_LEVEL | {'scenarios'}))}")
    return dataclasses.replace(cfg, sources=sources, **changes)


def parse_set_options(pairs: list[str]) -> dict[str, Any]:
    """``["backend_options.num_streams=2", "model=resnet50"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE, e.g. backend_options.num_streams=2")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        if "." not in key and key not in OPTION_SECTIONS and key in _TOP_LEVEL:
            # Top-level values are component names: `--set backend=null` means the null
            # backend, not YAML's null.
            value = raw
        if "." in key:
            section, sub = key.split(".", 1)
            out.setdefault(section, {})[sub] = value
        else:
            out[key] = value
    return out


def load_config(benchmark_dir: str | Path, scenario: str | None = None,
                overrides: dict[str, Any] | None = None) -> BenchmarkConfig:
    """Resolve ``<benchmark_dir>/config.yaml`` for one scenario (or none)."""
    bdir = Path(benchmark_dir).resolve()
    path = bdir / "config.yaml"
    raw = read_mapping(path, "benchmark configuration",
                       "pass a benchmark directory such as code/resnet50-openvino")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise UserError(f"{path}: missing required key(s) {', '.join(missing)}")
    scenarios = raw.pop("scenarios", {}) or {}
    unknown_scen = set(scenarios) - set(values(Scenario))
    if unknown_scen:
        raise UserError(f"{path}: unknown scenario(s) {sorted(unknown_scen)} under 'scenarios'; "
                        f"valid: {', '.join(values(Scenario))}")
    if scenario is not None:
        parse(Scenario, scenario)
    base = BenchmarkConfig(**{k: raw[k] for k in _REQUIRED}, benchmark_dir=bdir, scenario=scenario,
                           sources={k: "config.yaml" for k in _REQUIRED})
    cfg = _merge(base, {k: v for k, v in raw.items() if k not in _REQUIRED}, "config.yaml", path)
    if scenario is not None and scenario in scenarios:
        cfg = _merge(cfg, scenarios[scenario] or {}, f"config.yaml scenarios.{scenario}", path)
    if overrides:
        cfg = _merge(cfg, overrides, "command line", path)
    return cfg


def check_options(section: str, given: dict[str, Any], allowed: type, where: str,
                  sources: dict[str, str] | None = None) -> Any:
    """Build the dataclass ``allowed`` from a config section, rejecting unknown keys and values of
    the wrong type.

    Components (backends, datasets, quantizers, models) declare their options as a
    frozen dataclass once; this turns a config section into it with a clear error.
    ``sources`` (``BenchmarkConfig.sources``) lets the error blame ``--set`` for a value
    that came from the command line instead of the file.
    """
    sources = sources or {}

    def origin(key: str) -> str:
        return "--set" if sources.get(f"{section}.{key}") == "command line" else where

    names = {f.name for f in dataclasses.fields(allowed)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise UserError(
            f"{origin(unknown[0])}: unknown key(s) {', '.join(section + '.' + k for k in unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    hints = _type_hints(allowed)
    for key, value in given.items():
        expected = hints.get(key)
        if expected is not None and not _type_ok(value, expected):
            raise UserError(f"{origin(key)}: {section}.{key} must be {_describe(expected)}, got {value!r}")
    try:
        return allowed(**given)
    except (TypeError, ValueError) as exc:
        culprits = [k for k in given if sources.get(f"{section}.{k}") == "command line"]
        place = where if not culprits else f"{where} or --set {', '.join(section + '.' + k for k in culprits)}"
        raise UserError(f"{place}: invalid {section}: {exc}") from None


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is not checked here
        return {}


def _type_ok(value: Any, expected: Any) -> bool:
    """Is ``value`` (as YAML or --set gives it) of the declared type? Unknown types are accepted."""
    if expected is Any:
        return True
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if origin in (tuple, list) or expected in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value)
    if origin is dict or expected is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    return True


def _describe(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if expected in names:
        return names[expected]
    if origin in (tuple, list) or expected in (tuple, list):
        return "a list" + (f" of {_describe(args[0])}" if args and args[0] is not Ellipsis else "")
    if origin is dict or expected is dict:
        return "a mapping"
    return getattr(expected, "__name__", str(expected))
