"""Mean-field theory against a reference written here, independently of initlab's code (issue 22).

The reference integrates with ``scipy.integrate.quad`` split at the activation's kinks (1-D: at z = 0; 2-D:
nested, the inner integral split where u2 crosses 0), finds fixed points with ``scipy.optimize.brentq`` after
a scan from the starting point (q0 = 1, c0 = 0.5, the point a net starts from), and defines every activation
and its derivatives in NumPy closed form. Tolerances: 1e-6 relative for q*, χ1, c* and the critical σ_w²
(1e-9 absolute where c* = 0), 1e-4 relative for the depth scales ξ_q and ξ_c, as issue 22 asks. Within 1% of
the edge of chaos (|χ1 - 1| < 0.01) c* and ξ_c are not compared: ξ_c diverges there, and c* sits within
1e-7 of 1 for kinked φ (SELU at σ_w² = 0.5, σ_b = 0: χ1 = 1.0003), where no quadrature, ours or scipy's,
resolves the map's (1 - c)^(3/2) term to 1e-6; q*, χ1 and ξ_q are still compared there.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable

import pytest
from scipy import integrate, optimize, special

import initlab as il
from initlab import theory as th

F = Callable[[float], float]
SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
LEAK = 0.01  # initlab's (and torch's) default slope


def _sig(x: float) -> float:
    return float(special.expit(x))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


# name: (φ, φ', φ'') in closed form; kinks at 0 unless KINKS says otherwise.
ACTS: dict[str, tuple[F, F, F]] = {
    "tanh": (math.tanh, lambda x: 1 - math.tanh(x) ** 2, lambda x: -2 * math.tanh(x) * (1 - math.tanh(x) ** 2)),
    "erf": (math.erf, lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x),
            lambda x: -4 * x / math.sqrt(math.pi) * math.exp(-x * x)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x)), lambda x: _sig(x) * (1 - _sig(x)) * (1 - 2 * _sig(x))),
    "relu": (lambda x: max(x, 0.0), lambda x: float(x > 0), lambda x: 0.0),
    "leaky_relu": (lambda x: x if x > 0 else LEAK * x, lambda x: 1.0 if x > 0 else LEAK, lambda x: 0.0),
    "elu": (lambda x: x if x > 0 else math.expm1(x), lambda x: 1.0 if x > 0 else math.exp(x),
            lambda x: 0.0 if x > 0 else math.exp(x)),
    "selu": (lambda x: SELU_L * (x if x > 0 else SELU_A * math.expm1(x)),
             lambda x: SELU_L * (1.0 if x > 0 else SELU_A * math.exp(x)),
             lambda x: 0.0 if x > 0 else SELU_L * SELU_A * math.exp(x)),
    "gelu": (lambda x: x * _cdf(x), lambda x: _cdf(x) + x * _pdf(x), lambda x: _pdf(x) * (2 - x * x)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x))),
             lambda x: _sig(x) * (1 - _sig(x)) * (2 + x * (1 - 2 * _sig(x)))),
    "hardtanh": (lambda x: min(max(x, -1.0), 1.0), lambda x: float(-1 < x < 1), lambda x: 0.0),
}  # fmt: skip
KINKS = {"hardtanh": (-1.0, 1.0)}  # in x; every other activation here is smooth or kinked at 0 only

WEIGHT_VARS = [0.5, 0.9, 1.2, 1.5, 1.8, 2.5, 3.0]
BIAS_VARS = [0.0, 0.05, 0.3]
Q_HUGE = 1e12


def _cuts(kinks: tuple[float, ...], lo: float, hi: float) -> list[float]:
    return sorted({lo, hi, *(k for k in kinks if lo < k < hi)})


def _e1(f: F, q: float, kinks: tuple[float, ...] = (0.0,)) -> float:
    """E[f(√q z)], split where x = √q z crosses a kink and, at large q, at x = ±40 (f changes shape within
    |x| < 40: at q = 1e12 that is |z| < 4e-5, which quad over one long interval does not see)."""
    s = math.sqrt(q)
    cuts = _cuts((0.0, *(k / s for k in (*kinks, -40.0, 40.0))), -12.0, 12.0)
    kw = {"epsabs": 1e-15, "epsrel": 1e-13, "limit": 200}
    return sum(integrate.quad(lambda z: f(s * z) * _pdf(z), a, b, **kw)[0] for a, b in itertools.pairwise(cuts))


def _e2(f: F, g: F, q: float, c: float, kinks: tuple[float, ...] = (0.0,)) -> float:
    """E[f(u1) g(u2)], u1 = √q z1, u2 = √q (c z1 + √(1-c²) z2): nested quad. The inner integral runs over
    x = u2 ~ N(√q c z1, q (1 - c²)) within 12 standard deviations, split at the kinks of g; over z2 on an
    infinite range it failed as c -> 1, where that Gaussian is narrow. The outer one is split at f's kinks."""
    s, rho = math.sqrt(q), math.sqrt(max(1 - c * c, 0.0))
    kw = {"epsabs": 1e-14, "epsrel": 1e-11, "limit": 200}

    def inner(z1: float) -> float:
        mean, sd = s * c * z1, s * rho
        if sd == 0:
            return g(mean)
        density = lambda x: math.exp(-((x - mean) ** 2) / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))  # noqa: E731
        cuts = _cuts(kinks, mean - 12 * sd, mean + 12 * sd)
        return sum(integrate.quad(lambda x: g(x) * density(x), a, b, **kw)[0] for a, b in itertools.pairwise(cuts))

    cuts = _cuts((0.0, *(k / s for k in kinks)), -12.0, 12.0)
    return sum(integrate.quad(lambda z1: f(s * z1) * inner(z1) * _pdf(z1), a, b, **kw)[0]
               for a, b in itertools.pairwise(cuts))  # fmt: skip


def _first_root(h: F, x0: float, grid: list[float]) -> float | None:
    """Walk the grid away from x0 and return the first zero of h (brentq in the first bracket), or None."""
    prev, h_prev = x0, h(x0)
    for x in grid:
        hx = h(x)
        if hx == 0:
            return x
        if (hx > 0) != (h_prev > 0):
            return optimize.brentq(h, prev, x, xtol=1e-15, rtol=1e-14)
        prev, h_prev = x, hx
    return None


@functools.cache
def ref_q_star(act: str, wv: float, bv: float) -> float:
    phi = ACTS[act][0]

    def h(q: float) -> float:
        return wv * _e1(lambda x: phi(x) ** 2, q, KINKS.get(act, (0.0,))) + bv - q

    if h(1.0) > 0:
        root = _first_root(h, 1.0, [1.1**k for k in range(1, 291)])  # up to 1e12
        return math.inf if root is None else root
    root = _first_root(h, 1.0, [0.8**k for k in range(1, 310)])  # down to 1e-30
    return 0.0 if root is None else root


def _q_eval(q: float) -> float:
    return Q_HUGE if math.isinf(q) else max(q, 1e-30)


def ref_chi1(act: str, wv: float, bv: float) -> float:
    return wv * _e1(lambda x: ACTS[act][1](x) ** 2, _q_eval(ref_q_star(act, wv, bv)), KINKS.get(act, (0.0,)))


@functools.cache
def ref_c_star(act: str, wv: float, bv: float) -> float:
    phi = ACTS[act][0]
    q = ref_q_star(act, wv, bv)

    def h(c: float) -> float:
        return (wv * _e2(phi, phi, q, c, KINKS.get(act, (0.0,))) + bv) / q - c

    if h(0.5) > 0:
        grid = sorted({*(0.5 + 0.5 * k / 16 for k in range(1, 16)), *(1 - 10.0**-k for k in range(2, 10))})
        return _first_root(h, 0.5, grid) or 1.0
    return _first_root(h, 0.5, [0.5 - 0.5 * k / 16 for k in range(1, 17)]) or 0.0


def ref_depth_scales(act: str, wv: float, bv: float) -> tuple[float, float]:
    phi, d1, d2 = ACTS[act]
    q = ref_q_star(act, wv, bv)
    chi = ref_chi1(act, wv, bv)
    kinks = KINKS.get(act, (0.0,))
    rate_q = chi + wv * _e1(lambda x: d2(x) * phi(x), _q_eval(q), kinks)
    if chi < 1:
        rate_c = chi
    else:
        c = ref_c_star(act, wv, bv)
        rate_c = wv * _e2(d1, d1, q, c, kinks)
    return tuple(math.inf if r >= 1 else -1 / math.log(r) for r in (rate_q, rate_c))  # type: ignore[return-value]


POINTS = [(a, w, b) for a in ACTS for w in WEIGHT_VARS for b in BIAS_VARS]


def _close(ours: float, ref: float, rel: float, abs_: float = 0.0) -> bool:
    if math.isinf(ref) or math.isnan(ref):
        return math.isinf(ours) if math.isinf(ref) else math.isnan(ours)
    return abs(ours - ref) <= max(rel * abs(ref), abs_)


@pytest.mark.slow
@pytest.mark.parametrize("act", list(ACTS))
def test_fixed_points_chi1_and_depth_scales_match_the_reference(act: str) -> None:
    diagram = th.phase_diagram(act, WEIGHT_VARS, BIAS_VARS)
    mismatches = []
    for i, bv in enumerate(BIAS_VARS):
        for j, wv in enumerate(WEIGHT_VARS):
            q_ref, chi_ref = ref_q_star(act, wv, bv), ref_chi1(act, wv, bv)
            finite = math.isfinite(q_ref)  # q* = 0 included: the ordered limit q -> 0+
            # No finite q*: the length diverges and initlab reports the depth scales as undefined (nan).
            xi_q_ref, xi_c_ref = ref_depth_scales(act, wv, bv) if finite else (math.nan, math.nan)
            scales = th.depth_scales(act, wv, bv)
            checks = {
                "q*": (th.fixed_point(act, wv, bv), q_ref, 1e-6),
                "q* (diagram)": (float(diagram.q_star[i, j]), q_ref, 1e-6),
                "χ1": (th.chi1(act, wv, bv), chi_ref, 1e-6),
                "χ1 (diagram)": (float(diagram.chi1[i, j]), chi_ref, 1e-6),
                "ξ_c (diagram)": (float(diagram.xi_c[i, j]), xi_c_ref, 1e-4),
                "ξ_c": (scales.xi_c, xi_c_ref, 1e-4),
            }
            if finite:
                checks["ξ_q"] = (scales.xi_q, xi_q_ref, 1e-4)
            if abs(chi_ref - 1) < 0.01:  # the edge of chaos: see the module docstring
                del checks["ξ_c"], checks["ξ_c (diagram)"]
            elif 0 < q_ref < math.inf and chi_ref > 1:
                checks["c*"] = (th.c_fixed_point(act, wv, bv), ref_c_star(act, wv, bv), 1e-6)
            for name, (ours, ref, rel) in checks.items():
                if not _close(ours, ref, rel, abs_=1e-9 if name == "c*" else 0.0):
                    mismatches.append(f"{act} σ_w²={wv} σ_b²={bv} {name}: initlab {ours!r}, reference {ref!r}")
    assert not mismatches, "\n".join(mismatches)


def test_the_points_cover_both_phases_and_zero_bias() -> None:
    # The grid above must exercise what it claims: chaotic points with a finite q* (where c* < 1 matters),
    # ordered points, and σ_b² = 0, for the bounded activations at least.
    chaotic = [(a, w, b) for a, w, b in POINTS if a in ("tanh", "erf") and th.chi1(a, w, b) > 1.02]
    ordered = [(a, w, b) for a, w, b in POINTS if th.chi1(a, w, b) < 0.98]
    assert len(POINTS) >= 10 * 20
    assert any(b == 0.0 for _, _, b in chaotic) and len(chaotic) >= 10 and len(ordered) >= 60


CRITICAL = [("tanh", 0.0), ("tanh", 0.05), ("tanh", 0.3), ("erf", 0.0), ("erf", 0.1), ("sigmoid", 0.05),
            ("relu", 0.0), ("leaky_relu", 0.0), ("elu", 0.1), ("selu", 0.0), ("selu", 0.1), ("gelu", 0.3),
            ("silu", 1.0), ("hardtanh", 0.0), ("hardtanh", 0.1)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("act", "bv"), CRITICAL)
def test_critical_weight_var_matches_the_reference(act: str, bv: float) -> None:
    ours = th.critical_weight_var(act, bv)
    # The reference: χ1(σ_w²) - 1 is continuous near the crossing; brentq in a ±1% bracket around it, after
    # checking that q* is finite and positive at both ends (a true crossing, not a jump of q*).
    lo, hi = ours * 0.99, ours * 1.01
    if bv == 0 and act in ("tanh", "erf", "relu", "leaky_relu", "selu", "hardtanh"):
        # σ_b = 0 and φ(0) = 0: the edge is where q* = 0 turns unstable, σ_w² = 1 / E[φ'(0+ z)²].
        ref = 1 / _e1(lambda x: ACTS[act][1](x) ** 2, 1e-30)
        assert ref_q_star(act, ref * 0.999, 0.0) == 0.0 and ref_chi1(act, ref * 1.001, 0.0) > 1
    else:
        assert all(0 < ref_q_star(act, w, bv) < math.inf for w in (lo, ours, hi))
        ref = optimize.brentq(lambda w: ref_chi1(act, w, bv) - 1, lo, hi, xtol=1e-14, rtol=1e-13)
    assert ours == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize(
    ("act", "bv", "jump"),
    [("gelu", 0.0, "the signal dies out (q* = 0), above it the signal grows without bound (q* = ∞)"),
     ("silu", 0.0, "the signal dies out (q* = 0), above it the signal grows without bound (q* = ∞)"),
     ("relu", 0.1, "χ1 reaches 1 only at σ_w² ≈ 2, where q* diverges")],
)  # fmt: skip
def test_no_true_crossing_is_an_error_that_says_why(act: str, bv: float, jump: str) -> None:
    with pytest.raises(il.InitlabError, match=re.escape(jump)):
        th.critical_weight_var(act, bv)


def test_gelu_without_bias_jumps_across_the_edge_in_the_reference_too() -> None:
    # Independent of initlab: from q = 1, GELU's signal dies below σ_w² ≈ 2.35 and grows without bound above,
    # and χ1 jumps from < 1 to > 1 there: there is no σ_w² with χ1 = 1 at a finite, positive q*.
    assert ref_q_star("gelu", 2.3, 0.0) == 0.0 and ref_chi1("gelu", 2.3, 0.0) < 0.6
    assert math.isinf(ref_q_star("gelu", 2.4, 0.0)) and ref_chi1("gelu", 2.4, 0.0) > 1.1


@pytest.mark.parametrize(("act", "phi"), [("tanh", math.tanh), ("relu", lambda z: max(z, 0.0)),
                                          ("sigmoid", special.expit)])  # fmt: skip
def test_lsuv_mean_field_point_matches_the_reference(act: str, phi: object) -> None:
    # issue 25: LSUV makes every pre-activation std 1, so σ_w² = 1 / E[φ(z)²] with zero biases; scipy quad,
    # split at 0 (ReLU's kink), against initlab's quadrature (1e-6)
    def second(z: float) -> float:
        return phi(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # type: ignore[operator]

    reference = 1 / sum(integrate.quad(second, a, b, epsabs=1e-13)[0] for a, b in ((-math.inf, 0), (0, math.inf)))
    from initlab.theory.schemes import scheme_point

    weight_var, bias_var = scheme_point("lsuv", act)
    assert weight_var == pytest.approx(reference, rel=1e-6) and bias_var == 0.0
