"""Elastic width: channel groups read off the traced graph, width lists, weight re-organisation.

Every tensor's channel axis belongs to a *channel space*. A convolution (groups=1) or
linear layer starts a new space; batch norms, activations, pooling and depthwise
convolutions pass theirs through; an elementwise add/mul of two tensors merges their
spaces (so the residual stream of a ResNet stage is one group). A space touched by an
operation we cannot slice (a grouped convolution, a concat, an indexing, the network
input or output...) is fixed. Each remaining space with at least one producer is an
elastic width group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.supernet.graph import (
    CHANNEL_PRESERVING_FUNCTIONS, CHANNEL_PRESERVING_METHODS, CHANNEL_PRESERVING_MODULES, ELEMENTWISE_BINARY,
    ELEMENTWISE_BINARY_METHODS, flat_args, shape_of,
)

FILTER_IMPORTANCE = ("L1", "L2", "geometric_median")


@dataclass
class WidthGroup:
    channels: int                                         # full width
    producers: list[str] = field(default_factory=list)    # conv/linear modules writing the channels (dim 0)
    passthrough: list[str] = field(default_factory=list)  # BNs and depthwise convs (dim 0)
    consumers: list[str] = field(default_factory=list)    # conv/linear modules reading them (dim 1)
    widths: list[int] = field(default_factory=list)       # descending, widths[0] == channels


class _Spaces:
    """Union-find over channel spaces."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: set[int] = set()

    def new(self, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        if fixed:
            self.fixed.add(len(self.parent) - 1)
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.fixed:
                self.fixed.add(ra)
        return ra

    def fix(self, s: int) -> None:
        self.fixed.add(self.find(s))

    def is_fixed(self, s: int) -> bool:
        return self.find(s) in self.fixed


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d)


def find_width_groups(gm: fx.GraphModule) -> list[WidthGroup]:
    """Elastic width groups of ``gm`` (shapes must have been propagated), in network order."""
    spaces = _Spaces()
    space: dict[fx.Node, int] = {}
    producers: dict[int, list[str]] = {}
    passthrough: dict[int, list[str]] = {}
    consumers: dict[int, list[str]] = {}
    channels: dict[int, int] = {}
    calls: dict[str, int] = {}

    def channel_count(node: fx.Node) -> int | None:
        shape = shape_of(node)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def new_space(node: fx.Node, fixed: bool = False) -> int:
        s = spaces.new(fixed or channel_count(node) is None)
        channels[s] = channel_count(node) or 0
        space[node] = s
        return s

    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes if a in space]
        if node.op in ("placeholder", "get_attr"):
            new_space(node, fixed=True)
            continue
        if node.op == "output":
            for a in flat_args(node.args):
                if a in space:
                    spaces.fix(space[a])
            continue
        if shape_of(node) is None:
            continue  # sizes, shapes, python values: no channels
        first = inputs[0] if inputs else None
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        stateful = module is not None and any(True for _ in [*module.parameters(), *module.buffers()])
        if stateful and calls[node.target] > 1:
            for a in inputs:  # a layer applied twice: its slices would have to agree, keep it whole
                spaces.fix(space[a])
            new_space(node, fixed=True)
        elif module is not None and _is_conv(module):
            if module.groups == 1:
                consumers.setdefault(space[first], []).append(node.target)
                s = new_space(node)
                producers.setdefault(s, []).append(node.target)
            elif module.groups == module.in_channels == module.out_channels:
                space[node] = space[first]
                passthrough.setdefault(space[first], []).append(node.target)
            else:
                spaces.fix(space[first])
                new_space(node, fixed=True)
        elif isinstance(module, nn.Linear):
            in_shape = shape_of(first)
            if in_shape is not None and len(in_shape) == 2:
                consumers.setdefault(space[first], []).append(node.target)
                s = new_space(node)
                producers.setdefault(s, []).append(node.target)
            else:
                spaces.fix(space[first])
                new_space(node, fixed=True)
        elif isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            space[node] = space[first]
            passthrough.setdefault(space[first], []).append(node.target)
        elif (isinstance(module, CHANNEL_PRESERVING_MODULES)
              or (node.op == "call_function" and node.target in CHANNEL_PRESERVING_FUNCTIONS)
              or (node.op == "call_method" and node.target in CHANNEL_PRESERVING_METHODS)) and first is not None:
            if module is not None and any(True for _ in module.parameters()):
                spaces.fix(space[first])  # e.g. PReLU with per-channel slopes
            space[node] = space[first]
            for a in inputs[1:]:
                spaces.fix(space[a])
        elif ((node.op == "call_function" and node.target in ELEMENTWISE_BINARY)
              or (node.op == "call_method" and node.target in ELEMENTWISE_BINARY_METHODS)) and inputs:
            out_c = channel_count(node)
            merged = None
            for a in inputs:
                if channel_count(a) == out_c and len(shape_of(a)) == len(shape_of(node)):
                    merged = space[a] if merged is None else spaces.union(merged, space[a])
                else:
                    spaces.fix(space[a])  # broadcast along channels: cannot slice
            if merged is None:
                new_space(node, fixed=True)
            else:
                space[node] = merged
        elif _is_flatten_of_pooled(node, first, module):
            space[node] = space[first]
        else:
            for a in inputs:
                spaces.fix(space[a])
            new_space(node, fixed=True)

    groups: dict[int, WidthGroup] = {}
    order: list[int] = []
    for s in range(len(spaces.parent)):
        root = spaces.find(s)
        if spaces.is_fixed(root):
            continue
        if root not in groups:
            groups[root] = WidthGroup(channels=channels[root])
        g = groups[root]
        g.producers += producers.get(s, [])
        g.passthrough += passthrough.get(s, [])
        g.consumers += consumers.get(s, [])
    for s in range(len(spaces.parent)):
        root = spaces.find(s)
        if root in groups and groups[root].producers and root not in order:
            order.append(root)
    return [groups[r] for r in order]


def _is_flatten_of_pooled(node: fx.Node, first: fx.Node | None, module: nn.Module | None) -> bool:
    """torch.flatten(x, 1) / x.view(n, -1) of an (N, C, 1, 1) tensor keeps the channel axis."""
    if first is None:
        return False
    in_shape, out_shape = shape_of(first), shape_of(node)
    if in_shape is None or out_shape is None or len(in_shape) < 2 or len(out_shape) != 2:
        return False
    is_flatten = ((node.op == "call_function" and node.target is torch.flatten)
                  or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
                  or isinstance(module, nn.Flatten))
    return is_flatten and all(d == 1 for d in in_shape[2:]) and out_shape[1] == in_shape[1]


def width_list(channels: int, options) -> list[int]:
    """Widths of a group of ``channels`` channels, largest first: NNCF's ElasticWidthHandler
    ``_generate_width_list``.

    With ``width_multipliers``: ``int(channels * m)`` rounded down to a multiple of 8, at least
    ``min_width``, duplicates dropped (the full width is added when no multiplier is 1). Else:
    ``channels, channels - width_step, ...`` while >= ``min_width``. Either way at most
    ``max_num_widths`` values (-1: no limit), and a group no wider than ``min_width`` keeps
    its full width only.
    """
    if channels <= options.min_width:
        return [channels]
    out: list[int] = []
    if not options.width_multipliers:
        w = channels
        while w >= options.min_width and len(out) != options.max_num_widths:
            out.append(w)
            w -= options.width_step
        return out
    multipliers = sorted(options.width_multipliers, reverse=True)
    if multipliers[0] < 1:
        out.append(channels)
    for m in multipliers:
        if len(out) == options.max_num_widths:
            break
        w = int(channels * m)
        w = max(w - w % 8, options.min_width)
        if w not in out:
            out.append(w)
    return out


def filter_importance(weight: torch.Tensor, method: str) -> torch.Tensor:
    """Importance of each output filter of ``weight`` (dim 0)."""
    flat = weight.detach().reshape(weight.shape[0], -1).float()
    if method == "L1":
        return flat.abs().sum(dim=1)
    if method == "L2":
        return flat.norm(dim=1)
    if method == "geometric_median":
        # Filters far from all others carry the least redundant information.
        return torch.cdist(flat, flat).sum(dim=1)
    raise UserError(f"filter_importance {method!r} is not one of {', '.join(FILTER_IMPORTANCE)}")


@torch.no_grad()
def reorganize_group(gm: nn.Module, group: WidthGroup, method: str) -> torch.Tensor:
    """Permute the group's channels by descending importance so narrow slices keep the best.

    Producers, batch norms, depthwise convolutions and consumers are permuted together,
    so the full-width network computes exactly the same function. Returns the permutation.
    """
    importance = sum(filter_importance(gm.get_submodule(p).weight, method) for p in group.producers)
    perm = torch.argsort(importance, descending=True, stable=True)

    def permute(t: torch.Tensor | None, dim: int) -> None:
        if t is not None:
            t.copy_(t.index_select(dim, perm.to(t.device)))

    for name in group.producers + group.passthrough:
        m = gm.get_submodule(name)
        permute(m.weight, 0)
        permute(m.bias, 0)
        for buf in ("running_mean", "running_var"):
            permute(getattr(m, buf, None), 0)
    for name in group.consumers:
        permute(gm.get_submodule(name).weight, 1)
    return perm
