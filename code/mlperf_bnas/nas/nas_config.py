"""BootstrapNAS configuration files (NNCF's format), read with NNCF 2.x's meaning and defaults.

The file (JSON or YAML) is what NNCF's BootstrapNAS sample took: the model, its input, the
sample's training settings, and the ``bootstrapNAS`` section::

    {"model": "resnet50", "input_info": {"sample_size": [1, 3, 224, 224]}, "batch_size": 64,
     "optimizer": {"type": "sgd", "momentum": 0.9, "weight_decay": 3e-7},
     "bootstrapNAS": {
       "training": {
         "algorithm": "progressive_shrinking",
         "progressivity_of_elasticity": ["depth", "width"],
         "batchnorm_adaptation": {"num_bn_adaptation_samples": 1500},
         "schedule": {"list_stage_descriptions": [
           {"train_dims": ["depth"], "epochs": 25, "depth_indicator": 1, "init_lr": 2.5e-6, "epochs_lr": 25}, ...]},
         "elasticity": {"available_elasticity_dims": ["width", "depth"], "width": {...}, "depth": {...}}},
       "search": {"algorithm": "NSGA2", "num_evals": 3000, "population": 50, "ref_acc": 93.65}}}

Every key NNCF 2.17-2.19 read (``nncf/experimental/torch/nas/bootstrapNAS`` and its sample
``examples/experimental/torch/classification/bootstrap_nas.py``) is either honoured with NNCF's
meaning and default, or refused with one line naming the key and why (``REFUSED``). NNCF itself
did not validate the ``bootstrapNAS`` section and silently ignored misspelt keys; here an unknown
key is an error. Where NNCF's code and documentation disagree, the choice is written next to the
field (and in docs/bootstrapnas.md). The ``search`` section is validated by
``nas/search/settings.py`` (the search owns it) when the file is read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import read_mapping
from mlperf_bnas.quantize.qconfig import INT8_GROUP_CHANNEL_MULTIPLE

log = logging.getLogger(__name__)

DIMS = ("kernel", "width", "depth")
#: NNCF ProgressiveShrinkingBuilder.DEFAULT_PROGRESSIVITY (OFA's order).
DEFAULT_PROGRESSIVITY = ("kernel", "depth", "width")
#: NNCF stage_descriptor.DEFAULT_STAGE_LR_RATE: a stage's init_lr when neither it nor a global
#: lr_schedule is given (NNCF logs a warning and uses it; so do we).
DEFAULT_STAGE_LR = 3.5e-6
#: NNCF config defaults NUM_BN_ADAPTATION_SAMPLES; 0 disables BatchNorm adaptation.
NUM_BN_ADAPTATION_SAMPLES = 2000
#: NNCF NASSchedulerParams' schedule when the config has none.
DEFAULT_STAGES: tuple[dict, ...] = (
    {"train_dims": ["kernel"], "epochs": 1},
    {"train_dims": ["kernel", "depth"], "epochs": 1},
    {"train_dims": ["kernel", "depth"], "epochs": 1, "depth_indicator": 2},
    {"train_dims": ["kernel", "depth", "width"], "epochs": 1},
    {"train_dims": ["kernel", "depth", "width"], "epochs": 1, "width_indicator": 2, "reorg_weights": True,
     "bn_adapt": True},
)

_SCOPES = ("NNCF 2.x did not apply target_scopes to elasticity either (see its elasticity_builder.py); "
           "remove the key, or keep layers whole with ignored_scopes (layer names, globs or {re} patterns)")
_NODE_KEYED = "a width-group override keyed by NNCF graph node names, which this implementation does not have"
#: Keys NNCF (or its sample) knew that are not supported here: key path -> why (and what to do).
REFUSED: dict[str, str] = {
    "bootstrapNAS.training.elasticity.target_scopes": _SCOPES,
    "bootstrapNAS.training.elasticity.width.external_importance_path":
        "external filter importance files are keyed by NNCF graph node names; use filter_importance L1, L2 "
        "or geometric_median",
    "bootstrapNAS.training.elasticity.width.overwrite_groups": _NODE_KEYED,
    "bootstrapNAS.training.elasticity.width.overwrite_groups_widths": _NODE_KEYED,
    "bootstrapNAS.training.elasticity.width.add_dynamic_inputs": _NODE_KEYED,
    "bootstrapNAS.training.elasticity.depth.allow_nested_blocks":
        "an NNCF 2.1-2.3 option that later NNCF removed; nested blocks are always dropped, as in NNCF 2.4+",
    "bootstrapNAS.training.elasticity.depth.allow_linear_combination":
        "an NNCF 2.1-2.3 option that later NNCF removed; blocks made of two smaller blocks are always dropped",
    # The sample's own settings that belong to the command line here.
    "pretrained": "pre-trained weights come from `mlperf-bnas nas train --pretrained FILE|torchvision`",
    "weights": "pre-trained weights come from `mlperf-bnas nas train --pretrained FILE`",
    "resuming_checkpoint_path": "resume with `mlperf-bnas nas train --resume`",
    "epochs": "the stages' epochs set the length of BootstrapNAS training (NNCF's sample ignored it too)",
    "log_dir": "outputs go to `mlperf-bnas nas train --output-dir`",
    "checkpoint_save_dir": "outputs go to `mlperf-bnas nas train --output-dir`",
    "dataset_dir": "the dataset folder is `mlperf-bnas nas train --data-dir`",
    "mode": "`mlperf-bnas nas train` trains; `mlperf-bnas nas search` (or `dynast`) searches",
    "dist_url": "training runs in one process (a GPU when present); the search is what runs distributed",
    "world_size": "training runs in one process (a GPU when present); the search is what runs distributed",
    "rank": "training runs in one process (a GPU when present); the search is what runs distributed",
    "gpu_id": "training uses the first GPU when present, else the CPU",
    "cpu_only": "training uses the first GPU when present, else the CPU",
    "compression": "NNCF compression (quantization, pruning) is a separate step here: `mlperf-bnas build` "
                   "quantizes the exported sub-network",
    "target_device": "the target runtime is the benchmark's (`mlperf-bnas build`); remove the key",
    "model_params": "the model's architecture comes from its name and the pre-trained weights",
    "print_freq": "progress is one bar per epoch (`--no-progress` hides it) and a log line per epoch",
    "test_every_n_epochs": "the minimum and maximum sub-networks are evaluated after every epoch, as in NNCF",
    "save_freq": "a resumable checkpoint is written after every epoch",
    "optimizer.schedule_type": "BootstrapNAS sets the learning rate itself (stage init_lr/epochs_lr or "
                               "bootstrapNAS.training.lr_schedule); NNCF's sample discarded this scheduler too",
    "optimizer.schedule_params": "BootstrapNAS sets the learning rate itself; NNCF's sample discarded it too",
    "optimizer.scheduler_params": "BootstrapNAS sets the learning rate itself; NNCF's sample discarded it too",
    "optimizer.steps": "BootstrapNAS sets the learning rate itself; NNCF's sample discarded it too",
    "optimizer.step": "BootstrapNAS sets the learning rate itself; NNCF's sample discarded it too",
    "optimizer.gamma": "BootstrapNAS sets the learning rate itself; NNCF's sample discarded it too",
    "optimizer.parameter_groups": "per-parameter groups are not supported; use no_decay_keys for "
                                  "parameters without weight decay",
}
#: The NNCF sample's values that are exactly what this implementation does (accepted as such).
ACCEPTED_VALUES: dict[str, Any] = {"multiprocessing_distributed": False, "distributed": False}


# ----------------------------------------------------------------------------- helpers

def _refuse(key_path: str, where: str) -> None:
    raise UserError(f"{where}: {key_path}: not supported: {REFUSED[key_path]}")


def _check_keys(section: Any, allowed: set[str], where: str, path: str = "") -> None:
    """``section`` must be a mapping with keys from ``allowed``; refused keys say why."""
    label = f"{where}: {path}" if path else where
    if not isinstance(section, dict):
        raise UserError(f"{label}: must be a mapping, got {type(section).__name__}")
    for key in section:
        full = f"{path}.{key}" if path else str(key)
        if full in REFUSED:
            _refuse(full, where)
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise UserError(f"{label}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                        f"valid keys: {', '.join(sorted(allowed))}")


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise UserError(f"{where}: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_int(v: Any, where: str, minimum: int, what: str = "") -> int:
    # NNCF's schema types these as numbers; a whole float (25.0) is accepted as the integer.
    if _is_num(v) and float(v).is_integer():
        v = int(v)
    _require(_is_int(v) and v >= minimum, where, f"must be an integer >= {minimum}{what}, got {v!r}")
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ----------------------------------------------------------------------------- elasticity

@dataclass(frozen=True)
class WidthOptions:
    min_width: int = 32
    width_step: int = 32
    max_num_widths: int = -1
    width_multipliers: tuple[float, ...] | None = None
    #: BootstrapNAS.md and NNCF's schema document L2 as the default (NNCF 2.x's code used L1).
    filter_importance: str = "L2"
    #: Not an NNCF key (NNCF has no grouped convolutions): in a grouped convolution's blocked
    #: space, every width keeps a multiple of this many channels per group. Default: what oneDNN's
    #: x86 INT8 grouped kernels need (``qconfig.INT8_GROUP_CHANNEL_MULTIPLE``, 4); 3 or 6 channels
    #: per group run its reference kernel, ~100x slower. 1: any whole number per group.
    channels_per_group_multiple: int = INT8_GROUP_CHANNEL_MULTIPLE


@dataclass(frozen=True)
class DepthOptions:
    min_block_size: int = 5
    max_block_size: int = 50
    #: [[start_node, end_node], ...]: given = these blocks (NNCF's "manual" blocks), None = found
    #: automatically. Node names are torch.fx names or NNCF's (``ResNet/Sequential[layer1]/...``).
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
    #: NNCF's ignored_scopes: layers (names, globs, or ``{re}`` regular expressions) that keep
    #: their output width and their kernel (skippable blocks: ``depth``).
    ignored_scopes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "available_elasticity_dims": list(self.available_elasticity_dims),
            "width": {f.name: _plain(getattr(self.width, f.name)) for f in fields(WidthOptions)},
            "depth": {f.name: _plain(getattr(self.depth, f.name)) for f in fields(DepthOptions)},
            "kernel": {f.name: _plain(getattr(self.kernel, f.name)) for f in fields(KernelOptions)},
            "ignored_scopes": list(self.ignored_scopes),
        }


_E = "bootstrapNAS.training.elasticity"


def parse_elasticity(section: dict | None, where: str = "elasticity", path: str = _E) -> ElasticityOptions:
    """The ``elasticity`` section (also what a super-network checkpoint stores)."""
    section = dict(section or {})
    _check_keys(section, {"available_elasticity_dims", "width", "depth", "kernel", "ignored_scopes"}, where, path)
    dims = section.get("available_elasticity_dims", list(DIMS))
    if isinstance(dims, str):
        dims = [dims]
    _require(isinstance(dims, (list, tuple)) and dims and all(d in DIMS for d in dims)
             and len(set(dims)) == len(dims),
             f"{where}: {path}.available_elasticity_dims",
             f"must be a non-empty list of distinct names from {list(DIMS)}, got {dims!r}")

    w_path, d_path, k_path = f"{path}.width", f"{path}.depth", f"{path}.kernel"
    w_sec = dict(section.get("width") or {})
    # Not a BootstrapNAS key: NNCF's sample config carries it (32) and NNCF ignored it. Accepted
    # when it says what min_width does, refused when it asks for something else.
    min_out = w_sec.pop("min_out_channels", None)
    _check_keys(w_sec, {f.name for f in fields(WidthOptions)}, where, w_path)
    ww = f"{where}: {w_path}"
    mult = w_sec.get("width_multipliers")
    if mult is not None:
        _require(isinstance(mult, list) and mult and all(_is_num(m) and 0 < m <= 1 for m in mult),
                 f"{ww}.width_multipliers", f"must be a non-empty list of numbers in (0, 1], got {mult!r}")
    importance = w_sec.get("filter_importance", WidthOptions.filter_importance)
    if importance == "external":
        _refuse(f"{w_path}.external_importance_path", where)
    _require(importance in ("L1", "L2", "geometric_median"), f"{ww}.filter_importance",
             f"must be L1, L2 or geometric_median, got {importance!r}")
    max_num = w_sec.get("max_num_widths", -1)
    if not (_is_num(max_num) and max_num == -1):
        max_num = _as_int(max_num, f"{ww}.max_num_widths", 1, " (or -1: no limit)")
    width = WidthOptions(
        min_width=_as_int(w_sec.get("min_width", 32), f"{ww}.min_width", 1),
        width_step=_as_int(w_sec.get("width_step", 32), f"{ww}.width_step", 1),
        max_num_widths=int(max_num),
        width_multipliers=tuple(float(m) for m in mult) if mult is not None else None,
        filter_importance=importance,
        channels_per_group_multiple=_as_int(w_sec.get("channels_per_group_multiple",
                                                      WidthOptions.channels_per_group_multiple),
                                            f"{ww}.channels_per_group_multiple", 1))
    if min_out is not None:
        _require(min_out == width.min_width, f"{ww}.min_out_channels",
                 f"{min_out!r} not supported: not a BootstrapNAS key (NNCF ignored it); the minimum width is "
                 f"min_width ({width.min_width} here): set min_width instead")
        log.info("%s.min_out_channels %s: NNCF ignored this key; it equals min_width, which sets the minimum "
                 "width", ww, min_out)

    d_sec = dict(section.get("depth") or {})
    # ``mode`` is this project's earlier spelling (NNCF has no such key): skipped_blocks present
    # means manual blocks, absent means automatic search. Still accepted when it agrees.
    mode = d_sec.pop("mode", None)
    _check_keys(d_sec, {f.name for f in fields(DepthOptions)}, where, d_path)
    dw = f"{where}: {d_path}"
    blocks = d_sec.get("skipped_blocks")
    if blocks is not None:
        _require(isinstance(blocks, list) and blocks and all(
            isinstance(b, (list, tuple)) and len(b) == 2 and all(isinstance(n, str) for n in b) for b in blocks),
            f"{dw}.skipped_blocks", "must be a non-empty list of [start_node, end_node] name pairs")
    if mode is not None:
        _require(mode in ("auto", "manual"), f"{dw}.mode", f"must be 'auto' or 'manual' (or left out), got {mode!r}")
        _require((mode == "manual") == (blocks is not None), f"{dw}.mode",
                 "not an NNCF key, and it contradicts skipped_blocks: remove it (skipped_blocks given = those "
                 "blocks, absent = blocks found automatically)")
    min_size = _as_int(d_sec.get("min_block_size", 5), f"{dw}.min_block_size", 1)
    max_size = _as_int(d_sec.get("max_block_size", 50), f"{dw}.max_block_size", min_size, " (min_block_size)")
    fused = d_sec.get("hw_fused_ops", True)
    _require(isinstance(fused, bool), f"{dw}.hw_fused_ops", "must be true or false")
    depth = DepthOptions(min_size, max_size, tuple(tuple(b) for b in blocks) if blocks is not None else None, fused)

    k_sec = dict(section.get("kernel") or {})
    _check_keys(k_sec, {"max_num_kernels"}, where, k_path)
    kernels = k_sec.get("max_num_kernels", -1)
    if not (_is_num(kernels) and kernels == -1):
        kernels = _as_int(kernels, f"{where}: {k_path}.max_num_kernels", 1, " (or -1: no limit)")
    ignored = section.get("ignored_scopes", [])
    _require(isinstance(ignored, (list, tuple)) and all(isinstance(p, str) and p for p in ignored),
             f"{where}: {path}.ignored_scopes", f"must be a list of layer names or patterns, got {ignored!r}")
    for pattern in ignored:
        if pattern.startswith("{re}"):
            try:
                re.compile(pattern[len("{re}"):])
            except re.error as exc:
                raise UserError(f"{where}: {path}.ignored_scopes: {pattern!r} is not a regular expression "
                                f"({exc})") from None
    return ElasticityOptions(tuple(dims), width, depth, KernelOptions(int(kernels)), tuple(ignored))


# ----------------------------------------------------------------------------- training

@dataclass(frozen=True)
class StageDescription:
    """One ``list_stage_descriptions`` entry, NNCF's StageDescriptor with its defaults."""
    train_dims: tuple[str, ...] = ("kernel",)
    epochs: int = 1
    depth_indicator: int = 1
    width_indicator: int = 1
    #: This project's key (NNCF has none): how many of each kernel's sizes, largest first; None = all.
    kernel_indicator: int | None = None
    reorg_weights: bool = False
    bn_adapt: bool = False
    #: Resolved when the file is read: NNCF's 3.5e-6 when neither this nor lr_schedule is given.
    init_lr: float | None = None
    #: Cosine period in epochs; NNCF's default is the stage's epochs.
    epochs_lr: int | None = None
    sample_rate: int = 1


@dataclass(frozen=True)
class GlobalLrSchedule:
    """``bootstrapNAS.training.lr_schedule.params``: NNCF's GlobalLRScheduler (one cosine over the
    whole training, stages do not reset it), used instead of the stages' learning rates."""
    base_lr: float
    num_epochs: int | None = None     # None: the total of the stages' epochs
    warmup_epochs: int = 0
    warmup_lr: float = 3.4e-4


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from the frozen pre-trained model (NNCF's knowledge_distillation)."""
    type: str = "softmax"             # or "mse"
    scale: float = 1.0
    temperature: float = 1.0


@dataclass(frozen=True)
class OptimizerOptions:
    """The NNCF sample's ``optimizer`` section (the learning rate itself is BootstrapNAS's)."""
    type: str = "adam"                # NNCF's sample default
    base_lr: float = 1e-4             # the optimizer's initial rate; every step's rate comes from the schedule
    weight_decay: float = 1e-4
    momentum: float = 0.9             # SGD (the sample's optimizer_params default)
    nesterov: bool = False
    #: Cross-entropy label smoothing (the sample's optimizer.label_smoothing).
    label_smoothing: float = 0.0
    #: OFA's no_decay_keys ("bn#bias"): parameters whose names contain one get no weight decay.
    no_decay_keys: tuple[str, ...] = ()
    #: Extra torch optimizer arguments (the sample's optimizer_params), e.g. {"betas": [0.9, 0.99]}.
    optimizer_params: tuple[tuple[str, Any], ...] = ()

    def build(self, named_params, lr: float):
        """The torch optimizer over ``named_params`` ((name, parameter) pairs, or bare parameters)."""
        import torch

        named = [p if isinstance(p, tuple) else ("", p) for p in named_params]
        decay = [p for n, p in named if not any(k in n for k in self.no_decay_keys)]
        no_decay = [p for n, p in named if any(k in n for k in self.no_decay_keys)]
        groups = [{"params": decay, "weight_decay": self.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        extra = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.optimizer_params}
        if self.type == "adam":
            return torch.optim.Adam(groups, lr=lr, **extra)
        kwargs = {"momentum": self.momentum, "nesterov": self.nesterov and self.momentum > 0, **extra}
        return torch.optim.SGD(groups, lr=lr, **kwargs)


@dataclass(frozen=True)
class TrainingOptions:
    elasticity: ElasticityOptions
    stages: tuple[StageDescription, ...]
    progressivity_of_elasticity: tuple[str, ...] = DEFAULT_PROGRESSIVITY
    num_bn_adaptation_samples: int = NUM_BN_ADAPTATION_SAMPLES
    #: Steps per epoch as NNCF's sample counted them: it breaks after the step whose index
    #: reaches train_steps, so an epoch is train_steps + 1 steps (at most the whole loader).
    train_steps: int | None = None
    distillation: Distillation | None = None
    lr_schedule: GlobalLrSchedule | None = None

    def steps_per_epoch(self, loader_len: int) -> int:
        return loader_len if self.train_steps is None else min(loader_len, self.train_steps + 1)


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
    search: dict                      # validated by the search (nas/search/settings.py)
    raw: dict                         # the file as read, saved beside results
    #: Options of the model's descriptor (``models/``), e.g. RetinaNet's ``fpn_levels``.
    model_options: dict = field(default_factory=dict)
    #: ``--set KEY=VALUE`` overrides applied to the file (recorded with the results).
    overrides: tuple[str, ...] = ()
    #: Options of the dataset (the model's descriptor checks them), e.g. RetinaNet's image counts.
    dataset_options: dict = field(default_factory=dict)
    batch_size_val: int | None = None
    num_classes: int | None = None
    workers: int | None = None


_T = "bootstrapNAS.training"
_TRAINING_KEYS = {"algorithm", "progressivity_of_elasticity", "batchnorm_adaptation", "schedule", "elasticity",
                  "lr_schedule", "train_steps", "compression", "distillation"}
_STAGE_KEYS = {f.name for f in fields(StageDescription)}


def _dims_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    _require(isinstance(value, list) and all(d in DIMS for d in value) and len(set(value)) == len(value),
             where, f"must be a list of distinct names from {list(DIMS)}, got {value!r}")
    return list(value)


def check_progressivity(stages: list[StageDescription], available: tuple[str, ...], progressivity: tuple[str, ...],
                        where: str) -> None:
    """NNCF's BootstrapNASScheduler._validate_elasticity_dims, as one-line errors.

    Each stage's dimensions must be a run of ``progressivity_of_elasticity`` with no available
    dimension missing in between, and from stage to stage the run may only grow: a dimension
    once trained is never dropped, and none is added out of order.
    """
    last_high, first_low = -1, len(progressivity)
    for k, stage in enumerate(stages):
        s_where = f"{where}: {_T}.schedule.list_stage_descriptions[{k}].train_dims"
        idx = []
        for dim in stage.train_dims:
            _require(dim in available, s_where,
                     f"{dim!r} is not in elasticity.available_elasticity_dims {list(available)}; enable it there")
            idx.append(progressivity.index(dim))
        low, high = min(idx), max(idx)
        if high < last_high or low > first_low:
            raise UserError(f"{s_where}: {list(stage.train_dims)} drops a dimension an earlier stage trained; with "
                            f"progressivity_of_elasticity {list(progressivity)} each stage keeps the earlier "
                            "stages' dimensions and may add the next ones")
        for i in range(low, high):
            if i not in idx and progressivity[i] in available:
                raise UserError(f"{s_where}: {list(stage.train_dims)} skips {progressivity[i]!r}, which comes "
                                f"between them in progressivity_of_elasticity {list(progressivity)}")
        last_high, first_low = high, low


def _parse_stage(raw: Any, where: str, k: int) -> StageDescription:
    s_path = f"{_T}.schedule.list_stage_descriptions[{k}]"
    _check_keys(raw, _STAGE_KEYS, where, s_path)
    sw = f"{where}: {s_path}"
    dims = _dims_list(raw.get("train_dims", ["kernel"]), f"{sw}.train_dims")
    _require(bool(dims), f"{sw}.train_dims", "must name at least one dimension")
    values: dict[str, Any] = {"train_dims": tuple(dims)}
    for key in ("epochs", "depth_indicator", "width_indicator", "sample_rate"):
        if key in raw:
            values[key] = _as_int(raw[key], f"{sw}.{key}", 1)
    for key in ("kernel_indicator", "epochs_lr"):
        if raw.get(key) is not None:
            values[key] = _as_int(raw[key], f"{sw}.{key}", 1)
    if raw.get("init_lr") is not None:
        _require(_is_num(raw["init_lr"]) and raw["init_lr"] > 0, f"{sw}.init_lr",
                 f"must be a positive number, got {raw['init_lr']!r}")
        values["init_lr"] = float(raw["init_lr"])
    for key in ("reorg_weights", "bn_adapt"):
        if key in raw:
            _require(isinstance(raw[key], bool), f"{sw}.{key}", "must be true or false")
            values[key] = raw[key]
    return StageDescription(**values)


def _parse_distillation(section: dict, where: str) -> Distillation | None:
    compression = section.get("compression")
    ours = section.get("distillation")
    if compression is not None and ours is not None:
        raise UserError(f"{where}: {_T}.distillation: give knowledge distillation once, either NNCF's "
                        "compression [{\"algorithm\": \"knowledge_distillation\", ...}] or distillation")
    if compression is not None:
        algos = compression if isinstance(compression, list) else [compression]
        kd = None
        for i, algo in enumerate(algos):
            a_path = f"{_T}.compression" + (f"[{i}]" if isinstance(compression, list) else "")
            _require(isinstance(algo, dict), f"{where}: {a_path}", "must be a mapping with an 'algorithm'")
            name = algo.get("algorithm")
            if name != "knowledge_distillation":
                raise UserError(f"{where}: {a_path}.algorithm: {name!r} not supported: BootstrapNAS training takes "
                                "only knowledge_distillation; quantization is `mlperf-bnas build`'s step")
            _check_keys(algo, {"algorithm", "type", "scale", "temperature"}, where, a_path)
            _require(algo.get("type") in ("softmax", "mse"), f"{where}: {a_path}.type",
                     f"must be 'softmax' or 'mse' (NNCF requires it), got {algo.get('type')!r}")
            scale, temperature = algo.get("scale", 1.0), algo.get("temperature", 1.0)
            _require(_is_num(scale) and scale >= 0, f"{where}: {a_path}.scale", "must be a number >= 0")
            _require(_is_num(temperature) and temperature > 0, f"{where}: {a_path}.temperature",
                     "must be a positive number")
            _require(kd is None, f"{where}: {a_path}", "knowledge_distillation is given twice")
            kd = Distillation(algo["type"], float(scale), float(temperature))
        return kd
    if ours is not None:
        _check_keys(ours, {"temperature", "weight"}, where, f"{_T}.distillation")
        temperature, weight = ours.get("temperature", 1.0), ours.get("weight", 1.0)
        _require(_is_num(temperature) and temperature > 0, f"{where}: {_T}.distillation.temperature",
                 "must be a positive number")
        _require(_is_num(weight) and weight >= 0, f"{where}: {_T}.distillation.weight", "must be a number >= 0")
        return Distillation("softmax", float(weight), float(temperature)) if weight > 0 else None
    return None   # NNCF: no knowledge distillation unless configured


def _parse_lr_schedule(section: Any, where: str) -> GlobalLrSchedule | None:
    if section is None:
        return None
    path = f"{_T}.lr_schedule"
    _check_keys(section, {"params"}, where, path)
    params = section.get("params")
    _require(isinstance(params, dict) and params.get("base_lr") is not None, f"{where}: {path}.params.base_lr",
             "missing: a global learning-rate schedule needs params.base_lr (leave lr_schedule out to use the "
             "stages' init_lr)")
    _check_keys(params, {"base_lr", "num_epochs", "warmup_epochs", "warmup_lr"}, where, f"{path}.params")
    pw = f"{where}: {path}.params"
    base_lr, warmup_lr = params["base_lr"], params.get("warmup_lr", 3.4e-4)
    _require(_is_num(base_lr) and base_lr > 0, f"{pw}.base_lr", "must be a positive number")
    _require(_is_num(warmup_lr) and warmup_lr >= 0, f"{pw}.warmup_lr", "must be a number >= 0")
    num_epochs = params.get("num_epochs")
    if num_epochs is not None:
        num_epochs = _as_int(num_epochs, f"{pw}.num_epochs", 1)
    warmup = _as_int(params.get("warmup_epochs", 0), f"{pw}.warmup_epochs", 0)
    return GlobalLrSchedule(float(base_lr), num_epochs, warmup, float(warmup_lr))


def parse_training(section: dict, where: str, top_train_steps: Any = None) -> TrainingOptions:
    """The ``bootstrapNAS.training`` section; ``where`` names the file."""
    _check_keys(section, _TRAINING_KEYS, where, _T)
    algorithm = section.get("algorithm", "progressive_shrinking")
    _require(algorithm == "progressive_shrinking", f"{where}: {_T}.algorithm",
             f"only 'progressive_shrinking' exists (NNCF had no other), got {algorithm!r}")
    elasticity = parse_elasticity(section.get("elasticity"), where)
    available = elasticity.available_elasticity_dims
    prog = tuple(_dims_list(section.get("progressivity_of_elasticity", list(DEFAULT_PROGRESSIVITY)),
                            f"{where}: {_T}.progressivity_of_elasticity"))
    missing = [d for d in available if d not in prog]
    _require(not missing, f"{where}: {_T}.progressivity_of_elasticity",
             f"{list(prog)} does not place {missing} (from available_elasticity_dims {list(available)}); list every "
             "available dimension in the order the stages add them")

    bn = section.get("batchnorm_adaptation", {})
    _check_keys(bn, {"num_bn_adaptation_samples"}, where, f"{_T}.batchnorm_adaptation")
    n_bn = _as_int(bn.get("num_bn_adaptation_samples", NUM_BN_ADAPTATION_SAMPLES),
                   f"{where}: {_T}.batchnorm_adaptation.num_bn_adaptation_samples", 0, " (0 disables it)")

    schedule = section.get("schedule", {})
    _check_keys(schedule, {"list_stage_descriptions"}, where, f"{_T}.schedule")
    raw_stages = schedule.get("list_stage_descriptions")
    if raw_stages is None:
        raw_stages = [dict(s) for s in DEFAULT_STAGES]
        log.info("%s: no schedule.list_stage_descriptions: NNCF's default 5-stage schedule", where)
    _require(isinstance(raw_stages, list) and raw_stages, f"{where}: {_T}.schedule.list_stage_descriptions",
             "must be a non-empty list of stage descriptions")
    stages = [_parse_stage(raw, where, k) for k, raw in enumerate(raw_stages)]
    check_progressivity(stages, available, prog, where)

    lr_schedule = _parse_lr_schedule(section.get("lr_schedule"), where)
    resolved = []
    for k, stage in enumerate(stages):
        sw = f"{where}: {_T}.schedule.list_stage_descriptions[{k}]"
        if lr_schedule is not None:
            _require(stage.init_lr is None, f"{sw}.init_lr", "a global lr_schedule is in use; NNCF refuses a stage "
                     "learning rate with it (remove one of the two)")
        elif stage.init_lr is None:
            log.warning("%s.init_lr not set: NNCF's default %g", sw, DEFAULT_STAGE_LR)
            stage = StageDescription(**{**stage.__dict__, "init_lr": DEFAULT_STAGE_LR})
        _require(not stage.bn_adapt or n_bn > 0, f"{sw}.bn_adapt",
                 "needs batchnorm_adaptation.num_bn_adaptation_samples > 0 (NNCF fails the same way)")
        resolved.append(stage)

    steps = section.get("train_steps")
    if top_train_steps is not None:
        _require(steps is None or steps == top_train_steps, f"{where}: {_T}.train_steps",
                 f"{steps!r} differs from the top-level train_steps {top_train_steps!r}; give one")
        steps = top_train_steps
    if steps is not None:
        steps = _as_int(steps, f"{where}: {_T}.train_steps", 1, " (an epoch is train_steps + 1 steps, as in NNCF)")
    return TrainingOptions(elasticity, tuple(resolved), prog, n_bn, steps,
                           _parse_distillation(section, where), lr_schedule)


# ----------------------------------------------------------------------------- the file

_TOP_KEYS = {"model", "model_options", "input_info", "batch_size", "batch_size_val", "dataset", "dataset_options",
             "optimizer", "seed", "bootstrapNAS", "train_steps", "num_classes", "workers"} | set(ACCEPTED_VALUES)
_OPTIMIZER_KEYS = {f.name for f in fields(OptimizerOptions)}


def read_config_file(path: Path) -> dict:
    return read_mapping(path, "BootstrapNAS config file", "pass an existing .json or .yaml file")


def _parse_optimizer(section: Any, where: str) -> OptimizerOptions:
    section = dict(section or {})
    _check_keys(section, _OPTIMIZER_KEYS, where, "optimizer")
    ow = f"{where}: optimizer"
    kind = str(section.get("type", "adam")).lower()
    _require(kind in ("sgd", "adam"), f"{ow}.type", f"must be 'sgd' or 'adam' (NNCF's sample had these two), "
             f"got {section.get('type')!r}")
    for key in ("base_lr", "weight_decay", "momentum", "label_smoothing"):
        if key in section:
            _require(_is_num(section[key]) and section[key] >= 0, f"{ow}.{key}", "must be a number >= 0")
    _require(0 <= section.get("label_smoothing", 0.0) < 1, f"{ow}.label_smoothing", "must be in [0, 1)")
    _require(isinstance(section.get("nesterov", False), bool), f"{ow}.nesterov", "must be true or false")
    keys = section.get("no_decay_keys", "")
    if isinstance(keys, str):
        keys = [k for k in keys.split("#") if k]
    _require(isinstance(keys, list) and all(isinstance(k, str) and k for k in keys), f"{ow}.no_decay_keys",
             "must be a '#'-separated string (OFA's \"bn#bias\") or a list of names")
    params = section.get("optimizer_params", {})
    _require(isinstance(params, dict), f"{ow}.optimizer_params", "must be a mapping of torch optimizer arguments")
    defaults = OptimizerOptions()
    opts = OptimizerOptions(
        type=kind,
        base_lr=float(section.get("base_lr", defaults.base_lr)),
        weight_decay=float(section.get("weight_decay", defaults.weight_decay)),
        momentum=float(section.get("momentum", defaults.momentum)),
        nesterov=section.get("nesterov", defaults.nesterov),
        label_smoothing=float(section.get("label_smoothing", 0.0)),
        no_decay_keys=tuple(keys),
        optimizer_params=tuple(sorted((str(k), _plain_param(v)) for k, v in params.items())))
    _check_optimizer_params(opts, f"{ow}.optimizer_params")
    if "base_lr" in section:
        log.info("%s.base_lr %g: the optimizer's starting rate only; every step's rate comes from the "
                 "stages' init_lr or lr_schedule (as in NNCF)", ow, opts.base_lr)
    return opts


def _plain_param(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _check_optimizer_params(opts: OptimizerOptions, where: str) -> None:
    """Build the optimizer once on a dummy parameter: a bad argument is an error now, not after loading data."""
    if not opts.optimizer_params:
        return
    import torch

    try:
        opts.build([torch.nn.Parameter(torch.zeros(1))], 0.1)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None


def apply_overrides(data: dict, pairs, where: str) -> dict:
    """``--set`` on a NAS config: ``input_info.sample_size=[1,3,256,256]``, ``dataset=synthetic``,
    ``bootstrapNAS.training.train_steps=4`` (dotted paths into the file; values read as YAML).
    The result is validated like the file itself."""
    import copy

    import yaml

    out = copy.deepcopy(data)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{where}: --set {pair!r}: expected KEY=VALUE, e.g. input_info.sample_size=[1,3,256,256]")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise UserError(f"{where}: --set {pair!r}: value is not YAML ({str(exc).splitlines()[0]})") from None
        node = out
        parts = key.split(".")
        for k, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"{where}: --set {key}: {'.'.join(parts[:k + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out


def load_nas_config(path: Path, overrides=()) -> NasConfig:
    path = Path(path)
    data = read_config_file(path)
    where = str(path)
    if overrides:
        data = apply_overrides(data, overrides, where)
        where = f"{path} (with --set {' '.join(overrides)})"
    for key, value in ACCEPTED_VALUES.items():
        _require(data.get(key, value) == value, f"{where}: {key}",
                 f"{data.get(key)!r} not supported: training runs in one process here (a GPU when present); "
                 "`mlperf-bnas nas search` is what runs distributed")
    _check_keys(data, _TOP_KEYS, where)
    _require("model" in data, f"{where}: model", "missing; name a model (digits_resnet, resnet50, retinanet)")
    model_options = data.get("model_options", {})
    _require(isinstance(model_options, dict), f"{where}: model_options", "must be a mapping of the model's options")
    input_info = data.get("input_info", {})
    if isinstance(input_info, list):
        _require(len(input_info) == 1, f"{where}: input_info", "the super-network takes one input; give one entry")
        input_info = input_info[0]
    _check_keys(input_info, {"sample_size"}, where, "input_info")
    size = input_info.get("sample_size")
    _require(isinstance(size, list) and len(size) == 4 and all(_is_int(v) and v >= 1 for v in size),
             f"{where}: input_info.sample_size", f"must be [N, C, H, W] positive integers, got {size!r}")
    batch = _as_int(data.get("batch_size", 64), f"{where}: batch_size", 1)
    batch_val = data.get("batch_size_val")
    if batch_val is not None:
        batch_val = _as_int(batch_val, f"{where}: batch_size_val", 1)
    num_classes = data.get("num_classes")
    if num_classes is not None:
        num_classes = _as_int(num_classes, f"{where}: num_classes", 1)
    workers = data.get("workers")
    if workers is not None:
        workers = _as_int(workers, f"{where}: workers", 0)
    seed = data.get("seed", 0)
    _require(_is_int(seed), f"{where}: seed", "must be an integer")
    optimizer = _parse_optimizer(data.get("optimizer"), where)
    bnas = data.get("bootstrapNAS")
    _require(isinstance(bnas, dict), f"{where}: bootstrapNAS", "missing; it holds the training (and search) sections")
    _check_keys(bnas, {"training", "search"}, where, "bootstrapNAS")
    training = parse_training(bnas.get("training") or {}, where, data.get("train_steps"))
    dataset = data.get("dataset", "digits")
    _require(isinstance(dataset, str), f"{where}: dataset", "must be a name")
    from mlperf_bnas.models import MODELS

    if str(data["model"]) in MODELS:
        known = MODELS.get(str(data["model"])).nas_datasets
        _require(dataset in known, f"{where}: dataset",
                 f"{dataset!r} not supported for model {data['model']!r}: it trains on {', '.join(known)} (digits: "
                 "scikit-learn's, no download; imagefolder/imagenet: --data-dir holding train/ and val/ class "
                 "folders, NNCF's imagenet layout; RetinaNet's: docs/bootstrapnas.md)")
    dataset_options = data.get("dataset_options", {})
    _require(isinstance(dataset_options, dict), f"{where}: dataset_options", "must be a mapping")
    search = dict(bnas.get("search") or {})
    from mlperf_bnas.nas.search.settings import build_settings

    build_settings(search, None, where)   # a bad search section fails now, not after training
    return NasConfig(path, str(data["model"]), tuple(size), batch, training, optimizer, dataset, seed,
                     search, data, model_options=dict(model_options), overrides=tuple(overrides),
                     dataset_options=dict(dataset_options), batch_size_val=batch_val, num_classes=num_classes,
                     workers=workers)
