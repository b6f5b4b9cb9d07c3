"""Tracing a torchvision-style CNN with torch.fx and classifying its operations.

Every structural decision of the super-network (skippable blocks, channel groups,
kernel-elastic convolutions) is read off this graph, so no model needs a hand-written
super-network class.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.ops.misc import FrozenBatchNorm2d

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.supernet.elastic import ELASTIC_TYPES

# Layers that keep the channel axis (and its meaning) of their input.
CHANNEL_PRESERVING_MODULES = (
    nn.BatchNorm2d, FrozenBatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
    nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample,
)
CHANNEL_PRESERVING_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.sigmoid, F.sigmoid,
    torch.tanh, F.leaky_relu, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d, F.interpolate, torch.nn.functional.batch_norm,
}
CHANNEL_PRESERVING_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach"}
ELEMENTWISE_BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, torch.add,
                      torch.mul, torch.sub}
ELEMENTWISE_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub"}
# Operations an inference engine fuses into the preceding op (conv+bn+relu, add+relu):
# NNCF's hw_fused_ops rule keeps block boundaries from splitting such a pair.
FUSABLE_FOLLOWERS = (nn.BatchNorm2d, FrozenBatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU,
                     nn.LeakyReLU, nn.Sigmoid)
FUSABLE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.silu, F.hardswish, F.gelu, torch.sigmoid}


class NasTracer(fx.Tracer):
    """fx tracer that keeps torchvision's FrozenBatchNorm2d and our elastic layers as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (FrozenBatchNorm2d,) + ELASTIC_TYPES):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = NasTracer().trace(model)
    except (TypeError, RuntimeError, NotImplementedError, AttributeError) as exc:
        raise UserError(f"cannot trace {type(model).__name__} with torch.fx ({exc}); BootstrapNAS needs a "
                        "model without data-dependent control flow") from None
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def propagate_shapes(gm: fx.GraphModule, example_input: torch.Tensor) -> None:
    """Record every node's output shape in ``node.meta['tensor_meta']``."""
    was_training = gm.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example_input)
    gm.train(was_training)


def shape_of(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)


def is_operation(node: fx.Node) -> bool:
    """Nodes that compute something (as opposed to inputs, outputs, constants)."""
    return node.op in ("call_module", "call_function", "call_method")


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def is_fusable_follower(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(module_of(gm, node), FUSABLE_FOLLOWERS)
    if node.op == "call_function":
        return node.target in FUSABLE_FUNCTIONS
    if node.op == "call_method":
        return node.target in ("relu", "relu_", "sigmoid")
    return False


def flat_args(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, out.append)
    return out
