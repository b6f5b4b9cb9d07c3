"""Elastic width: channel groups read off the traced graph, width lists, weight re-organisation.

Every tensor's channel axis belongs to a *channel space*. A convolution or linear layer
starts a new space; batch norms, activations, pooling and depthwise convolutions pass
theirs through; an elementwise add/mul of two tensors merges their spaces (so the residual
stream of a ResNet stage is one group). A space touched by an operation we cannot slice (a
concat, an indexing, the network input or output...) is fixed. Each remaining space with at
least one producer is an elastic width group.

* A grouped convolution (``groups=G``, not depthwise: ResNeXt's 32 groups) reads and writes
  spaces laid out in ``G`` contiguous blocks, one per group. Such a space is *blocked*: its
  widths are multiples of ``G`` and a width ``w`` keeps the first ``w/G`` channels of every
  block, so the convolution keeps its ``G`` groups, each narrower. Spaces merged with a
  differently blocked space are fixed.
* A layer applied several times (RetinaNet's head runs the same convolutions on every
  pyramid level) reads one space and writes one space over all its uses: the spaces its
  uses read are merged, so the width stays consistent across the uses.
"""

from __future__ import annotations

import math
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
    #: Channel blocks (a grouped convolution's groups): widths are multiples of it and a width
    #: keeps the first width/blocks channels of each block. 1: a width keeps the first channels.
    blocks: int = 1


class _Spaces:
    """Union-find over channel spaces, with each space's block count (grouped convolutions)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: set[int] = set()
        self.blocks: dict[int, int] = {}

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
            self.constrain(ra, self.blocks.pop(rb, 1))
        return ra

    def constrain(self, s: int, blocks: int) -> None:
        """Space ``s`` is laid out in ``blocks`` blocks; a space blocked two ways is fixed."""
        if blocks <= 1:
            return
        root = self.find(s)
        current = self.blocks.get(root, 1)
        if current == 1:
            self.blocks[root] = blocks
        elif current != blocks:
            self.fix(root)

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
    # A layer applied several times: the space its first use reads and the one it writes.
    shared_in: dict[str, int] = {}
    shared_out: dict[str, int] = {}
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
        if stateful and calls[node.target] > 1 and node.target in shared_in:
            # A later use of a layer applied several times: same spaces as its first use.
            spaces.union(shared_in[node.target], space[first])
            for a in inputs[1:]:
                spaces.fix(space[a])
            space[node] = shared_out[node.target]
            continue
        if stateful and calls[node.target] > 1 and not _shareable(module, first):
            for a in inputs:  # a layer applied twice whose slices we cannot keep in step: keep it whole
                spaces.fix(space[a])
            new_space(node, fixed=True)
        elif module is not None and _is_conv(module):
            if module.groups == module.in_channels == module.out_channels and module.groups > 1:
                space[node] = space[first]
                passthrough.setdefault(space[first], []).append(node.target)
            else:
                consumers.setdefault(space[first], []).append(node.target)
                spaces.constrain(space[first], module.groups)
                s = new_space(node)
                spaces.constrain(s, module.groups)
                producers.setdefault(s, []).append(node.target)
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
        if stateful and calls[node.target] > 1 and node in space and first is not None:
            shared_in[node.target] = space[first]
            shared_out[node.target] = space[node]

    groups: dict[int, WidthGroup] = {}
    order: list[int] = []
    for s in range(len(spaces.parent)):
        root = spaces.find(s)
        if spaces.is_fixed(root):
            continue
        if root not in groups:
            groups[root] = WidthGroup(channels=channels[root], blocks=spaces.blocks.get(root, 1))
        g = groups[root]
        g.producers += producers.get(s, [])
        g.passthrough += passthrough.get(s, [])
        g.consumers += consumers.get(s, [])
    for s in range(len(spaces.parent)):
        root = spaces.find(s)
        if root in groups and groups[root].producers and root not in order:
            order.append(root)
    return [groups[r] for r in order]


def _shareable(module: nn.Module, first: fx.Node | None) -> bool:
    """Layers whose repeated uses can share one slice: convolutions, 2-D linear layers, batch norms."""
    if first is None:
        return False
    if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)) or _is_conv(module):
        return True
    in_shape = shape_of(first)
    return isinstance(module, nn.Linear) and in_shape is not None and len(in_shape) == 2


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


def width_list(channels: int, options, blocks: int = 1) -> list[int]:
    """Widths of a group of ``channels`` channels, largest first: NNCF's ElasticWidthHandler
    ``_generate_width_list``.

    With ``width_multipliers``: ``int(channels * m)`` rounded down to a multiple of 8, at least
    ``min_width``, duplicates dropped (the full width is added when no multiplier is 1). Else:
    ``channels, channels - width_step, ...`` while >= ``min_width``. Either way at most
    ``max_num_widths`` values (-1: no limit), and a group no wider than ``min_width`` keeps
    its full width only.

    A blocked group (grouped convolution of ``blocks`` groups; NNCF has none) keeps whole
    channels per group, and a multiple of ``options.channels_per_group_multiple`` (``q``, 4 by
    default: oneDNN's INT8 kernels block a group's channels by 4 and run anything else with
    their reference kernel, ~100x slower): multiples of lcm(8, blocks * q) with multipliers,
    multiples of ``blocks * q`` with ``width_step``. A group narrower than that keeps its full
    width only (ResNeXt's first stage, 4 channels per group).
    """
    if channels <= options.min_width:
        return [channels]
    out: list[int] = []
    per_group = options.channels_per_group_multiple if blocks > 1 else 1
    if not options.width_multipliers:
        w = channels
        while w >= options.min_width and len(out) != options.max_num_widths:
            if blocks <= 1 or w % (blocks * per_group) == 0 or w == channels:
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
        if blocks <= 1:
            w = max(w - w % 8, options.min_width)
        else:
            quantum = math.lcm(8, blocks * per_group)
            if w != channels:      # the full width stays whatever its channels per group
                w = max(w - w % quantum, -(-options.min_width // quantum) * quantum)
            if w > channels:
                continue
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
    blocks = group.blocks
    size = group.channels // blocks
    # In a blocked group channels move only within their block (a grouped convolution's group).
    local = torch.argsort(importance.reshape(blocks, size), dim=1, descending=True, stable=True)
    perm = (local + size * torch.arange(blocks, device=local.device).unsqueeze(1)).reshape(-1)

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
        module = gm.get_submodule(name)
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            # A grouped convolution reads block g through its g-th group of filters: permute the
            # input channels of each group's filters by that block's own order.
            w = module.weight
            grouped = w.reshape(blocks, w.shape[0] // blocks, size, *w.shape[2:])
            index = local.to(w.device).reshape(blocks, 1, size, *([1] * (w.dim() - 2))).expand_as(grouped)
            w.copy_(torch.gather(grouped, 2, index).reshape(w.shape))
        else:
            permute(module.weight, 1)
    return perm
