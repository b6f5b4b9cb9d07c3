"""Saving and loading extracted sub-networks.

Checkpoint format (``torch.save`` of tensors and plain data only, so it loads with
``weights_only=True``)::

    {"format": "mlperf-bnas-subnet", "base_model": "resnet50" | "digits_resnet" | ...,
     "subnet_config": {"kernel": [...], "width": [...], "depth": [...]},
     "structure": {"removed_blocks": [[entry_node, exit_node], ...]},
     "state_dict": {...}, "preprocess": {...}}

``load_subnet`` rebuilds the base architecture by name, traces it, removes the skipped
blocks and resizes every convolution, batch norm and linear layer to the shapes in the
state dict, then loads the weights strictly; so it never needs the super-network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import fx, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint
from mlperf_bnas.nas.supernet.blocks import blocks_from_names, remove_blocks
from mlperf_bnas.nas.supernet.graph import propagate_shapes, trace
from mlperf_bnas.registry import Registry

SUBNET_FORMAT = "mlperf-bnas-subnet"

# name -> builder(state_dict) -> (base model, example input): the architectures a
# sub-network checkpoint may name. num_classes is read from the state dict.
BASE_MODELS: Registry[Callable[[dict], tuple[nn.Module, torch.Tensor]]] = Registry("NAS base model")


def _num_classes(state_dict: dict, key: str, default: int) -> int:
    if not state_dict:
        return default  # a fresh model (e.g. to load a super-network checkpoint into)
    if key not in state_dict:
        raise UserError(f"sub-network state dict has no {key!r}; the checkpoint does not match its base model")
    return int(state_dict[key].shape[0])


@BASE_MODELS.register("resnet50")
def _resnet50(state_dict: dict) -> tuple[nn.Module, torch.Tensor]:
    import torchvision

    return torchvision.models.resnet50(num_classes=_num_classes(state_dict, "fc.weight", 1000)), torch.zeros(1, 3, 224, 224)


@BASE_MODELS.register("digits_resnet")
def _digits_resnet(state_dict: dict) -> tuple[nn.Module, torch.Tensor]:
    from mlperf_bnas.nas.demo import DIGITS_SIZE, DigitsResNet

    return DigitsResNet(num_classes=_num_classes(state_dict, "fc.weight", 10)), torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE)


def build_base_model(name: str, state_dict: dict | None = None) -> tuple[nn.Module, torch.Tensor]:
    """The named base architecture (random weights) and an example input for it."""
    return BASE_MODELS.get(name)(state_dict or {})


def save_subnet(subnet_module: nn.Module, config: dict, base_model: str, preprocess: dict, path) -> None:
    """Write an extracted sub-network (``SuperNetwork.extract_subnet``) as a checkpoint."""
    if base_model not in BASE_MODELS:
        raise UserError(f"unknown base model {base_model!r}; valid: {', '.join(BASE_MODELS.names())}")
    structure = getattr(subnet_module, "subnet_structure", None)
    if structure is None:
        raise UserError("save_subnet needs a module returned by SuperNetwork.extract_subnet")
    payload = {
        "format": SUBNET_FORMAT,
        "base_model": base_model,
        "subnet_config": {k: list(v) for k, v in config.items()},
        "structure": {"removed_blocks": [list(b) for b in structure["removed_blocks"]]},
        "state_dict": {k: v.detach().cpu().clone() for k, v in subnet_module.state_dict().items()},
        "preprocess": dict(preprocess),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_subnet_checkpoint(path) -> dict:
    path = Path(path)
    ckpt = load_checkpoint(path, "sub-network checkpoint", "write one with `mlperf-bnas nas export`")
    if not is_subnet_checkpoint(ckpt):
        raise UserError(f"{path}: not a BootstrapNAS sub-network checkpoint (format {SUBNET_FORMAT!r}); "
                        "write one with `mlperf-bnas nas export`")
    return _checked(ckpt, path)


def subnet_or_none(obj, path) -> dict | None:
    """A loaded checkpoint ``obj`` (of file ``path``) as a checked sub-network checkpoint, or None
    when it is some other checkpoint (a plain state dict)."""
    return _checked(obj, Path(path)) if is_subnet_checkpoint(obj) else None


def _checked(ckpt: dict, path: Path) -> dict:
    for key in ("base_model", "subnet_config", "structure", "state_dict", "preprocess"):
        if key not in ckpt:
            raise UserError(f"{path}: sub-network checkpoint lacks {key!r}; re-export it with `mlperf-bnas nas export`")
    return ckpt


def is_subnet_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == SUBNET_FORMAT


def load_subnet(path) -> nn.Module:
    """Rebuild an exported sub-network (eval mode) from its checkpoint alone."""
    ckpt = read_subnet_checkpoint(path)
    return build_subnet(ckpt, where=str(path))


def build_subnet(ckpt: dict, where: str = "sub-network checkpoint") -> fx.GraphModule:
    state_dict = ckpt["state_dict"]
    base, example = build_base_model(ckpt["base_model"], state_dict)
    gm = trace(base)
    propagate_shapes(gm, example)
    removed = ckpt["structure"]["removed_blocks"]
    blocks = blocks_from_names(gm, removed, f"{where}: structure.removed_blocks")
    graph = gm.graph
    remove_blocks(graph, blocks)
    for node in graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            resized = _resize(module, node.target, state_dict, where)
            if resized is not module:
                parent, _, name = node.target.rpartition(".")
                setattr(gm.get_submodule(parent) if parent else gm, name, resized)
    subnet = fx.GraphModule(gm, graph, class_name="BootstrapNASSubnet")
    try:
        subnet.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{where}: weights do not fit the {ckpt['base_model']} sub-network structure "
                        f"({str(exc).splitlines()[0]})") from None
    subnet.subnet_structure = {"removed_blocks": [list(b) for b in removed]}
    subnet.subnet_config = ckpt["subnet_config"]
    subnet.preprocess = ckpt["preprocess"]
    return subnet.eval()


def _resize(module: nn.Module, name: str, state_dict: dict, where: str) -> nn.Module:
    """``module`` re-created with the shapes its weights have in ``state_dict``."""
    def weight(key: str) -> torch.Tensor:
        if f"{name}.{key}" not in state_dict:
            raise UserError(f"{where}: state dict lacks {name}.{key}")
        return state_dict[f"{name}.{key}"]

    if type(module) is nn.Conv2d:
        w = weight("weight")
        out_c, in_per_group, kh, kw = w.shape
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        groups = out_c if depthwise else module.groups
        shrink = (module.kernel_size[0] - kh) // 2
        padding = module.padding if isinstance(module.padding, str) else tuple(p - shrink for p in module.padding)
        return nn.Conv2d(in_per_group * groups, out_c, (kh, kw), module.stride, padding, module.dilation, groups,
                         module.bias is not None, module.padding_mode)
    if type(module) is nn.BatchNorm2d:
        channels = weight("running_mean").shape[0] if module.track_running_stats else weight("weight").shape[0]
        return nn.BatchNorm2d(channels, module.eps, module.momentum, module.affine, module.track_running_stats)
    if type(module) is FrozenBatchNorm2d:
        return FrozenBatchNorm2d(weight("weight").shape[0], module.eps)
    if type(module) is nn.Linear:
        out_f, in_f = weight("weight").shape
        return nn.Linear(in_f, out_f, module.bias is not None)
    return module
