"""Where a packaged model came from: build records -> measurement fields and calibration notes.

The build step writes ``build/<benchmark>/model/int8/quantization.json`` (what
NNCF was asked to do, on which calibration samples, from which weights); a NAS
export carries its sub-network configuration. Packaging turns them into the
measurement JSON fields the checker requires (``input_data_types``,
``retraining``, ``starting_weights_filename``, ``weight_data_types``,
``weight_transformations``) and into ``calibration.md``. Nothing is invented: a
field whose source record is missing says so, and an INT8 submission without
its quantization record is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_bnas.config import BenchmarkConfig
from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import OutputPaths


@dataclass(frozen=True)
class Provenance:
    benchmark: str
    precision: str                       # "int8" | "fp32"
    quantization: dict[str, Any] | None  # quantization.json, when INT8
    record_path: Path | None
    subnet: dict[str, Any] | None        # NAS sub-network record, when the weights are a sub-network


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable build record ({exc}); rebuild with `mlperf-bnas build`") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; rebuild with `mlperf-bnas build`")
    return data


def _first(record: dict[str, Any] | None, *keys: str) -> Any:
    """First present key; dotted keys look into nested objects."""
    if not record:
        return None
    for key in keys:
        node: Any = record
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node not in (None, "", [], {}):
            return node
    return None


def read(output_dir: Path, cfg: BenchmarkConfig) -> Provenance:
    paths = OutputPaths(output_dir, "_", cfg.benchmark_dir.name, cfg.loadgen_model)
    int8 = paths.model_dir("int8") / "quantization.json"
    fp32_dir = paths.model_dir("fp32")
    if int8.is_file():
        q = _load_json(int8)
        subnet = _first(q, "subnet", "subnetwork", "nas.subnet", "source.subnet")
        return Provenance(cfg.benchmark_dir.name, "int8", q, int8, subnet if isinstance(subnet, dict) else None)
    if fp32_dir.is_dir():
        records = sorted(fp32_dir.glob("*.json"))
        rec = _load_json(records[0]) if records else None
        subnet = _first(rec, "subnet", "subnetwork", "nas.subnet", "source.subnet")
        return Provenance(cfg.benchmark_dir.name, "fp32", rec, records[0] if records else None,
                          subnet if isinstance(subnet, dict) else None)
    raise UserError(f"{paths.build_dir / 'model'}: no build records (int8/quantization.json or fp32/); "
                    f"packaging documents how the model was built: run `mlperf-bnas build` for {cfg.benchmark_dir.name} "
                    "in this OUTPUT_DIR")


def _weights(prov: Provenance) -> str:
    src = _first(prov.quantization, "checkpoint", "source.checkpoint", "weights", "source.weights", "starting_weights")
    if src:
        return Path(str(src)).name
    seed = _first(prov.quantization, "seed", "source.seed", "model_options.seed")
    how = _first(prov.quantization, "source.kind", "source")
    if isinstance(how, str):
        return how
    return f"none: seeded random initialisation (seed {seed})" if seed is not None else \
        "not recorded in the build record (no checkpoint path found)"


def measurement_fields(prov: Provenance) -> dict[str, str]:
    """The five fields the v5.1 checker requires, each non-empty."""
    q = prov.quantization
    transforms = []
    if prov.subnet is not None:
        transforms.append("BootstrapNAS sub-network extracted from the super-network (see calibration.md)")
    if prov.precision == "int8":
        preset = _first(q, "config.preset", "preset")
        used = _first(q, "calibration_samples_used", "calibration.samples_used", "config.subset_size")
        tool = _first(q, "tool") or "nncf"
        version = _first(q, "nncf_version")
        transforms.append(f"post-training INT8 quantization with {tool} {version or ''}".rstrip()
                          + f" (preset {preset}, {used} calibration samples)")
    if not transforms:
        transforms.append("none (FP32 weights as trained)")
    retraining = "no"
    if prov.subnet is not None:
        retraining = ("yes: BootstrapNAS super-network training (progressive shrinking); "
                      "the sub-network's weights are inherited from the super-network without fine-tuning")
    return {
        "input_data_types": str(_first(q, "input_data_types", "input_data_type", "input.dtype")
                                or "not recorded in the build record"),
        "retraining": retraining,
        "starting_weights_filename": _weights(prov),
        "weight_data_types": prov.precision,
        "weight_transformations": "; ".join(transforms),
    }


def calibration_section(model: str, cfg: BenchmarkConfig, prov: Provenance) -> str:
    q = prov.quantization
    lines = [f"## {model} (`code/{cfg.benchmark_dir.name}`)", ""]
    fields = measurement_fields(prov)
    lines.append(f"* Starting weights: {fields['starting_weights_filename']}")
    if prov.subnet is not None:
        lines.append("* Sub-network (BootstrapNAS export): `" + json.dumps(prov.subnet, sort_keys=True) + "`")
    else:
        lines.append("* Sub-network: none recorded (the full model as built)")
    if prov.precision == "int8":
        cal_list = _first(q, "calibration.list", "calibration_list", "calibration.source", "calibration.dataset")
        lines.append(f"* Quantization: {fields['weight_transformations']}")
        lines.append(f"* Calibration samples: {_first(q, 'calibration_samples_used', 'calibration.samples_used')} "
                     f"from {cal_list or 'the calibration set named in the record below'}")
    else:
        lines.append("* Quantization: none (FP32)")
    if prov.record_path is not None:
        lines += ["", f"Build record `{prov.record_path.name}`:", "", "```json",
                  json.dumps(q, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def calibration_document(sections: list[str]) -> str:
    return "\n".join([
        "# Calibration and model provenance (open division)",
        "",
        "How each submitted model was obtained: where its weights came from, which BootstrapNAS",
        "sub-network it is, and how it was quantized and calibrated. Generated by `mlperf-bnas package`",
        "from the build records written by `mlperf-bnas build` (and the NAS export).",
        "",
        *sections,
    ])
