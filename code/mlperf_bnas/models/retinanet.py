"""MLPerf RetinaNet (ResNeXt50-32x4d FPN, 264 OpenImages classes, 800x800), from torchvision parts.

The model is split in two, as the MLPerf reference splits it implicitly:

* ``RetinaNetTensorPart`` -- everything that is convolutions: input scaling
  (uint8 0..255 -> ImageNet-normalised float), backbone + FPN, classification and
  box-regression heads. This is what is exported, quantized (NNCF) and compiled.
  It returns ``(cls_logits [N, K, C], bbox_regression [N, K, 4], geometry)``
  where K is the number of anchors over all pyramid levels and ``geometry`` is a
  small constant float32 vector ``[image_h, image_w, (level, grid_h, grid_w) * L]``
  that lets the post-processor rebuild the anchors without knowing the model's
  options (see ``retinanet_postprocess.py``).
* post-processing -- anchor decoding, score threshold, per-level top-k and NMS
  in float with ``torchvision.ops`` (the ``retinanet`` postprocessor).

The cached sample is raw ``uint8`` RGB NCHW pixels; ``/255`` and the ImageNet
mean/std (MLPerf's ``GeneralizedRCNNTransform``) happen in the model as one
multiply-add, which is cheaper than keeping a float32 cache (4x the memory and
disk) and lets INT8 and FP32 read the same cache.

BootstrapNAS variant: ``fpn_levels`` chooses the pyramid levels (default
P3..P7 as MLPerf). The seed's "we remove a level in RetinaNet's FPN" is, e.g.,
``fpn_levels: [3, 4, 5, 6]`` (no P7) or ``[4, 5, 6, 7]`` (no P3); the FPN's
lateral/extra blocks, the anchor generator and the heads follow the levels.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import resnext50_32x4d
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas import fileio
from mlperf_bnas.models.entry import MODELS, ModelEntry

log = logging.getLogger(__name__)

#: ImageNet statistics of MLPerf's GeneralizedRCNNTransform, on the 0..1 scale.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
ALL_LEVELS = (3, 4, 5, 6, 7)
ANCHORS_PER_LOCATION = 9


@dataclass(frozen=True)
class RetinaNetOptions:
    """``model_options`` of the ``retinanet`` model."""

    num_classes: int = 264
    image_size: int = 800
    fpn_levels: tuple[int, ...] = ALL_LEVELS
    #: Seed of the weights used when no checkpoint is given (synthetic runs and tests).
    seed: int = 0
    # Post-processing, as MLPerf's reference (score >= 0.05, NMS 0.5, 1000 per level, 300 per image).
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    topk_candidates: int = 1000
    detections_per_image: int = 300

    def __post_init__(self) -> None:
        levels = tuple(int(v) for v in self.fpn_levels)
        object.__setattr__(self, "fpn_levels", levels)
        problems = []
        if not levels or any(lv not in ALL_LEVELS for lv in levels) or list(levels) != list(
                range(levels[0], levels[0] + len(levels))):
            problems.append(f"fpn_levels must be consecutive pyramid levels from {list(ALL_LEVELS)}, got {list(levels)}")
        elif levels[0] > 5:
            problems.append(f"fpn_levels must include at least one backbone level (3, 4 or 5), got {list(levels)}")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if self.image_size < 64 or self.image_size % 32:
            problems.append(f"image_size must be a multiple of 32 and >= 64, got {self.image_size}")
        if not 0.0 <= self.score_threshold < 1.0:
            problems.append(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if problems:
            raise ValueError("; ".join(problems))

    def grid_size(self, level: int) -> int:
        """Feature-map side at ``level``: every stride-2 stage rounds up (conv pad 1 / pool pad 1)."""
        return math.ceil(self.image_size / 2 ** level)

    def geometry(self) -> list[float]:
        out = [float(self.image_size), float(self.image_size)]
        for level in self.fpn_levels:
            g = float(self.grid_size(level))
            out += [float(level), g, g]
        return out


class _ExtraLevels(ExtraFPNBlock):
    """P6 (and P7) from P5, like torchvision's ``LastLevelP6P7(256, 256)`` (same parameter names).

    Only the levels the model keeps are built, so a model without P7 has no
    ``p7`` weights to load or quantize.
    """

    def __init__(self, channels: int, p6: bool, p7: bool):
        super().__init__()
        if p6:
            self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        if p7:
            self.p7 = nn.Conv2d(channels, channels, 3, 2, 1)
        for module in self.children():
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.emit_p6 = p6

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        if hasattr(self, "p6"):
            p6 = self.p6(p[-1])
            p.append(p6)
            names.append("p6")
            if hasattr(self, "p7"):
                p.append(self.p7(F.relu(p6)))
                names.append("p7")
        return p, names


class RetinaNetTensorPart(nn.Module):
    """uint8/float images in 0..255, NCHW -> (cls_logits, bbox_regression, geometry)."""

    def __init__(self, options: RetinaNetOptions):
        super().__init__()
        self.options = options
        levels = options.fpn_levels
        body_levels = [lv for lv in levels if lv <= 5]
        # Backbone BatchNorm in eval mode (not FrozenBatchNorm2d): export and the
        # pt2e quantizer fold it into the convolutions. Same state-dict keys as MLPerf's.
        trunk = resnext50_32x4d(weights=None, norm_layer=nn.BatchNorm2d)
        extra = _ExtraLevels(256, p6=6 in levels, p7=7 in levels)
        self.backbone = _resnet_fpn_extractor(trunk, trainable_layers=5,
                                              returned_layers=[lv - 1 for lv in body_levels],
                                              extra_blocks=extra)
        self.head = RetinaNetHead(256, ANCHORS_PER_LOCATION, options.num_classes)
        # (x/255 - mean)/std as one multiply-add per channel.
        std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
        self.register_buffer("input_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("input_shift", -mean / std, persistent=False)
        self.register_buffer("geometry", torch.tensor(options.geometry(), dtype=torch.float32), persistent=False)

    def features(self, images: Tensor) -> list[Tensor]:
        x = images.float() * self.input_scale + self.input_shift
        return list(self.backbone(x).values())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.features(images)
        out = self.head(feats)
        return out["cls_logits"], out["bbox_regression"], self.geometry.clone()


# -- weights ------------------------------------------------------------------

def seed_weights(model: RetinaNetTensorPart, seed: int) -> None:
    """Deterministic weights that make a random-weight model *detect* things.

    torchvision's initialisation gives the classification head a prior of 0.01
    (below the 0.05 score threshold) and near-constant outputs, so a seeded
    model would answer nothing. Here the head's convolutions get a larger,
    seeded spread and the class biases sit around the threshold, so scores vary
    with the image and a few hundred anchors per image pass 0.05: the synthetic
    ground truth is then the FP32 model's own, image-dependent detections.
    """
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                std = math.sqrt(2.0 / fan_in)
                if name.endswith("cls_logits"):
                    std = 0.12 / math.sqrt(fan_in)
                elif name.endswith("bbox_reg"):
                    std = 0.03 / math.sqrt(fan_in)
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        # Trained ResNets add small residual branches to the identity path; random ones add
        # branches as large as the identity, which gives heavy-tailed activations that no
        # INT8 range fits (INT8/FP32 output correlation 0.96 instead of 0.998 here).
        for module in model.modules():
            if isinstance(module, Bottleneck):
                module.bn3.weight.fill_(0.2)
        cls_bias = model.head.classification_head.cls_logits.bias
        cls_bias.copy_(-4.0 + 0.5 * torch.randn(cls_bias.shape, generator=gen))


def calibrate_seeded_statistics(model: RetinaNetTensorPart, images: Tensor) -> None:
    """Set BatchNorm running statistics from ``images`` so activations stay O(1) through 50 layers.

    A random-weight ResNeXt with identity BatchNorm grows its activations by
    orders of magnitude; real checkpoints never look like that. One pass in
    train mode over a few seeded images gives every BN realistic statistics.
    """
    was_training = model.training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None          # cumulative average over the pass
    model.train()
    with torch.no_grad():
        model.features(images)
    model.train(was_training)


def _state_dict_from_checkpoint(obj: Any, path: Path) -> dict[str, Tensor]:
    """A plain state dict, MLPerf training's ``{"model": state_dict}`` or ``{"state_dict": ...}``."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a RetinaNet state dict (expected name -> tensor, or {{'model': state_dict}}); "
                        "save one with torch.save(model.state_dict(), path)")
    # Checkpoints saved from a DataParallel/DistributedDataParallel model prefix every key.
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _v1_key(key: str) -> str:
    """torchvision's v1 -> v2 renames (FPN blocks and head towers became Conv2dNormActivation)."""
    for prefix in ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks."):
        if key.startswith(prefix):
            rest = key[len(prefix):].split(".")
            if len(rest) == 2:
                return f"{prefix}{rest[0]}.0.{rest[1]}"
    for prefix in ("head.classification_head.conv.", "head.regression_head.conv."):
        if key.startswith(prefix):
            rest = key[len(prefix):].split(".")
            if len(rest) == 2:
                return f"{prefix}{int(rest[0]) // 2}.0.{rest[1]}"
    return key


def load_checkpoint(model: RetinaNetTensorPart, path: Path) -> None:
    """Load MLPerf's RetinaNet weights (as a state dict) or our own, with one-line errors.

    ``weights_only=True``: a checkpoint a user hands us never runs code. MLPerf's
    published ``resnext50_32x4d_fpn.pth`` is a whole pickled model; convert it once,
    where you trust it: ``torch.save(torch.load(p, weights_only=False).state_dict(), out)``.
    MLPerf training's ``{"model": state_dict}`` files load directly. Old torchvision
    key names (``fpn.inner_blocks.0.weight``, ``head.*.conv.0.weight``) are accepted.
    """
    path = Path(path)
    obj = fileio.load_checkpoint(path, "weights-only RetinaNet checkpoint",
                                 "set CHECKPOINT to a state dict (MLPerf's pickled model: convert it first, "
                                 "docs/retinanet-pytorch-cpu.md), or unset it for seeded weights")
    state = {_v1_key(k): v for k, v in _state_dict_from_checkpoint(obj, path).items()}
    state.pop("anchor_generator.cell_anchors", None)
    own = model.state_dict()
    # nn.BatchNorm2d counts batches; FrozenBatchNorm2d checkpoints (MLPerf's) have no such buffer.
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    where = f"RetinaNet(fpn_levels={list(model.options.fpn_levels)}, num_classes={model.options.num_classes})"
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        k, got, want = bad[0]
        raise UserError(f"{path}: {len(bad)} tensor(s) of the wrong shape for {where}, e.g. {k}: {got} in the "
                        f"checkpoint, {want} in the model; pass a checkpoint of this architecture or fix model_options")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
        raise UserError(f"{path}: checkpoint does not match {where}: {'; '.join(detail)} keys; "
                        "pass the matching checkpoint or fix model_options")
    model.load_state_dict(state, strict=True)


def build_retinanet(options: RetinaNetOptions, checkpoint: Path | None = None) -> RetinaNetTensorPart:
    """The FP32 tensor part in eval mode: checkpoint weights, or seeded ones when ``checkpoint`` is None."""
    with torch.random.fork_rng(devices=[]):     # construction draws random numbers: keep global state untouched
        model = RetinaNetTensorPart(options)
    if checkpoint is not None:
        load_checkpoint(model, Path(checkpoint))
    else:
        seed_weights(model, options.seed)
        calibrate_seeded_statistics(model, seeded_statistics_images(options))
    return model.eval()


def seeded_statistics_images(options: RetinaNetOptions, count: int = 2) -> Tensor:
    """A few deterministic structured images for ``calibrate_seeded_statistics`` (uint8, NCHW)."""
    from mlperf_bnas.data.synthetic import synthetic_image   # PIL only; keeps model import light

    size = min(options.image_size, 320)
    out = []
    for i in range(count):
        img = synthetic_image(options.seed + 7919, i).resize((size, size))
        out.append(torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1))
    return torch.stack(out)


# -- rewrites for quantization ------------------------------------------------

class _UnsharedBottleneck(nn.Module):
    """torchvision's Bottleneck with one ReLU per use (it calls ``self.relu`` three times).

    Each use gets its own quantizer/observer when ops are annotated per module;
    the arithmetic is unchanged (ReLU has no state), so outputs are bit-identical.
    """

    def __init__(self, block: Bottleneck):
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.downsample = block.downsample
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu3(out + identity)


class _PerLevelHead(nn.Module):
    """RetinaNet's head with its own copy of the conv towers for every pyramid level.

    torchvision runs one set of convolutions over all levels; a per-level copy
    (same weights) lets each level have its own activation ranges when quantized.
    """

    def __init__(self, head: RetinaNetHead, num_levels: int):
        super().__init__()
        cls_head, reg_head = head.classification_head, head.regression_head
        self.num_classes = cls_head.num_classes
        self.cls_towers = nn.ModuleList(copy.deepcopy(cls_head.conv) for _ in range(num_levels))
        self.cls_logits = nn.ModuleList(copy.deepcopy(cls_head.cls_logits) for _ in range(num_levels))
        self.reg_towers = nn.ModuleList(copy.deepcopy(reg_head.conv) for _ in range(num_levels))
        self.bbox_reg = nn.ModuleList(copy.deepcopy(reg_head.bbox_reg) for _ in range(num_levels))

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        all_cls, all_reg = [], []
        for i, feat in enumerate(features):
            cls = self.cls_logits[i](self.cls_towers[i](feat))
            n, _, h, w = cls.shape
            all_cls.append(cls.view(n, -1, self.num_classes, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, self.num_classes))
            reg = self.bbox_reg[i](self.reg_towers[i](feat))
            all_reg.append(reg.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return {"cls_logits": torch.cat(all_cls, dim=1), "bbox_regression": torch.cat(all_reg, dim=1)}


def unshare_for_quantization(model: RetinaNetTensorPart) -> RetinaNetTensorPart:
    """A copy of ``model`` with no module used twice (per-use ReLUs, per-level head). Same outputs."""
    out = copy.deepcopy(model)
    body = out.backbone.body
    for layer_name, layer in body.named_children():
        if isinstance(layer, nn.Sequential):
            for idx, block in list(layer.named_children()):
                if isinstance(block, Bottleneck):
                    layer[int(idx)] = _UnsharedBottleneck(block)
    out.head = _PerLevelHead(out.head, len(out.options.fpn_levels))
    return out.eval()


def example_input(options: RetinaNetOptions, batch: int = 1) -> Tensor:
    return torch.zeros((batch, 3, options.image_size, options.image_size), dtype=torch.uint8)




# -- FPN level removal and sub-networks -----------------------------------------------------

def _fpn_key_map(levels: Sequence[int]) -> dict[str, int]:
    """FPN module index of each backbone level the model returns (inner/layer blocks are indexed
    by position among the returned levels 3..5)."""
    return {str(k): lv for k, lv in enumerate(lv for lv in levels if lv <= 5)}


def transfer_levels(state: dict[str, Tensor], from_levels: Sequence[int], to_levels: Sequence[int]) -> dict[str, Tensor]:
    """A state dict of a model with ``from_levels`` as one with ``to_levels`` (a subset): the
    seed's FPN level removal. The FPN blocks of the dropped levels (and P6/P7 convolutions) go;
    the kept ones are renumbered; the head, shared by all levels, stays whole."""
    missing = sorted(set(to_levels) - set(from_levels))
    if missing:
        raise UserError(f"cannot add pyramid levels {missing} to a model with levels {list(from_levels)}")
    src = _fpn_key_map(from_levels)
    dst = {lv: k for k, lv in _fpn_key_map(to_levels).items()}
    out = {}
    for key, value in state.items():
        for prefix in ("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks."):
            if key.startswith(prefix):
                index, _, rest = key[len(prefix):].partition(".")
                level = src.get(index)
                if level is None or level not in dst:
                    break
                out[f"{prefix}{dst[level]}.{rest}"] = value
                break
        else:
            if key.startswith("backbone.fpn.extra_blocks.p"):
                level = int(key[len("backbone.fpn.extra_blocks.p")])
                if level not in to_levels:
                    continue
            out[key] = value
    return out


def _resize_to(model: nn.Module, state: dict[str, Tensor], where: str) -> None:
    """Re-create every convolution and batch norm whose stored weights have other shapes (the
    sub-network's widths), keeping strides, padding and groups."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and f"{name}.weight" in state:
            w = state[f"{name}.weight"]
            if tuple(w.shape) == tuple(module.weight.shape):
                continue
            if w.dim() != 4 or tuple(w.shape[2:]) != tuple(module.weight.shape[2:]) or w.shape[0] % module.groups:
                raise UserError(f"{where}: {name}.weight has shape {tuple(w.shape)}, which no sub-network of "
                                f"{tuple(module.weight.shape)} ({module.groups} groups) has; the checkpoint does not "
                                "fit the RetinaNet architecture")
            new = nn.Conv2d(w.shape[1] * module.groups, w.shape[0], module.kernel_size, module.stride, module.padding,
                            module.dilation, module.groups, module.bias is not None, module.padding_mode)
        elif isinstance(module, nn.BatchNorm2d) and f"{name}.running_mean" in state:
            channels = state[f"{name}.running_mean"].shape[0]
            if channels == module.num_features:
                continue
            new = nn.BatchNorm2d(channels, module.eps, module.momentum, module.affine, module.track_running_stats)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)


def slow_int8_grouped_convs(model: nn.Module) -> list[tuple[str, int]]:
    """Grouped (not depthwise) convolutions whose channels per group oneDNN's INT8 kernels do not
    take (not a multiple of ``INT8_GROUP_CHANNEL_MULTIPLE``): (name, input channels per group)."""
    from mlperf_bnas.quantize.qconfig import INT8_GROUP_CHANNEL_MULTIPLE as q

    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and 1 < m.groups and not m.groups == m.in_channels == m.out_channels:
            if (m.in_channels // m.groups) % q or (m.out_channels // m.groups) % q:
                out.append((name, m.in_channels // m.groups))
    return out


def subnet_model(options: RetinaNetOptions, state: dict[str, Tensor], where: str) -> RetinaNetTensorPart:
    """A RetinaNet sub-network as a ``RetinaNetTensorPart``: skipped Bottlenecks (those without
    weights in ``state``) become identities, every layer takes its stored width."""
    with torch.random.fork_rng(devices=[]):
        model = RetinaNetTensorPart(options)
    body = model.backbone.body
    for layer_name, layer in body.named_children():
        if not isinstance(layer, nn.Sequential):
            continue
        for index, block in list(layer.named_children()):
            prefix = f"backbone.body.{layer_name}.{index}."
            if not any(k.startswith(prefix) for k in state):
                if index == "0":
                    raise UserError(f"{where}: no weights for {prefix[:-1]}, the first block of its stage (it has "
                                    "the stride and the channel change and is never skipped); the checkpoint does not "
                                    "fit the RetinaNet architecture")
                layer[int(index)] = nn.Identity()
    _resize_to(model, state, where)
    own = model.state_dict()
    # The exported graph's constants (input scaling, anchor geometry at the training size) are
    # not weights: this model makes its own for the benchmark's image size.
    weights = {k: v for k, v in state.items() if "." in k or k in own}
    for key in own:
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = own[key]
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise UserError(f"{where}: the weights do not fit RetinaNet(fpn_levels={list(options.fpn_levels)}, "
                        f"num_classes={options.num_classes}): {detail[:300]}") from None
    slow = slow_int8_grouped_convs(model)
    if slow:
        # Measured: the 75 % sub-network (3 and 6 channels per group in the first two stages) ran
        # 0.72x the full model's speed in INT8 instead of ~1.4x (docs/bootstrapnas.md).
        log.warning("%s: %d grouped convolution(s) have a channel count per group that oneDNN's INT8 kernels "
                    "do not take (e.g. %s: %d per group; they need multiples of 4): INT8 runs them with its "
                    "reference kernel, 50-200x slower per MAC. Export a sub-network whose grouped widths keep a "
                    "multiple of 4 channels per group (elasticity.width.channels_per_group_multiple, "
                    "docs/bootstrapnas.md)", where, len(slow), *slow[0])
    return model.eval()


def _levels_of(state: dict[str, Tensor]) -> tuple[int, ...] | None:
    """Pyramid levels a state dict holds, read from its FPN blocks and P6/P7 weights."""
    inner = sorted({int(k.split(".")[3]) for k in state if k.startswith("backbone.fpn.inner_blocks.")})
    if not inner:
        return None
    extra = sorted(int(k[len("backbone.fpn.extra_blocks.p")]) for k in state
                   if k.startswith("backbone.fpn.extra_blocks.p") and k.endswith(".weight"))
    first = 6 - len(inner)    # the returned backbone levels end at 5
    return tuple(range(first, 6)) + tuple(extra)


# -- the models-registry entry ---------------------------------------------------

@MODELS.register("retinanet")
class RetinaNet(ModelEntry):
    """``model: retinanet``: the tensor part as the built module; ``retinanet`` postprocessor."""

    Options = RetinaNetOptions
    postprocess = "retinanet"
    subnet_base = "retinanet"
    calibration_list = "openimages_cal_images_list.txt"   # MLPerf's 500 calibration images (train split)
    nas_benchmark = "retinanet-pytorch-cpu"
    nas_latency_runtime = "pytorch"
    nas_metric = "mAP % vs the full FP32 model"
    # The seed's super-network: elastic depth and width. Its only kernel candidate, the 7x7 stem,
    # stays whole (an elastic kernel there is not what the seed searched).
    nas_elasticity_dims = ("width", "depth")
    # Detection fine-tuning keeps BatchNorm frozen (MLPerf's RetinaNet: FrozenBatchNorm2d); batches of
    # a few 800x800 images give no usable statistics.
    nas_freeze_bn = True
    nas_loss_needs_teacher = True
    nas_datasets = ("synthetic", "openimages", "images")   # retinanet_nas.DATASETS

    @property
    def max_response_bytes(self) -> int:  # type: ignore[override]
        """At most detections_per_image rows of 7 float32 (qsl_idx, box, score, label)."""
        return self.options.detections_per_image * 7 * 4

    def preprocess_spec(self) -> PreprocessSpec:
        # MLPerf: RGB, the whole image resized to 800x800 (no crop), /255 and the ImageNet
        # mean/std inside the model. Cached as uint8 NCHW (the model does the float scaling).
        return PreprocessSpec(size=self.options.image_size, resize=None, interpolation="bilinear",
                              layout="NCHW", dtype="uint8", channel_order="RGB", mean=None, scale=None,
                              normalize="graph")

    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec) -> Tensor:
        if spec.layout != "NCHW" or spec.mean is not None:
            raise UserError(f"RetinaNet expects raw NCHW pixels in its cache, got layout={spec.layout}, "
                            f"mean={spec.mean}; rebuild the cache with the model's own preprocessing spec")
        return torch.from_numpy(np.ascontiguousarray(samples))

    def build(self, checkpoint: Path | None) -> RetinaNetTensorPart:
        return build_retinanet(self.options, checkpoint)

    def example_input(self, batch: int = 1) -> Tensor:
        return example_input(self.options, batch)

    # -- INT8 hooks used by the pytorch builder ---------------------------------
    def prepare_for_quantization(self, module: RetinaNetTensorPart) -> RetinaNetTensorPart:
        return unshare_for_quantization(module)

    def quantization_rewrites(self) -> list[str]:
        return ["Bottleneck: one ReLU per use (torchvision reuses self.relu 3x)",
                "RetinaNet head: one copy of the conv towers per pyramid level (torchvision shares them)",
                "outputs bit-identical to the FP32 model (tests/test_retinanet_model.py)"]

    def quantization_ignored_modules(self) -> list[str]:
        # Pre-processing (the x/255 and mean/std multiply-add) holds no quantizable op and
        # post-processing is outside the program, so both stay float without naming them.
        return []

    # -- sub-networks -----------------------------------------------------------------------
    def subnet_preprocess_spec(self, preprocess: dict[str, Any]) -> PreprocessSpec:
        """A sub-network runs at the benchmark's image size (the detector is fully convolutional;
        the anchors follow the size): the benchmark's own cache form."""
        return self.preprocess_spec()

    def subnet_options(self, subnet: dict[str, Any], where: str) -> RetinaNetOptions:
        """This benchmark's options with the sub-network's own architecture: its pyramid levels and
        class count come from the checkpoint's metadata, the image size and post-processing from here."""
        recorded = dict(subnet.get("model_options") or {})
        levels = recorded.get("fpn_levels") or _levels_of(subnet["state_dict"]) or self.options.fpn_levels
        classes = recorded.get("num_classes", self.options.num_classes)
        try:
            options = dataclasses.replace(self.options, fpn_levels=tuple(levels), num_classes=int(classes))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: model_options {recorded} do not describe a RetinaNet ({exc})") from None
        if tuple(options.fpn_levels) != tuple(self.options.fpn_levels):
            log.info("%s: pyramid levels %s from the sub-network's metadata (config.yaml says %s)", where,
                     list(options.fpn_levels), list(self.options.fpn_levels))
        return options

    def for_subnet(self, subnet: dict[str, Any], where: str) -> "RetinaNet":
        return type(self)(self.subnet_options(subnet, where))

    def build_subnet(self, subnet: dict[str, Any], where: str) -> RetinaNetTensorPart:
        return subnet_model(self.subnet_options(subnet, where), subnet["state_dict"], where)

    # -- BootstrapNAS ------------------------------------------------------------------------
    def _at(self, input_size: Sequence[int], **changes) -> RetinaNetOptions:
        size = int(input_size[-1])
        if int(input_size[-2]) != size:
            raise UserError(f"RetinaNet input_info.sample_size must be square, got {list(input_size)}")
        try:
            return dataclasses.replace(self.options, image_size=size, **changes)
        except ValueError as exc:
            raise UserError(f"RetinaNet at input size {list(input_size)}: {exc}") from None

    def at_input_size(self, input_size: Sequence[int]) -> "RetinaNet":
        return type(self)(self._at(input_size))

    def nas_architecture(self, input_size: Sequence[int], state_dict: dict | None = None) -> RetinaNetTensorPart:
        with torch.random.fork_rng(devices=[]):
            return RetinaNetTensorPart(self._at(input_size)).eval()

    def nas_example_input(self, input_size: Sequence[int]) -> Tensor:
        return torch.zeros(tuple(int(v) for v in input_size), dtype=torch.uint8)

    def nas_pretrained(self, source: str | None, input_size: Sequence[int]) -> RetinaNetTensorPart:
        """The full FP32 RetinaNet (all five pyramid levels): MLPerf's weights (a state dict) or,
        without ``source``, the benchmark's seeded weights (synthetic runs)."""
        options = self._at(input_size, fpn_levels=ALL_LEVELS)
        if source is None:
            print(f"WARNING: no --pretrained weights: the teacher is the SEEDED RANDOM RetinaNet (seed "
                  f"{options.seed}); mAP figures measure agreement with it, not OpenImages accuracy.", file=sys.stderr)
        return build_retinanet(options, Path(source) if source else None)

    def nas_student(self, teacher: RetinaNetTensorPart, input_size: Sequence[int]) -> RetinaNetTensorPart:
        """The teacher with the FPN levels ``model_options.fpn_levels`` leaves out removed (the seed's
        first step); every other weight is the teacher's."""
        student = self.nas_architecture(input_size)
        state = transfer_levels(teacher.state_dict(), teacher.options.fpn_levels, student.options.fpn_levels)
        student.load_state_dict(state, strict=True)
        return student.to(next(teacher.parameters()).device).eval()

    def nas_export_preprocess(self, input_size: Sequence[int]) -> dict[str, Any]:
        return {"input_size": [int(v) for v in input_size[1:]], "image_size": int(input_size[-1]),
                "layout": "NCHW", "dtype": "uint8", "channel_order": "RGB", "resize": "whole image, no crop",
                "normalize": "in the model: x/255, ImageNet mean/std"}

    def nas_latency_spec(self, input_size: Sequence[int]) -> PreprocessSpec:
        return dataclasses.replace(self.preprocess_spec(), size=int(input_size[-1]))

    def nas_train_data(self, dataset: str, data_dir: str | None, batch_size: int, seed: int,
                       input_size: Sequence[int], teacher=None, options: dict | None = None,
                       val_batch_size: int | None = None, workers: int | None = None):
        """Images of ``dataset`` (``retinanet_nas.DATASETS``; ``options``: ``retinanet_nas.DataOptions``;
        ``val_batch_size``, ``workers``: unused, the held-out set is scored image by image in-process):
        a training loader of (images, index) and the held-out ``DetectionSet`` (mAP against
        ``teacher``'s detections)."""
        from mlperf_bnas.models import retinanet_nas as nas

        spec = self.nas_latency_spec(input_size)
        train, held, train_idx, held_idx = nas.split_sources(dataset, data_dir, seed, spec,
                                                             nas.data_options(options))
        return (nas.train_loader(train, train_idx, batch_size),
                nas.DetectionSet(held, held_idx, teacher, self.detection_settings(), self.options.num_classes))

    def nas_search_data(self, dataset_path: Path | None, fraction: float, seed: int, input_size: Sequence[int],
                        training: dict | None = None):
        """BN re-calibration batches from the training images; accuracy on ``fraction`` of the held-out
        images, against the full model (the teacher the super-network was trained with)."""
        from mlperf_bnas.models import retinanet_nas as nas

        training = dict(training or {})
        dataset = training.get("dataset") or "synthetic"
        data_dir = dataset_path or training.get("data_dir")
        spec = self.nas_latency_spec(input_size)
        train, held, train_idx, held_idx = nas.split_sources(dataset, data_dir if dataset != "synthetic" else None,
                                                             seed, spec,
                                                             nas.data_options(training.get("dataset_options")))
        source = (training.get("pretrained") or {}).get("source")
        if source and not Path(source).is_file():
            raise UserError(f"{source}: the teacher's weights (recorded in the super-network) are gone; the search "
                            "measures mAP against the full model: restore the file")
        held_out = nas.DetectionSet(held, held_idx, lambda: self.nas_pretrained(source, input_size),
                                    self.detection_settings(), self.options.num_classes).subset(fraction)
        return nas.bn_batches(train, train_idx), held_out

    def nas_loss(self, student_out, teacher_out, targets, distillation=None, label_smoothing: float = 0.0) -> Tensor:
        """Distillation on both heads from the teacher (no hard labels, so it always distils:
        ``nas_loss_needs_teacher``): class scores at ``distillation.temperature``, plus
        ``distillation.scale`` x the box regression (``retinanet_nas.distillation_loss``);
        no distillation configured: temperature 1, scale 1. ``label_smoothing`` does not apply."""
        from mlperf_bnas.models.retinanet_nas import distillation_loss

        if distillation is not None and distillation.type != "softmax":
            raise UserError(f"knowledge_distillation type {distillation.type!r}: RetinaNet distils its class scores "
                            "(temperature) and boxes (scale); use type 'softmax' or the distillation section")
        temperature = distillation.temperature if distillation is not None else 1.0
        scale = distillation.scale if distillation is not None else 1.0
        return distillation_loss(student_out, teacher_out, temperature, scale, ANCHORS_PER_LOCATION)

    def nas_accuracy(self, model, val_loader) -> float:
        from mlperf_bnas.models.retinanet_nas import detection_map

        return detection_map(model, val_loader)

    def detection_settings(self):
        from mlperf_bnas.models.retinanet_postprocess import DetectionSettings

        o = self.options
        return DetectionSettings(o.score_threshold, o.nms_threshold, o.topk_candidates, o.detections_per_image)

    def make_labeller(self, module: RetinaNetTensorPart, spec: PreprocessSpec, batch: int = 2):
        """labeller(image paths) -> per image, the FP32 model's detections in that image's pixels.

        Each entry is ``{"boxes": [[x, y, w, h], ...], "scores": [...], "labels": [...]}``,
        best first: the synthetic ground truth (see ``data/openimages.py``).
        """
        from PIL import Image

        from mlperf_bnas.models.retinanet_postprocess import detect

        settings = self.detection_settings()

        def label(image_paths):
            out = []
            for start in range(0, len(image_paths), batch):
                samples, sizes = [], []
                for p in image_paths[start:start + batch]:
                    with Image.open(p) as img:
                        sizes.append(img.size)
                        samples.append(spec.apply(img))
                with torch.no_grad():
                    cls, reg, geometry = module(self.to_torch_input(np.stack(samples), spec))
                    dets = detect(cls, reg, geometry.tolist(), settings)
                size = float(self.options.image_size)
                for (w, h), (boxes, scores, labels) in zip(sizes, dets):
                    b = boxes.double()
                    x1, y1 = b[:, 0] * w / size, b[:, 1] * h / size
                    x2, y2 = b[:, 2] * w / size, b[:, 3] * h / size
                    xywh = torch.stack([x1, y1, x2 - x1, y2 - y1], dim=1)
                    out.append({"boxes": xywh.tolist(), "scores": scores.tolist(),
                                "labels": [int(v) for v in labels]})
            return out

        return label
