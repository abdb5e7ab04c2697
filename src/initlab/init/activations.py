"""Activation functions by name, ``nn.Module`` or callable, with their derivatives.

Gains, the mean-field theory, model initialization and the monitor all need to know *which* nonlinearity a
layer feeds and how it behaves; they all ask this module. An :class:`Activation` evaluates on float64 tensors
and knows its first and second derivative (closed form where known, else exact autograd).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab._quadrature import normal_nodes

__all__ = ["Activation", "Family", "activation", "activation_module", "activation_names"]

Fn = Callable[[Tensor], Tensor]
Family = Literal["linear", "relu", "saturating", "smooth"]


@dataclass(frozen=True)
class Activation:
    """A resolved activation: a name, an optional parameter, the function and (optionally) its derivatives.

    ``family`` tells the monitor which statistics mean something: ``"relu"`` units can die (output ≤ 0 with a
    zero gradient), ``"saturating"`` units (tanh, sigmoid, …) can saturate. ``kinks`` are the points where φ or
    one of its first two derivatives jumps; quadrature splits its panels there, so that piecewise activations
    are integrated as exactly as smooth ones.
    """

    name: str
    fn: Fn = field(compare=False, repr=False)
    param: float | None = None
    family: Family = "smooth"
    d1: Fn | None = field(default=None, compare=False, repr=False)
    d2: Fn | None = field(default=None, compare=False, repr=False)
    key: object = field(default=None, repr=False)
    kinks: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def derivative(self, x: Tensor) -> Tensor:
        """φ'(x), in closed form where known, else by autograd (exact, not finite differences)."""
        return self.d1(x) if self.d1 is not None else _grad(self.fn, x, order=1)

    def second_derivative(self, x: Tensor) -> Tensor:
        """φ''(x), in closed form where known, else by double autograd."""
        return self.d2(x) if self.d2 is not None else _grad(self.fn, x, order=2)


def _grad(fn: Fn, x: Tensor, order: int) -> Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=order > 1)
        if order > 1:
            if not g.requires_grad:  # piecewise-linear: the second derivative is 0 almost everywhere
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(g.sum(), x)
    return g.detach()


def _zero(x: Tensor) -> Tensor:
    return torch.zeros_like(x)


def _linear(p: float | None) -> Activation:
    return Activation("linear", lambda x: x, None, "linear", torch.ones_like, _zero)


def _relu(p: float | None) -> Activation:
    return Activation("relu", F.relu, None, "relu", lambda x: (x > 0).to(x.dtype), _zero, kinks=(0.0,))


def _leaky_relu(p: float | None) -> Activation:
    a = 0.01 if p is None else float(p)
    return Activation(
        "leaky_relu",
        lambda x: F.leaky_relu(x, a),
        a,
        "relu",
        lambda x: torch.where(x > 0, 1.0, a).to(x.dtype),
        _zero,
        kinks=(0.0,),
    )


def _tanh(p: float | None) -> Activation:
    def d1(x: Tensor) -> Tensor:
        return 1 - torch.tanh(x) ** 2

    def d2(x: Tensor) -> Tensor:
        t = torch.tanh(x)
        return -2 * t * (1 - t * t)

    return Activation("tanh", torch.tanh, None, "saturating", d1, d2)


def _sigmoid(p: float | None) -> Activation:
    def d1(x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        return s * (1 - s)

    def d2(x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        return s * (1 - s) * (1 - 2 * s)

    return Activation("sigmoid", torch.sigmoid, None, "saturating", d1, d2)


def _simple(
    name: str, fn: Fn, family: Family = "smooth", kinks: tuple[float, ...] = ()
) -> Callable[[float | None], Activation]:
    return lambda p: Activation(name, fn, None, family, kinks=kinks)


def _with_param(
    name: str, default: float, make: Callable[[float], Fn], family: Family = "smooth", kinks: tuple[float, ...] = ()
) -> Callable[[float | None], Activation]:
    def build(p: float | None) -> Activation:
        value = default if p is None else float(p)
        return Activation(name, make(value), value, family, kinks=kinks)

    return build


_BUILDERS: dict[str, Callable[[float | None], Activation]] = {
    "linear": _linear,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "elu": _with_param("elu", 1.0, lambda a: lambda x: F.elu(x, a), kinks=(0.0,)),
    "celu": _with_param("celu", 1.0, lambda a: lambda x: F.celu(x, a), kinks=(0.0,)),
    "softplus": _with_param("softplus", 1.0, lambda b: lambda x: F.softplus(x, b)),
    "selu": _simple("selu", F.selu, kinks=(0.0,)),
    "gelu": _simple("gelu", F.gelu),
    "gelu_tanh": _simple("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    "silu": _simple("silu", F.silu),
    "mish": _simple("mish", F.mish),
    "hardswish": _simple("hardswish", F.hardswish, kinks=(-3.0, 3.0)),
    "softsign": _simple("softsign", F.softsign, "saturating"),
    "hardtanh": _simple("hardtanh", F.hardtanh, "saturating", kinks=(-1.0, 1.0)),
    "hardsigmoid": _simple("hardsigmoid", F.hardsigmoid, "saturating", kinks=(-3.0, 3.0)),
    "relu6": _simple("relu6", F.relu6, "relu", kinks=(0.0, 6.0)),
    "erf": _simple("erf", torch.erf, "saturating"),
    "sin": _simple("sin", torch.sin),
}
_ALIASES = {
    "identity": "linear",
    "none": "linear",
    "swish": "silu",
    "prelu": "leaky_relu",
    "logistic": "sigmoid",
    "lrelu": "leaky_relu",
}
# torch.nn.init.calculate_gain accepts layer names for "no nonlinearity".
for _layer in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
    _ALIASES[_layer] = "linear"

_MODULES: dict[type[nn.Module], Callable[[Any], tuple[str, float | None]]] = {
    nn.Identity: lambda m: ("linear", None),
    nn.ReLU: lambda m: ("relu", None),
    nn.LeakyReLU: lambda m: ("leaky_relu", m.negative_slope),
    nn.PReLU: lambda m: ("leaky_relu", float(m.weight.detach().mean())),
    nn.Tanh: lambda m: ("tanh", None),
    nn.Sigmoid: lambda m: ("sigmoid", None),
    nn.ELU: lambda m: ("elu", m.alpha),
    nn.CELU: lambda m: ("celu", m.alpha),
    nn.SELU: lambda m: ("selu", None),
    nn.GELU: lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", None),
    nn.SiLU: lambda m: ("silu", None),
    nn.Mish: lambda m: ("mish", None),
    nn.Softplus: lambda m: ("softplus", m.beta),
    nn.Softsign: lambda m: ("softsign", None),
    nn.Hardtanh: lambda m: ("hardtanh", None),
    nn.ReLU6: lambda m: ("relu6", None),
    nn.Hardswish: lambda m: ("hardswish", None),
    nn.Hardsigmoid: lambda m: ("hardsigmoid", None),
}

# Functions an fx trace may show in place of a module.
FUNCTIONS: dict[Callable[..., Any], str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.leaky_relu: "leaky_relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.elu: "elu",
    F.selu: "selu",
    torch.selu: "selu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.softplus: "softplus",
    F.softsign: "softsign",
    F.hardtanh: "hardtanh",
    F.relu6: "relu6",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.celu: "celu",
}
METHODS = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "relu_": "relu",
    "tanh_": "tanh",
    "sigmoid_": "sigmoid",
}


def activation_names() -> list[str]:
    """Every activation name initlab knows (aliases excluded).

    >>> "gelu" in activation_names()
    True
    """
    return sorted(_BUILDERS)


_MODULE_CLASSES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "linear": nn.Identity,
    "mish": nn.Mish,
    "softsign": nn.Softsign,
    "hardtanh": nn.Hardtanh,
}


def activation_module(name: str) -> nn.Module:
    """A new torch module for the activation ``name`` with torch's default parameters (what the model builders
    put between layers).

    >>> activation_module("relu")
    ReLU()
    """
    activation(name)  # unknown names fail here with the did-you-mean message
    if name not in _MODULE_CLASSES:
        raise unknown_name("model activation", name, _MODULE_CLASSES)
    return _MODULE_CLASSES[name]()


def is_activation_module(module: nn.Module) -> bool:
    """Whether ``module`` is one of the activation modules initlab recognizes."""
    return type(module) in _MODULES


@functools.cache
def _by_name(name: str, param: float | None) -> Activation:
    return _BUILDERS[name](param)


def _number(name: str, param: object) -> float:
    """An activation's parameter: a real number (``True`` was read as slope 1.0; torch refuses it too)."""
    if isinstance(param, bool) or not isinstance(param, (int, float)) or not math.isfinite(param):
        raise fail(f"the parameter of {name} must be a finite number", received=param,
                   fix="Pass a number such as 0.2, or leave it out for the default.")  # fmt: skip
    return float(param)


def activation(
    spec: str | nn.Module | Callable[[Tensor], Tensor] | Activation, param: float | None = None
) -> Activation:
    """Resolve an activation given by name, ``nn.Module`` instance or callable.

    Args:
        spec: a name (``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"swish"``, …), a module such as
            ``nn.LeakyReLU(0.2)``, or any callable from tensor to tensor.
        param: the name's parameter: the negative slope of ``leaky_relu`` (default 0.01), the ``alpha`` of
            ``elu``/``celu``, the ``beta`` of ``softplus``.

    Raises:
        InitlabError: an unknown name (with the closest valid ones), or a non-callable.

    >>> activation("leaky_relu", 0.2)
    Activation(name='leaky_relu', param=0.2, family='relu')
    >>> activation(torch.nn.GELU()).name
    'gelu'
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        name = _ALIASES.get(spec.lower(), spec.lower())
        if name not in _BUILDERS:
            raise unknown_name(
                "activation",
                spec,
                [*_BUILDERS, *_ALIASES],
                see="See initlab.activation_names() for all names, or pass a callable.",
            )
        return _by_name(name, None if param is None else _number(name, param))
    if isinstance(spec, nn.Module) and type(spec) in _MODULES:
        name, module_param = _MODULES[type(spec)](spec)
        return _by_name(name, module_param if param is None else param)
    if callable(spec):
        label = type(spec).__name__ if isinstance(spec, nn.Module) else getattr(spec, "__name__", repr(spec))
        return Activation(label, spec, param, "smooth", key=spec)
    raise fail(
        "an activation must be a name, an nn.Module or a callable",
        accepted=", ".join(activation_names()),
        received=spec,
    )


def expected_square(act: Activation) -> float:
    """``E[φ(z)²]`` for ``z ~ N(0, 1)`` by quadrature.

    >>> round(expected_square(activation("relu")), 12)
    0.5
    """
    z, w = normal_nodes()
    value = float((w * act(z) ** 2).sum())
    if not math.isfinite(value):
        raise fail(f"E[φ(z)²] is not finite for activation {act.name!r}", received=value)
    return value
