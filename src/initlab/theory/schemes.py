"""Where an initialization scheme puts a deep net on the phase diagram, how deep it can train, and which
schemes a model would be better off with (a fix is predicted before it is named: issue 22)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from initlab._errors import InitlabError
from initlab.init._keras_model import is_keras_model, keras_activation, keras_kernels, keras_numpy
from initlab.init._walk import structure_of
from initlab.init.activations import activation, activation_module
from initlab.init.fans import fans
from initlab.init.model import initialize
from initlab.init.registry import lookup
from initlab.init.structure import Structure
from initlab.theory import meanfield

__all__ = [
    "SchemeFix", "better_schemes", "fix_text", "scheme_point", "trainable_depth", "weight_moments", "weights_chi1",
]  # fmt: skip

# The schemes a fix may name, in the order they are offered when equally close to χ1 = 1.
FIX_CANDIDATES = ("critical", "lecun_normal", "he_normal", "glorot_normal")


def scheme_point(scheme: str, act: str, width: int = 128) -> tuple[float, float]:
    """``(σ_w², σ_b²)`` that ``scheme`` draws for a hidden ``width × width`` layer feeding ``act``, from the exact
    distribution ``initialize`` uses (gain and bias rules included), not from a sample.

    >>> scheme_point("he_normal", "relu")
    (2.0, 0.0)

    A data-dependent scheme (``lsuv``) is predicted from what it enforces: every layer's pre-activation std equals
    ``target_std`` t, so in mean field σ_w² = t² / E[φ(t·z)²] with zero biases (He's 2 for ReLU at t = 1).

    >>> scheme_point("lsuv", "relu")
    (2.0, 0.0)
    """
    looked_up = lookup(scheme)
    if looked_up.needs_data:
        t = float(looked_up.defaults["target_std"])
        phi = activation(act)
        second = float(meanfield.expect(phi, lambda x: phi(x) ** 2, torch.tensor([t * t], dtype=torch.float64))[0])
        return round(t * t / second, 12), 0.0
    net = nn.Sequential(
        nn.Linear(width, width), activation_module(act), nn.Linear(width, width), activation_module(act),
        nn.Linear(width, 10),
    )  # fmt: skip
    rows = initialize(net, scheme).rows
    weight = next(r for r in rows if r.name.endswith("weight") and r.fan_in == width and r.fan_out == width)
    bias = next(r for r in rows if r.name == weight.name.replace("weight", "bias"))
    return round((weight.std or 0.0) ** 2 * width, 12), round((bias.std or 0.0) ** 2, 12)


def trainable_depth(scheme: str, act: str, width: int = 128) -> float:
    """6·ξ_c (Schoenholz et al. 2017): roughly the deepest net ``scheme`` lets signals cross; ``inf`` on the
    edge of chaos.

    >>> trainable_depth("torch_default", "tanh") < 10 < trainable_depth("critical", "tanh")
    True
    >>> trainable_depth("zeros", "tanh")
    0.0
    """
    weight_var, bias_var = scheme_point(scheme, act, width)
    if weight_var == 0:  # zero weights (the zeros scheme): no signal crosses even one layer
        return 0.0
    xi_c = float(meanfield.depth_scales(act, weight_var, bias_var).xi_c)
    return 6 * xi_c if not math.isnan(xi_c) else math.nan


@dataclass(frozen=True)
class SchemeFix:
    """A scheme and the χ1 mean-field theory predicts for a hidden layer it initializes."""

    scheme: str
    chi1: float


@functools.lru_cache(maxsize=64)
def _predicted(scheme: str, act: str) -> float | None:
    try:
        weight_var, bias_var = scheme_point(scheme, act)
    except InitlabError:  # the critical scheme does not exist for every activation and bias variance
        return None
    return float(meanfield.chi1(act, weight_var, bias_var))


def better_schemes(act: str, chi: float) -> list[SchemeFix]:
    """The schemes whose predicted χ1 for a hidden layer feeding ``act`` is closer to 1 than ``chi`` (the
    model's), closest first. Empty where none is: then no initialization should be suggested.

    >>> [f.scheme for f in better_schemes("relu", 0.5)][:2]
    ['critical', 'he_normal']
    """
    fixes = [SchemeFix(s, c) for s in FIX_CANDIDATES if (c := _predicted(s, act)) is not None]
    better = (f for f in fixes if abs(f.chi1 - 1) < abs(chi - 1))
    return sorted(better, key=lambda f: round(abs(f.chi1 - 1), 6))  # ties keep FIX_CANDIDATES' order


def fix_text(act: str, chi: float) -> str | None:
    """A one-line initialization fix with both numbers, or None where no scheme is predicted to do better.

    >>> print(fix_text("sigmoid", 0.01))  # doctest: +ELLIPSIS
    initlab.initialize(model, 'critical') gives χ1 = 1.00 per layer for sigmoid (this model: 0.01); ...
    """
    fixes = better_schemes(act, chi)
    if not fixes:
        return None
    best, rest = fixes[0], "".join(f"; {f.scheme!r} gives {f.chi1:.2f}" for f in fixes[1:2])
    return (f"initlab.initialize(model, {best.scheme!r}) gives χ1 = {best.chi1:.2f} per layer for {act} "
            f"(this model: {chi:.2f}){rest}")  # fmt: skip


Moments = dict[str, tuple[float, float]]  # module name -> (Var[W], E[b²])


def weight_moments(model: nn.Module) -> Moments:
    """``Var[W]`` and ``E[b²]`` of every module with a weight: all that :func:`weights_chi1` reads of the
    weights, taken in a few kernel calls and one copy to the host, so that a monitor can keep them at the step a
    finding fires and solve the mean field later (issue 35)."""
    named = [(name, m.weight, getattr(m, "bias", None)) for name, m in model.named_modules()
             if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.numel() > 1]  # fmt: skip
    if not named:
        return {}
    with torch.no_grad():
        zero = named[0][1].new_zeros((), dtype=torch.float64)
        values = torch.stack(
            [
                torch.stack(
                    (
                        w.detach().double().var(),
                        zero if not isinstance(b, torch.Tensor) else b.detach().double().pow(2).mean(),
                    )
                )
                for _, w, b in named
            ]
        ).tolist()
    return {name: (v[0], v[1]) for (name, _, _), v in zip(named, values, strict=True)}


def weights_chi1(model: nn.Module, moments: Moments | None = None,
                 structure: Structure | None = None) -> tuple[str, float] | None:  # fmt: skip
    """The model's most common hidden activation and the χ1 its current weights give there (geometric mean
    over the weight layers that feed it; σ_w² = fan_in · Var[W], σ_b² = E[b²]); None without such layers.
    ``moments``: the weights' :func:`weight_moments` taken earlier (default: now); ``structure``: the model's, if
    known (default: :func:`~initlab.init.structure.structure_of`, one forward pass)."""
    if is_keras_model(model):
        return _keras_chi1(model)
    structure = structure or structure_of(model)
    layers = [layer for layer in structure.layers.values() if layer.activation is not None]
    act = structure.main_activation()
    if act is None:
        return None
    moments = weight_moments(model) if moments is None else moments
    logs = []
    for layer in layers:
        owner = structure.owner(layer.name)
        if layer.activation is None or layer.activation.name != act or owner not in moments:
            continue
        if not layer.name.endswith("weight"):
            continue
        weight_var = layer.use.fan_in * moments[owner][0]
        bias_var = moments[owner][1]
        if weight_var > 0 and math.isfinite(weight_var) and math.isfinite(bias_var):
            logs.append(math.log(max(float(meanfield.chi1(act, weight_var, bias_var)), 1e-300)))
    return (act, math.exp(sum(logs) / len(logs))) if logs else None


def _keras_chi1(model: Any) -> tuple[str, float] | None:
    """:func:`weights_chi1` for a Keras model: each kernel's layer applies its own activation."""
    layers = [(layer, v, keras_activation(layer)) for layer, v in keras_kernels(model) if "kernel" in v.path]
    acts = [a.name for _, _, a in layers if a is not None]
    if not acts:
        return None
    act = max(set(acts), key=acts.count)
    logs = []
    for layer, kernel, a in layers:
        if a is None or a.name != act:
            continue
        weight, bias = keras_numpy(kernel), getattr(layer, "bias", None)
        weight_var = fans(weight.shape, layout="keras").fan_in * float(weight.var())
        bias_var = float((keras_numpy(bias) ** 2).mean()) if bias is not None else 0.0
        if weight_var > 0 and math.isfinite(weight_var) and math.isfinite(bias_var):
            logs.append(math.log(max(float(meanfield.chi1(act, weight_var, bias_var)), 1e-300)))
    return (act, math.exp(sum(logs) / len(logs))) if logs else None
