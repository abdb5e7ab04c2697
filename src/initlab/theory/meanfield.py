"""Mean-field signal propagation in wide random networks (Poole et al. 2016; Schoenholz et al. 2017).

A fully connected net with weights ``N(0, σ_w²/N)``, biases ``N(0, σ_b²)`` and activation φ carries, in the
wide limit, a Gaussian pre-activation of variance ``q`` per layer:

* length map ``q' = σ_w² E[φ(√q z)²] + σ_b²`` with fixed point ``q*``;
* ``χ1 = σ_w² E[φ'(√q* z)²]``: back-propagated gradient variance is multiplied by χ1 per layer. χ1 < 1 is the
  ordered phase (gradients vanish), χ1 > 1 the chaotic phase (they explode), χ1 = 1 the edge of chaos;
* correlation map ``c' = (σ_w² E[φ(u1)φ(u2)] + σ_b²) / q*`` with fixed point ``c*``, and its slope
  ``χ_c = σ_w² E[φ'(u1)φ'(u2)]`` at ``c*`` (equal to χ1 in the ordered phase, where ``c* = 1``);
* depth scales ``ξ_q = -1/ln(χ1 + σ_w² E[φ''φ])`` and ``ξ_c = -1/ln χ_c*``; a net trains up to ≈ 6·ξ_c layers.

Every function is vectorized: ``weight_var`` and ``bias_var`` may be arrays that broadcast; scalars in give
floats out. Expectations use the quadrature in ``initlab._quadrature``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from initlab._errors import fail
from initlab._quadrature import normal_nodes, normal_nodes_2d
from initlab.init.activations import Activation, activation

__all__ = [
    "DepthScales",
    "PhaseDiagram",
    "c_fixed_point",
    "chi1",
    "cmap",
    "critical_weight_var",
    "depth_scales",
    "fixed_point",
    "layer_profile",
    "phase",
    "phase_diagram",
    "qmap",
]

ActivationLike = str | nn.Module | Callable[[Tensor], Tensor] | Activation
Array = NDArray[np.float64]
_Q_TINY = 1e-30  # q* = 0 (ordered, no bias): evaluate the limit q -> 0+, which keeps χ1 of homogeneous φ right
_Q_HUGE = 1e12  # above this the length map is taken to diverge (no finite fixed point)


def _t(x: ArrayLike) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _out(x: Tensor, *inputs: ArrayLike) -> Any:
    arr = x.numpy()
    return float(arr) if all(np.ndim(i) == 0 for i in inputs) else arr


def _gauss(fn: Callable[[Tensor], Tensor], q: Tensor) -> Tensor:
    """``E[fn(√q z)]`` per element of ``q``."""
    z, w = normal_nodes()
    return (fn(q.clamp_min(_Q_TINY).sqrt()[..., None] * z) * w).sum(-1)


def qmap(act: ActivationLike, q: ArrayLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """One step of the length map ``q' = σ_w² E[φ(√q z)²] + σ_b²``.

    >>> round(qmap("relu", 1.0, 2.0), 12)
    1.0
    """
    phi = activation(act)
    qn = _t(weight_var) * _gauss(lambda x: phi(x) ** 2, _t(q)) + _t(bias_var)
    return _out(qn, q, weight_var, bias_var)


Step = Callable[[Tensor, Tensor], Tensor]  # (values, indices of the points they belong to) -> next values


def _iterate(step: Step, x0: Tensor, iters: int, *, lower: float, upper: float) -> Tensor:
    """Iterate ``x <- step(x)`` per point to the stable fixed point the iteration reaches, as a net does.

    Near the edge of chaos the maps converge at a rate close to 1 (tanh at σ_w² = 0.999 needs ~10⁴ plain
    steps to reach q* = 0), so every round also tries Aitken's Δ² extrapolation, which is exact for geometric
    convergence. It is kept only where the iterates contract and it lowers the residual: Aitken also
    converges to *repelling* fixed points, which plain iteration never reaches (GELU at σ_w² = 3 has one at
    q = 3.1 but diverges). Values are clamped to [lower, upper]; points converge on their own (active set).
    """
    x = x0.clone()
    active = torch.arange(x.numel())
    for _ in range(iters // 4):
        x0_ = x[active]
        x1 = step(x0_, active)
        x2 = step(x1, active)
        denominator = x2 - 2 * x1 + x0_
        aitken = x2 - (x2 - x1) ** 2 / denominator.where(denominator != 0, 1.0)
        contracting = (x2 - x1).abs() < (x1 - x0_).abs()
        ok = contracting & (denominator != 0) & torch.isfinite(aitken) & (aitken >= lower) & (aitken <= upper)
        aitken = aitken.where(ok, x2)
        x3, after = step(x2, active), step(aitken, active)
        x_new = torch.where((after - aitken).abs() < (x3 - x2).abs(), after, x3).clamp(lower, upper)
        done = ((x_new - x0_).abs() <= 1e-13 * x0_.abs().clamp_min(1e-300)) | (x_new == lower) | (x_new == upper)
        x[active] = x_new
        active = active[~done]
        if active.numel() == 0:
            break
    return x


def _fixed_point(phi: Activation, wv: Tensor, bv: Tensor, q0: float, iters: int,
                 second_moment: Callable[[Tensor], Tensor] | None = None) -> Tensor:  # fmt: skip
    """q* per point (``inf`` where the length grows past 1e12: no finite fixed point, 0 where it dies out)."""
    moment = second_moment or (lambda x: _gauss(lambda u: phi(u) ** 2, x))
    shape = torch.broadcast_shapes(wv.shape, bv.shape)  # type: ignore[no-untyped-call]
    w_flat, b_flat = wv.expand(shape).reshape(-1), bv.expand(shape).reshape(-1)

    def step(q: Tensor, idx: Tensor) -> Tensor:
        q_next = w_flat[idx] * moment(q) + b_flat[idx]
        return torch.where(q_next < _Q_TINY, 0.0, q_next)

    q = _iterate(step, torch.full(w_flat.shape, q0, dtype=torch.float64), iters, lower=0.0, upper=_Q_HUGE)
    return torch.where(q >= _Q_HUGE, torch.inf, q).reshape(shape)


def _finite(q: Tensor) -> Tensor:
    """Where q* diverges, evaluate at a huge finite q: exact for homogeneous φ (ReLU), the limit otherwise."""
    return torch.where(torch.isinf(q), _Q_HUGE, q)


def fixed_point(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0, *, q0: float = 1.0,
                max_iter: int = 2000) -> Any:  # fmt: skip
    """The fixed point ``q*`` of the length map, iterated from ``q0`` (``inf`` where it diverges).

    For ReLU at ``σ_b = 0`` the map is ``q' = σ_w² q / 2``: ``q* = 0`` below ``σ_w² = 2``, every ``q`` at 2
    (returned as ``q0``), ``inf`` above.

    >>> round(fixed_point("relu", 1.0, 0.5), 9)
    1.0
    """
    phi = activation(act)
    return _out(_fixed_point(phi, _t(weight_var), _t(bias_var), q0, max_iter), weight_var, bias_var)


def _chi1(phi: Activation, wv: Tensor, q: Tensor) -> Tensor:
    return wv * _gauss(lambda x: phi.derivative(x) ** 2, q)


def chi1(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0, q: ArrayLike | None = None) -> Any:
    """``χ1 = σ_w² E[φ'(√q* z)²]``, the per-layer factor of back-propagated gradient variance.

    ``q`` defaults to the fixed point ``q*``.

    >>> round(chi1("relu", 2.0), 9), round(chi1("linear", 0.5), 9)
    (1.0, 0.5)
    """
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    qs = _finite(_fixed_point(phi, wv, bv, 1.0, 2000)) if q is None else _t(q)
    return _out(_chi1(phi, wv, qs), weight_var, bias_var)


def _pair(q: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    z1, z2, w = normal_nodes_2d()
    s = q.clamp_min(_Q_TINY).sqrt()[..., None]
    cc = c.clamp(-1.0, 1.0)[..., None]
    return s * z1, s * (cc * z1 + (1 - cc**2).sqrt() * z2), w


def _cmap_and_slope(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The correlation map and its slope ``χ_c``, normalized by the next layer's length (so c = 1 maps to 1
    also where q is not a fixed point, e.g. a diverging ReLU net)."""
    u1, u2, w = _pair(q, c)
    f1 = phi(u1)
    q_next = wv * (f1 * f1 * w).sum(-1) + bv
    c_next = (wv * (f1 * phi(u2) * w).sum(-1) + bv) / q_next.clamp_min(_Q_TINY)
    slope = wv * (phi.derivative(u1) * phi.derivative(u2) * w).sum(-1) * q / q_next.clamp_min(_Q_TINY)
    return c_next, slope


def cmap(act: ActivationLike, c: ArrayLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """One step of the correlation map at ``q = q*``.

    >>> round(cmap("linear", 0.3, 1.0), 6)
    0.3
    """
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    q = _finite(_fixed_point(phi, wv, bv, 1.0, 2000))
    return _out(_cmap_and_slope(phi, wv, bv, q, _t(c))[0], c, weight_var, bias_var)


_C0 = 0.5  # correlation of the two inputs the c-map starts from (any c0 in (0, 1) reaches the same c*)


def _c_star(phi: Activation, wv: Tensor, bv: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Stable fixed point ``c*`` (iterating the map from ``c0 = 0.5``, as a net does) and ``χ_c`` there.

    Iterating, not Newton from c = 0: SELU at (σ_w², σ_b²) = (1, 0) has an *unstable* fixed point at c = 0.
    """
    shape = torch.broadcast_shapes(wv.shape, bv.shape, q.shape)  # type: ignore[no-untyped-call]
    w_f, b_f, q_f = (t.expand(shape).reshape(-1) for t in (wv, bv, q))

    def step(c: Tensor, idx: Tensor) -> Tensor:
        return _cmap_and_slope(phi, w_f[idx], b_f[idx], q_f[idx], c)[0]

    c = _iterate(step, torch.full(w_f.shape, _C0, dtype=torch.float64), 400, lower=-1.0, upper=1.0)
    return c.reshape(shape), _cmap_and_slope(phi, w_f, b_f, q_f, c)[1].reshape(shape)


def c_fixed_point(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> Any:
    """The stable fixed point ``c*`` of the correlation map: 1 in the ordered phase, < 1 in the chaotic one.

    >>> round(c_fixed_point("tanh", 0.5, 0.1), 6)
    1.0
    """
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    q = _finite(_fixed_point(phi, wv, bv, 1.0, 2000))
    return _out(_c_star(phi, wv, bv, q)[0], weight_var, bias_var)


@dataclass(frozen=True)
class DepthScales:
    """``xi_q``: depth over which the length converges; ``xi_c``: depth over which correlations (and so the
    information that separates two inputs) survive. Trainable depth ≈ ``6 * xi_c`` (Schoenholz et al. 2017)."""

    xi_q: Any
    xi_c: Any

    @property
    def trainable_depth(self) -> Any:
        return 6.0 * self.xi_c


def _xi(rate: Tensor) -> Tensor:
    return torch.where(rate >= 1.0, torch.inf, -1.0 / torch.log(rate.clamp_min(1e-300)))


def depth_scales(act: ActivationLike, weight_var: ArrayLike, bias_var: ArrayLike = 0.0) -> DepthScales:
    """Depth scales ``ξ_q`` and ``ξ_c`` (``inf`` at the edge of chaos, ``nan`` where q* diverges).

    >>> round(depth_scales("tanh", 0.5).xi_c, 4)  # ordered: ξ_c = -1/ln χ1 = 1/ln 2
    1.4427
    """
    phi = activation(act)
    wv, bv = _t(weight_var), _t(bias_var)
    q_star = _fixed_point(phi, wv, bv, 1.0, 2000)
    q = _finite(q_star)
    chi = _chi1(phi, wv, q)
    xi_q = _xi(chi + wv * _gauss(lambda x: phi.second_derivative(x) * phi(x), q))
    _, chi_c = _c_star(phi, wv, bv, q)
    xi_c = _xi(torch.where(chi < 1, chi, chi_c))
    # No finite q*: the length diverges and the depth scales are undefined.
    xi_q, xi_c = xi_q.where(torch.isfinite(q_star), torch.nan), xi_c.where(torch.isfinite(q_star), torch.nan)
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
    phi = activation(act)
    wv = torch.tensor(float(weight_var), dtype=torch.float64)
    qs, q = [], torch.tensor(float(q0), dtype=torch.float64)
    for layer in range(depth):
        q = wv * (q if layer == 0 else _gauss(lambda x: phi(x) ** 2, q)) + bias_var
        qs.append(q)
    chis = [float(_chi1(phi, wv, qq)) for qq in qs]
    grads = [1.0] * depth  # δ_l = φ'(h_l) Wᵀ δ_{l+1}: Var δ_l = χ(q_l) · Var δ_{l+1}
    for layer in range(depth - 2, -1, -1):
        grads[layer] = chis[layer] * grads[layer + 1]
    return [LayerTheory(i + 1, float(qs[i]), chis[i], grads[i]) for i in range(depth)]


def phase(chi: float, tol: float = 0.02) -> str:
    """``"ordered"`` (gradients vanish), ``"chaotic"`` (explode) or ``"critical"`` (within ``tol`` of 1)."""
    if abs(chi - 1.0) <= tol:
        return "critical"
    return "ordered" if chi < 1 else "chaotic"


def critical_weight_var(act: ActivationLike, bias_var: float = 0.0, *, upper: float = 1e3) -> float:
    """The weight variance ``σ_w²`` on the edge of chaos (``χ1 = 1``) for a bias variance ``σ_b²``.

    ReLU: 2 (He init) at any ``σ_b``; tanh: 1 at ``σ_b = 0``.

    Raises:
        InitlabError: where χ1 stays below or above 1 for all ``σ_w²`` in ``(0, upper]``.

    >>> round(critical_weight_var("relu"), 9), round(critical_weight_var("tanh"), 6)
    (2.0, 1.0)
    """
    phi = activation(act)
    bv = torch.tensor(float(bias_var), dtype=torch.float64)
    at_zero = _edge_of_ordered_zero(phi, bv)
    if at_zero is not None:
        return at_zero

    def excess(log_wv: float) -> float:
        wv = torch.tensor(math.exp(log_wv), dtype=torch.float64)
        return float(_chi1(phi, wv, _finite(_fixed_point(phi, wv, bv, 1.0, 2000)))) - 1.0

    lo, hi = math.log(1e-3), math.log(upper)
    f_lo, f_hi = excess(lo), excess(hi)
    if f_lo > 0 or f_hi < 0:
        reason = "χ1 > 1 already at σ_w² = 0.001" if f_lo > 0 else f"χ1 < 1 even at σ_w² = {upper:g}"
        raise fail(f"activation {phi.name!r} has no critical point at σ_b² = {bias_var}: {reason}",
                   fix="Try another bias variance, or another activation.")  # fmt: skip
    from scipy import optimize  # imported here: scipy.optimize costs 0.4 s at start-up of every process

    return math.exp(optimize.brentq(excess, lo, hi, xtol=1e-13, rtol=1e-13))


_SERIES_TERMS = 64


@functools.cache
def _weighted_hermite(terms: int) -> Tensor:
    """``w_n · He_k(z_n) / √k!`` on the 1-D nodes, shape (nodes, terms), by the stable normalized recurrence."""
    z, w = normal_nodes()
    h = torch.empty(z.shape[0], terms, dtype=torch.float64)
    h[:, 0] = 1.0
    h[:, 1] = z
    for k in range(2, terms):
        h[:, k] = (z * h[:, k - 1] - math.sqrt(k - 1) * h[:, k - 2]) / math.sqrt(k)
    return h * w[:, None]


class _Tables:
    """``E[φ²]``, ``E[φ'²]`` and the Mehler coefficients ``b_k²`` of ``φ(√q z)`` tabulated over q.

    The length map depends on (σ_w², σ_b²) only through these 1-D functions of q, so a whole grid iterates
    by interpolation (log-log, linear; relative error ~1e-6 on 3,000 points over 26 decades) instead of
    evaluating φ on every grid point. The correlation map uses the Mehler series
    ``E[φ(u1)φ(u2)] = Σ_k b_k² c^k`` with ``b_k = E[φ(√q z) He_k(z)] / √k!``: a polynomial per point,
    accurate for smooth φ; for kinked φ the series converges slowly (the point-wise functions use exact 2-D
    quadrature instead).
    """

    def __init__(self, phi: Activation) -> None:
        self.log_q = torch.linspace(math.log(1e-14), math.log(_Q_HUGE), 3000, dtype=torch.float64)
        q = self.log_q.exp()
        z, _ = normal_nodes()
        x = q.sqrt()[:, None] * z
        self.log_v = _gauss_at(phi(x) ** 2).clamp_min(1e-300).log()
        self.log_d = _gauss_at(phi.derivative(x) ** 2).clamp_min(1e-300).log()
        self.b2 = (phi(x) @ _weighted_hermite(_SERIES_TERMS)) ** 2

    def _locate(self, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lq = q.clamp_min(1e-300).log()
        idx = torch.searchsorted(self.log_q, lq).clamp(1, self.log_q.numel() - 1) - 1
        frac = (lq - self.log_q[idx]) / (self.log_q[idx + 1] - self.log_q[idx])
        return lq, idx, frac

    def _interp(self, table: Tensor, q: Tensor) -> Tensor:
        _, idx, frac = self._locate(q)  # extrapolates linearly in log-log below the table (V ∝ q near 0)
        return (table[idx] + frac * (table[idx + 1] - table[idx])).exp().where(q > 0, 0.0)

    def second_moment(self, q: Tensor) -> Tensor:
        return self._interp(self.log_v, q)

    def slope(self, q: Tensor) -> Tensor:
        return self._interp(self.log_d, q.clamp_min(1e-14))

    def series(self, q: Tensor) -> Tensor:
        _, idx, frac = self._locate(q.clamp_min(1e-14))
        frac = frac.clamp(0.0, 1.0)[:, None]
        return self.b2[idx] + frac * (self.b2[idx + 1] - self.b2[idx])


def _gauss_at(values: Tensor) -> Tensor:
    _, w = normal_nodes()
    return (values * w).sum(-1)


def _chi_c_series(b2: Tensor, wv: Tensor, bv: Tensor) -> Tensor:
    """``χ_c`` at the stable ``c*`` of the series map (iterated from ``c0 = 0.5`` like ``_c_star``)."""
    k = torch.arange(_SERIES_TERMS, dtype=torch.float64)
    q_next = wv * b2.sum(-1) + bv

    def powers(c: Tensor) -> Tensor:
        return torch.cat([torch.ones_like(c)[:, None], c[:, None].expand(-1, _SERIES_TERMS - 1).cumprod(-1)], -1)

    def step(c: Tensor, idx: Tensor) -> Tensor:
        return (wv[idx] * (b2[idx] * powers(c)).sum(-1) + bv[idx]) / q_next[idx]

    c = _iterate(step, torch.full_like(wv, _C0), 400, lower=-1.0, upper=1.0)
    return wv * (b2[:, 1:] * k[1:] * powers(c)[:, :-1]).sum(-1) / q_next


def _edge_of_ordered_zero(phi: Activation, bv: Tensor) -> float | None:
    """With σ_b = 0 and φ(0) = 0, q* = 0 is a fixed point, stable while χ1 at q → 0+ is below 1; the edge of
    chaos is where it turns unstable, ``σ_w² = 1 / E[φ'(0+ z)²]`` exactly (tanh: 1, ReLU: 2). Above it χ1
    approaches 1 only quadratically, so a root finder would lose half the digits there. Returns None where
    this does not apply (a bias, φ(0) ≠ 0, or an unbounded φ that escapes to q* = ∞ first, like GELU)."""
    zero = torch.zeros(1, dtype=torch.float64)
    if float(bv) != 0.0 or float(phi(zero)) != 0.0:
        return None
    wv = 1.0 / float(_gauss(lambda x: phi.derivative(x) ** 2, torch.zeros((), dtype=torch.float64)))
    below = _fixed_point(phi, torch.tensor(wv * (1 - 1e-3), dtype=torch.float64), bv, 1.0, 2000)
    return wv if float(below) == 0.0 else None


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


def phase_diagram(act: ActivationLike, weight_vars: ArrayLike, bias_vars: ArrayLike) -> PhaseDiagram:
    """χ1, q* and ξ_c on the grid ``bias_vars × weight_vars`` (rows are bias variances).

    Computed from 1-D tables of the activation (see ``_Tables``): a 200×200 grid for tanh takes well under
    2 s (``bench/theory_speed.py``); values agree with the point-wise functions to ~1e-5 for smooth φ.
    ``xi_c`` is ``nan`` where q* diverges.

    >>> d = phase_diagram("tanh", [0.5, 1.0, 2.0], [0.0])
    >>> [phase(x) for x in d.chi1[0]]
    ['ordered', 'critical', 'chaotic']
    """
    phi = activation(act)
    tables = _tables(phi)
    wv_axis, bv_axis = np.asarray(weight_vars, dtype=np.float64), np.asarray(bias_vars, dtype=np.float64)
    wv, bv = torch.meshgrid(_t(wv_axis), _t(bv_axis), indexing="xy")
    q_star = _fixed_point(phi, wv, bv, 1.0, 2000, second_moment=tables.second_moment)
    q = _finite(q_star)
    chi = wv * tables.slope(q)
    finite = torch.isfinite(q_star)
    chaotic = (chi > 1) & finite
    xi_rate = chi.where(finite, torch.nan)
    if bool(chaotic.any()):
        xi_rate[chaotic] = _chi_c_series(tables.series(q[chaotic]), wv[chaotic], bv[chaotic])
    return PhaseDiagram(phi.name, wv_axis, bv_axis, chi.numpy(), q_star.numpy(), _xi(xi_rate).numpy())


@functools.lru_cache(maxsize=32)
def _tables(phi: Activation) -> _Tables:
    return _Tables(phi)
