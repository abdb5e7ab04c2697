"""Every std and bound formula of initlab, once, as pure functions from fans and parameters to a distribution.

The torch drawer (``_torch_draw.py``), the NumPy drawer (``_numpy_draw.py``) and the theory (``theory/``) all read
the same :data:`Dist` values: the backends only *draw* from them, the theory only reads their variance. So a
formula cannot drift between backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from initlab._errors import fail, unknown_name
from initlab.init.fans import FAN_MODES, Fans

__all__ = [
    "TRUNCATED_STD_2",
    "Constant",
    "DeltaOrthogonal",
    "Dirac",
    "Dist",
    "Distribution",
    "Identity",
    "Normal",
    "Orthogonal",
    "Sparse",
    "TruncatedNormal",
    "Uniform",
    "truncated",
    "variance_scaling",
]

Distribution = Literal["uniform", "normal", "truncated_normal"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal", "truncated_normal")

# Std of N(0, 1) truncated to [-2, 2]; Keras and JAX divide by it so truncation keeps the target variance.
TRUNCATED_STD_2 = 0.87962566103423978


@dataclass(frozen=True)
class Constant:
    value: float

    @property
    def variance(self) -> float:
        return 0.0


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    @property
    def variance(self) -> float:
        return (self.high - self.low) ** 2 / 12.0


@dataclass(frozen=True)
class Normal:
    mean: float
    std: float

    @property
    def variance(self) -> float:
        return self.std**2


@dataclass(frozen=True)
class TruncatedNormal:
    """``mean + sigma * X`` with ``X ~ N(0, 1)`` truncated to ``[a, b]`` (``a``, ``b`` in units of sigma)."""

    mean: float
    sigma: float
    a: float
    b: float

    @property
    def variance(self) -> float:
        return (self.sigma * standard_truncated_std(self.a, self.b)) ** 2


@dataclass(frozen=True)
class Orthogonal:
    gain: float

    def variance_for(self, rows: int, cols: int) -> float:
        """Per-element variance of a (rows × cols) semi-orthogonal matrix times gain."""
        return self.gain**2 / max(rows, cols)


@dataclass(frozen=True)
class DeltaOrthogonal:
    gain: float


@dataclass(frozen=True)
class Identity:
    gain: float


@dataclass(frozen=True)
class Dirac:
    groups: int


@dataclass(frozen=True)
class Sparse:
    sparsity: float
    std: float


Dist = Constant | Uniform | Normal | TruncatedNormal | Orthogonal | DeltaOrthogonal | Identity | Dirac | Sparse


def standard_normal_cdf(x: float) -> float:
    """The standard normal CDF, as ``scipy.special.ndtr`` computes it (erfc keeps the lower tail accurate); plain
    ``math``, so that listing the schemes does not import SciPy (issue 35: start-up)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def standard_truncated_std(a: float, b: float) -> float:
    """Std of ``N(0, 1)`` truncated to ``[a, b]``.

    >>> round(standard_truncated_std(-2.0, 2.0), 12) == round(TRUNCATED_STD_2, 12)
    True
    """
    z = standard_normal_cdf(b) - standard_normal_cdf(a)
    pa, pb = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), math.exp(-b * b / 2) / math.sqrt(2 * math.pi)
    a_pa = a * pa if math.isfinite(a) else 0.0
    b_pb = b * pb if math.isfinite(b) else 0.0
    var = 1 + (a_pa - b_pb) / z - ((pa - pb) / z) ** 2
    return math.sqrt(max(var, 0.0))


def check_scale(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Validate a scale/std/gain at the public boundary."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise fail(
            f"{name} must be a finite number > 0",
            accepted="a finite positive float",
            received=value,
            fix=f"Pass {name}=1.0 or another positive number.",
        )
    return float(value)


def variance_scaling(fans: Fans, scale: float, mode: str, distribution: str) -> Dist:
    """The variance-scaling family: ``Var W = scale / n`` with ``n`` the chosen fan.

    uniform: ``U(-√(3v), √(3v))``; normal: ``N(0, v)``; truncated_normal: ``N(0, 1)`` truncated to
    ``[-2, 2]`` times ``√v / 0.8796…``, which has variance exactly ``v`` (Keras 3 / JAX semantics).

    >>> variance_scaling(Fans(100, 100), 2.0, "fan_in", "normal")
    Normal(mean=0.0, std=0.1414213562373095)
    """
    check_scale("scale", scale)
    if mode not in FAN_MODES:
        raise unknown_name("mode", mode, FAN_MODES)
    variance = scale / max(fans.of(mode), 1.0)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return Uniform(-limit, limit)
    if distribution in ("normal", "untruncated_normal"):
        return Normal(0.0, math.sqrt(variance))
    if distribution == "truncated_normal":
        return TruncatedNormal(0.0, math.sqrt(variance) / TRUNCATED_STD_2, -2.0, 2.0)
    raise unknown_name("distribution", distribution, DISTRIBUTIONS)


def truncated(mean: float, std: float, a: float, b: float, bounds: str) -> TruncatedNormal:
    """A truncated normal whose *result* has standard deviation exactly ``std``.

    ``bounds="std"``: ``a``, ``b`` are in units of the parent normal's sigma (Keras' ``[-2, 2]``).
    ``bounds="absolute"``: ``a``, ``b`` are values (torch's ``trunc_normal_`` convention); sigma is solved
    so that the truncated result has std ``std``, which requires ``std < (b - a) / √12`` (the uniform limit).
    """
    check_scale("std", std)
    if not a < b:
        raise fail("the lower bound must be below the upper bound", received=(a, b))
    if bounds == "std":
        return TruncatedNormal(mean, std / standard_truncated_std(a, b), float(a), float(b))
    if bounds != "absolute":
        raise unknown_name("bounds", bounds, ("std", "absolute"))
    lo, hi = a - mean, b - mean
    if not lo < 0 < hi:
        raise fail("absolute bounds must contain the mean", received=(a, b, mean))
    if std >= (hi - lo) / math.sqrt(12.0):
        raise fail(
            f"no normal truncated to [{a}, {b}] has std {std}",
            accepted=f"std < (b - a)/√12 = {(hi - lo) / math.sqrt(12.0):.6g} (a uniform on the bounds)",
            fix="Widen the bounds or lower std.",
        )

    def excess(log_sigma: float) -> float:
        s = math.exp(log_sigma)
        return s * standard_truncated_std(lo / s, hi / s) - std

    # sigma = std truncates (result std < std); sigma = 1e4·(b - a) is almost uniform (std > std asked).
    if excess(math.log(std)) >= 0.0:  # bounds so far out (±20σ at std 0.1, bounds ±2) that truncation is lost
        return TruncatedNormal(mean, std, lo / std, hi / std)  # in rounding: sigma = std already (issue 24)
    from scipy import optimize  # imported here: scipy.optimize costs 0.4 s at start-up of every process

    log_sigma = optimize.brentq(excess, math.log(std), math.log(1e4 * (hi - lo)), xtol=1e-14)
    sigma = math.exp(log_sigma)
    return TruncatedNormal(mean, sigma, lo / sigma, hi / sigma)


def kaiming_scale(gain: float) -> float:
    """He/Kaiming: ``Var W = gain² / fan``; the gain for ReLU (√2) gives He's ``2 / n``."""
    return check_scale("gain", gain) ** 2


def torch_default(fans: Fans) -> Uniform:
    """torch's Linear/Conv default, ``kaiming_uniform_(a=√5)`` = ``U(±1/√fan_in)``: variance ``1/(3·fan_in)``.

    >>> torch_default(Fans(4, 8))
    Uniform(low=-0.5, high=0.5)
    """
    bound = 1.0 / math.sqrt(max(fans.fan_in, 1))
    return Uniform(-bound, bound)


def center_tap(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The index of a conv kernel's center tap (``k // 2`` per spatial dim)."""
    return tuple(k // 2 for k in shape[2:])


def dirac_positions(shape: tuple[int, ...], groups: int) -> list[tuple[int, ...]]:
    """The entries a Dirac (identity-per-channel) conv kernel sets to 1, per group.

    >>> dirac_positions((4, 2, 3), groups=2)
    [(0, 0, 1), (1, 1, 1), (2, 0, 1), (3, 1, 1)]
    """
    if not 3 <= len(shape) <= 5:  # conv1d to conv3d, as torch (issue 24: a 6-D tensor was filled)
        raise fail(
            "dirac needs a conv weight (out, in, k...) of rank 3 to 5",
            received=shape,
            fix="For a Linear weight use identity_.",
        )
    if groups < 1 or shape[0] % groups:
        raise fail(
            f"groups={groups} does not divide the output channels ({shape[0]})",
            accepted="a divisor of out_channels",
            received=groups,
        )
    per_group = shape[0] // groups
    center = center_tap(shape)
    return [(g * per_group + d, d, *center) for g in range(groups) for d in range(min(per_group, shape[1]))]
