"""The structure layer's fallback where no forward pass can run (no example input could be read off the model):
weight layers by module type, the activation after each from torch.fx (where the model traces: it sees functional
activations and the real data flow) or else from the order of ``named_modules()``, residual branches from the fx
graph. Every answer carries its source so reports can say how sure they are. Only :mod:`initlab.init.structure`
asks for it (:func:`structure_of`; ``tests/test_layers.py`` checks that no other module walks a model for its
weight layers). It sits above :mod:`initlab.init.structure` and :mod:`initlab.init.fans`, which it uses.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from initlab.init.activations import FUNCTIONS, METHODS, Activation, activation, is_activation_module
from initlab.init.fans import fans
from initlab.init.structure import Layer, Residual, Structure, Use, capture_or_why, unwrap

__all__ = ["NORM_LAYERS", "Found", "from_modules", "structure_of"]

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
    """The activation that follows a layer (``None`` for none: a linear output), how it was found, and the module
    that applies it (empty for a function)."""

    activation: Activation | None
    source: str  # "fx", "module order", "override", "recurrent cell", "none"
    module: str = ""


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


def _follow(start: fx.Node, modules: dict[str, nn.Module]) -> Found:
    """Breadth-first through the users of ``start`` until an activation, a weight layer or the output."""
    frontier, seen = list(start.users), set()
    while frontier:
        node = frontier.pop(0)
        if node in seen or node.op == "output" or _is_weight_node(node, modules):
            continue
        seen.add(node)
        act = _node_activation(node, modules)
        if act is not None:
            return Found(act, "fx", str(node.target) if node.op == "call_module" else "")
        frontier.extend(node.users)
    return Found(None, "none")


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
                found[str(node.target)] = _follow(node, modules)
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
                found[p] = Found(activation(module), "module order", name)
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


def structure_of(model: nn.Module, example: Any = None) -> Structure:
    """The model's structure: :func:`capture` on ``example`` (or an input read off the model); where no forward
    pass can run, :func:`from_modules` with the reason in :attr:`Structure.why`."""
    captured = capture_or_why(model, example)
    return captured if isinstance(captured, Structure) else from_modules(unwrap(model), captured)


def from_modules(model: nn.Module, why: str) -> Structure:
    """The structure without a forward pass: torch's weight layers by module type (fans by torch's rule for the
    module), the activation after each from torch.fx where the model traces, else from module order; residual
    branches from the fx graph (unknown where it does not trace)."""
    graph = trace(model)
    found = find_activations(model, graph)
    modules = dict(model.named_modules())
    layers: dict[str, Layer] = {}
    vectors: dict[str, str] = {}
    for owner, module in weight_layers(model):
        f = found.get(owner, Found(None, "none"))
        for pname, p in module.named_parameters(recurse=False):
            name = f"{owner}.{pname}" if owner else pname
            if p.ndim < 2:
                vectors[name] = "bias"
                continue
            op = _MODULE_OPS.get(type(module).__name__, _module_op(module))
            used = fans(p, layer=module)
            use = Use(op, used.fan_in, used.fan_out, stride=tuple(getattr(module, "stride", ())), module=owner,
                      order=len(layers))  # fmt: skip
            role = {"embedding": "embedding", "recurrent": "recurrent"}.get(op, "hidden")
            layers[name] = Layer(name, tuple(p.shape), [use], f.activation, f.source, f.module,
                                 frozen=not p.requires_grad, role=role)  # fmt: skip
    residuals = []
    for i, (add, _, _, branch) in enumerate(residual_blocks(graph) if graph is not None else []):
        weights = tuple(n for m in branch for n in layers if n.rsplit(".", 1)[0] == m)
        stack = list(add.meta.get("nn_module_stack", {}))
        if weights:
            residuals.append(Residual(weights, i, stack[-1] if stack else ""))
    order = list(layers)
    output = order[-1] if order and layers[order[-1]].use.op not in ("embedding", "recurrent") else None
    if output is not None:
        layers[output].role = "output"
    norms = [n for n, m in modules.items() if isinstance(m, NORM_LAYERS)]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    return Structure(layers, vectors, residuals, {}, frozen, output, norms, why=why, residuals_known=graph is not None)


_MODULE_OPS = {"Embedding": "embedding", "EmbeddingBag": "embedding", "Bilinear": "bilinear"}


def _module_op(module: nn.Module) -> str:
    if isinstance(module, nn.RNNBase):
        return "recurrent"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    return "conv" if isinstance(module, nn.modules.conv._ConvNd) else "linear"
