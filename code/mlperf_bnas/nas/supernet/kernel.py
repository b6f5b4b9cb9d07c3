"""Elastic kernel (OFA): which convolutions get smaller kernel sizes, and which sizes.

A square, odd convolution larger than 3x3 with zero padding gets the sizes K, K-2, ...
down to 3 (at most ``max_num_kernels`` of them), keeping only sizes whose centre crop the
padding can absorb (padding - (K-k)/2 >= 0), so the output geometry never changes.
"""

from __future__ import annotations

from torch import fx, nn


def find_kernel_convs(gm: fx.GraphModule, max_num_kernels: int = -1) -> dict[str, tuple[int, ...]]:
    """{conv module name: kernel sizes (descending)} for every kernel-elastic convolution."""
    found: dict[str, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target in found:
            continue
        conv = gm.get_submodule(node.target)
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        kh, kw = conv.kernel_size
        if kh != kw or kh <= 3 or kh % 2 == 0 or conv.padding[0] != conv.padding[1]:
            continue
        sizes = [k for k in range(kh, 2, -2) if conv.padding[0] - (kh - k) // 2 >= 0]
        if max_num_kernels and max_num_kernels > 0:
            sizes = sizes[:max_num_kernels]
        if len(sizes) > 1:
            found[node.target] = tuple(sizes)
    return found
