"""The phase diagram: χ1, q* and ξ_c over a grid of (σ_w², σ_b²), with the point-wise functions' fixed points.

A grid needs the same answers as :mod:`initlab.theory.meanfield` point by point, at a fraction of the cost:

* q* comes from the one fixed-point solver (``meanfield.solve_length``) run on a tabulated length map (the map
  depends on (σ_w², σ_b²) only through the 1-D function ``E[φ(√q z)²]``), then is polished by secant steps on
  the exact map, so it is the point-wise q* to ~1e-12; χ1 is then exact quadrature at q*.
* ξ_c in the chaotic phase needs the stable fixed point c* of the correlation map. The Mehler series
  ``E[φ(u1)φ(u2)] = Σ_k b_k² c^k`` (``b_k`` computed at each point's exact q*) turns the map into a polynomial,
  solved by the same monotone solver; where the series' tail says it has not converged (kinked φ, c* near 1)
  Newton steps on the exact 2-D map finish the job.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from initlab._quadrature import normal_nodes
from initlab.init.activations import Activation, activation
from initlab.theory.meanfield import (
    _Q_FIXED,
    _Q_HUGE,
    ActivationLike,
    _chi1,
    _cmap_and_slope,
    _finite,
    check_variances,
    expect,
    solve_correlation,
    solve_length,
    xi,
)

__all__ = ["PhaseDiagram", "phase_diagram"]

Array = NDArray[np.float64]
_TERMS = 128  # Mehler terms; a point whose last 8 carry too much of χ_c is finished on the exact map
_TABLE = torch.linspace(math.log(1e-14), math.log(_Q_HUGE), 3000, dtype=torch.float64)  # log q


@dataclass(frozen=True)
class PhaseDiagram:
    """χ1, q* and ξ_c over a grid: ``chi1[i, j]`` is at ``bias_vars[i]``, ``weight_vars[j]``."""

    activation: str
    weight_vars: Array
    bias_vars: Array
    chi1: Array
    q_star: Array
    xi_c: Array

    @property
    def trainable_depth(self) -> Array:
        return 6.0 * self.xi_c


@functools.lru_cache(maxsize=32)
def _log_moment_table(phi: Activation) -> Tensor:
    """``log E[φ(√q z)²]`` on the log-q table (exact quadrature, kinks split)."""
    return expect(phi, lambda x: phi(x) ** 2, _TABLE.exp()).clamp_min(1e-300).log()


def _tabulated_moment(phi: Activation) -> functools.partial[Tensor]:
    return functools.partial(_interp, _log_moment_table(phi))


def _interp(table: Tensor, q: Tensor) -> Tensor:
    """Log-log linear interpolation (relative error ~1e-6); extrapolates linearly below the table, where
    ``E[φ²] ∝ q`` for every φ with φ(0) = 0."""
    lq = q.clamp_min(1e-300).log()
    idx = torch.searchsorted(_TABLE, lq).clamp(1, _TABLE.numel() - 1) - 1
    frac = (lq - _TABLE[idx]) / (_TABLE[idx + 1] - _TABLE[idx])
    return (table[idx] + frac * (table[idx + 1] - table[idx])).exp().where(q > 0, 0.0)


def _polish_length(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor) -> Tensor:
    """Two Newton steps on the exact length map from the tabulated q* (finite, positive points only), each with
    one exact evaluation and the table's slope (the table root is good to ~1e-9, its slope to ~1e-3, so each
    step gains three digits or more)."""
    out = q.clone()
    inner = (q > 0) & torch.isfinite(q)
    w, b, x = wv[inner], bv[inner], q[inner]
    table = _log_moment_table(phi)
    for _ in range(2):
        v = expect(phi, lambda u: phi(u) ** 2, x)
        slope = w * v * _interp_log_slope(table, x) / x - 1  # d/dq (σ_w² V(q) + σ_b² - q)
        x = x - (w * v + b - x) / slope
    out[inner] = x
    return out


def _interp_log_slope(table: Tensor, q: Tensor) -> Tensor:
    """d log V / d log q of the tabulated moment (piecewise constant)."""
    idx = torch.searchsorted(_TABLE, q.log()).clamp(1, _TABLE.numel() - 1) - 1
    return (table[idx + 1] - table[idx]) / (_TABLE[idx + 1] - _TABLE[idx])


def _hermite_at(z: Tensor, terms: int) -> Tensor:
    h = torch.empty(*z.shape, terms, dtype=torch.float64)
    h[..., 0] = 1.0
    h[..., 1] = z
    for k in range(2, terms):
        h[..., k] = (z * h[..., k - 1] - math.sqrt(k - 1) * h[..., k - 2]) / math.sqrt(k)
    return h


@functools.cache
def _hermite(terms: int) -> Tensor:
    """``He_k(z) w(z) / √k!`` on the fixed 1-D nodes, shape (nodes, terms)."""
    z, w = normal_nodes()
    return _hermite_at(z, terms) * w[:, None]


def _mehler(phi: Activation, q: Tensor) -> tuple[Tensor, Tensor]:
    """``b_k² = (E[φ(√q z) He_k(z)] / √k!)²`` per point, shape (points, terms), on the fixed rule, and where
    that rule is exact (``meanfield.nodes``); elsewhere the caller takes the exact 2-D map."""
    s = q.sqrt()[:, None]
    exact = (q <= _Q_FIXED) & (not [k for k in phi.kinks if k != 0.0])
    return (phi(s * normal_nodes()[0]) @ _hermite(_TERMS)) ** 2, exact


def _powers(c: Tensor, terms: int) -> Tensor:
    return torch.cat([torch.ones_like(c)[:, None], c[:, None].expand(-1, terms - 1).cumprod(-1)], -1)


def _series_c_star(b2: Tensor, wv: Tensor, bv: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """c* of the series map (the shared solver, Newton from 0), the rate χ_c there, and whether the series'
    tail is small enough for ξ_c to ~1e-7 (the terms past the last are estimated by the last eight)."""
    k = torch.arange(1, _TERMS, dtype=torch.float64)

    def value_and_slope(c: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        p = _powers(c, _TERMS)
        value = (wv[idx] * (b2[idx] * p).sum(-1) + bv[idx]) / q[idx]
        return value, wv[idx] * (b2[idx, 1:] * k * p[:, :-1]).sum(-1) / q[idx]

    c = solve_correlation(value_and_slope, torch.zeros_like(wv))
    terms = wv[:, None] * b2[:, 1:] * k * _powers(c, _TERMS)[:, :-1] / q[:, None]
    rate = terms.sum(-1)
    # ξ_c = -1/ln(rate): a relative error ε in the rate is a relative error ε/|ln rate| in ξ_c.
    converged = terms[:, -8:].sum(-1) <= 1e-7 * rate * (1 - rate).abs()
    return c, rate, converged


def _chaotic_rate(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor) -> Tensor:
    """χ_c at the stable c* for chaotic points (flat tensors): the series where it has converged, else the same
    solver on the exact 2-D map. A truncated series with exact coefficients lies below the map (its terms are
    non-negative), so its c* is left of the true one: a safe start for the monotone Newton steps. Where the
    coefficients themselves are not exact (kinks away from 0, q > 4), the steps start from 0."""
    b2, exact = _mehler(phi, q)
    c, rate, converged = _series_c_star(b2, wv, bv, q)
    rest = torch.nonzero(~(converged & exact)).reshape(-1)
    if rest.numel():
        w, b, qq = wv[rest], bv[rest], q[rest]

        def value_and_slope(cc: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
            return _cmap_and_slope(phi, w[idx], b[idx], qq[idx], cc)

        c_exact = solve_correlation(value_and_slope, torch.where(exact[rest], c[rest], 0.0))
        rate[rest] = _cmap_and_slope(phi, w, b, qq, c_exact)[1]
    return rate


def phase_diagram(act: ActivationLike, weight_vars: ArrayLike, bias_vars: ArrayLike) -> PhaseDiagram:
    """χ1, q* and ξ_c on the grid ``bias_vars × weight_vars`` (rows are bias variances), equal to the
    point-wise functions (q*, χ1 to ~1e-12; ξ_c to ~1e-6). ``xi_c`` is ``nan`` where q* diverges. A 200×200 grid
    for tanh takes well under 2 s (``bench/theory_speed.py``).

    >>> from initlab.theory import phase
    >>> d = phase_diagram("tanh", [0.5, 1.0, 2.0], [0.0])
    >>> [phase(x) for x in d.chi1[0]]
    ['ordered', 'critical', 'chaotic']
    """
    phi = activation(act)
    wv_axis, bv_axis = np.asarray(weight_vars, dtype=np.float64), np.asarray(bias_vars, dtype=np.float64)
    check_variances(wv_axis, bv_axis)
    wv, bv = (t.contiguous() for t in torch.meshgrid(torch.from_numpy(wv_axis), torch.from_numpy(bv_axis),
                                                     indexing="xy"))  # fmt: skip
    q_star = _polish_length(phi, wv, bv, solve_length(_tabulated_moment(phi), wv, bv, 1.0, halvings=30))
    q = _finite(q_star)
    chi = _chi1(phi, wv, q)
    finite = torch.isfinite(q_star)
    rate = chi.where(finite, torch.nan)
    chaotic = (chi >= 1) & finite
    if bool(chaotic.any()):
        rate[chaotic] = _chaotic_rate(phi, wv[chaotic], bv[chaotic], q[chaotic])
    return PhaseDiagram(phi.name, wv_axis, bv_axis, chi.numpy(), q_star.numpy(), xi(rate).numpy())
