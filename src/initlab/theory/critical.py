"""The ``critical`` scheme: every layer on the edge of chaos (χ1 = 1) for the activation it feeds.

It is an initializer whose variance comes from mean-field theory, so it lives here and registers itself with
the initializer registry (``initlab.init.registry.register``) when ``initlab.theory`` is imported, which
``import initlab`` always does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from initlab.init import _formulas as f
from initlab.init.activations import Activation, activation
from initlab.init.fans import Fans
from initlab.init.registry import new_scheme, register
from initlab.theory import meanfield

__all__: list[str] = []


def _critical_bias_var(act: Activation | None, p: Mapping[str, Any]) -> float:
    """The documented σ_b² of the ``critical`` scheme.

    0 for linear, ReLU and leaky ReLU: positively homogeneous, so any σ_b > 0 makes q* diverge on the critical
    line σ_w² = 2/(1+a²). 0.05 otherwise (the bias variance of Poole et al. 2016 and Schoenholz et al. 2017's
    figures): it gives bounded activations a fixed point q* > 0, so the signal neither dies out nor
    saturates, and the net sits on the edge of chaos at a finite length.
    """
    if p.get("bias_var") is not None:
        return float(p["bias_var"])
    return 0.0 if act is None or act.name in ("linear", "relu", "leaky_relu") else 0.05


def _critical_gain(act: Activation | None, p: Mapping[str, Any]) -> float:
    return math.sqrt(meanfield.critical_weight_var(act or "linear", _critical_bias_var(act, p)))


def _critical_plan(fans_: Fans | None, p: Mapping[str, Any]) -> f.Dist:
    assert fans_ is not None
    act = activation(p["activation"]) if p.get("activation") else activation("tanh")
    g = p["gain"] if p.get("gain") is not None else _critical_gain(act, p)
    return f.variance_scaling(fans_, f.kaiming_scale(g), "fan_in", "normal")


def _critical_bias(act: Activation | None, fans_: Fans, p: Mapping[str, Any]) -> f.Dist:
    variance = _critical_bias_var(act, p)
    return f.Normal(0.0, math.sqrt(variance)) if variance > 0 else f.Constant(0.0)


register(
    new_scheme(
        "critical",
        _critical_plan,
        {"activation": None, "bias_var": None, "gain": None},
        "N(0, σ_w²*/fan_in), bias N(0, σ_b²) with χ1(σ_w²*, σ_b²) = 1 for the activation that follows",
        "Poole et al. (2016), Exponential expressivity; Schoenholz et al. (2017), Deep Information Propagation",
        fan_based=True,
        gain_param="gain",
        aliases=("edge_of_chaos",),
        gain_rule=_critical_gain,
        bias_rule=_critical_bias,
    )
)
