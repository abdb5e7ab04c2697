"""Snapshots of a model on one batch: per-layer histograms of activations and back-propagated gradients (as in
Glorot & Bengio 2010, Figs. 6–7), and how many hidden units are still distinct (symmetry breaking).

Taken at initialization and at the end of a run; the report draws them. Parameters, their gradients and the
model's mode are left as they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from initlab.init._walk import structure_of
from initlab.monitor._layers import first_tensor, watched_layers

__all__ = ["distinct_units", "layer_histograms"]


def layer_histograms(model: nn.Module, x: Tensor, y: Tensor, bins: int = 40) -> list[dict[str, Any]]:
    """For every watched layer (the activations the monitor watches), histograms of its output values and of
    the loss gradient with respect to them, on the batch ``(x, y)``; one bin range per kind, shared by all layers
    so that layers can be compared. Rows: layer, kind ("activation" or "gradient"), edges, counts."""
    layers, _ = watched_layers(model)
    outputs: dict[str, Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            tensor = first_tensor(output)
            if tensor is None or not tensor.requires_grad:
                return None
            if tensor is output:  # a copy of our own, safe from later in-place operations
                tensor = tensor.clone()
            tensor.retain_grad()
            outputs[name] = tensor
            return tensor if tensor is not output and isinstance(output, Tensor) else None

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in layers]
    was_training, grads = model.training, [p.grad for p in model.parameters()]
    try:
        model.eval()  # BatchNorm in eval mode: the snapshot must not move the running statistics
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
    rows: list[dict[str, Any]] = []
    for kind in ("activation", "gradient"):
        raw = {n: (t.detach() if kind == "activation" else t.grad) for n, t in outputs.items()}
        values = {n: v.float().flatten() for n, v in raw.items() if v is not None and v.numel()}
        finite = [v[torch.isfinite(v)] for v in values.values()]
        reach = max((float(v.abs().max()) for v in finite if v.numel()), default=0.0) or 1.0
        for name, value in values.items():
            counts = torch.histc(value[torch.isfinite(value)], bins=bins, min=-reach, max=reach)
            edges = torch.linspace(-reach, reach, bins + 1)
            rows.append({"layer": name, "kind": kind, "edges": edges.tolist(), "counts": counts.tolist()})
    return rows


@torch.no_grad()
def distinct_units(model: nn.Module) -> float:
    """The smallest fraction of distinct units over the hidden weight layers: 1.0 when initialization broke
    the symmetry, 1/width when every unit of some layer has the same incoming weights (zero/constant init).

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> distinct_units(net)
    1.0
    >>> _ = nn.init.zeros_(net[2].weight), nn.init.zeros_(net[2].bias)
    >>> distinct_units(net)
    0.125
    """
    structure = structure_of(model)
    params = dict(model.named_parameters())
    hidden = [layer for name, layer in structure.layers.items() if name in params and layer.role != "output"]
    fractions = []
    for layer in hidden[:-1] if structure.output is None else hidden:  # the output's units are the classes
        weight = params[layer.name].detach()
        rows = weight.T if layer.use.op in ("addmm", "matmul") else weight.flatten(1)  # (in, out): a unit a column
        bias = params.get(f"{structure.owner(layer.name)}.bias" if "." in layer.name else "bias")
        if bias is not None and layer.name.endswith("weight") and bias.shape == rows.shape[:1]:
            rows = torch.cat([rows, bias.detach()[:, None]], dim=1)
        scale = rows.abs().max().clamp_min(1e-30)
        distinct = torch.unique(torch.round(rows / scale, decimals=6), dim=0).shape[0]
        fractions.append(distinct / rows.shape[0])
    return min(fractions, default=1.0)
