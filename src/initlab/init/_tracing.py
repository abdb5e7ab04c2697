"""What a model's graph says about its layers: the activation after each one, and its residual branches.

torch.fx tracing is the precise source (it sees functional activations and the real data flow); where a model
does not trace, the order of ``named_modules()`` is the fallback. Every answer carries its source so reports
can say how sure they are.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import fx, nn

from initlab.init.activations import FUNCTIONS, METHODS, Activation, activation, is_activation_module

__all__ = ["WEIGHT_LAYERS", "Found", "find_activations", "residual_blocks", "residual_branches", "trace"]

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.RNNBase,
)
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
_ADDS = {operator.add, operator.iadd, torch.add}


@dataclass(frozen=True)
class Found:
    """The activation that follows a layer (``None`` for none: a linear output) and how it was found."""

    activation: Activation | None
    source: str  # "fx", "module order", "override", "recurrent cell", "none"


def trace(model: nn.Module) -> fx.GraphModule | None:
    """An fx trace of the model, or ``None`` where it does not trace (data-dependent control flow, …)."""
    try:
        return fx.symbolic_trace(model)
    except Exception:  # fx raises many types (TraceError, TypeError, NotImplementedError …)
        return None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def _node_activation(node: fx.Node, modules: dict[str, nn.Module]) -> Activation | None:
    if node.op == "call_module":
        module = modules[str(node.target)]
        if is_activation_module(module):
            act = activation(module)
            return None if act.name == "linear" else act
    elif node.op == "call_function" and node.target in FUNCTIONS:
        slope = node.args[1] if node.target is torch.nn.functional.leaky_relu and len(node.args) > 1 else None
        slope = node.kwargs.get("negative_slope", slope)
        return activation(FUNCTIONS[node.target], float(slope) if isinstance(slope, int | float) else None)
    elif node.op == "call_method" and node.target in METHODS:
        return activation(METHODS[str(node.target)])
    return None


def _is_weight_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules[str(node.target)], WEIGHT_LAYERS)


def _follow(start: fx.Node, modules: dict[str, nn.Module]) -> Activation | None:
    """Breadth-first through the users of ``start`` until an activation, a weight layer or the output."""
    frontier, seen = list(start.users), set()
    while frontier:
        node = frontier.pop(0)
        if node in seen or node.op == "output" or _is_weight_node(node, modules):
            continue
        seen.add(node)
        act = _node_activation(node, modules)
        if act is not None:
            return act
        frontier.extend(node.users)
    return None


def find_activations(model: nn.Module, graph: fx.GraphModule | None = None) -> dict[str, Found]:
    """For every weight layer, the activation that its output feeds (by fx, else by module order)."""
    graph = graph if graph is not None else trace(model)
    found: dict[str, Found] = {}
    for name, module in weight_layers(model):
        if isinstance(module, nn.RNNBase):
            nonlinearity = getattr(module, "nonlinearity", None)
            found[name] = Found(activation(nonlinearity) if nonlinearity else None, "recurrent cell")
    if graph is not None:
        modules = dict(graph.named_modules())
        for node in graph.graph.nodes:
            if _is_weight_node(node, modules) and str(node.target) not in found:
                act = _follow(node, modules)
                found[str(node.target)] = Found(act, "fx" if act is not None else "none")
        return found
    return {**_by_module_order(model), **found}


def _by_module_order(model: nn.Module) -> dict[str, Found]:
    found: dict[str, Found] = {}
    pending: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            for p in pending:
                found[p] = Found(None, "none")
            pending = [name]
        elif pending and is_activation_module(module) and activation(module).name != "linear":
            for p in pending:
                found[p] = Found(activation(module), "module order")
            pending = []
    for p in pending:
        found[p] = Found(None, "none")
    return found


def _ancestors(node: fx.Node) -> set[fx.Node]:
    out: set[fx.Node] = set()
    stack = [a for a in node.all_input_nodes]
    while stack:
        n = stack.pop()
        if n not in out:
            out.add(n)
            stack.extend(n.all_input_nodes)
    return out


def _param_modules(nodes: Iterable[fx.Node], modules: dict[str, nn.Module]) -> list[str]:
    names = [str(n.target) for n in nodes if n.op == "call_module"]
    return [n for n in names if any(True for _ in modules[n].parameters(recurse=False))]


def residual_branches(graph: fx.GraphModule) -> list[list[str]]:
    """Each residual branch's parametric modules, in execution order: ``out = skip + branch(x)``."""
    return [layers for *_, layers in residual_blocks(graph)]


def residual_blocks(graph: fx.GraphModule) -> list[tuple[fx.Node, fx.Node, fx.Node, list[str]]]:
    """Each residual addition as ``(add, skip input, branch input, the branch's parametric modules)``.

    The branch is the input of an addition that the other input flows into; where both come from a common
    ancestor (a projection shortcut), the branch is the one with more parametric layers. A sum of embedding
    lookups (token + position) is not a residual block.
    """
    modules = dict(graph.named_modules())
    order = {n: i for i, n in enumerate(graph.graph.nodes)}
    blocks: list[tuple[fx.Node, fx.Node, fx.Node, list[str]]] = []
    for node in graph.graph.nodes:
        is_add = (node.op == "call_function" and node.target in _ADDS) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        if not is_add or len(node.all_input_nodes) != 2:
            continue
        a, b = node.all_input_nodes
        anc_a, anc_b = _ancestors(a) | {a}, _ancestors(b) | {b}
        common = anc_a & anc_b
        own_a = sorted(anc_a - common, key=order.__getitem__)
        own_b = sorted(anc_b - common, key=order.__getitem__)
        layers_a, layers_b = _param_modules(own_a, modules), _param_modules(own_b, modules)
        if all(isinstance(modules[n], nn.Embedding | nn.EmbeddingBag) for n in layers_a + layers_b):
            continue  # token + position embeddings (or no layers at all): a sum of lookups, not a residual block
        branch_first = len(layers_a) >= len(layers_b)
        skip, branch = (b, a) if branch_first else (a, b)
        blocks.append((node, skip, branch, layers_a if branch_first else layers_b))
    return blocks
