"""Mean-field signal propagation in wide random networks (Poole et al. 2016; Schoenholz et al. 2017).

A fully connected net with weights ``N(0, σ_w²/N)``, biases ``N(0, σ_b²)`` and activation φ carries, in the
wide limit, a Gaussian pre-activation of variance ``q`` per layer:

* length map ``q' = σ_w² E[φ(√q z)²] + σ_b²`` with fixed point ``q*``;
* ``χ1 = σ_w² E[φ'(√q* z)²]``: back-propagated gradient variance is multiplied by χ1 per layer. χ1 < 1 is the
  ordered phase (gradients vanish), χ1 > 1 the chaotic phase (they explode), χ1 = 1 the edge of chaos;
* correlation map ``c' = (σ_w² E[φ(u1)φ(u2)] + σ_b²) / q*`` with fixed point ``c*``, and its slope
  ``χ_c = σ_w² E[φ'(u1)φ'(u2)]`` at ``c*`` (equal to χ1 in the ordered phase, where ``c* = 1``);
* depth scales ``ξ_q = -1/ln(χ1 + σ_w² E[φ''φ])`` and ``ξ_c = -1/ln χ_c*``; a net trains up to ≈ 6·ξ_c layers.

Fixed points are the ones a net reaches (:func:`solve_length`, :func:`solve_correlation`, shared with the
phase diagram): the length map is increasing, so iterating from ``q0`` walks monotonically to the first fixed
point in the direction the map points; the correlation map is increasing and convex on [0, 1], so it has at
most one fixed point below 1, the stable one in the chaotic phase. ``q* = 0`` (the signal dies) and
``q* = inf`` (it grows without bound) are reported as such.
Expectations split their quadrature at the activation's kinks (``Activation.kinks``) in one and two
dimensions, so ReLU, ELU, SELU and hard-tanh are integrated as exactly as smooth activations.

Every function is vectorized: ``weight_var`` and ``bias_var`` may be arrays that broadcast; scalars in give
floats out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from initlab._errors import fail
from initlab._quadrature import normal_nodes, split_nodes
from initlab.init.activations import Activation, activation

__all__ = [
    "DepthScales",
    "c_fixed_point",
    "check_variances",
    "chi1",
    "cmap",
    "depth_scales",
    "fixed_point",
    "layer_profile",
    "phase",
    "qmap",
]

ActivationLike = str | nn.Module | Callable[[Tensor], Tensor] | Activation
Fn = Callable[[Tensor], Tensor]
_Q_TINY = 1e-30  # q* = 0 (ordered, no bias): evaluate the limit q -> 0+, which keeps χ1 of homogeneous φ right
_Q_HUGE = 1e12  # above this the length map is taken to diverge (no finite fixed point)
_CHUNK = 64  # points per 2-D quadrature call (16k nodes each): bounds the memory of a vectorized call


def _t(x: ArrayLike) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _out(x: Tensor, *inputs: ArrayLike) -> Any:
    arr = x.numpy()
    return float(arr) if all(np.ndim(i) == 0 for i in inputs) else arr


def check_variances(weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> None:
    """Raise an :class:`InitlabError` unless every ``σ_w²`` is finite and > 0 and every ``σ_b²`` finite and ≥ 0.

    >>> check_variances([1.0, 2.0], 0.0)  # fine: returns None; -1.0 or nan would raise
    """
    wv, bv = np.asarray(weight_var, dtype=np.float64), np.asarray(bias_var, dtype=np.float64)
    if not (np.isfinite(wv).all() and (wv > 0).all()):
        bad = wv[~(np.isfinite(wv) & (wv > 0))].reshape(-1)[0]
        raise fail("weight_var must be a finite variance > 0 (σ_w² = fan_in · Var[W])",
                   accepted="a finite number > 0, e.g. 1.0 for LeCun, 2.0 for He", received=float(bad),
                   fix="Pass a positive weight variance.")  # fmt: skip
    if not (np.isfinite(bv).all() and (bv >= 0).all()):
        bad = bv[~(np.isfinite(bv) & (bv >= 0))].reshape(-1)[0]
        raise fail("bias_var must be a finite variance ≥ 0 (σ_b² = Var[b])",
                   accepted="a finite number ≥ 0, e.g. 0.0 for zero biases", received=float(bad),
                   fix="Pass bias_var=0.0 for zero-initialized biases.")  # fmt: skip


def _check_length(q0: float) -> None:
    if not (math.isfinite(q0) and q0 > 0):
        raise fail("the input length q0 must be finite and > 0", accepted="a variance > 0, e.g. 1.0",
                   received=q0, fix="Pass the variance of the inputs, 1.0 for standardized data.")  # fmt: skip


# -- expectations, exact across kinks ---------------------------------------------------------------------------
# Panel edges in x = √q z: φ's kinks, and a grading around 0, where every activation here changes shape on a
# scale of 1: at large q (SELU at σ_w² = 1.8 has q* = 407) that scale is 1/√q in z, far below a fixed panel.
_GRADING = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


_Q_FIXED = 4.0  # up to here the fixed rule is exact to ~1e-12 for every smooth or kinked-at-0 φ (1e-8 at 16)


def _edges(phi: Activation) -> Tensor:
    return torch.tensor(sorted({*phi.kinks, *_GRADING, *(-g for g in _GRADING)}), dtype=torch.float64)


def nodes(phi: Activation, s: Tensor) -> tuple[Tensor, Tensor]:
    """Quadrature nodes and weights in z for rows of scale ``s = √q`` (shape ``(rows, 1)``): the fixed rule where
    it is exact (every row's q ≤ 4 and no kink of φ away from 0), else the rule split per row at φ's edges."""
    off_zero = [k for k in phi.kinks if k != 0.0]
    if float(s.max()) ** 2 <= _Q_FIXED and not off_zero:
        return normal_nodes()
    return split_nodes(_edges(phi)[None, :] / s)


def expect(phi: Activation, fn: Fn, q: Tensor) -> Tensor:
    """``E[fn(√q z)]``, z ~ N(0, 1), per element of ``q``; panels split at φ's kinks and graded around 0 (in
    x = √q z) where needed, so kinked activations and large q are integrated as exactly as smooth ones at
    q = 1. Rows go in chunks that stay in cache (twice as fast as one pass over a 40,000-point grid)."""
    s = q.clamp_min(_Q_TINY).sqrt().reshape(-1, 1)
    parts = []
    for i in range(0, s.shape[0], 4096):
        chunk = s[i : i + 4096]
        z, w = nodes(phi, chunk)
        parts.append((fn(chunk * z) * w).sum(-1))
    return torch.cat(parts).reshape(q.shape) if parts else torch.zeros_like(q)


def _pair_chunk(phi: Activation, f: Fn, g: Fn, s: Tensor, c: Tensor) -> Tensor:
    kinks = _edges(phi)
    rows = s.shape[0]
    z1, w1 = split_nodes(kinks[None, :] / s[:, None], 8, 8)  # (rows, n1): φ(u1) is smooth between these
    rho = (1 - c * c).clamp_min(0.0).sqrt()
    # For each z1, φ(u2) has its kinks where c z1 + ρ z2 = k/√q: split the inner rule there.
    inner_kinks = (kinks[None, None, :] / s[:, None, None] - c[:, None, None] * z1[..., None]) / rho[:, None, None]
    z2, w2 = split_nodes(inner_kinks.reshape(rows * z1.shape[1], kinks.numel()), 8, 8)
    z2, w2 = z2.reshape(rows, z1.shape[1], -1), w2.reshape(rows, z1.shape[1], -1)
    u1 = s[:, None] * z1
    u2 = s[:, None, None] * (c[:, None, None] * z1[..., None] + rho[:, None, None] * z2)
    return (f(u1) * (g(u2) * w2).sum(-1) * w1).sum(-1)


def expect_pair(phi: Activation, f: Fn, g: Fn, q: Tensor, c: Tensor) -> Tensor:
    """``E[f(u1) g(u2)]`` with ``u1 = √q z1``, ``u2 = √q (c z1 + √(1-c²) z2)``, per element of ``q`` and ``c``
    (same shape). Nested 1-D rules: the outer split where u1 crosses a kink of φ, the inner (per outer node)
    where u2 does, so the integrand is smooth on every panel (a product rule integrates across the kink line
    of φ(u2), which cost SELU's ξ_c up to 6%)."""
    s, cc = q.clamp_min(_Q_TINY).sqrt().reshape(-1), c.clamp(-1.0, 1.0).reshape(-1)
    parts = [_pair_chunk(phi, f, g, s[i : i + _CHUNK], cc[i : i + _CHUNK]) for i in range(0, s.numel(), _CHUNK)]
    return torch.cat(parts).reshape(q.shape) if parts else torch.zeros_like(q)


# -- the fixed-point solvers, one per map, shared by the point-wise functions and the phase diagram -------------
_Q_GRID = torch.logspace(-30, 12, 169, dtype=torch.float64)  # 4 points per decade


def solve_length(moment: Fn, wv: Tensor, bv: Tensor, q0: float, halvings: int = 56) -> Tensor:
    """The fixed point q* that iterating ``q' = σ_w² moment(q) + σ_b²`` from ``q0`` reaches, per point of the
    broadcast ``wv``, ``bv``: 0 where the signal dies out, ``inf`` where it grows past 1e12.

    The map is increasing, so the iteration walks monotonically from ``q0`` to the first zero of
    ``h(q) = σ_w² moment(q) + σ_b² - q`` in the direction ``h(q0)`` points to. That zero is bracketed on a
    log grid (4 points per decade: ``moment`` is evaluated there once for all points) and bisected in log space
    ``halvings`` times (fewer where the caller polishes the root itself). No extrapolation: Aitken's method,
    used before, could land on a repelling fixed point or overshoot past the stable one.
    """
    shape = torch.broadcast_shapes(wv.shape, bv.shape)  # type: ignore[no-untyped-call]
    w, b = wv.expand(shape).reshape(-1), bv.expand(shape).reshape(-1)
    x0 = torch.tensor([float(q0)], dtype=torch.float64)
    h0 = w * moment(x0) + b - q0
    out = torch.full_like(w, float(q0))  # h(q0) = 0: every q is fixed (ReLU at σ_w² = 2, σ_b = 0)
    on_grid = w[:, None] * moment(_Q_GRID)[None, :] + b[:, None] - _Q_GRID  # h on the grid, every point
    for sign, side, bound in ((1, q0 < _Q_GRID, math.inf), (-1, q0 > _Q_GRID, 0.0)):
        walking = torch.nonzero(sign * h0 > 1e-12 * q0).reshape(-1)
        grid = _Q_GRID[side] if sign > 0 else _Q_GRID[side].flip(0)
        values = on_grid[walking][:, side] if sign > 0 else on_grid[walking][:, side].flip(1)
        stop = sign * values <= 0
        found = stop.any(-1)
        out[walking[~found]] = bound
        j = stop.int().argmax(-1)[found]
        walking = walking[found]
        inside = torch.where(j > 0, grid[(j - 1).clamp_min(0)], float(q0))
        outside = grid[j]
        for _ in range(halvings):
            mid = (inside * outside).sqrt()
            keep = sign * (w[walking] * moment(mid) + b[walking] - mid) > 0
            inside, outside = torch.where(keep, mid, inside), torch.where(keep, outside, mid)
        out[walking] = (inside * outside).sqrt()
    return out.reshape(shape)


ValueAndSlope = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (c, indices) -> (map(c), map'(c))


def solve_correlation(value_and_slope: ValueAndSlope, start: Tensor, iters: int = 200) -> Tensor:
    """The fixed point c* of a correlation map on [0, 1] that a net reaches, per point, by Newton's method.

    On [0, 1] the map ``P(c)`` (normalized so that P(1) = 1) is increasing and convex, because its Mehler
    series ``Σ b_k² c^k`` has non-negative coefficients, and P(0) ≥ 0. So ``P(c) - c`` has at most one zero
    below 1: in the chaotic phase (P'(1) = χ1 > 1) that zero is c*, the fixed point iteration reaches from any
    c0 in (0, 1); in the ordered phase there is none and c* = 1. Newton's method from any ``start`` ≤ c* rises
    monotonically to it in both cases (quadratically, or at half a step per iteration where the zero is
    double, on the edge of chaos). ``start`` = 0 is always safe; a close start from a cheaper model saves work.
    """
    c = start.clone()
    active = torch.arange(c.numel())
    for _ in range(iters):
        value, slope = value_and_slope(c[active], active)
        step = torch.where(slope < 1, (value - c[active]) / (1 - slope), 0.0)  # slope < 1 left of c*
        new = (c[active] + step.clamp_min(0.0)).clamp(0.0, 1.0)
        done = (new - c[active]).abs() <= 1e-15
        c[active] = new
        active = active[~done]
        if active.numel() == 0:
            break
    return c


def _length(phi: Activation, wv: Tensor, bv: Tensor, q0: float = 1.0) -> Tensor:
    return solve_length(lambda q: expect(phi, lambda x: phi(x) ** 2, q), wv, bv, q0)


def _finite(q: Tensor) -> Tensor:
    """Where q* diverges, evaluate at a huge finite q: exact for homogeneous φ (ReLU), the limit otherwise."""
    return torch.where(torch.isinf(q), _Q_HUGE, q)


def _chi1(phi: Activation, wv: Tensor, q: Tensor) -> Tensor:
    return wv * expect(phi, lambda x: phi.derivative(x) ** 2, q)


# -- public, point by point ---------------------------------------------------------------------------------------
def qmap(act: ActivationLike, q: ArrayLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """One step of the length map ``q' = σ_w² E[φ(√q z)²] + σ_b²``.

    >>> round(qmap("relu", 1.0, 2.0), 12)
    1.0
    """
    check_variances(weight_var, bias_var)
    phi = activation(act)
    qn = _t(weight_var) * expect(phi, lambda x: phi(x) ** 2, _t(q)) + _t(bias_var)
    return _out(qn, q, weight_var, bias_var)


def fixed_point(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0, *, q0: float = 1.0) -> Any:
    """The fixed point ``q*`` the length map reaches from ``q0``: 0 where the signal dies out, ``inf`` where it
    grows without bound.

    For ReLU at ``σ_b = 0`` the map is ``q' = σ_w² q / 2``: ``q* = 0`` below ``σ_w² = 2``, every ``q`` at 2
    (returned as ``q0``), ``inf`` above.

    >>> round(fixed_point("relu", 1.0, 0.5), 9), fixed_point("relu", 1.5), fixed_point("relu", 2.5)
    (1.0, 0.0, inf)
    """
    check_variances(weight_var, bias_var)
    _check_length(q0)
    phi = activation(act)
    return _out(_length(phi, _t(weight_var), _t(bias_var), q0), weight_var, bias_var)


def chi1(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0, q: ArrayLike | None = None) -> Any:
    """``χ1 = σ_w² E[φ'(√q* z)²]``, the per-layer factor of back-propagated gradient variance.

    ``q`` defaults to the fixed point ``q*``.

    >>> round(chi1("relu", 2.0), 9), round(chi1("linear", 0.5), 9)
    (1.0, 0.5)
    """
    check_variances(weight_var, bias_var)
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    qs = _finite(_length(phi, wv, bv)) if q is None else _t(q)
    return _out(_chi1(phi, wv, qs), weight_var, bias_var)


def _cmap_and_slope(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The correlation map and its slope ``χ_c``, normalized by the map at c = 1 (the next layer's length), so
    that c = 1 maps to 1 exactly, also where q is not a fixed point (a diverging ReLU net)."""
    both = torch.stack([c, torch.ones_like(c)])
    pair = expect_pair(phi, phi, phi, torch.stack([q, q]), both)
    q_next = (wv * pair[1] + bv).clamp_min(_Q_TINY)
    c_next = (wv * pair[0] + bv) / q_next
    slope = wv * expect_pair(phi, phi.derivative, phi.derivative, q, c) * q / q_next
    return c_next, slope


def _c_star(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor) -> Tensor:
    """The stable fixed point ``c*`` per point of the broadcast arguments (exact 2-D map, Newton from 0)."""
    shape = torch.broadcast_shapes(wv.shape, bv.shape, q.shape)  # type: ignore[no-untyped-call]
    w_f, b_f, q_f = (t.expand(shape).reshape(-1) for t in (wv, bv, q))

    def value_and_slope(c: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        return _cmap_and_slope(phi, w_f[idx], b_f[idx], q_f[idx], c)

    return solve_correlation(value_and_slope, torch.zeros_like(w_f)).reshape(shape)


def cmap(act: ActivationLike, c: ArrayLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """One step of the correlation map at ``q = q*``.

    >>> round(cmap("linear", 0.3, 1.0), 6)
    0.3
    """
    check_variances(weight_var, bias_var)
    phi = activation(act)
    wv, bv, cc = _t(weight_var), _t(bias_var), _t(c)
    shape = torch.broadcast_shapes(wv.shape, bv.shape, cc.shape)  # type: ignore[no-untyped-call]
    wv, bv, cc = wv.expand(shape), bv.expand(shape), cc.expand(shape)
    q = _finite(_length(phi, wv, bv))
    return _out(_cmap_and_slope(phi, wv, bv, q, cc)[0], c, weight_var, bias_var)


def c_fixed_point(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """The stable fixed point ``c*`` of the correlation map: 1 in the ordered phase, < 1 in the chaotic one
    (0 for an odd φ without bias, such as tanh at σ_b = 0).

    >>> round(c_fixed_point("tanh", 0.5, 0.1), 6), round(c_fixed_point("tanh", 1.2, 0.0), 6)
    (1.0, 0.0)
    """
    check_variances(weight_var, bias_var)
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    return _out(_c_star(phi, wv, bv, _finite(_length(phi, wv, bv))), weight_var, bias_var)


@dataclass(frozen=True)
class DepthScales:
    """``xi_q``: depth over which the length converges; ``xi_c``: depth over which correlations (and so the
    information that separates two inputs) survive. Trainable depth ≈ ``6 * xi_c`` (Schoenholz et al. 2017)."""

    xi_q: Any
    xi_c: Any

    @property
    def trainable_depth(self) -> Any:
        return 6.0 * self.xi_c


def xi(rate: Tensor) -> Tensor:
    """``-1/ln(rate)``: ``inf`` at a rate of 1 or more (the edge of chaos), ``nan`` where the rate is."""
    return torch.where(rate >= 1.0, torch.inf, -1.0 / torch.log(rate.clamp_min(1e-300))).where(~rate.isnan(), rate)


def depth_scales(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> DepthScales:
    """Depth scales ``ξ_q`` and ``ξ_c`` (``inf`` at the edge of chaos, ``nan`` where q* diverges).

    >>> round(depth_scales("tanh", 0.5).xi_c, 4)  # ordered: ξ_c = -1/ln χ1 = 1/ln 2
    1.4427
    >>> round(depth_scales("tanh", 1.2).xi_c, 1)  # chaotic, c* = 0: ξ_c = -1/ln(σ_w² E[φ'(√q* z)]²)
    216.8
    """
    check_variances(weight_var, bias_var)
    phi = activation(act)
    wv, bv = torch.broadcast_tensors(_t(weight_var), _t(bias_var))  # type: ignore[no-untyped-call]
    q_star = _length(phi, wv, bv)
    q = _finite(q_star)
    chi = _chi1(phi, wv, q)
    xi_q = xi(chi + wv * expect(phi, lambda x: phi.second_derivative(x) * phi(x), q))
    rate = chi.clone()
    chaotic = (chi >= 1) & torch.isfinite(q_star)
    if bool(chaotic.any()):
        w_c, b_c, q_c = wv[chaotic], bv[chaotic], q[chaotic]
        rate[chaotic] = _cmap_and_slope(phi, w_c, b_c, q_c, _c_star(phi, w_c, b_c, q_c))[1]
    # No finite q*: the length diverges and the depth scales are undefined.
    finite = torch.isfinite(q_star)
    xi_q, xi_c = xi_q.where(finite, torch.nan), xi(rate).where(finite, torch.nan)
    return DepthScales(_out(xi_q, weight_var, bias_var), _out(xi_c, weight_var, bias_var))


@dataclass(frozen=True)
class LayerTheory:
    """One layer of the mean-field profile: pre-activation length q, its χ, and the gradient variance
    at that layer relative to the last layer's."""

    layer: int
    q: float
    chi: float
    grad_var: float


def layer_profile(act: ActivationLike, weight_var: float, bias_var: float, depth: int,
                  q0: float = 1.0) -> list[LayerTheory]:  # fmt: skip
    """The length map iterated from ``q0`` for ``depth`` layers, with the back-propagated gradient variance.

    >>> [round(r.q, 3) for r in layer_profile("relu", 2.0, 0.0, 3)]
    [2.0, 2.0, 2.0]
    """
    check_variances(weight_var, bias_var)
    _check_length(q0)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise fail("depth must be a whole number of layers ≥ 1", accepted="an int ≥ 1", received=depth,
                   fix="Pass depth=20, for example.")  # fmt: skip
    phi = activation(act)
    wv = torch.tensor(float(weight_var), dtype=torch.float64)
    qs, q = [], torch.tensor(float(q0), dtype=torch.float64)
    for layer in range(depth):
        q = wv * (q if layer == 0 else expect(phi, lambda x: phi(x) ** 2, q)) + bias_var
        qs.append(q)
    chis = [float(_chi1(phi, wv, qq)) for qq in qs]
    grads = [1.0] * depth  # δ_l = φ'(h_l) Wᵀ δ_{l+1}: Var δ_l = χ(q_l) · Var δ_{l+1}
    for layer in range(depth - 2, -1, -1):
        grads[layer] = chis[layer] * grads[layer + 1]
    return [LayerTheory(i + 1, float(qs[i]), chis[i], grads[i]) for i in range(depth)]


def phase(chi: float, tol: float = 0.02) -> str:
    """``"ordered"`` (gradients vanish), ``"chaotic"`` (explode) or ``"critical"`` (within ``tol`` of 1).

    >>> phase(0.5), phase(1.01), phase(1.3)
    ('ordered', 'critical', 'chaotic')
    """
    if not math.isfinite(chi) or chi < 0:
        raise fail("χ1 must be a finite number ≥ 0", accepted="a value from chi1()", received=chi,
                   fix="Check the weight and bias variances it was computed from.")  # fmt: skip
    if abs(chi - 1.0) <= tol:
        return "critical"
    return "ordered" if chi < 1 else "chaotic"
