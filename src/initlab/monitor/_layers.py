"""Which layers of a model the monitor watches, and the tensor a layer's output carries (shared by the monitor's
hooks and the snapshots)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from initlab.init._keras_model import is_keras_model, keras_activation, keras_kernels, keras_layers
from initlab.init._walk import structure_of
from initlab.init.activations import activation, is_activation_module
from initlab.init.structure import Structure
from initlab.monitor.probes import PreActivation

__all__ = ["first_tensor", "inner_module", "model_structure", "named_parameters", "watched_layers", "weight_names"]


def first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, list | tuple) else ()
    return next((t for t in items if isinstance(t, Tensor)), None)


def model_structure(model: nn.Module) -> Structure | None:
    """The structure of the model a monitor watches (inside a DDP wrapper); None for a Keras model."""
    inner = inner_module(model)
    return None if is_keras_model(inner) else structure_of(inner)


def watched_layers(model: nn.Module, structure: Structure | None = None) -> tuple[list[tuple[str, nn.Module]],
                                                                                dict[str, Any]]:  # fmt: skip
    """Every activation the model applies (see :func:`_from_structure`); a Keras model (torch backend: its layers
    are modules) is watched at every layer that applies an activation. ``structure``: the model's, if known."""
    inner = inner_module(model)
    if is_keras_model(inner):
        keras_acts = [(layer.name, layer, keras_activation(layer)) for layer in keras_layers(inner)]
        watched = [(name, layer, act) for name, layer, act in keras_acts if act is not None]
        return [(n, m) for n, m, _ in watched], {n: act for n, _, act in watched}
    return _from_structure(inner, structure or structure_of(inner))


def _from_structure(model: nn.Module, structure: Structure) -> tuple[list[tuple[str, nn.Module]], dict[str, Any]]:
    """Every activation the structure saw: the module that applied it (Hugging Face's activation modules included),
    or, for a function, the weight layer whose output it took (watched as a pre-activation); and every activation
    module of the model, in module order."""
    modules = dict(model.named_modules())
    watched: dict[str, Any] = {n: activation(m) for n, m in modules.items()
                               if is_activation_module(m) and activation(m).name != "linear"}  # fmt: skip
    for layer in structure.layers.values():
        if layer.activation is None:
            continue
        if layer.activation_module:
            watched.setdefault(layer.activation_module, layer.activation)
        elif "." in layer.name and layer.name.rsplit(".", 1)[0] in modules:
            watched.setdefault(layer.name.rsplit(".", 1)[0], PreActivation(layer.activation))
    order = [n for n in modules if n in watched]
    return [(n, modules[n]) for n in order], {n: watched[n] for n in order}


def inner_module(model: nn.Module) -> nn.Module:
    """The model itself, or the module a DistributedDataParallel wrapper holds (names are relative to it)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters by name: torch's names, or a Keras model's variable paths (``sequential/dense/kernel``,
    where torch would say ``_functional._torch_params.sequential/dense/kernel``)."""
    inner = inner_module(model)
    if is_keras_model(inner):
        return [(v.path, v.value) for v in getattr(inner, "trainable_weights")]  # noqa: B009  (Keras, not torch)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def weight_names(model: nn.Module, structure: Structure | None = None) -> list[str]:
    """The weight matrices in forward order, as :func:`named_parameters` names them: the structure layer's weight
    layers (every direction and layer of an RNN, GPT-2's Conv1D, a functional projection) by role, not by name:
    embedding tables are left out where other layers remain (a table's gradient reaches only the rows of the
    tokens seen, and a tied readout is its table), so that the first and the last are layers a gradient crosses."""
    inner = inner_module(model)
    if is_keras_model(inner):
        return [variable.path for _, variable in keras_kernels(inner)]
    prefix = "module." if inner is not model else ""  # a DDP wrapper's parameters are named through it
    layers = (structure or structure_of(inner)).layers
    crossed = [name for name, layer in layers.items() if layer.role != "embedding"]
    return [prefix + name for name in (crossed if len(crossed) >= 2 else list(layers))]
