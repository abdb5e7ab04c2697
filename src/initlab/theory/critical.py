"""The edge of chaos: where it is (:func:`critical_weight_var`), and the ``critical`` scheme that puts every
layer on it (χ1 = 1) for the activation it feeds.

The scheme's variance comes from mean-field theory, so its rules live here: the registry declares the scheme
(name, formula, paper) and imports this module the first time the name is looked up, which completes it with
``provide`` (``tests/test_layers.py`` keeps the registry from importing it statically).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch

from initlab._errors import fail
from initlab.init import _formulas as f
from initlab.init.activations import Activation, activation
from initlab.init.fans import Fans
from initlab.init.registry import provide
from initlab.theory.meanfield import ActivationLike, _chi1, _finite, _length, check_variances, expect

__all__ = ["critical_weight_var"]

_GRID_POINTS = 97  # σ_w² scanned from 1e-3 to ``upper`` (16 per decade at the default) for crossings of χ1 = 1


def _chi_minus_one(phi: Activation, wv: torch.Tensor, bv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = _length(phi, wv, bv)
    return _chi1(phi, wv, _finite(q)) - 1.0, q


def _edge_of_ordered_zero(phi: Activation, bv: torch.Tensor) -> float | None:
    """With σ_b = 0 and φ(0) = 0, q* = 0 is a fixed point, stable while χ1 at q → 0+ is below 1; the edge of
    chaos is where it turns unstable, ``σ_w² = 1 / E[φ'(0+ z)²]`` exactly (tanh: 1, ReLU: 2). Above it χ1
    approaches 1 only quadratically, so a root finder would lose half the digits there. Returns None where
    this does not apply (a bias, φ(0) ≠ 0, or an unbounded φ that escapes to q* = ∞ first, like GELU)."""
    zero = torch.zeros(1, dtype=torch.float64)
    if float(bv) != 0.0 or float(phi(zero)) != 0.0:
        return None
    wv = 1.0 / float(expect(phi, lambda x: phi.derivative(x) ** 2, torch.zeros((), dtype=torch.float64)))
    below = _length(phi, torch.tensor(wv * (1 - 1e-3), dtype=torch.float64), bv)
    return wv if float(below) == 0.0 else None


def _length_words(q: float) -> str:
    if q == 0:
        return "the signal dies out (q* = 0)"
    if math.isinf(q):
        return "the signal grows without bound (q* = ∞)"
    return f"q* = {q:.4g}"


def _true_crossing(phi: Activation, root: float, bv: torch.Tensor) -> str | None:
    """None where χ1 crosses 1 continuously at ``root`` with a finite, positive q* on both sides; else why not."""
    sides = torch.tensor([root * (1 - 1e-6), root * (1 + 1e-6)], dtype=torch.float64)
    excess, q = _chi_minus_one(phi, sides, bv)
    (q_lo, q_hi), (e_lo, e_hi) = q.tolist(), excess.tolist()
    finite = all(0 < v < math.inf for v in (q_lo, q_hi))
    if max(abs(e_lo), abs(e_hi)) < 1e-3:
        if finite:
            return None
        return (f"χ1 reaches 1 only at σ_w² ≈ {root:.4g}, where q* diverges: below it {_length_words(q_lo)}, "
                f"above it {_length_words(q_hi)}")  # fmt: skip
    return (f"at σ_w² ≈ {root:.4g} χ1 jumps from {e_lo + 1:.3g} to {e_hi + 1:.3g} instead of crossing 1: below "
            f"it {_length_words(q_lo)}, above it {_length_words(q_hi)}")  # fmt: skip


def critical_weight_var(act: ActivationLike, bias_var: float = 0.0, *, upper: float = 1e3) -> float:
    """The weight variance ``σ_w²`` on the edge of chaos for a bias variance ``σ_b²``: where χ1 crosses 1 at
    the fixed point q* the length map reaches from q = 1 (finite and stable on both sides).

    ReLU: 2 (He init) at ``σ_b = 0``; tanh: 1 at ``σ_b = 0``. The scan covers ``σ_w²`` from 1e-3 to ``upper``.

    Raises:
        InitlabError: where there is no such crossing: χ1 stays below or above 1, or it jumps across 1 where
            q* jumps (GELU at σ_b² = 0: the signal dies out below σ_w² ≈ 2.35 and grows without bound above;
            ReLU with a bias: χ1 reaches 1 only where q* diverges). The message says which and what to do.

    >>> round(critical_weight_var("relu"), 9), round(critical_weight_var("tanh"), 6)
    (2.0, 1.0)
    >>> round(critical_weight_var("tanh", 0.05), 6)
    1.760955
    """
    check_variances(1.0, bias_var)
    if not (math.isfinite(upper) and upper > 1e-3):
        raise fail("upper must be a finite weight variance above 1e-3", accepted="a number > 0.001",
                   received=upper, fix="Leave upper at its default, 1000.")  # fmt: skip
    return _critical_weight_var(activation(act), float(bias_var), float(upper))


@functools.lru_cache(maxsize=256)
def _critical_weight_var(phi: Activation, bias_var: float, upper: float) -> float:
    """The search behind :func:`critical_weight_var`, once per (activation, σ_b², upper): ``initialize(model,
    "critical")`` asks it for every layer (a 30-layer tanh net took 12.8 s before this cache)."""
    bv = torch.tensor(bias_var, dtype=torch.float64)
    at_zero = _edge_of_ordered_zero(phi, bv)
    if at_zero is not None:
        return at_zero
    grid = torch.logspace(-3, math.log10(upper), _GRID_POINTS, dtype=torch.float64)
    root, jumps, below = _search(phi, bv, grid, depth=2)
    if root is not None:
        return root
    problem = f"activation {phi.name!r} has no critical point at σ_b² = {float(bias_var)}"
    if jumps:
        raise fail(f"{problem}: {jumps[0]}", fix=_suggestion(phi, float(bias_var), upper))
    reason = f"χ1 < 1 even at σ_w² = {upper:g}" if below else "χ1 > 1 already at σ_w² = 0.001"
    raise fail(f"{problem}: {reason}", fix="Try another bias variance, or another activation.")


def _suggestion(phi: Activation, bias_var: float, upper: float) -> str:
    """What to do instead: the smallest larger bias variance that has a critical point, if one of a few does."""
    if phi.name in ("linear", "relu", "leaky_relu"):
        return "Use bias_var=0: the only critical point of a ReLU-like activation is σ_w² = 2/(1+a²) at σ_b² = 0."
    for candidate in (0.1, 0.2, 0.3, 0.5, 1.0):
        if candidate <= bias_var:
            continue
        grid = torch.logspace(-3, math.log10(upper), _GRID_POINTS, dtype=torch.float64)
        root = _search(phi, torch.tensor(candidate, dtype=torch.float64), grid, depth=2)[0]
        if root is not None:
            return (f"At bias_var={candidate} there is one (σ_w² = {root:.4g}): use initlab.get('critical', "
                    f"bias_var={candidate}), or a fixed scheme such as he_normal and watch the run with "
                    "initlab.Monitor.")  # fmt: skip
    return "Use a fixed scheme such as he_normal and watch the run with initlab.Monitor."


def _search(phi: Activation, bv: torch.Tensor, grid: torch.Tensor, depth: int) -> tuple[float | None, list[str], bool]:
    """The first true crossing of χ1 = 1 on ``grid``, the reasons the other sign changes are not crossings, and
    whether χ1 starts below 1. A sign change that is a jump (q* jumps there) can hide a true crossing beside it
    in the same grid cell (GELU at σ_b² = 0.3 crosses at 1.956, q* = 8.7, and jumps at 2): each side of it is
    searched again on a finer grid, ``depth`` times."""
    excess = _chi_minus_one(phi, grid, bv)[0].tolist()
    jumps: list[str] = []
    for i in range(grid.numel() - 1):
        if (excess[i] < 0) == (excess[i + 1] < 0):
            continue
        lo, hi = float(grid[i]), float(grid[i + 1])
        root = _root(phi, bv, lo, hi)
        why = _true_crossing(phi, root, bv)
        if why is None:
            return root, jumps, excess[0] < 0
        jumps.append(why)
        for a, b in ((lo, root * (1 - 1e-6)), (root * (1 + 1e-6), hi)):
            if depth > 0 and b > a:
                finer = torch.logspace(math.log10(a), math.log10(b), 33, dtype=torch.float64)
                found, more, _ = _search(phi, bv, finer, depth - 1)
                jumps += more
                if found is not None:
                    return found, jumps, excess[0] < 0
    return None, jumps, excess[0] < 0


def _root(phi: Activation, bv: torch.Tensor, lo: float, hi: float) -> float:
    from scipy import optimize  # imported here: scipy.optimize costs 0.4 s at start-up of every process

    def excess(log_wv: float) -> float:
        return float(_chi_minus_one(phi, torch.tensor(math.exp(log_wv), dtype=torch.float64), bv)[0])

    return math.exp(optimize.brentq(excess, math.log(lo), math.log(hi), xtol=1e-14, rtol=1e-14))


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
    if act is None or act.name == "linear":
        return 1.0  # a linear layer (the output) has χ1 = σ_w² whatever its bias: critical at σ_w² = 1
    return math.sqrt(critical_weight_var(act, _critical_bias_var(act, p)))


def _critical_plan(layer_fans: Fans | None, p: Mapping[str, Any]) -> f.Dist:
    assert layer_fans is not None
    act = activation(p["activation"]) if p.get("activation") else activation("tanh")
    g = p["gain"] if p.get("gain") is not None else _critical_gain(act, p)
    return f.variance_scaling(layer_fans, f.kaiming_scale(g), "fan_in", "normal")


def _critical_bias(act: Activation | None, layer_fans: Fans, p: Mapping[str, Any]) -> f.Dist:
    variance = _critical_bias_var(act, p)
    return f.Normal(0.0, math.sqrt(variance)) if variance > 0 else f.Constant(0.0)


# The registry lists ``critical`` (name, formula, paper) and imports this module the first time it is used.
provide("critical", plan=_critical_plan, gain_rule=_critical_gain, bias_rule=_critical_bias)
