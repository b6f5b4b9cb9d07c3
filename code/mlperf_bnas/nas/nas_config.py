"""BootstrapNAS configuration files (NNCF's format), validated into frozen dataclasses.

The file (JSON or YAML) holds the model, its input and the ``bootstrapNAS`` section::

    {"model": "digits_resnet", "input_info": {"sample_size": [1, 3, 32, 32]}, "batch_size": 64,
     "bootstrapNAS": {"training": {
         "algorithm": "progressive_shrinking",
         "progressivity_of_elasticity": ["kernel", "width", "depth"],
         "batchnorm_adaptation": {"num_bn_adaptation_samples": 512},
         "schedule": {"list_stage_descriptions": [
             {"train_dims": ["kernel"], "epochs": 1, "init_lr": 0.01},
             {"train_dims": ["kernel", "depth"], "epochs": 1, "depth_indicator": 1}, ...]},
         "elasticity": {"available_elasticity_dims": ["kernel", "width", "depth"],
                        "width": {...}, "depth": {...}, "kernel": {...}},
         "train_steps": 50},
      "search": {...}}}

Unknown keys and impossible values raise ``UserError`` naming the file and the key.
The ``search`` section belongs to the search (``nas/search*.py``), which validates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import read_mapping

DIMS = ("kernel", "width", "depth")


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise UserError(f"{where}: must be a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                        f"valid keys: {', '.join(sorted(allowed))}")


def _build(cls: type, section: dict, where: str, **converted: Any) -> Any:
    _check_keys(section, {f.name for f in fields(cls)}, where)
    values = {**section, **converted}
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None
    return obj


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise UserError(f"{where}: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class WidthOptions:
    min_width: int = 32
    width_step: int = 32
    max_num_widths: int = -1
    width_multipliers: tuple[float, ...] | None = None
    filter_importance: str = "L1"


@dataclass(frozen=True)
class DepthOptions:
    mode: str = "auto"                 # "auto": find blocks; "manual": use skipped_blocks
    min_block_size: int = 5
    max_block_size: int = 50
    skipped_blocks: tuple[tuple[str, str], ...] | None = None
    hw_fused_ops: bool = True


@dataclass(frozen=True)
class KernelOptions:
    max_num_kernels: int = -1


@dataclass(frozen=True)
class ElasticityOptions:
    available_elasticity_dims: tuple[str, ...] = DIMS
    width: WidthOptions = field(default_factory=WidthOptions)
    depth: DepthOptions = field(default_factory=DepthOptions)
    kernel: KernelOptions = field(default_factory=KernelOptions)

    def to_dict(self) -> dict:
        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            return v
        return {
            "available_elasticity_dims": list(self.available_elasticity_dims),
            "width": {f.name: plain(getattr(self.width, f.name)) for f in fields(WidthOptions)},
            "depth": {f.name: plain(getattr(self.depth, f.name)) for f in fields(DepthOptions)},
            "kernel": {f.name: plain(getattr(self.kernel, f.name)) for f in fields(KernelOptions)},
        }


def parse_elasticity(section: dict | None, where: str = "elasticity") -> ElasticityOptions:
    section = dict(section or {})
    _check_keys(section, {"available_elasticity_dims", "width", "depth", "kernel"}, where)
    dims = section.get("available_elasticity_dims", list(DIMS))
    _require(isinstance(dims, (list, tuple)) and all(d in DIMS for d in dims) and len(set(dims)) == len(dims),
             f"{where}.available_elasticity_dims", f"must be a list of distinct names from {list(DIMS)}, got {dims!r}")
    w_where, d_where, k_where = f"{where}.width", f"{where}.depth", f"{where}.kernel"
    w_sec = dict(section.get("width") or {})
    mult = w_sec.get("width_multipliers")
    width = _build(WidthOptions, w_sec, w_where, width_multipliers=tuple(mult) if mult is not None else None)
    _require(_is_int(width.min_width) and width.min_width >= 1, f"{w_where}.min_width", "must be an integer >= 1")
    _require(_is_int(width.width_step) and width.width_step >= 1, f"{w_where}.width_step", "must be an integer >= 1")
    _require(_is_int(width.max_num_widths) and (width.max_num_widths == -1 or width.max_num_widths >= 1),
             f"{w_where}.max_num_widths", "must be -1 (no limit) or an integer >= 1")
    if width.width_multipliers is not None:
        _require(len(width.width_multipliers) > 0 and all(isinstance(m, (int, float)) and 0 < m <= 1
                                                          for m in width.width_multipliers),
                 f"{w_where}.width_multipliers", "must be a non-empty list of numbers in (0, 1]")
    _require(width.filter_importance in ("L1", "L2", "geometric_median"), f"{w_where}.filter_importance",
             f"must be L1, L2 or geometric_median, got {width.filter_importance!r}")
    d_sec = dict(section.get("depth") or {})
    blocks = d_sec.get("skipped_blocks")
    depth = _build(DepthOptions, d_sec, d_where,
                   skipped_blocks=tuple(tuple(b) for b in blocks) if blocks is not None else None)
    _require(depth.mode in ("auto", "manual"), f"{d_where}.mode", f"must be 'auto' or 'manual', got {depth.mode!r}")
    _require(_is_int(depth.min_block_size) and depth.min_block_size >= 1, f"{d_where}.min_block_size",
             "must be an integer >= 1")
    _require(_is_int(depth.max_block_size) and depth.max_block_size >= depth.min_block_size,
             f"{d_where}.max_block_size", "must be an integer >= min_block_size")
    _require(depth.mode == "auto" or depth.skipped_blocks, f"{d_where}.skipped_blocks",
             "mode 'manual' needs a list of [entry_node, exit_node] pairs")
    _require(isinstance(depth.hw_fused_ops, bool), f"{d_where}.hw_fused_ops", "must be true or false")
    kernel = _build(KernelOptions, dict(section.get("kernel") or {}), k_where)
    _require(_is_int(kernel.max_num_kernels) and (kernel.max_num_kernels == -1 or kernel.max_num_kernels >= 1),
             f"{k_where}.max_num_kernels", "must be -1 (no limit) or an integer >= 1")
    return ElasticityOptions(tuple(dims), width, depth, kernel)


@dataclass(frozen=True)
class StageDescription:
    train_dims: tuple[str, ...]
    epochs: int = 1
    depth_indicator: int = 1
    width_indicator: int = 1
    kernel_indicator: int | None = None   # None: every kernel size of the trained dims
    reorg_weights: bool = False
    bn_adapt: bool = False
    init_lr: float | None = None          # None: the optimizer's base_lr
    epochs_lr: int | None = None          # cosine period in epochs; None: the stage's epochs
    sample_rate: int = 1                  # a new random sub-network every sample_rate steps


@dataclass(frozen=True)
class OptimizerOptions:
    type: str = "sgd"
    base_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-5
    nesterov: bool = True


@dataclass(frozen=True)
class TrainingOptions:
    elasticity: ElasticityOptions
    stages: tuple[StageDescription, ...]
    progressivity_of_elasticity: tuple[str, ...] = DIMS
    num_bn_adaptation_samples: int = 512
    train_steps: int | None = None        # steps per epoch cap (None: the whole training set)
    distillation_temperature: float = 1.0
    distillation_weight: float = 1.0


@dataclass(frozen=True)
class NasConfig:
    path: Path
    model: str
    input_size: tuple[int, ...]
    batch_size: int
    training: TrainingOptions
    optimizer: OptimizerOptions
    dataset: str
    seed: int
    search: dict                      # validated by the search
    raw: dict                         # the file as read, saved beside results

_TOP_KEYS = {"model", "input_info", "batch_size", "dataset", "optimizer", "seed", "bootstrapNAS"}
_TRAINING_KEYS = {"algorithm", "progressivity_of_elasticity", "batchnorm_adaptation", "schedule", "elasticity",
                  "train_steps", "distillation"}


def read_config_file(path: Path) -> dict:
    return read_mapping(path, "BootstrapNAS config file", "pass an existing .json or .yaml file")


def parse_training(section: dict, where: str) -> TrainingOptions:
    _check_keys(section, _TRAINING_KEYS, where)
    algorithm = section.get("algorithm", "progressive_shrinking")
    _require(algorithm == "progressive_shrinking", f"{where}.algorithm",
             f"only 'progressive_shrinking' is implemented, got {algorithm!r}")
    elasticity = parse_elasticity(section.get("elasticity"), f"{where}.elasticity")
    available = elasticity.available_elasticity_dims
    prog = section.get("progressivity_of_elasticity", list(available))
    _require(isinstance(prog, list) and all(d in DIMS for d in prog), f"{where}.progressivity_of_elasticity",
             f"must be a list of names from {list(DIMS)}, got {prog!r}")
    bn = section.get("batchnorm_adaptation", {})
    _check_keys(bn, {"num_bn_adaptation_samples"}, f"{where}.batchnorm_adaptation")
    n_bn = bn.get("num_bn_adaptation_samples", 512)
    _require(_is_int(n_bn) and n_bn >= 1, f"{where}.batchnorm_adaptation.num_bn_adaptation_samples",
             "must be an integer >= 1")
    schedule = section.get("schedule")
    _require(isinstance(schedule, dict), f"{where}.schedule", "missing; give schedule.list_stage_descriptions")
    _check_keys(schedule, {"list_stage_descriptions"}, f"{where}.schedule")
    raw_stages = schedule.get("list_stage_descriptions")
    _require(isinstance(raw_stages, list) and raw_stages, f"{where}.schedule.list_stage_descriptions",
             "must be a non-empty list of stage descriptions")
    stages = []
    for k, raw in enumerate(raw_stages):
        s_where = f"{where}.schedule.list_stage_descriptions[{k}]"
        _check_keys(raw, {f.name for f in fields(StageDescription)}, s_where)
        _require("train_dims" in raw, f"{s_where}.train_dims", "missing")
        dims = raw["train_dims"]
        _require(isinstance(dims, list) and all(d in available for d in dims), f"{s_where}.train_dims",
                 f"must list dimensions from available_elasticity_dims {list(available)}, got {dims!r}")
        stage = _build(StageDescription, raw, s_where, train_dims=tuple(dims))
        for key in ("epochs", "depth_indicator", "width_indicator", "sample_rate"):
            _require(_is_int(getattr(stage, key)) and getattr(stage, key) >= 1, f"{s_where}.{key}",
                     f"must be an integer >= 1, got {getattr(stage, key)!r}")
        for key in ("kernel_indicator", "epochs_lr"):
            v = getattr(stage, key)
            _require(v is None or (_is_int(v) and v >= 1), f"{s_where}.{key}", f"must be an integer >= 1, got {v!r}")
        _require(stage.init_lr is None or (isinstance(stage.init_lr, (int, float)) and stage.init_lr > 0),
                 f"{s_where}.init_lr", f"must be a positive number, got {stage.init_lr!r}")
        for key in ("reorg_weights", "bn_adapt"):
            _require(isinstance(getattr(stage, key), bool), f"{s_where}.{key}", "must be true or false")
        stages.append(stage)
    steps = section.get("train_steps")
    _require(steps is None or (_is_int(steps) and steps >= 1), f"{where}.train_steps",
             f"must be an integer >= 1 (steps per epoch), got {steps!r}")
    kd = section.get("distillation", {})
    _check_keys(kd, {"temperature", "weight"}, f"{where}.distillation")
    temperature, weight = kd.get("temperature", 1.0), kd.get("weight", 1.0)
    _require(isinstance(temperature, (int, float)) and temperature > 0, f"{where}.distillation.temperature",
             "must be a positive number")
    _require(isinstance(weight, (int, float)) and weight >= 0, f"{where}.distillation.weight",
             "must be a number >= 0")
    return TrainingOptions(elasticity, tuple(stages), tuple(prog), n_bn, steps, float(temperature), float(weight))


def load_nas_config(path: Path) -> NasConfig:
    path = Path(path)
    data = read_config_file(path)
    where = str(path)
    _check_keys(data, _TOP_KEYS, where)
    _require("model" in data, f"{where}: model", "missing; name a model (digits_resnet, resnet50)")
    input_info = data.get("input_info", {})
    _check_keys(input_info, {"sample_size"}, f"{where}: input_info")
    size = input_info.get("sample_size")
    _require(isinstance(size, list) and len(size) == 4 and all(_is_int(v) and v >= 1 for v in size),
             f"{where}: input_info.sample_size", f"must be [N, C, H, W] positive integers, got {size!r}")
    batch = data.get("batch_size", 64)
    _require(_is_int(batch) and batch >= 1, f"{where}: batch_size", "must be an integer >= 1")
    seed = data.get("seed", 0)
    _require(_is_int(seed), f"{where}: seed", "must be an integer")
    optimizer = _build(OptimizerOptions, dict(data.get("optimizer") or {}), f"{where}: optimizer")
    _require(optimizer.type in ("sgd", "adam"), f"{where}: optimizer.type", "must be 'sgd' or 'adam'")
    bnas = data.get("bootstrapNAS")
    _require(isinstance(bnas, dict), f"{where}: bootstrapNAS", "missing; it holds the training (and search) sections")
    _check_keys(bnas, {"training", "search"}, f"{where}: bootstrapNAS")
    _require("training" in bnas, f"{where}: bootstrapNAS.training", "missing")
    training = parse_training(bnas["training"], f"{where}: bootstrapNAS.training")
    dataset = data.get("dataset", "digits")
    _require(isinstance(dataset, str), f"{where}: dataset", "must be a name")
    return NasConfig(path, str(data["model"]), tuple(size), batch, training, optimizer, dataset, seed,
                     dict(bnas.get("search") or {}), data)
