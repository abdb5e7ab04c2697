"""What the structure layer's pass needs besides the structure itself: which functions and modules are
activations (and which named activation a module computes, by its values), and how a model is run, unwrapped,
hooked and restored. Imported through :mod:`initlab.init.structure`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab.init.activations import (
    FUNCTIONS,
    METHODS,
    Activation,
    activation,
    activation_names,
    is_activation_module,
)

__all__ = [
    "acts_as_activation",
    "call",
    "function_activation",
    "identify_activation",
    "module_hooks",
    "restored",
    "unwrap",
]


def identify_activation(module: nn.Module) -> Activation:
    """The activation a parameter-free module computes, by its values: the named activation whose values on
    [-6, 6] it matches within 1e-6 (Hugging Face's ``NewGELUActivation`` is gelu_tanh, its ``SiLUActivation``
    silu), else the module itself as a callable activation (its gain then comes from quadrature)."""
    if is_activation_module(module):
        return activation(module)
    z, named = _reference_values()
    try:
        with torch.no_grad():
            values = module(z)
    except Exception:  # a module that does not take a plain vector is used as it is
        return activation(module)
    gaps = {name: float((reference - values).abs().max()) for name, reference in named.items()}
    best = min(gaps, key=gaps.__getitem__)
    return activation(best) if gaps[best] < 1e-6 else activation(module)


@functools.cache
def _reference_values() -> tuple[Tensor, dict[str, Tensor]]:
    """The points :func:`identify_activation` compares on, and every named activation's values there (computed once)."""
    z = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64)
    with torch.no_grad():
        return z, {name: activation(name)(z) for name in activation_names()}


def function_activation(func: Any, name: str, args: tuple[Any, ...], kwargs: Any) -> Activation | None:
    key = FUNCTIONS.get(func) or METHODS.get(name) or (name if name in ("gelu", "silu", "leaky_relu") else None)
    if key is None:
        return None
    if key == "leaky_relu":
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return activation("leaky_relu", float(slope))
    if key == "gelu" and (kwargs.get("approximate") == "tanh" or (len(args) > 1 and args[1] == "tanh")):
        return activation("gelu_tanh")
    return activation(key)


def acts_as_activation(module: nn.Module) -> bool:
    """A module that is an activation as a whole: a known one, or a parameter-free leaf whose class says so
    (Hugging Face's ``GELUActivation``, ``NewGELUActivation``, ``SiLUActivation`` ...)."""
    if is_activation_module(module):
        return activation(module).name != "linear"
    if next(module.parameters(recurse=False), None) is not None or next(module.children(), None) is not None:
        return False
    return type(module).__name__.endswith("Activation")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``torch.compile`` (``_orig_mod``), DataParallel or DistributedDataParallel (``module``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


@contextlib.contextmanager
def module_hooks(pre: Callable[[nn.Module, tuple[Any, ...]], None],
                 post: Callable[[nn.Module, tuple[Any, ...], Any], None]) -> Iterator[None]:  # fmt: skip
    """``pre`` and ``post`` called around every module's forward while the context is open (torch's global module
    hooks), removed afterwards."""
    handles = [nn.modules.module.register_module_forward_pre_hook(pre),
               nn.modules.module.register_module_forward_hook(post)]  # fmt: skip
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def call(model: nn.Module, example: Any) -> Any:
    """Run ``model`` on an input as models take them: a dict of keyword inputs, a tuple of positional ones, or one
    tensor."""
    if isinstance(example, Mapping):
        return model(**example)
    if isinstance(example, tuple):
        return model(*example)
    return model(example)


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[None]:
    """The model's buffers and torch's RNG state as they were, afterwards (a BatchNorm in train mode updates its
    running statistics on a forward pass; Dropout draws from the RNG)."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers() if not b.is_meta}
    rng = torch.get_rng_state()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        torch.set_rng_state(rng)
