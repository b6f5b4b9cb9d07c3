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
from mlperf_bnas.fileio import load_checkpoint
from mlperf_bnas.nas.supernet.network import SUPERNET_HINT
from mlperf_bnas.paths import OutputRoot, benchmark_dir

log = logging.getLogger(__name__)

DEMO_CONFIG = benchmark_dir("bootstrapnas") / "configs" / "digits_progressive_shrinking.json"


# -- shared helpers -----------------------------------------------------------------------
def load_state_dict_file(path: Path) -> dict:
    """Weights a user hands us: a state dict (or {"state_dict": ...}), loaded weights-only."""
    obj = load_checkpoint(path, "pre-trained weights file",
                          "pass a state dict saved with torch.save(model.state_dict(), path)")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return obj


def build_pretrained(model_name: str, pretrained: str | None) -> torch.nn.Module:
    from mlperf_bnas.nas.export import build_base_model

    if pretrained == "torchvision":
        if model_name != "resnet50":
            raise UserError(f"--pretrained torchvision is only available for resnet50, not {model_name!r}")
        import torchvision  # downloads the ImageNet weights on first use (needs internet)

        return torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V1).eval()
    if pretrained is None:
        raise UserError(f"model {model_name!r} needs pre-trained weights: pass --pretrained FILE "
                        "(a state dict) or, for resnet50, --pretrained torchvision")
    state = load_state_dict_file(Path(pretrained))
    model, _ = build_base_model(model_name, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{pretrained}: weights do not fit {model_name} ({str(exc).splitlines()[0]})") from None
    return model.eval()


def data_loaders(dataset: str, batch_size: int, seed: int, data_dir: str | None, input_size: tuple[int, ...],
                 val_batch_size: int | None = None, workers: int | None = None):
    """(train, val) loaders of a NAS config's ``dataset`` (``val_batch_size``: the sample's
    batch_size_val; ``workers``: its loader processes)."""
    if dataset == "digits":
        from mlperf_bnas.nas.demo import digits_loaders

        return digits_loaders(batch_size, seed, size=input_size[-1], val_batch_size=val_batch_size or 256)
    if dataset in ("imagefolder", "imagenet"):   # NNCF's imagenet: ImageFolder train/ and val/
        if not data_dir:
            raise UserError(f"dataset {dataset!r} needs --data-dir holding train/ and val/ class folders")
        import torchvision.transforms as T
        from torch.utils.data import DataLoader
        from torchvision.datasets import ImageFolder

        root = Path(data_dir)
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise UserError(f"{root / split}: missing; --data-dir must hold train/ and val/ class folders")
        size = input_size[-1]
        norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        train = ImageFolder(root / "train", T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                                                       T.ToTensor(), norm]))
        val = ImageFolder(root / "val", T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.ToTensor(), norm]))
        workers = min(4, os.cpu_count() or 1) if workers is None else workers
        return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True),
                DataLoader(val, batch_size=val_batch_size or batch_size, shuffle=False, num_workers=workers))
    raise UserError(f"unknown NAS dataset {dataset!r}; valid: digits, imagefolder, imagenet")


def preprocess_for(model_name: str, input_size: tuple[int, ...]) -> dict:
    if model_name == "digits_resnet":
        from mlperf_bnas.nas.demo import DIGITS_PREPROCESS

        return dict(DIGITS_PREPROCESS)
    return {"input_size": list(input_size[1:]), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "resize": int(round(input_size[-1] / 0.875)), "crop": input_size[-1], "interpolation": "bilinear"}


def set_aside(path: Path, output_dir: Path) -> None:
    """Move an earlier run's folder to build/archive/ (never delete what a user has)."""
    if path.exists() and any(path.iterdir()):
        archive = OutputRoot(output_dir).archive_slot(f"{path.name}-")
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(archive))
        log.info("moved the earlier %s to %s", path, archive)


def load_supernet(path: Path):
    from mlperf_bnas.nas.export import build_base_model
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    path = Path(path)
    header = load_checkpoint(path, "super-network checkpoint", SUPERNET_HINT)
    base = header.get("extra", {}).get("base_model") if isinstance(header, dict) else None
    if base is None:
        raise UserError(f"{path}: super-network checkpoint does not name its base model (extra.base_model)")
    supernet = SuperNetwork.load(path, lambda: build_base_model(base)[0].to(default_device_for_cli()))
    return supernet, base, header["extra"].get("preprocess", {})


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
    if out.shape[-1] != cfg.num_classes:
        raise UserError(f"{cfg.path}: num_classes: {cfg.num_classes}, but the pre-trained model predicts "
                        f"{out.shape[-1]} classes; fix num_classes or pass the matching --pretrained weights")


def train_from_config(config_path: Path, output_dir: Path, pretrained_model: torch.nn.Module, resume: bool,
                      data_dir: str | None = None, progress: bool = True):
    """Build (or resume) the super-network for ``config_path`` and train it; returns (supernet, state)."""
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.export import build_base_model
    from mlperf_bnas.nas.supernet.network import SuperNetwork
    from mlperf_bnas.nas.train.progressive import LAST_CHECKPOINT, default_device, train_progressive_shrinking

    cfg = load_nas_config(config_path)
    device = default_device()
    torch.manual_seed(cfg.seed)
    teacher = pretrained_model.to(device).eval()
    _check_num_classes(cfg, pretrained_model)
    train_loader, val_loader = data_loaders(cfg.dataset, cfg.batch_size, cfg.seed, data_dir, cfg.input_size,
                                            cfg.batch_size_val, cfg.workers)
    extra = {"base_model": cfg.model, "preprocess": preprocess_for(cfg.model, cfg.input_size),
             "config": str(config_path)}
    if resume:
        supernet = SuperNetwork.load(output_dir / LAST_CHECKPOINT, lambda: build_base_model(cfg.model)[0].to(device))
    else:
        supernet = SuperNetwork.from_model(teacher, cfg.training.elasticity,
                                           torch.zeros(cfg.input_size, device=device))
    state = train_progressive_shrinking(supernet, teacher, train_loader, val_loader, cfg.training, cfg.optimizer,
                                        output_dir, cfg.seed, resume=resume, checkpoint_extra=extra,
                                        progress=progress)
    return supernet, state


def train(config: Path, output_dir: Path, pretrained: str | None, data_dir: str | None = None,
          resume: bool = False, progress: bool = True) -> dict:
    """``mlperf-bnas nas train``: the super-network of ``config``, trained into ``output_dir``."""
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.train.progressive import LAST_CHECKPOINT

    cfg = load_nas_config(config)
    if not resume and (output_dir / LAST_CHECKPOINT).exists():
        raise UserError(f"{output_dir} already holds a training run; pass --resume to continue it or "
                        "choose another --output-dir")
    model = build_pretrained(cfg.model, pretrained)
    _, state = train_from_config(config, output_dir, model, resume, data_dir, progress)
    last = state.history[-1] if state.history else {}
    return {"supernet": str(output_dir / "supernet.pt"), "last_epoch": last}


# -- export ---------------------------------------------------------------------------------
def export_subnet(supernet_path: Path, subnet: str, output: Path, bn_samples: int = 0) -> dict:
    """``mlperf-bnas nas export``: sub-network ``subnet`` (see ``resolve_subnet``) of a trained super-network."""
    from mlperf_bnas.nas.export import save_subnet

    if output.exists():
        raise UserError(f"{output} exists; choose another --output (existing files are never overwritten)")
    supernet, base, preprocess = load_supernet(supernet_path)
    config = resolve_subnet(supernet, subnet)
    if bn_samples > 0:
        if base != "digits_resnet":
            raise UserError("--bn-samples needs the built-in digits data; re-calibrate other models before export")
        from mlperf_bnas.nas.demo import digits_loaders

        train_loader, _ = digits_loaders(64, 0)
        supernet.activate(config)
        supernet.bn_adapt(train_loader, bn_samples)
    module = supernet.extract_subnet(config)
    save_subnet(module, config, base, preprocess, output)
    return {"output": str(output), "subnet_config": config, "macs": supernet.macs(config),
            "params": supernet.params(config)}


# -- info -----------------------------------------------------------------------------------
def describe(supernet_path: Path | None = None, config: Path | None = None, nodes: bool = False) -> dict:
    """``mlperf-bnas nas info``: a trained super-network, or the one ``config`` generates."""
    from mlperf_bnas.nas.export import build_base_model
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.supernet.network import SuperNetwork

    if supernet_path:
        supernet, _, _ = load_supernet(supernet_path)
    else:
        cfg = load_nas_config(config)
        model, _ = build_base_model(cfg.model)
        supernet = SuperNetwork.from_model(model, cfg.training.elasticity, torch.zeros(cfg.input_size))
    info = supernet.describe()
    if nodes:
        info["nodes"] = [n.name for n in supernet._graph.nodes]
    return info


# -- demo -----------------------------------------------------------------------------------
def run_demo(output_dir: Path, config: Path = DEMO_CONFIG, pretrain_epochs: int = 8, resume: bool = False,
             progress: bool = True) -> dict:
    from mlperf_bnas.nas.nas_config import load_nas_config
    from mlperf_bnas.nas.demo import DigitsResNet, digits_loaders, pretrain_digits_model
    from mlperf_bnas.nas.evaluate import evaluate_accuracy, top1
    from mlperf_bnas.nas.export import save_subnet
    from mlperf_bnas.nas.train.progressive import default_device

    cfg = load_nas_config(config)
    if cfg.model != "digits_resnet" or cfg.dataset != "digits":
        raise UserError(f"{config}: the demo needs model digits_resnet and dataset digits")
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
        save_subnet(subnet, sub_cfg, "digits_resnet", preprocess_for("digits_resnet", cfg.input_size), path)
        summary["subnets"][name] = {"config": sub_cfg, "top1": acc, "macs": supernet.macs(sub_cfg),
                                    "params": supernet.params(sub_cfg), "checkpoint": str(path)}
        log.info("%s sub-network: top-1 %.2f%%, %d MACs -> %s", name, acc, supernet.macs(sub_cfg), path)
    supernet.activate(space.maximum())
    summary["history"] = state.history
    tmp = work / "demo_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, work / "demo_summary.json")
    return summary
