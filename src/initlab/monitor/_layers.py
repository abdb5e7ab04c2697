"""Which layers of a model the monitor watches, and the tensor a layer's output carries (shared by the monitor's
hooks and the snapshots)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from initlab.init._tracing import WEIGHT_LAYERS, find_activations, trace
from initlab.init.activations import activation, is_activation_module
from initlab.monitor.probes import PreActivation

__all__ = ["first_tensor", "inner_module", "watched_layers"]


def first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, list | tuple) else ()
    return next((t for t in items if isinstance(t, Tensor)), None)


def watched_layers(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], dict[str, Any]]:
    """Activation modules where the model has them; else its weight layers with the activation they feed."""
    inner = inner_module(model)
    acts = [(n, m) for n, m in inner.named_modules() if is_activation_module(m) and activation(m).name != "linear"]
    if acts:
        return acts, {n: activation(m) for n, m in acts}
    # No activation modules (functional activations): watch the weight layers' outputs, the pre-activations.
    found = find_activations(inner, trace(inner))
    layers = [(n, m) for n, m in inner.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    return layers, {n: PreActivation(found[n].activation) if n in found else None for n, _ in layers}


def inner_module(model: nn.Module) -> nn.Module:
    """The model itself, or the module a DistributedDataParallel wrapper holds (names are relative to it)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
