"""The search space of a super-network: one integer gene per elastic choice.

A *sub-network configuration* (``SubnetConfig``) is a JSON-serialisable dict::

    {"kernel": [7, 5, ...],   # one kernel size per kernel-elastic convolution
     "width":  [64, 48, ...], # one channel count per elastic width group
     "depth":  [3, 7]}        # indices of the skipped blocks (sorted)

A genome ``x`` holds one integer per :class:`Gene`: the *index* into that gene's
``choices`` (so every gene is an integer in ``[0, len(choices))``, which is what
pymoo's integer sampling and mutation want). Index 0 is always the largest choice.

Depth genes count the blocks skipped at the *end* of each block group (NNCF's
progressive shrinking skips a group's trailing blocks first), so the genome for a
group of five blocks with ``depth_indicator=2`` has the choices ``(0, 1, 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mlperf_bnas.errors import UserError


@dataclass(frozen=True)
class Gene:
    name: str        # "kernel/<conv>", "width/<group index>" or "depth/<group index>"
    choices: tuple   # values; the gene is an index into this tuple, 0 = largest


class SearchSpace:
    """Maps integer genomes to sub-network configurations and back.

    ``kernel_choices[i]``: kernel sizes of kernel-elastic conv ``i`` (largest first);
    ``width_choices[g]``: widths of width group ``g`` (largest first);
    ``depth_groups[g]``: block indices of depth group ``g`` (in network order) and
    ``depth_limits[g]``: how many of its trailing blocks may be skipped.
    """

    def __init__(self, kernel_choices: Sequence[Sequence[int]], width_choices: Sequence[Sequence[int]],
                 depth_groups: Sequence[Sequence[int]], depth_limits: Sequence[int],
                 kernel_names: Sequence[str] | None = None):
        self.kernel_choices = [tuple(int(k) for k in c) for c in kernel_choices]
        self.width_choices = [tuple(int(w) for w in c) for c in width_choices]
        self.depth_groups = [tuple(int(b) for b in g) for g in depth_groups]
        self.depth_limits = [int(n) for n in depth_limits]
        if len(self.depth_limits) != len(self.depth_groups):
            raise ValueError("one depth limit per depth group")
        names = list(kernel_names) if kernel_names is not None else [str(i) for i in range(len(self.kernel_choices))]
        self.genes: list[Gene] = (
            [Gene(f"kernel/{n}", c) for n, c in zip(names, self.kernel_choices)]
            + [Gene(f"width/{g}", c) for g, c in enumerate(self.width_choices)]
            + [Gene(f"depth/{g}", tuple(range(limit + 1))) for g, limit in enumerate(self.depth_limits)]
        )

    # -- genome <-> config -------------------------------------------------------------
    def decode(self, x: Sequence[int]) -> dict:
        if len(x) != len(self.genes):
            raise UserError(f"genome has {len(x)} genes, the search space has {len(self.genes)}")
        values = []
        for gene, index in zip(self.genes, x):
            i = int(index)
            if not 0 <= i < len(gene.choices):
                raise UserError(f"gene {gene.name}: index {i} outside 0..{len(gene.choices) - 1}")
            values.append(gene.choices[i])
        nk, nw = len(self.kernel_choices), len(self.width_choices)
        kernel = [int(v) for v in values[:nk]]
        width = [int(v) for v in values[nk:nk + nw]]
        depth: list[int] = []
        for group, skipped in zip(self.depth_groups, values[nk + nw:]):
            depth.extend(group[len(group) - int(skipped):])
        return {"kernel": kernel, "width": width, "depth": sorted(depth)}

    def encode(self, config: dict) -> list[int]:
        config = self.validate(config)
        x = [gene.choices.index(v) for gene, v in
             zip(self.genes, config["kernel"] + config["width"])]
        skipped = set(config["depth"])
        for group in self.depth_groups:
            x.append(sum(1 for b in group if b in skipped))
        return x

    def validate(self, config: dict) -> dict:
        """Check that ``config`` lies in this space; returns it normalised (sorted depth)."""
        if not isinstance(config, dict) or set(config) - {"kernel", "width", "depth"}:
            raise UserError(f"sub-network config must be a dict with keys kernel, width, depth; got {config!r}")
        kernel = [int(k) for k in config.get("kernel", [c[0] for c in self.kernel_choices])]
        width = [int(w) for w in config.get("width", [c[0] for c in self.width_choices])]
        depth = sorted(int(b) for b in config.get("depth", []))
        if len(kernel) != len(self.kernel_choices):
            raise UserError(f"sub-network config: 'kernel' has {len(kernel)} entries, expected {len(self.kernel_choices)}")
        if len(width) != len(self.width_choices):
            raise UserError(f"sub-network config: 'width' has {len(width)} entries, expected {len(self.width_choices)}")
        for i, (k, choices) in enumerate(zip(kernel, self.kernel_choices)):
            if k not in choices:
                raise UserError(f"sub-network config: kernel[{i}]={k} not in the search space {list(choices)}")
        for g, (w, choices) in enumerate(zip(width, self.width_choices)):
            if w not in choices:
                raise UserError(f"sub-network config: width[{g}]={w} not in the search space {list(choices)}")
        skipped = set(depth)
        known = {b for group in self.depth_groups for b in group}
        if skipped - known:
            raise UserError(f"sub-network config: depth lists unknown block(s) {sorted(skipped - known)}")
        for g, (group, limit) in enumerate(zip(self.depth_groups, self.depth_limits)):
            n = sum(1 for b in group if b in skipped)
            if n > limit or any(b not in skipped for b in group[len(group) - n:]):
                raise UserError(f"sub-network config: depth group {g} (blocks {list(group)}) may skip at most its "
                                f"last {limit} block(s); config skips {sorted(skipped & set(group))}")
        return {"kernel": kernel, "width": width, "depth": depth}

    # -- special points ----------------------------------------------------------------
    def maximum(self) -> dict:
        return self.decode([0] * len(self.genes))

    def minimum(self) -> dict:
        return self.decode([len(g.choices) - 1 for g in self.genes])

    def sample(self, rng: np.random.Generator) -> dict:
        return self.decode([int(rng.integers(len(g.choices))) for g in self.genes])

    def size(self) -> int:
        """Number of distinct sub-networks."""
        n = 1
        for g in self.genes:
            n *= len(g.choices)
        return n

    def describe(self) -> dict:
        return {"genes": [{"name": g.name, "choices": list(g.choices)} for g in self.genes],
                "depth_groups": [list(g) for g in self.depth_groups], "size": self.size()}
