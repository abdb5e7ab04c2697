"""Mean-field theory: closed forms, and Monte Carlo against simulated random nets of width 2000."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import initlab as il
from initlab import theory as th


@pytest.mark.parametrize("weight_var", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("bias_var", [0.0, 0.1])
def test_relu_chi1_closed_form(weight_var: float, bias_var: float) -> None:
    assert th.chi1("relu", weight_var, bias_var) == pytest.approx(weight_var / 2, abs=1e-6)


def test_linear_chi1_is_weight_var() -> None:
    assert th.chi1("linear", np.array([0.3, 1.0, 2.5]), 0.2) == pytest.approx([0.3, 1.0, 2.5], abs=1e-9)


def test_critical_points() -> None:
    assert th.critical_weight_var("relu") == pytest.approx(2.0, abs=1e-6)
    assert th.critical_weight_var("tanh") == pytest.approx(1.0, abs=1e-6)
    assert th.critical_weight_var("leaky_relu") == pytest.approx(2 / (1 + 0.01**2), abs=1e-6)
    # tanh with a bias: the critical weight variance rises above 1, and chi1 is 1 there.
    wv = th.critical_weight_var("tanh", 0.05)
    assert wv > 1.0
    assert th.chi1("tanh", wv, 0.05) == pytest.approx(1.0, abs=1e-9)


def test_no_critical_point_is_an_error() -> None:
    with pytest.raises(il.InitlabError, match=re.escape(
            "activation 'sigmoid' has no critical point at σ_b² = 0.0: χ1 < 1 even at σ_w² = 50")):  # fmt: skip
        th.critical_weight_var("sigmoid", upper=50)


def test_relu_fixed_point_closed_form() -> None:
    # q* = σ_b² / (1 - σ_w²/2) below the critical line; diverges above.
    assert th.fixed_point("relu", 1.5, 0.1) == pytest.approx(0.4, rel=1e-9)
    assert math.isinf(th.fixed_point("relu", 2.5, 0.1))


def test_phases_and_depth_scales() -> None:
    assert th.phase(th.chi1("tanh", 0.5, 0.05)) == "ordered"
    assert th.phase(th.chi1("tanh", 3.0, 0.05)) == "chaotic"
    ordered = th.depth_scales("tanh", 0.8, 0.1)
    assert ordered.xi_c == pytest.approx(-1 / math.log(th.chi1("tanh", 0.8, 0.1)), rel=1e-9)
    near = th.depth_scales("tanh", th.critical_weight_var("tanh", 0.05) * 1.001, 0.05)
    assert near.xi_c > 100  # diverges at the edge of chaos


def test_phase_diagram_agrees_with_pointwise() -> None:
    wvs, bvs = np.array([0.6, 1.3, 2.2, 3.5]), np.array([0.0, 0.05, 0.2])
    d = th.phase_diagram("tanh", wvs, bvs)
    for i, bv in enumerate(bvs):
        for j, wv in enumerate(wvs):
            assert d.chi1[i, j] == pytest.approx(th.chi1("tanh", wv, bv), rel=1e-4)
            assert d.q_star[i, j] == pytest.approx(th.fixed_point("tanh", wv, bv), rel=1e-4, abs=1e-9)
            assert d.xi_c[i, j] == pytest.approx(th.depth_scales("tanh", wv, bv).xi_c, rel=1e-3)


def _simulate(act: str, wv: float, bv: float, *, width: int = 2000, depth: int = 60,
              q_in: float | None = None) -> tuple[float, float, float]:  # fmt: skip
    """A random net N(0, σ_w²/N), N(0, σ_b²): measured q, χ1 and c over the last half of the layers.
    ``q_in``: the first layer's pre-activation length (default σ_w² + σ_b², from unit-variance inputs)."""
    g = torch.Generator().manual_seed(0)
    phi = il.activation(act)
    x = torch.randn(2, width, generator=g, dtype=torch.float64)
    if q_in is not None:
        x *= math.sqrt((q_in - bv) / wv)
    x[1] = 0.5 * x[0] + math.sqrt(0.75) * x[1]  # two inputs with correlation 0.5
    hs, weights, h = [], [], x
    for _ in range(depth):
        w = torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(wv / width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * math.sqrt(bv)
        h = phi(h) @ w.T + b if hs else h @ w.T + b
        hs.append(h)
        weights.append(w)
    q = torch.stack([hh.pow(2).mean() for hh in hs[depth // 2 :]]).mean().item()
    c = torch.stack([torch.nn.functional.cosine_similarity(hh[0], hh[1], dim=0) for hh in hs[depth // 2 :]])
    delta = torch.randn(2, width, generator=g, dtype=torch.float64)
    ratios = []
    for layer in range(depth - 1, depth // 2, -1):
        new = (delta @ weights[layer]) * phi.derivative(hs[layer - 1])
        ratios.append((new.pow(2).sum() / delta.pow(2).sum()).item())
        delta = new
    return q, float(np.mean(ratios)), c.mean().item()


CASES = [
    ("relu", 1.5, 0.1), ("relu", 1.0, 0.5), ("tanh", 1.5, 0.05), ("tanh", 3.0, 0.2), ("gelu", 1.5, 0.05),
    ("gelu", 1.2, 0.1), ("selu", 1.0, 0.0), ("selu", 0.7, 0.3), ("sigmoid", 3.0, 0.2), ("sigmoid", 8.0, 0.5),
    # tanh without bias on the chaotic side (issue 22): c* = 0, not the -0.587 an extrapolation once returned.
    ("tanh", 1.2, 0.0), ("tanh", 4.0, 0.0),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("act", "wv", "bv"), CASES)
def test_monte_carlo_agrees_with_quadrature(act: str, wv: float, bv: float) -> None:
    # Tolerance 2%: with width 2000 and 30 layers averaged, the Monte Carlo error is below ~0.7%.
    q_mc, chi_mc, c_mc = _simulate(act, wv, bv)
    assert q_mc == pytest.approx(th.fixed_point(act, wv, bv), rel=0.02)
    assert chi_mc == pytest.approx(th.chi1(act, wv, bv), rel=0.02)
    if th.depth_scales(act, wv, bv).xi_c < 8:  # c converges within the 30 layers simulated (e^-30/8 < 3%)
        assert c_mc == pytest.approx(th.c_fixed_point(act, wv, bv), rel=0.02, abs=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(("act", "wv", "bv"), CASES)
def test_monte_carlo_correlation_map_one_step(act: str, wv: float, bv: float) -> None:
    # Two inputs at length q* with correlation 0.6 through one layer, 16 independent draws of width 4000:
    # tolerance 0.02 absolute, ~4 Monte Carlo standard deviations (each draw's cosine has std ~0.02).
    g = torch.Generator().manual_seed(1)
    q, width, phi = th.fixed_point(act, wv, bv), 4000, il.activation(act)
    measured = []
    for _ in range(16):
        z = torch.randn(2, width, generator=g, dtype=torch.float64)
        h = math.sqrt(q) * torch.stack([z[0], 0.6 * z[0] + 0.8 * z[1]])
        w = torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(wv / width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * math.sqrt(bv)
        out = phi(h) @ w + b
        measured.append(torch.nn.functional.cosine_similarity(out[0], out[1], dim=0).item())
    assert float(np.mean(measured)) == pytest.approx(th.cmap(act, 0.6, wv, bv), abs=0.02)


def test_layer_profile_matches_the_maps() -> None:
    profile = th.layer_profile("tanh", 1.5, 0.05, 4, q0=2.0)
    assert profile[0].q == pytest.approx(1.5 * 2.0 + 0.05)
    assert profile[1].q == pytest.approx(th.qmap("tanh", profile[0].q, 1.5, 0.05))
    assert profile[2].grad_var == pytest.approx(profile[2].chi)
    assert profile[0].grad_var == pytest.approx(profile[0].chi * profile[1].chi * profile[2].chi)
    assert profile[-1].grad_var == 1.0


@pytest.mark.slow
def test_monte_carlo_gelu_at_its_critical_point() -> None:
    # GELU with σ_b² = 0.3: the edge of chaos is a true crossing at σ_w² ≈ 1.956 (q* ≈ 8.77), not the point
    # σ_w² = 2 where q* diverges. One layer of width 4000, 8 draws of 256 inputs at length q*: the output length
    # is q* again and back-propagated gradient variance is multiplied by χ1 = 1. Over many layers the length
    # random-walks at finite width, because the map's slope at q* is close to 1, so one step is the sharp
    # test. Tolerance 2% (each estimate's Monte Carlo error is ~0.3%).
    wv = th.critical_weight_var("gelu", 0.3)
    q_star = th.fixed_point("gelu", wv, 0.3)
    assert wv == pytest.approx(1.956, abs=1e-3) and 0 < q_star < 20
    g, phi, width = torch.Generator().manual_seed(2), il.activation("gelu"), 4000
    lengths, chis = [], []
    for _ in range(8):
        h = torch.randn(256, width, generator=g, dtype=torch.float64) * math.sqrt(q_star)
        w = torch.randn(width, width, generator=g, dtype=torch.float64) * math.sqrt(wv / width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * math.sqrt(0.3)
        lengths.append((phi(h) @ w.T + b).pow(2).mean().item())
        delta = torch.randn(256, width, generator=g, dtype=torch.float64)
        chis.append(((delta @ w) * phi.derivative(h)).pow(2).mean().item() / delta.pow(2).mean().item())
    assert float(np.mean(lengths)) == pytest.approx(q_star, rel=0.02)
    assert float(np.mean(chis)) == pytest.approx(1.0, rel=0.02)
