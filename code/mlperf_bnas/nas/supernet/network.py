"""The weight-sharing super-network, generated automatically from a torchvision-style CNN.

``SuperNetwork.from_model(model, elasticity, example_input)`` traces a copy of the model
with torch.fx, finds its skippable blocks (elastic depth, ``blocks.py``), its channel
groups (elastic width, ``width.py``) and its large convolutions (elastic kernel,
``kernel.py``), and swaps its convolutions, batch norms and linear layers for elastic
twins that share their parameters (``elastic.py``). ``model`` is then the weight-sharing
network: its state dict has the original model's keys (plus OFA kernel transforms), and
its forward runs the active sub-network.

Interface contract with the search (nas/search*.py) -- implemented as agreed, extended by:
  * ``SearchSpace.validate(config)``; genes are indices into ``Gene.choices`` (0 = largest);
  * ``SuperNetwork.space`` reflects the training stage (indicators); ``full_space`` is
    everything the super-network can express; ``set_stage(...)`` is the trainer's;
  * ``bn_adapt`` accepts tensors or ``(inputs, labels)`` pairs as a DataLoader yields them;
  * ``save(path, extra=None)`` keeps ``extra`` (plain data) in ``checkpoint_extra`` after ``load``;
  * ``describe()`` summarises the super-network for ``mlperf-bnas nas info``.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import fx, nn

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import load_checkpoint
from mlperf_bnas.nas.supernet.blocks import Block, blocks_from_names, find_blocks, group_blocks, remove_blocks
from mlperf_bnas.nas.nas_config import ElasticityOptions, parse_elasticity
from mlperf_bnas.nas.supernet.elastic import (
    ELASTIC_TYPES, ElasticBatchNorm2d, make_elastic,
)
from mlperf_bnas.nas.supernet.graph import propagate_shapes, shape_of, trace
from mlperf_bnas.nas.supernet.kernel import find_kernel_convs
from mlperf_bnas.nas.supernet.space import SearchSpace
from mlperf_bnas.nas.supernet.width import WidthGroup, find_width_groups, reorganize_group, width_list

log = logging.getLogger(__name__)

SUPERNET_FORMAT = "mlperf-bnas-supernet"
#: How to get a super-network checkpoint (the end of every error about a missing or bad one).
SUPERNET_HINT = "train one with `mlperf-bnas nas train` (the demo: code/bootstrapnas/run_demo.sh)"


class ElasticNetwork(nn.Module):
    """The weight-sharing network: the traced model's layers, run through the active depth variant.

    Each depth variant (a set of skipped blocks) is a GraphModule over these same layers,
    kept outside the module tree so parameters are registered once.
    """

    def __init__(self, gm: fx.GraphModule):
        super().__init__()
        for name, child in gm.named_children():
            self.add_module(name, child)
        for name, param in gm.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in gm.named_buffers(recurse=False):
            self.register_buffer(name, buf)
        self.__dict__["_variants"] = {}
        self.__dict__["_active_variant"] = None

    def forward(self, *args):
        return self.__dict__["_active_variant"](*args)


@dataclass(frozen=True)
class _Layer:
    """A conv/linear/BN layer of the full graph, with what its cost depends on."""
    node: str
    target: str
    kind: str              # conv, linear, bn, other
    in_full: int
    out_full: int
    groups: int
    kernel: int
    spatial: int           # output positions per sample (H*W for conv)
    in_group: int | None   # elastic width group of the input channels
    out_group: int | None  # elastic width group of the output channels
    depthwise: bool
    fixed_params: int      # parameters of non-sliceable layers


class SuperNetwork:
    def __init__(self, model: ElasticNetwork, graph: fx.Graph, example_input: torch.Tensor,
                 options: ElasticityOptions, blocks: list[Block], width_groups: list[WidthGroup],
                 kernel_sizes: dict[str, tuple[int, ...]], layers: list[_Layer]):
        self.model = model
        self.options = options
        self.blocks = blocks
        self.block_groups = group_blocks(blocks)
        self.width_groups = width_groups
        self.kernel_sizes = kernel_sizes
        self.example_input = example_input
        self._graph = graph
        self._layers = layers
        self.indicators: dict[str, int | None] = {"kernel": None, "width": None, "depth": None}
        self.active_dims: tuple[str, ...] = tuple(options.available_elasticity_dims)
        self.reorganized = False
        self.checkpoint_extra: dict = {}
        self._active: dict = {}
        self.activate(self.full_space.maximum())

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, nas_config: dict | ElasticityOptions,
                   example_input: torch.Tensor) -> "SuperNetwork":
        options = nas_config if isinstance(nas_config, ElasticityOptions) else parse_elasticity(nas_config)
        dims = options.available_elasticity_dims
        model = copy.deepcopy(model)
        for param in model.parameters():  # the whole super-network trains, even if the source was frozen
            param.requires_grad_(True)
        device = next(model.parameters()).device
        example_input = example_input[:1].detach().to(device)
        gm = trace(model)
        propagate_shapes(gm, example_input)
        ignored = ScopeMatcher(options.ignored_scopes)
        blocks: list[Block] = []
        if "depth" in dims:
            d = options.depth
            if d.skipped_blocks is not None:
                blocks = blocks_from_names(gm, [list(b) for b in d.skipped_blocks], "elasticity.depth.skipped_blocks")
            else:
                blocks = find_blocks(gm, d.min_block_size, d.max_block_size, d.hw_fused_ops)
        groups: list[WidthGroup] = []
        if "width" in dims:
            for group in find_width_groups(gm):
                if any(ignored(p) for p in group.producers):
                    continue  # ignored_scopes: an ignored layer keeps all its output channels
                group.widths = width_list(group.channels, options.width, group.blocks)
                if len(group.widths) > 1:
                    groups.append(group)
        kernels = find_kernel_convs(gm, options.kernel.max_num_kernels) if "kernel" in dims else {}
        kernels = {name: sizes for name, sizes in kernels.items() if not ignored(name)}
        layers = _describe_layers(gm, groups)
        for node in gm.graph.nodes:
            if node.op == "call_module" and not isinstance(gm.get_submodule(node.target), ELASTIC_TYPES):
                elastic = make_elastic(gm.get_submodule(node.target))
                if elastic is not None:
                    _set_submodule(gm, node.target, elastic)
        for group in groups:
            if group.blocks > 1:  # blocked channels (grouped convolutions): every reader and writer knows
                for name in group.producers:
                    gm.get_submodule(name).out_blocks = group.blocks
                for name in group.consumers:
                    module = gm.get_submodule(name)
                    if not (isinstance(module, nn.Conv2d) and module.groups > 1):  # grouped: by its groups
                        module.in_blocks = group.blocks
                for name in group.passthrough:
                    module = gm.get_submodule(name)
                    if isinstance(module, nn.Conv2d):
                        module.out_blocks = group.blocks
                    else:
                        module.blocks = group.blocks
        for name, sizes in kernels.items():
            gm.get_submodule(name).enable_kernel(sizes)
        log.info("super-network: %d skippable blocks in %d groups, %d width groups, %d kernel-elastic convs",
                 len(blocks), len(group_blocks(blocks)), len(groups), len(kernels))
        return cls(ElasticNetwork(gm), gm.graph, example_input, options, blocks, groups, kernels, layers)

    # -- the search space -----------------------------------------------------------------
    def _space(self, limited: bool) -> SearchSpace:
        def allowed(dim: str, n: int) -> int:
            if not limited:
                return n
            if dim not in self.active_dims:
                return 1 if dim != "depth" else 0
            ind = self.indicators[dim]
            return n if ind is None else min(n, ind)
        return SearchSpace(
            [sizes[:allowed("kernel", len(sizes))] for sizes in self.kernel_sizes.values()],
            [g.widths[:allowed("width", len(g.widths))] for g in self.width_groups],
            self.block_groups,
            [allowed("depth", len(g)) for g in self.block_groups],
            kernel_names=list(self.kernel_sizes),
        )

    @property
    def space(self) -> SearchSpace:
        """The sub-networks of the current training stage (all of them after training)."""
        return self._space(limited=True)

    @property
    def full_space(self) -> SearchSpace:
        return self._space(limited=False)

    def set_stage(self, active_dims: Iterable[str], indicators: dict[str, int | None]) -> None:
        self.active_dims = tuple(d for d in active_dims if d in self.options.available_elasticity_dims)
        self.indicators = {"kernel": None, "width": None, "depth": None, **indicators}

    # -- activation -----------------------------------------------------------------------
    def activate(self, config: dict) -> None:
        cfg = self.full_space.validate(config)
        for (name, sizes), k in zip(self.kernel_sizes.items(), cfg["kernel"]):
            self.model.get_submodule(name).active_kernel = None if k == sizes[0] else k
        for group, w in zip(self.width_groups, cfg["width"]):
            for name in group.producers:
                self.model.get_submodule(name).active_out = None if w == group.channels else w
        skipped = tuple(cfg["depth"])
        variants = self.model.__dict__["_variants"]
        if skipped not in variants:
            variants[skipped] = fx.GraphModule(self.model, self._depth_graph(skipped))
        self.model.__dict__["_active_variant"] = variants[skipped]
        self._active = cfg

    def _depth_graph(self, skipped: Iterable[int]) -> fx.Graph:
        graph = copy.deepcopy(self._graph)
        remove_blocks(graph, [self.blocks[b] for b in skipped])
        return graph

    def active_config(self) -> dict:
        return copy.deepcopy(self._active)

    # -- cost -----------------------------------------------------------------------------
    def _active_layers(self, config: dict | None):
        cfg = self.full_space.validate(config) if config is not None else self._active
        dead = {n for b in cfg["depth"] for n in self.blocks[b].nodes}
        widths = cfg["width"]
        kernels = dict(zip(self.kernel_sizes, cfg["kernel"]))
        for layer in self._layers:
            if layer.node in dead:
                continue
            in_c = widths[layer.in_group] if layer.in_group is not None else layer.in_full
            out_c = widths[layer.out_group] if layer.out_group is not None else layer.out_full
            groups = layer.groups
            if layer.depthwise:
                groups = in_c
            yield layer, in_c, out_c, groups, kernels.get(layer.target, layer.kernel)

    def macs(self, config: dict | None = None) -> int:
        """Multiply-accumulates of conv and linear layers for one sample."""
        total = 0
        for layer, in_c, out_c, groups, k in self._active_layers(config):
            if layer.kind == "conv":
                total += out_c * (in_c // groups) * k * k * layer.spatial
            elif layer.kind == "linear":
                total += out_c * in_c * layer.spatial
        return int(total)

    def params(self, config: dict | None = None) -> int:
        """Parameters of the extracted sub-network."""
        total, seen = 0, set()
        for layer, in_c, out_c, groups, k in self._active_layers(config):
            if layer.target in seen:
                continue
            seen.add(layer.target)
            module = self.model.get_submodule(layer.target)
            bias = out_c if getattr(module, "bias", None) is not None else 0
            if layer.kind == "conv":
                total += out_c * (in_c // groups) * k * k + bias
            elif layer.kind == "linear":
                total += out_c * in_c + bias
            elif layer.kind == "bn":
                total += 2 * out_c if isinstance(module, nn.BatchNorm2d) and module.affine else 0
            else:
                total += layer.fixed_params
        return int(total + sum(p.numel() for p in self.model.parameters(recurse=False)))

    # -- BN re-calibration ----------------------------------------------------------------
    @torch.no_grad()
    def bn_adapt(self, batches: Iterable, num_samples: int) -> None:
        """Re-estimate the active sub-network's BN statistics from ``num_samples`` inputs.

        Only the active channels' statistics change; ``batches`` yields input tensors or
        ``(inputs, labels)`` pairs.
        """
        if num_samples < 1:
            raise UserError(f"num_bn_adaptation_samples must be >= 1, got {num_samples}")
        bns = [m for m in self.model.modules() if isinstance(m, ElasticBatchNorm2d)]
        if not bns:
            return
        was_training = self.model.training
        device = self.example_input.device
        self.model.eval()
        for bn in bns:
            bn.adapting = True
        seen = 0
        try:
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                x = x[:num_samples - seen].to(device)
                self.model(x)
                seen += x.shape[0]
                if seen >= num_samples:
                    break
        finally:
            for bn in bns:
                bn.finish_adaptation()
            self.model.train(was_training)
        if seen == 0:
            raise UserError("BN adaptation got no batches; give a non-empty data loader")

    # -- width re-organisation ------------------------------------------------------------
    def reorganize_weights(self) -> None:
        """Sort every width group's channels by filter importance (NNCF's reorg_weights)."""
        for group in self.width_groups:
            reorganize_group(self.model, group, self.options.width.filter_importance)
        self.reorganized = True

    # -- export ---------------------------------------------------------------------------
    def extract_subnet(self, config: dict) -> fx.GraphModule:
        """A plain model (torch layers holding copies of the sliced weights, skipped blocks
        removed) computing what the super-network computes with ``config`` active."""
        previous = self.active_config()
        was_training = self.model.training
        try:
            self.activate(config)
            self.model.eval()
            with torch.no_grad():
                self.model(self.example_input)  # records each layer's input width
            skipped = self._active["depth"]
            subnet = copy.deepcopy(fx.GraphModule(self.model, self._depth_graph(skipped),
                                                  class_name="BootstrapNASSubnet"))
            for node in subnet.graph.nodes:
                if node.op == "call_module":
                    module = subnet.get_submodule(node.target)
                    if isinstance(module, ELASTIC_TYPES):
                        _set_submodule(subnet, node.target, module.to_plain())
        finally:
            self.activate(previous)
            self.model.train(was_training)
        subnet.subnet_structure = {"removed_blocks": [[self.blocks[b].entry, self.blocks[b].exit] for b in skipped]}
        subnet.subnet_config = self.full_space.validate(config)
        subnet.input_size = [int(v) for v in self.example_input.shape]
        return subnet.eval()

    # -- persistence ----------------------------------------------------------------------
    def elasticity_state(self) -> dict:
        return {
            "indicators": dict(self.indicators),
            "active_dims": list(self.active_dims),
            "widths": [list(g.widths) for g in self.width_groups],
            "blocks": [[b.entry, b.exit] for b in self.blocks],
            "kernel_sizes": {k: list(v) for k, v in self.kernel_sizes.items()},
            "reorganized": self.reorganized,
        }

    def save(self, path, extra: dict | None = None) -> None:
        path = Path(path)
        payload = {
            "format": SUPERNET_FORMAT,
            "elasticity": self.options.to_dict(),
            "example_input_shape": list(self.example_input.shape),
            "elasticity_state": self.elasticity_state(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "extra": extra or {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path, model_builder: Callable[[], nn.Module]) -> "SuperNetwork":
        path = Path(path)
        ckpt = load_checkpoint(path, "super-network checkpoint", SUPERNET_HINT)
        if not isinstance(ckpt, dict) or ckpt.get("format") != SUPERNET_FORMAT:
            raise UserError(f"{path}: not a BootstrapNAS super-network checkpoint (format {SUPERNET_FORMAT!r})")
        model = model_builder()
        device = next(model.parameters()).device
        elasticity = copy.deepcopy(ckpt["elasticity"])
        width = elasticity.get("width")
        if isinstance(width, dict) and "channels_per_group_multiple" not in width:
            # Saved before the option existed: its width lists kept any whole number of channels per
            # group (1). Same structure and widths as trained; sub-networks with a grouped width that is
            # not a multiple of 4 per group run oneDNN's slow reference INT8 kernel.
            width["channels_per_group_multiple"] = 1
            log.info("%s: saved without width.channels_per_group_multiple: its widths keep any number of "
                     "channels per group (grouped widths not a multiple of 4 per group are slow in INT8)", path)
        supernet = cls.from_model(model, elasticity, torch.zeros(ckpt["example_input_shape"], device=device))
        state = ckpt["elasticity_state"]
        if (state["blocks"] != [[b.entry, b.exit] for b in supernet.blocks]
                or state["kernel_sizes"] != {k: list(v) for k, v in supernet.kernel_sizes.items()}
                or len(state["widths"]) != len(supernet.width_groups)):
            raise UserError(f"{path}: the checkpoint's super-network structure does not match the model it is "
                            "loaded into; load it with the model it was trained from")
        for group, widths in zip(supernet.width_groups, state["widths"]):
            group.widths = [int(w) for w in widths]
        missing, unexpected = supernet.model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise UserError(f"{path}: weights do not match the model (missing {missing[:3]}, unexpected "
                            f"{unexpected[:3]}); load it with the model it was trained from")
        supernet.set_stage(state["active_dims"], state["indicators"])
        supernet.reorganized = bool(state["reorganized"])
        supernet.checkpoint_extra = ckpt.get("extra", {})
        supernet.activate(supernet.space.maximum())
        return supernet

    def describe(self) -> dict:
        space = self.space
        return {
            "blocks": [{"entry": b.entry, "exit": b.exit, "ops": b.num_ops} for b in self.blocks],
            "block_groups": [list(g) for g in self.block_groups],
            "width_groups": [{"channels": g.channels, "widths": list(g.widths), "blocks": g.blocks,
                              "producers": list(g.producers)} for g in self.width_groups],
            "kernel_convs": {k: list(v) for k, v in self.kernel_sizes.items()},
            "indicators": dict(self.indicators), "active_dims": list(self.active_dims),
            "space_size": space.size(),
            "macs": {"maximum": self.macs(space.maximum()), "minimum": self.macs(space.minimum())},
            "params": {"maximum": self.params(space.maximum()), "minimum": self.params(space.minimum())},
        }


class ScopeMatcher:
    """``elasticity.ignored_scopes`` (NNCF's syntax): a layer name matches an entry that names it
    or one of its parent modules, as a glob (``backbone.fpn``, ``head.*.conv``) or, prefixed with
    ``{re}``, a regular expression matched against the whole name."""

    def __init__(self, patterns) -> None:
        self.globs = [p for p in patterns or () if not p.startswith("{re}")]
        self.regexes = [re.compile(p[len("{re}"):]) for p in patterns or () if p.startswith("{re}")]

    def __call__(self, name: str) -> bool:
        parts = name.split(".")
        prefixes = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
        return (any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in self.globs)
                or any(r.fullmatch(name) for r in self.regexes))


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, name, module)


def _describe_layers(gm: fx.GraphModule, groups: list[WidthGroup]) -> list[_Layer]:
    produced = {p: g for g, group in enumerate(groups) for p in group.producers}
    passed = {p: g for g, group in enumerate(groups) for p in group.passthrough}
    consumed = {c: g for g, group in enumerate(groups) for c in group.consumers}
    layers = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = gm.get_submodule(node.target)
        shape = shape_of(node)
        if isinstance(m, nn.Conv2d):
            spatial = shape[2] * shape[3] if shape is not None and len(shape) == 4 else 0
            depthwise = node.target in passed
            g = passed.get(node.target)
            layers.append(_Layer(node.name, node.target, "conv", m.in_channels, m.out_channels, m.groups,
                                 m.kernel_size[0] if m.kernel_size[0] == m.kernel_size[1] else 0, spatial,
                                 g if depthwise else consumed.get(node.target),
                                 g if depthwise else produced.get(node.target), depthwise, 0))
            if m.kernel_size[0] != m.kernel_size[1]:
                raise UserError(f"layer {node.target}: non-square kernels are not supported by the MAC counter")
        elif isinstance(m, nn.Linear):
            spatial = 1
            if shape is not None:
                for d in shape[1:-1]:
                    spatial *= d
            layers.append(_Layer(node.name, node.target, "linear", m.in_features, m.out_features, 1, 1, spatial,
                                 consumed.get(node.target), produced.get(node.target), False, 0))
        elif node.target in passed:
            channels = groups[passed[node.target]].channels
            layers.append(_Layer(node.name, node.target, "bn", channels, channels, 1, 1, 0, passed[node.target],
                                 passed[node.target], False, 0))
        else:
            n_params = sum(p.numel() for p in m.parameters())
            layers.append(_Layer(node.name, node.target, "other", 0, 0, 1, 1, 0, None, None, False, n_params))
    return layers
