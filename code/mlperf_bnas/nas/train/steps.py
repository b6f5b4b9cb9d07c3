"""The steps ``mlperf-bnas nas train|export|info|demo`` run (their flags: ``commands/nas.py``).

* ``train``  -- progressive shrinking from a config file and pre-trained weights;
* ``export_subnet`` -- a sub-network of a trained super-network as a ``mlperf-bnas-subnet`` checkpoint;
* ``describe`` -- the super-network generated for a model (blocks, width groups, kernels, space);
* ``run_demo`` -- the embedded example: pre-train a small CNN on sklearn digits, build and train
  its super-network, export the minimum and maximum sub-networks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint, sha256_file
from mlperf_bnas.nas.supernet.network import SUPERNET_HINT
from mlperf_bnas.paths import OutputRoot, benchmark_dir

log = logging.getLogger(__name__)

DEMO_CONFIG = benchmark_dir("bootstrapnas") / "configs" / "digits_progressive_shrinking.json"


# -- shared helpers -----------------------------------------------------------------------
def load_state_dict_file(path: Path) -> dict:  # the demo's own pre-trained weights
    """Weights a user hands us: a state dict (or {"state_dict": ...}), loaded weights-only."""
    obj = load_checkpoint(path, "pre-trained weights file",
                          "pass a state dict saved with torch.save(model.state_dict(), path)")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return obj


def model_entry(name: str, model_options: dict | None, where: str):
    """The model's descriptor (``models.MODELS``): everything the NAS steps ask about a model."""
    from mlperf_bnas.models import create_model

    return create_model(name, dict(model_options or {}), where=f"{where} (model_options)")


def check_elasticity(cfg, entry, supernet=None) -> None:
    """Refuse a config that trains a dimension the model's super-network cannot change, naming the key."""
    where = f"{cfg.path}: bootstrapNAS.training"
    supported = entry.nas_elasticity_dims
    for dim in cfg.training.elasticity.available_elasticity_dims:
        if dim not in supported:
            raise UserError(f"{where}.elasticity.available_elasticity_dims: {cfg.model}'s super-network has no "
                            f"elastic {dim} (it supports {', '.join(supported)}); remove {dim!r}")
    for k, stage in enumerate(cfg.training.stages):
        for dim in stage.train_dims:
            if dim not in supported:
                raise UserError(f"{where}.schedule.list_stage_descriptions[{k}].train_dims: {cfg.model}'s "
                                f"super-network has no elastic {dim} (it supports {', '.join(supported)})")
    if supernet is None:
        return
    found = {"kernel": bool(supernet.kernel_sizes), "width": bool(supernet.width_groups),
             "depth": bool(supernet.blocks)}
    for k, stage in enumerate(cfg.training.stages):
        for dim in stage.train_dims:
            if not found[dim]:
                raise UserError(f"{where}.schedule.list_stage_descriptions[{k}].train_dims: the generated "
                                f"super-network has nothing elastic in {dim!r} (see `mlperf-bnas nas info --config "
                                f"{cfg.path}`); remove it or change elasticity.{dim}")


def set_aside(path: Path, output_dir: Path) -> None:
    """Move an earlier run's folder to build/archive/ (never delete what a user has)."""
    if path.exists() and any(path.iterdir()):
        archive = OutputRoot(output_dir).archive_slot(f"{path.name}-")
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(archive))
        log.info("moved the earlier %s to %s", path, archive)


def load_supernet(path: Path):
    """(super-network, base model name, recorded preprocessing, model descriptor) of a checkpoint."""
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    path = Path(path)
    header = load_checkpoint(path, "super-network checkpoint", SUPERNET_HINT)
    extra = header.get("extra", {}) if isinstance(header, dict) else {}
    base = extra.get("base_model")
    if base is None:
        raise UserError(f"{path}: super-network checkpoint does not name its base model (extra.base_model)")
    entry = model_entry(base, extra.get("model_options"), str(path))
    size = tuple(header.get("example_input_shape") or ())
    supernet = SuperNetwork.load(path, lambda: entry.nas_architecture(size).to(default_device_for_cli()))
    return supernet, base, extra.get("preprocess", {}), entry


def default_device_for_cli() -> torch.device:
    from mlperf_bnas.nas.train.progressive import default_device

    return default_device()


def resolve_subnet(supernet, spec: str) -> dict:
    """'max', 'min', a JSON object, or a .json file holding one."""
    if spec in ("max", "maximum"):
        return supernet.space.maximum()
    if spec in ("min", "minimum"):
        return supernet.space.minimum()
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--subnet {spec!r}: give max, min, a JSON object or an existing .json file")
        text = path.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--subnet: not valid JSON ({exc})") from None
    if isinstance(config, dict) and "subnet_config" in config:
        config = config["subnet_config"]
    return supernet.full_space.validate(config)


# -- train ----------------------------------------------------------------------------------
def _check_num_classes(cfg, model: torch.nn.Module) -> None:
    """The config's num_classes (NNCF's sample built the model with it) must be the pre-trained model's."""
    if cfg.num_classes is None:
        return
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model(torch.zeros(cfg.input_size, device=next(model.parameters()).device)[:1])
        model.train(was)
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{cfg.path}: num_classes: {cfg.model} is not a classifier; remove num_classes (its classes "
                        "are a model_options entry)")
    if out.shape[-1] != cfg.num_classes:
        raise UserError(f"{cfg.path}: num_classes: {cfg.num_classes}, but the pre-trained model predicts "
                        f"{out.shape[-1]} classes; fix num_classes or pass the matching --pretrained weights")


def train_from_config(config_path: Path, output_dir: Path, pretrained_model: torch.nn.Module, resume: bool,
                      data_dir: str | None = None, progress: bool = True, pretrained: str | None = None,
                      overrides=()):
    """Build (or resume) the super-network for ``config_path`` and train it; returns (supernet, state).

    ``pretrained_model`` is the teacher; the super-network is generated from the descriptor's
    student (``nas_student``: RetinaNet drops the FPN levels ``model_options`` leave out)."""
    from mlperf_bnas.nas.export import plain_options
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.supernet.network import SuperNetwork
    from mlperf_bnas.nas.train.progressive import LAST_CHECKPOINT, default_device, train_progressive_shrinking

    cfg = load_nas_config(config_path, overrides)
    entry = model_entry(cfg.model, cfg.model_options, str(config_path))
    check_elasticity(cfg, entry)
    if overrides:
        log.info("%s with --set %s", config_path, " ".join(overrides))
    device = default_device()
    torch.manual_seed(cfg.seed)
    teacher = pretrained_model.to(device).eval()
    _check_num_classes(cfg, teacher)
    train_loader, val_loader = entry.nas_train_data(cfg.dataset, data_dir, cfg.batch_size, cfg.seed, cfg.input_size,
                                                    teacher, cfg.dataset_options, val_batch_size=cfg.batch_size_val,
                                                    workers=cfg.workers)
    source = str(Path(pretrained).resolve()) if pretrained and Path(pretrained).is_file() else pretrained
    extra = {"base_model": cfg.model, "model_options": plain_options(cfg.model_options),
             "preprocess": entry.nas_export_preprocess(cfg.input_size), "config": str(Path(config_path).resolve()),
             "nas_config": cfg.raw,
             "dataset": cfg.dataset, "dataset_options": plain_options(cfg.dataset_options),
             "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
             "seed": cfg.seed, "batch_size": cfg.batch_size, "metric": entry.nas_metric,
             "overrides": list(overrides), "input_size": list(cfg.input_size),
             "pretrained": {"source": source,
                            "sha256": sha256_file(Path(source)) if source and Path(source).is_file() else None}}
    if resume:
        supernet = SuperNetwork.load(output_dir / LAST_CHECKPOINT,
                                     lambda: entry.nas_architecture(cfg.input_size).to(device))
    else:
        student = entry.nas_student(teacher, cfg.input_size).to(device)
        supernet = SuperNetwork.from_model(student, cfg.training.elasticity,
                                           entry.nas_example_input(cfg.input_size).to(device))
        check_elasticity(cfg, entry, supernet)
    state = train_progressive_shrinking(supernet, teacher, train_loader, val_loader, cfg.training, cfg.optimizer,
                                        output_dir, cfg.seed, resume=resume, checkpoint_extra=extra,
                                        progress=progress, loss_fn=entry.nas_loss, accuracy_fn=entry.nas_accuracy,
                                        freeze_bn=entry.nas_freeze_bn, needs_teacher=entry.nas_loss_needs_teacher)
    return supernet, state


def train(config: Path, output_dir: Path, pretrained: str | None, data_dir: str | None = None,
          resume: bool = False, progress: bool = True, overrides=()) -> dict:
    """``mlperf-bnas nas train``: the super-network of ``config`` (with ``--set`` overrides),
    trained into ``output_dir``."""
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.train.progressive import LAST_CHECKPOINT

    cfg = load_nas_config(config, overrides)
    entry = model_entry(cfg.model, cfg.model_options, str(config))
    check_elasticity(cfg, entry)
    if not resume and (output_dir / LAST_CHECKPOINT).exists():
        raise UserError(f"{output_dir} already holds a training run; pass --resume to continue it or "
                        "choose another --output-dir")
    model = entry.nas_pretrained(pretrained, cfg.input_size)
    _, state = train_from_config(config, output_dir, model, resume, data_dir, progress, pretrained, overrides)
    last = state.history[-1] if state.history else {}
    return {"supernet": str(output_dir / "supernet.pt"), "metric": entry.nas_metric, "last_epoch": last}


# -- export ---------------------------------------------------------------------------------
def export_subnet(supernet_path: Path, subnet: str, output: Path, bn_samples: int = 0,
                  data_dir: str | None = None) -> dict:
    """``mlperf-bnas nas export``: sub-network ``subnet`` (see ``resolve_subnet``) of a trained super-network.

    ``bn_samples`` > 0 re-calibrates its BatchNorm statistics first on that many samples of the
    training data the super-network was trained on (its dataset; ``data_dir`` where it needs one).
    """
    from mlperf_bnas.nas.export import save_subnet

    if output.exists():
        raise UserError(f"{output} exists; choose another --output (existing files are never overwritten)")
    supernet, base, preprocess, entry = load_supernet(supernet_path)
    extra = supernet.checkpoint_extra
    config = resolve_subnet(supernet, subnet)
    size = tuple(supernet.example_input.shape)
    if bn_samples > 0:
        dataset = extra.get("dataset")
        if not dataset:
            raise UserError(f"{supernet_path}: the checkpoint does not record its training dataset; "
                            "--bn-samples needs it (re-train, or export without --bn-samples)")
        train_loader, _ = entry.nas_train_data(dataset, data_dir or extra.get("data_dir"),
                                               int(extra.get("batch_size", 64)), int(extra.get("seed", 0)), size,
                                               options=extra.get("dataset_options"))
        supernet.activate(config)
        supernet.bn_adapt(train_loader, bn_samples)
    module = supernet.extract_subnet(config)
    save_subnet(module, config, base, preprocess, output, extra.get("model_options"), size)
    return {"output": str(output), "subnet_config": config, "macs": supernet.macs(config),
            "params": supernet.params(config)}


# -- info -----------------------------------------------------------------------------------
def describe(supernet_path: Path | None = None, config: Path | None = None, nodes: bool = False,
             overrides=()) -> dict:
    """``mlperf-bnas nas info``: a trained super-network, or the one ``config`` generates."""
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    if supernet_path:
        supernet, _, _, _ = load_supernet(supernet_path)
    else:
        cfg = load_nas_config(config, overrides)
        entry = model_entry(cfg.model, cfg.model_options, str(config))
        check_elasticity(cfg, entry)
        supernet = SuperNetwork.from_model(entry.nas_architecture(cfg.input_size), cfg.training.elasticity,
                                           entry.nas_example_input(cfg.input_size))
    info = supernet.describe()
    if nodes:
        info["nodes"] = [n.name for n in supernet._graph.nodes]
    return info


# -- demo -----------------------------------------------------------------------------------
def run_demo(output_dir: Path, config: Path = DEMO_CONFIG, pretrain_epochs: int = 8, resume: bool = False,
             progress: bool = True) -> dict:
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.demo import DEMO_MODEL, DigitsResNet, digits_loaders, pretrain_digits_model
    from mlperf_bnas.nas.evaluate import evaluate_accuracy, top1
    from mlperf_bnas.nas.export import save_subnet
    from mlperf_bnas.nas.train.progressive import default_device

    cfg = load_nas_config(config)
    if cfg.model != DEMO_MODEL or cfg.dataset != "digits":
        raise UserError(f"{config}: the demo needs model {DEMO_MODEL} and dataset digits")
    entry = model_entry(cfg.model, cfg.model_options, str(config))
    work = OutputRoot(output_dir).nas_dir / "digits"
    if not resume:
        set_aside(work, output_dir)
    work.mkdir(parents=True, exist_ok=True)
    pretrained_path = work / "pretrained.pt"
    if resume and pretrained_path.is_file():
        model = DigitsResNet()
        model.load_state_dict(load_state_dict_file(pretrained_path))
        model.eval()
        _, val = digits_loaders(cfg.batch_size, cfg.seed)
        base_acc = top1(model, val)
    else:
        model, base_acc = pretrain_digits_model(pretrain_epochs, cfg.seed, cfg.batch_size, device=default_device())
        tmp = pretrained_path.with_name(pretrained_path.name + ".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, pretrained_path)
    log.info("pre-trained digits model: top-1 %.2f%%", base_acc)
    supernet, state = train_from_config(config, work, model, resume, progress=progress)
    train, val = digits_loaders(cfg.batch_size, cfg.seed)
    n_bn = cfg.training.num_bn_adaptation_samples
    summary = {"pretrained_top1": base_acc, "subnets": {}}
    space = supernet.space
    subnets_dir = work / "subnets"
    subnets_dir.mkdir(exist_ok=True)
    for name, sub_cfg in (("max", space.maximum()), ("min", space.minimum())):
        supernet.activate(sub_cfg)
        if n_bn > 0:
            supernet.bn_adapt(train, n_bn)
        # Measured and exported with the same re-calibrated BN statistics.
        acc = evaluate_accuracy(supernet, sub_cfg, train, val, 0)
        subnet = supernet.extract_subnet(sub_cfg)
        path = subnets_dir / f"subnet_{name}.pt"
        save_subnet(subnet, sub_cfg, DEMO_MODEL, entry.nas_export_preprocess(cfg.input_size), path,
                    cfg.model_options, cfg.input_size)
        summary["subnets"][name] = {"config": sub_cfg, "top1": acc, "macs": supernet.macs(sub_cfg),
                                    "params": supernet.params(sub_cfg), "checkpoint": str(path)}
        log.info("%s sub-network: top-1 %.2f%%, %d MACs -> %s", name, acc, supernet.macs(sub_cfg), path)
    supernet.activate(space.maximum())
    summary["history"] = state.history
    tmp = work / "demo_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, work / "demo_summary.json")
    return summary
