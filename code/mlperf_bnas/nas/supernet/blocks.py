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


def blocks_from_names(gm: fx.GraphModule, pairs: list, where: str) -> list[Block]:
    """Blocks given as ``[[entry_node, exit_node], ...]`` (the config's ``skipped_blocks``), checked."""
    nodes = list(gm.graph.nodes)
    position = {n.name: k for k, n in enumerate(nodes)}
    blocks = []
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise UserError(f"{where}: each skipped block is [entry_node, exit_node]; got {pair!r}")
        entry, exit_ = (str(p) for p in pair)
        for name in (entry, exit_):
            if name not in position:
                raise UserError(f"{where}: unknown node {name!r} in skipped_blocks; see `mlperf-bnas nas info` "
                                "for the traced node names")
        i, j = position[entry], position[exit_]
        inside = nodes[i + 1:j + 1]
        inside_set = set(inside) | {nodes[i]}
        ok = i < j and shape_of(nodes[i]) == shape_of(nodes[j]) and shape_of(nodes[i]) is not None
        ok = ok and all(a in inside_set or a.op == "get_attr" for n in inside for a in n.all_input_nodes)
        ok = ok and all(u in inside_set for n in [nodes[i], *inside[:-1]] for u in n.users)
        if not ok:
            raise UserError(f"{where}: skipped block [{entry!r}, {exit_!r}] is not skippable (it needs one entry, "
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
