"""What a tensor's values say about the distribution that drew them: the statistics ``verify`` and ``identify`` read
off one pass over a tensor (its mean and std) and a strided sample of it, and the tests that compare them with one
distribution of independent entries (:mod:`initlab.init._formulas`' ``Normal``, ``Uniform``, ``TruncatedNormal``).

Each test gives a p-value under "these entries were drawn from that distribution":

* ``std``: the sample variance against the distribution's, z = (s²/σ² − 1) / √((κ − 1)/n), κ its kurtosis (the
  sampling variance of a variance, exact for any distribution of independent entries up to O(1/n²));
* ``mean``: z = (x̄ − µ) / (σ/√n);
* ``shape``: the Kolmogorov–Smirnov test (scipy's ``kstest``, asymptotic p-value) of the sample, standardized by
  its own std, against the distribution's standardized shape (so a wrong scale shows in ``std`` and a wrong shape
  here; estimating the scale makes the test conservative);
* ``tails``: the sample's kurtosis against the distribution's, with its delta-method standard error
  √((µ8 − 4µ6µ4 + 4µ4³ − µ4²)/m) (24/m for a normal): it tells a truncated normal from a normal of the same std,
  which the KS test on a sample of this size barely does;
* ``bounds``: a bounded distribution (uniform, truncated) with a sample entry outside its bounds has p = 0.

The sample is every ``n // SAMPLE``-th entry: under the hypothesis the entries are independent, so a strided
sample is a random one, and it costs no pass over the tensor.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from initlab.init import _formulas as f

__all__ = ["SAMPLE", "Evidence", "Law", "evidence", "law_of", "p_values"]

SAMPLE = 8192  # entries in the strided sample the shape tests read
ELEMENTWISE = (f.Uniform, f.Normal, f.TruncatedNormal)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One tensor's entries: their count, mean and std (population), and a strided sample of them."""

    n: int
    mean: float
    std: float
    sample: np.ndarray

    @property
    def kurtosis(self) -> float:
        centered = self.sample - self.sample.mean()
        variance = float(np.mean(centered**2))
        return float(np.mean(centered**4)) / variance**2 if variance > 0 else math.nan


def evidence(values: Tensor) -> Evidence:
    """Read one tensor: one pass for its mean and std, and a strided sample of :data:`SAMPLE` entries."""
    flat = values.detach().reshape(-1)
    flat = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    std, mean = torch.std_mean(flat, correction=0)
    step = max(1, flat.numel() // SAMPLE)
    sample = flat[::step][:SAMPLE].double().cpu().numpy()
    return Evidence(flat.numel(), float(mean), float(std), sample)


@dataclasses.dataclass(frozen=True)
class Law:
    """A distribution of independent entries as the tests need it: its family, mean, std, bounds, and its
    standardized shape (CDF and central moments at mean 0, std 1)."""

    family: str  # "normal", "uniform" or "truncated normal [a, b]"
    mean: float
    std: float
    low: float = -math.inf
    high: float = math.inf
    a: float = -math.inf  # truncation, in units of the parent normal's sigma
    b: float = math.inf

    def __str__(self) -> str:
        if self.family == "uniform":
            return f"U({self.low:.4g}, {self.high:.4g})"
        if self.family == "normal":
            return f"N({self.mean:.4g}, {self.std:.4g}²)"
        return f"N({self.mean:.4g}, ·) truncated to [{self.low:.4g}, {self.high:.4g}], std {self.std:.4g}"

    def scaled(self, factor: float) -> Law:
        return dataclasses.replace(self, mean=self.mean * factor, std=self.std * factor, low=self.low * factor,
                                   high=self.high * factor)  # fmt: skip

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) or math.isfinite(self.high)


def law_of(dist: f.Dist) -> Law | None:
    """The :class:`Law` of an elementwise distribution (None for the others: orthogonal, sparse, constant...)."""
    match dist:
        case f.Normal(mean, std):
            return Law("normal", mean, std)
        case f.Uniform(low, high):
            return Law("uniform", (low + high) / 2, (high - low) / math.sqrt(12.0), low, high)
        case f.TruncatedNormal(mean, sigma, a, b):
            shift, spread = _truncated_moments(a, b)
            return Law("truncated normal", mean + sigma * shift, sigma * spread, mean + sigma * a, mean + sigma * b,
                       a, b)  # fmt: skip
    return None


@functools.cache
def _truncated_moments(a: float, b: float) -> tuple[float, float]:
    """Mean and std of N(0, 1) truncated to [a, b]."""
    raw = _raw_moments(a, b, 2)
    return raw[1], math.sqrt(max(raw[2] - raw[1] ** 2, 0.0))


def _raw_moments(a: float, b: float, k: int) -> list[float]:
    """E[Z^j], j = 0..k, of Z ~ N(0, 1) truncated to [a, b] (infinite bounds allowed), by the recursion
    m_j = (j − 1)·m_(j−2) + (a^(j−1)·φ(a) − b^(j−1)·φ(b)) / (Φ(b) − Φ(a)), in closed form (no integration)."""
    mass = f.standard_normal_cdf(b) - f.standard_normal_cdf(a)

    def edge(x: float, power: int) -> float:
        return x**power * math.exp(-x * x / 2) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0

    moments = [1.0, (edge(a, 0) - edge(b, 0)) / mass]
    for j in range(2, k + 1):
        moments.append((j - 1) * moments[j - 2] + (edge(a, j - 1) - edge(b, j - 1)) / mass)
    return moments


@functools.cache
def _standard(family: str, a: float, b: float) -> tuple[Callable[[np.ndarray], np.ndarray], float, float]:
    """The family's standardized shape (mean 0, std 1): its CDF, its kurtosis µ4, and the sampling variance ×m of
    the sample kurtosis µ8 − 4µ6µ4 + 4µ4³ − µ4² (delta method, symmetric or not to first order), all in closed form
    (the first call of a process must not integrate: every training run verifies its initialization)."""
    from scipy.special import ndtr

    if family == "uniform":  # x = √3·u, u ~ U(−1, 1): E x^k = 3^(k/2) / (k + 1)
        central = {k: 3 ** (k / 2) / (k + 1) for k in (4, 6, 8)}
        root3 = math.sqrt(3.0)

        def cdf(x: np.ndarray) -> np.ndarray:
            return np.clip((x + root3) / (2 * root3), 0.0, 1.0)

    else:
        lo, hi = (-math.inf, math.inf) if family == "normal" else (a, b)
        raw = _raw_moments(lo, hi, 8)
        mean, std = raw[1], math.sqrt(max(raw[2] - raw[1] ** 2, 1e-300))
        central = {k: sum(math.comb(k, j) * raw[j] * (-mean) ** (k - j) for j in range(k + 1)) / std**k
                   for k in (4, 6, 8)}  # fmt: skip
        low, mass = ndtr(lo), ndtr(hi) - ndtr(lo)

        def cdf(x: np.ndarray) -> np.ndarray:
            return np.clip((ndtr(mean + x * std) - low) / mass, 0.0, 1.0)

    m4, m6, m8 = central[4], central[6], central[8]
    return cdf, m4, m8 - 4 * m6 * m4 + 4 * m4**3 - m4**2


def p_values(ev: Evidence, law: Law, until: float = 0.0) -> dict[str, float]:
    """The p-value of each test of ``ev`` against ``law`` (module docs); the shape tests only where the sample has
    the entries to make them (≥ 64). The cheap tests come first; once one has a p-value below ``until`` the rest
    are not made."""
    from scipy import stats

    cdf, kurt, kurt_var = _standard(law.family, law.a, law.b)
    out: dict[str, float] = {}
    if law.std <= 0:
        return out
    ratio = ev.std**2 / law.std**2
    out["std"] = _two_sided((ratio - 1) / math.sqrt(max(kurt - 1, 1e-12) / ev.n))
    out["mean"] = _two_sided((ev.mean - law.mean) / (law.std / math.sqrt(ev.n)))
    if law.bounded:
        slack = 1e-6 * max(abs(law.low), abs(law.high))
        outside = np.count_nonzero((ev.sample < law.low - slack) | (ev.sample > law.high + slack))
        out["bounds"] = 0.0 if outside else 1.0
    if len(ev.sample) >= 64 and ev.std > 0 and min(out.values()) >= until:
        z = (ev.sample - law.mean) / ev.std
        out["shape"] = float(stats.kstest(z, cdf, method="asymp").pvalue)
        out["tails"] = _two_sided((ev.kurtosis - kurt) / math.sqrt(kurt_var / len(ev.sample)))
    return out


def _two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else 0.0
