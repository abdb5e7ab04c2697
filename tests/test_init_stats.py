"""Statistical tests: every scheme draws the distribution its paper specifies.

Tolerances: sample variance within 3% of the formula (on >= 73,728 values the sampling error of the variance
is below 1.1% at 2 sigma for these distributions); KS tests reject at p < 1e-3. All draws are seeded, so the
outcome is fixed; the tolerances say how far a correct implementation may wander.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import initlab as il

SHAPES = {"dense": (1000, 1000), "conv": (128, 64, 3, 3)}
# fan_in, fan_out for each shape, computed by hand from REFERENCE.md (not by initlab).
FANS = {"dense": (1000, 1000), "conv": (64 * 9, 128 * 9)}
T = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
P_MIN = 1e-3


def _trunc(std: float) -> stats.rv_continuous:
    sigma = std / T
    return stats.truncnorm(-2, 2, scale=sigma)


def _expected(name: str, fan_in: int, fan_out: int) -> stats.rv_continuous | None:
    """The target distribution of each scheme, from the papers' formulas."""
    avg = (fan_in + fan_out) / 2
    table = {
        "normal": stats.norm(0, 1),
        "random_normal": stats.norm(0, 0.05),
        "small_random": stats.norm(0, 0.01),
        "uniform": stats.uniform(0, 1),
        "random_uniform": stats.uniform(-0.05, 0.1),
        "truncated_normal": stats.truncnorm(-2, 2, scale=0.05),
        "variance_scaling": _trunc(math.sqrt(1 / fan_in)),
        "glorot_uniform": stats.uniform(-math.sqrt(3 / avg), 2 * math.sqrt(3 / avg)),
        "glorot_normal": _trunc(math.sqrt(1 / avg)),
        "xavier_normal": stats.norm(0, math.sqrt(1 / avg)),
        "he_uniform": stats.uniform(-math.sqrt(6 / fan_in), 2 * math.sqrt(6 / fan_in)),
        "he_normal": _trunc(math.sqrt(2 / fan_in)),
        "kaiming_normal": stats.norm(0, math.sqrt(2 / fan_in)),
        "lecun_uniform": stats.uniform(-math.sqrt(3 / fan_in), 2 * math.sqrt(3 / fan_in)),
        "lecun_normal": _trunc(math.sqrt(1 / fan_in)),
        "torch_default": stats.uniform(-1 / math.sqrt(fan_in), 2 / math.sqrt(fan_in)),
    }
    return table.get(name)


RANDOM_SCHEMES = [
    "normal", "random_normal", "small_random", "uniform", "random_uniform", "truncated_normal", "variance_scaling",
    "glorot_uniform", "glorot_normal", "xavier_normal", "he_uniform", "he_normal", "kaiming_normal",
    "lecun_uniform", "lecun_normal", "torch_default",
]  # fmt: skip


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("name", RANDOM_SCHEMES)
def test_variance_and_ks_match_the_formula(name: str, kind: str) -> None:
    w = torch.empty(SHAPES[kind])
    il.get(name)(w, generator=torch.Generator().manual_seed(1))
    target = _expected(name, *FANS[kind])
    assert target is not None
    assert w.var().item() == pytest.approx(target.var(), rel=0.03)
    assert stats.kstest(w.flatten().numpy(), target.cdf).pvalue > P_MIN


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("name", RANDOM_SCHEMES)
def test_numpy_backend_draws_the_same_distribution(name: str, kind: str) -> None:
    w = il.numpy.sample(name, SHAPES[kind], np.random.default_rng(2))
    target = _expected(name, *FANS[kind])
    assert target is not None
    assert w.var() == pytest.approx(target.var(), rel=0.03)
    assert stats.kstest(w.ravel(), target.cdf).pvalue > P_MIN


def _beta_marginal(m: int, gain: float = 1.0) -> stats.rv_continuous:
    # A coordinate x of a uniform unit vector in R^m: (x + 1) / 2 ~ Beta((m-1)/2, (m-1)/2).
    return stats.beta((m - 1) / 2, (m - 1) / 2, loc=-gain, scale=2 * gain)


@pytest.mark.parametrize(("shape", "m"), [((1000, 1000), 1000), ((300, 700), 700), ((64, 32, 3, 3), 288)])
def test_orthogonal_is_haar(shape: tuple[int, ...], m: int) -> None:
    w = il.orthogonal_(torch.empty(shape), gain=2.0, generator=torch.Generator().manual_seed(3))
    flat = w.reshape(shape[0], -1)
    small = min(flat.shape)
    gram = flat @ flat.T if flat.shape[0] == small else flat.T @ flat
    torch.testing.assert_close(gram, 4.0 * torch.eye(small), atol=2e-4, rtol=0)
    assert stats.kstest(w.flatten().numpy(), _beta_marginal(m, 2.0).cdf).pvalue > P_MIN
    w_np = il.numpy.orthogonal(shape, np.random.default_rng(3), gain=2.0)
    assert stats.kstest(w_np.ravel(), _beta_marginal(m, 2.0).cdf).pvalue > P_MIN


def test_delta_orthogonal_center_tap_is_orthogonal_and_rest_zero() -> None:
    w = il.delta_orthogonal_(torch.empty(64, 32, 3, 3), generator=torch.Generator().manual_seed(0))
    center = w[:, :, 1, 1]
    torch.testing.assert_close(center.T @ center, torch.eye(32), atol=1e-5, rtol=0)
    w[:, :, 1, 1] = 0
    assert w.count_nonzero() == 0


def test_sparse_zero_fraction_and_nonzero_distribution() -> None:
    w = il.sparse_(torch.empty(1000, 500), 0.3, std=0.02, generator=torch.Generator().manual_seed(0))
    assert ((w == 0).sum(dim=0) == 300).all()
    nonzero = w[w != 0].numpy()
    assert stats.kstest(nonzero, stats.norm(0, 0.02).cdf).pvalue > P_MIN


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda w, g: il.xavier_uniform_(w, gain=1.3, generator=g),
         lambda w, g: torch.nn.init.xavier_uniform_(w, gain=1.3, generator=g)),
        (lambda w, g: il.xavier_normal_(w, generator=g), lambda w, g: torch.nn.init.xavier_normal_(w, generator=g)),
        (lambda w, g: il.kaiming_uniform_(w, a=0.2, mode="fan_out", generator=g),
         lambda w, g: torch.nn.init.kaiming_uniform_(w, a=0.2, mode="fan_out", generator=g)),
        (lambda w, g: il.kaiming_normal_(w, nonlinearity="tanh", generator=g),
         lambda w, g: torch.nn.init.kaiming_normal_(w, nonlinearity="tanh", generator=g)),
        (lambda w, g: il.normal_(w, 0.5, 2.0, generator=g),
         lambda w, g: torch.nn.init.normal_(w, 0.5, 2.0, generator=g)),
        (lambda w, g: il.uniform_(w, -3, 1, generator=g), lambda w, g: torch.nn.init.uniform_(w, -3, 1, generator=g)),
        (lambda w, g: il.orthogonal_(w, generator=g), lambda w, g: torch.nn.init.orthogonal_(w, generator=g)),
        (lambda w, g: il.torch_default_(w, generator=g),
         lambda w, g: torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)),
        (lambda w, g: il.truncated_normal_(w, std=0.3 * T, generator=g),
         lambda w, g: torch.nn.init.trunc_normal_(w, std=0.3, a=-0.6, b=0.6, generator=g)),
    ],
)  # fmt: skip
def test_two_sample_ks_against_torch(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    for shape in ((400, 500), (64, 32, 3, 3)):
        a = ours(torch.empty(shape), torch.Generator().manual_seed(10))
        b = theirs(torch.empty(shape), torch.Generator().manual_seed(11))
        assert stats.ks_2samp(a.flatten().numpy(), b.flatten().numpy()).pvalue > P_MIN


def test_sparse_matches_torch_distribution() -> None:
    torch.manual_seed(0)  # torch.nn.init.sparse_ ignores its generator for the permutation
    a = il.sparse_(torch.empty(300, 200), 0.25, generator=torch.Generator().manual_seed(1))
    b = torch.nn.init.sparse_(torch.empty(300, 200), 0.25)
    assert ((a == 0).sum(0) == (b == 0).sum(0)).all()
    assert stats.ks_2samp(a[a != 0].numpy(), b[b != 0].numpy()).pvalue > P_MIN


@pytest.mark.parametrize("std", [1e-3, 0.02, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_truncated_normal_never_leaves_bounds_and_hits_the_std(std: float, dtype: torch.dtype) -> None:
    w = il.truncated_normal_(torch.empty(500_000, dtype=dtype), std=std, generator=torch.Generator().manual_seed(4))
    bound = torch.tensor(2 * std / T, dtype=torch.float32).to(dtype)
    assert bool(w.abs().max() <= bound)
    assert w.float().std().item() == pytest.approx(std, rel=0.01)


def test_truncated_normal_absolute_bounds_have_the_exact_std() -> None:
    # torch's trunc_normal_(std=1e-3, a=-2e-3, b=2e-3) gives 0.88e-3; initlab solves for the exact std.
    w = il.truncated_normal_(torch.empty(500_000), std=1e-3, a=-2e-3, b=2e-3, bounds="absolute",
                             generator=torch.Generator().manual_seed(5))  # fmt: skip
    assert w.abs().max().item() <= 2e-3
    assert w.std().item() == pytest.approx(1e-3, rel=0.01)


def test_truncated_normal_wide_bounds_keep_the_tails() -> None:
    w = il.truncated_normal_(torch.empty(1_000_000), a=-6, b=6, generator=torch.Generator().manual_seed(6))
    assert stats.kstest(w.numpy(), stats.truncnorm(-6, 6).cdf).pvalue > P_MIN
    assert w.abs().max().item() <= 6.0


@pytest.mark.parametrize("kind", SHAPES)
def test_critical_scheme_draws_the_edge_of_chaos_variance(kind: str) -> None:
    # N(0, σ_w²*/fan_in) with σ_w²* the root of χ1 = 1 for tanh at the documented σ_b² = 0.05.
    from initlab.theory import chi1, critical_weight_var

    wv = critical_weight_var("tanh", 0.05)
    assert chi1("tanh", wv, 0.05) == pytest.approx(1.0, abs=1e-9)
    w = il.get("critical", activation="tanh")(torch.empty(SHAPES[kind]), generator=torch.Generator().manual_seed(3))
    target = stats.norm(0, math.sqrt(wv / FANS[kind][0]))
    assert w.var().item() == pytest.approx(target.var(), rel=0.03)
    assert stats.kstest(w.flatten().numpy(), target.cdf).pvalue > P_MIN


def test_deterministic_schemes_equal_torch() -> None:
    for groups in (1, 2, 4):
        ours = il.dirac_(torch.empty(8, 8 // groups, 3, 3), groups=groups)
        theirs = torch.nn.init.dirac_(torch.empty_like(ours), groups=groups)
        assert torch.equal(ours, theirs)
    assert torch.equal(il.identity_(torch.empty(3, 5)), torch.nn.init.eye_(torch.empty(3, 5)))
    assert torch.equal(il.constant_(torch.empty(4), 0.3), torch.nn.init.constant_(torch.empty(4), 0.3))
    assert torch.equal(il.zeros_(torch.empty(4)), torch.nn.init.zeros_(torch.empty(4)))
    assert torch.equal(il.ones_(torch.empty(4)), torch.nn.init.ones_(torch.empty(4)))
