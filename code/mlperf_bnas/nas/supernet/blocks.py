"""Elastic depth: find the blocks a sub-network may skip, as NNCF's BootstrapNAS did.

A block is a contiguous run of operations (in the traced graph's topological order)
with one entry (a tensor that feeds only the block) and one exit (the tensor leaving it), no edge
leaving it except from the exit, an exit shape equal to the entry shape, and between
``min_block_size`` and ``max_block_size`` operations. Skipping a block replaces its
exit by its entry. Blocks that are the concatenation of two smaller blocks are dropped,
then blocks nested in others, then blocks overlapping an earlier one. Consecutive
blocks (one's exit is the next one's entry) form a group; progressive shrinking skips
a group's trailing blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import fx

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.supernet.graph import is_fusable_follower, is_operation, shape_of


@dataclass(frozen=True)
class Block:
    entry: str            # name of the node whose output enters the block
    exit: str             # name of the block's last node
    nodes: tuple[str, ...]  # the block's nodes (entry excluded)

    @property
    def num_ops(self) -> int:
        return len(self.nodes)


def find_blocks(gm: fx.GraphModule, min_block_size: int = 5, max_block_size: int = 50,
                hw_fused_ops: bool = True) -> list[Block]:
    """Skippable blocks of ``gm`` (shapes must have been propagated), in network order."""
    nodes = [n for n in gm.graph.nodes]
    position = {n: k for k, n in enumerate(nodes)}

    def splits_fusion(node: fx.Node) -> bool:
        # A boundary right before a BN/activation that only this node feeds would split a
        # pattern the inference engine fuses (conv+bn+relu, add+relu).
        return hw_fused_ops and len(node.users) == 1 and is_fusable_follower(gm, next(iter(node.users)))

    candidates: list[tuple[int, int]] = []
    for i, entry in enumerate(nodes):
        if entry.op == "output" or shape_of(entry) is None or splits_fusion(entry):
            continue
        ops = 0
        # Furthest position a node of the block (or its entry) is used at: nothing may
        # leave the block except through its exit, and the entry feeds only the block.
        furthest_use = max(position[u] for u in entry.users) if entry.users else i
        for j in range(i + 1, len(nodes)):
            node = nodes[j]
            if node.op in ("output", "placeholder"):
                break
            # Every input must come from inside the range, the entry, or a constant.
            if any(position[a] < i and a.op != "get_attr" for a in node.all_input_nodes):
                break
            if is_operation(node):
                ops += 1
            if ops > max_block_size:
                break
            if (ops >= min_block_size and furthest_use <= j and shape_of(node) == shape_of(entry)
                    and not splits_fusion(node)):
                candidates.append((i, j))
            furthest_use = max(furthest_use, *(position[u] for u in node.users)) if node.users else furthest_use
    found = set(candidates)
    # Drop concatenations of two smaller blocks.
    by_start: dict[int, list[int]] = {}
    for i, j in candidates:
        by_start.setdefault(i, []).append(j)
    atomic = [(i, j) for i, j in candidates
              if not any((k, j) in found for k in by_start.get(i, []) if k < j)]
    # Drop blocks nested in another (keep the outer one), then overlapping ones (keep the earlier).
    outer = [(i, j) for i, j in atomic
             if not any(a <= i and j <= b and (a, b) != (i, j) for a, b in atomic)]
    chosen: list[tuple[int, int]] = []
    for i, j in sorted(outer):
        if chosen and i < chosen[-1][1]:
            continue
        chosen.append((i, j))
    return [Block(nodes[i].name, nodes[j].name, tuple(n.name for n in nodes[i + 1:j + 1])) for i, j in chosen]


_SCOPE_PART = re.compile(r"^[^\[\]/]+\[(?P<attr>[^\[\]/]+)\]$")
_OP_PART = re.compile(r"^(?P<op>.+)_(?P<index>\d+)$")


def _norm_op(name: str) -> str:
    """``__iadd__`` / ``add`` / ``add_`` -> ``add``: the operation, whatever way it was called."""
    name = name.strip("_")
    if len(name) > 1 and name[0] in "ir" and name[1:] in ("add", "mul", "sub", "truediv", "matmul"):
        name = name[1:]
    return name


def _fx_op_name(node: fx.Node) -> str:
    target = node.target
    return _norm_op(target if isinstance(target, str) else getattr(target, "__name__", str(target)))


def _innermost_module(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    last = list(stack.values())[-1]
    return str(last[0] if isinstance(last, tuple) else last)


def nncf_node_name(gm: fx.GraphModule, name: str) -> str | None:
    """The traced node NNCF called ``name`` (``ResNet/Sequential[layer1]/Bottleneck[1]/ReLU[relu]/relu__2``),
    or None when ``name`` is not in NNCF's form or nothing matches.

    NNCF names a node by its module scope (``Class[attribute]`` per level), the operation and
    the call count of that operation in that scope. The scope's attributes are the module's
    qualified name here; a module NNCF wrapped (``NNCFConv2d[conv1]``) is one leaf call, so the
    count is the module's call count; an operation a module's forward calls itself
    (``Bottleneck[0]/__iadd___0``) is matched by operation name within that module.
    """
    parts = name.split("/")
    op_match = _OP_PART.match(parts[-1]) if len(parts) >= 2 else None
    if op_match is None:
        return None
    attrs = []
    for part in parts[1:-1]:
        m = _SCOPE_PART.match(part)
        if m is None:
            return None
        attrs.append(m["attr"])
    path, index, op = ".".join(attrs), int(op_match["index"]), _norm_op(op_match["op"])
    leaf = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    if leaf:
        return leaf[index].name if index < len(leaf) else None
    calls = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method")
             and _innermost_module(n) == path and _fx_op_name(n) == op]
    return calls[index].name if index < len(calls) else None


def blocks_from_names(gm: fx.GraphModule, pairs: list, where: str) -> list[Block]:
    """Blocks given as ``[[start_node, end_node], ...]`` (the config's ``skipped_blocks``), checked.

    As in NNCF, the start node runs and the nodes after it up to and including the end node are
    skipped: the end node's users read the start node's output. Names are traced (torch.fx)
    node names or NNCF's graph node names (``nncf_node_name``).
    """
    nodes = list(gm.graph.nodes)
    position = {n.name: k for k, n in enumerate(nodes)}
    blocks = []
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise UserError(f"{where}: each skipped block is [start_node, end_node]; got {pair!r}")
        names = []
        for given in (str(p) for p in pair):
            name = given if given in position else nncf_node_name(gm, given)
            if name is None:
                raise UserError(f"{where}: unknown node {given!r}: neither a traced node name nor an NNCF node "
                                "name of this model; list the names with `mlperf-bnas nas info --config CFG --nodes`")
            names.append(name)
        entry, exit_ = names
        i, j = position[entry], position[exit_]
        inside = nodes[i + 1:j + 1]
        inside_set = set(inside) | {nodes[i]}
        ok = i < j and shape_of(nodes[i]) == shape_of(nodes[j]) and shape_of(nodes[i]) is not None
        ok = ok and all(a in inside_set or a.op == "get_attr" for n in inside for a in n.all_input_nodes)
        ok = ok and all(u in inside_set for n in [nodes[i], *inside[:-1]] for u in n.users)
        if not ok:
            raise UserError(f"{where}: skipped block [{pair[0]!r}, {pair[1]!r}] is not skippable (it needs one entry, "
                            "one exit, and equal entry and exit shapes)")
        blocks.append(Block(entry, exit_, tuple(n.name for n in inside)))
    blocks.sort(key=lambda b: position[b.entry])
    for a, b in zip(blocks, blocks[1:]):
        if position[b.entry] < position[a.exit]:
            raise UserError(f"{where}: skipped blocks [{a.entry}, {a.exit}] and [{b.entry}, {b.exit}] overlap")
    return blocks


def group_blocks(blocks: list[Block]) -> list[list[int]]:
    """Indices of consecutive blocks (one's exit is the next one's entry), grouped."""
    groups: list[list[int]] = []
    for k, block in enumerate(blocks):
        if groups and blocks[groups[-1][-1]].exit == block.entry:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def remove_blocks(graph: fx.Graph, blocks: list[Block]) -> None:
    """Skip ``blocks`` in ``graph`` (in place): the exit's users read the entry instead."""
    by_name = {n.name: n for n in graph.nodes}
    alias: dict[str, str] = {}  # exit of a removed block -> what replaced it
    for block in blocks:
        entry = alias.get(block.entry, block.entry)
        by_name[block.exit].replace_all_uses_with(by_name[entry])
        alias[block.exit] = entry
        for name in reversed(block.nodes):
            graph.erase_node(by_name[name])
    graph.lint()
