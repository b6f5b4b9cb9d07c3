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
from mlperf_bnas.fileio import load_checkpoint, read_mapping
from mlperf_bnas.paths import BUILD_RECORD, OutputRoot, SearchOutputs


@dataclass(frozen=True)
class Provenance:
    benchmark: str
    precision: str                       # "int8" | "fp32"
    quantization: dict[str, Any] | None  # quantization.json, when INT8
    record_path: Path | None
    subnet: dict[str, Any] | None        # NAS sub-network record, when the weights are a sub-network


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


def read(output_dir: Path, cfg: BenchmarkConfig, precision: str = "int8") -> Provenance:
    """The build record of ``build/<benchmark>/model/<precision>/quantization.json`` (+ NAS sub-network)."""
    record_path = OutputRoot(output_dir).model_dir_of(cfg.benchmark, precision) / BUILD_RECORD
    if not record_path.is_file():
        raise UserError(f"{record_path}: missing; packaging documents how the {precision} model was built: "
                        f"run `mlperf-bnas build --precision {precision}` for {cfg.benchmark} in this OUTPUT_DIR "
                        "(or pass --precision to package the precision that was run)")
    record = read_mapping(record_path, "build record", "rebuild with `mlperf-bnas build`")
    if record.get("precision") not in (None, precision):
        raise UserError(f"{record_path}: records precision {record.get('precision')!r}, expected {precision!r}; rebuild")
    return Provenance(cfg.benchmark, precision, record, record_path, _subnet_of(record))


def _subnet_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The sub-network description when the starting weights are an exported NAS sub-network.

    Read from the record if the build stored it, else from the checkpoint itself
    (``torch.load(weights_only=True)``: metadata only, never code).
    """
    subnet = _first(record, "subnet", "weights.subnet")
    if isinstance(subnet, dict):
        return subnet
    path = _first(record, "weights.path")
    if not path or _first(record, "weights.source") != "user checkpoint" or not Path(path).is_file():
        return None
    # Only for a user checkpoint (torch is imported here); --default-system-name and check never get here.
    from mlperf_bnas.nas.export import is_subnet_checkpoint

    obj = load_checkpoint(Path(path), "checkpoint named in the build record", "rebuild or restore the file")
    if not is_subnet_checkpoint(obj):
        return None
    subnet = {k: v for k, v in obj.items() if isinstance(v, (str, int, float, bool, list, dict)) and k != "state_dict"
              and not _has_tensor(v)}
    search = _search_record(Path(path), _first(record, "weights.sha256"))
    if search is not None:
        subnet["search"] = search
    return subnet


def _search_record(checkpoint: Path, sha256: str | None) -> dict[str, Any] | None:
    """What ``mlperf-bnas nas search`` recorded about the sub-network (``nas_record.json`` beside the
    checkpoint it exported): the super-network's hash, the tactic and algorithm, the measured
    metrics. Only when the record names this very file (its sha256); a record of another search,
    or none (``nas export`` writes none), adds nothing."""
    path = SearchOutputs(checkpoint.parent).record
    if not path.is_file():
        return None
    rec = read_mapping(path, "NAS search record", "restore it from the search's output folder or delete it")
    if not sha256 or rec.get("subnet_sha256") != sha256:
        return None
    search = rec.get("search") or {}
    return {"record": path.name, "supernet_sha256": _first(rec, "supernet.sha256"),
            "tactic": search.get("tactic"), "algorithm": search.get("algorithm"),
            "optimization_metrics": search.get("optimization_metrics"),
            "full_evaluations": search.get("full_evaluations"), "accuracy_metric": rec.get("accuracy_metric"),
            "metrics": rec.get("metrics"), "reference_metrics": rec.get("reference_metrics"),
            "latency": search.get("latency"), "selection_rule": rec.get("selection_rule")}


def _has_tensor(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_tensor(v) for v in value)
    return type(value).__name__ == "Tensor"


def _weights(prov: Provenance) -> str:
    path = _first(prov.quantization, "weights.path")
    if not path:
        return "not recorded in the build record"
    name = Path(str(path)).name
    sha = _first(prov.quantization, "weights.sha256")
    source = _first(prov.quantization, "weights.source")
    return f"{name} (sha256 {sha}; {source})" if sha else name


def engine_software(prov: Provenance) -> dict[str, str] | None:
    """The engine and its software when the model was built in an environment of its own (IPEX).

    The main environment's versions (``systems/<system>.json``, detected) do not
    describe such a model: the build record's do, and the run checked them.
    """
    q = prov.quantization
    if _first(q, "engine") != "ipex":
        return None
    env = str(_first(q, "environment") or "")
    return {"engine": f"ipex: {_first(q, 'format') or 'TorchScript'}",
            "framework": f"torch {_first(q, 'torch_version')}, intel-extension-for-pytorch {_first(q, 'ipex_version')}",
            "environment": (f"IPEX environment {Path(env).name or env} (Python {_first(q, 'python')}, "
                            f"torchvision {_first(q, 'torchvision_version')})")}


def measurement_fields(prov: Provenance) -> dict[str, str]:
    """The five fields the v5.1 checker requires, each non-empty; plus the engine's software, if its own."""
    q = prov.quantization
    transforms = []
    if prov.subnet is not None:
        transforms.append("BootstrapNAS sub-network extracted from the trained super-network" + _search_summary(prov))
    if prov.precision == "int8":
        nncf = _first(q, "quantization") or {}
        preset = _first(nncf, "config.preset")
        used = _first(nncf, "calibration_samples_used")
        version = nncf.get("tool_version") or nncf.get("nncf_version", "")
        transforms.append(f"post-training INT8 quantization with {nncf.get('tool', 'nncf')} {version}"
                          .rstrip() + f" (preset {preset}, {used} calibration samples)")
    if _first(q, "openvino_version"):
        transforms.append("converted to OpenVINO IR with the preprocessing in the graph")
        policy = _first(q, "precision_policy")
        if isinstance(policy, dict) and policy.get("inference_precision"):
            # The build's precision policy (backends/openvino.py): what the float layers ran in, and why.
            transforms.append(f"float layers run in {policy['inference_precision']} (OpenVINO "
                              f"INFERENCE_PRECISION_HINT; {policy.get('reason', 'no reason recorded')})")
    elif _first(q, "engine") == "ipex":
        transforms.append(f"traced and frozen to TorchScript (torch.jit.trace + torch.jit.freeze) with "
                          f"intel-extension-for-pytorch {_first(q, 'ipex_version')}")
    else:
        policy = _first(q, "precision_policy")
        if isinstance(policy, dict) and policy.get("float_precision"):
            # The PyTorch build's precision policy (backends/torch_precision.py).
            transforms.append(f"float parts run in {policy['float_precision']} (torch.autocast when bf16; "
                              f"{policy.get('reason', 'no reason recorded')})")
        else:
            transforms.append("none beyond the build")
    retraining = "no"
    if prov.subnet is not None:
        retraining = ("yes: BootstrapNAS super-network training; the sub-network's weights are "
                      "inherited from the super-network")
    inp = _first(q, "input")
    input_types = (f"{inp.get('element_type')} {inp.get('shape')}".strip() if isinstance(inp, dict)
                   else _first(q, "preprocess.dtype"))
    return {
        "input_data_types": str(input_types or "not recorded in the build record"),
        "retraining": retraining,
        "starting_weights_filename": _weights(prov),
        "weight_data_types": prov.precision,
        "weight_transformations": "; ".join(transforms),
        **(engine_software(prov) or {}),
    }


def _search_summary(prov: Provenance) -> str:
    """`` (super-network sha256 ..., search ...)`` from the sub-network's NAS search record; empty without one."""
    search = (prov.subnet or {}).get("search")
    if not isinstance(search, dict):
        return ""
    return (f" (super-network sha256 {search.get('supernet_sha256')}; search {search.get('tactic')}/"
            f"{search.get('algorithm')} over {', '.join(search.get('optimization_metrics') or [])}, "
            f"{search.get('full_evaluations')} sub-networks measured)")


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
        names = _first(q, "calibration.names") or []
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        lines.append(f"* Quantization: {fields['weight_transformations']}")
        lines.append(f"* Calibration samples: {_first(q, 'calibration.count')} from dataset "
                     f"`{_first(q, 'dataset')}`: {shown or 'names not recorded'}")
    else:
        lines.append("* Quantization: none (FP32)")
    lines.append(f"* Input: {fields['input_data_types']}; preprocessing: {_first(q, 'preprocessing_in_graph') or 'see record'}")
    if prov.record_path is not None:
        shown_record = dict(q or {})
        if isinstance(shown_record.get("calibration"), dict):
            # The full name list is in the record file; here the count and names above suffice.
            shown_record["calibration"] = {k: v for k, v in shown_record["calibration"].items() if k == "count"}
        lines += ["", f"Build record `build/{prov.benchmark}/model/{prov.precision}/{prov.record_path.name}`:", "",
                  "```json", json.dumps(shown_record, indent=2, sort_keys=True), "```"]
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
