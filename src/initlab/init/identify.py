"""Which initialization does each weight carry? (issue 32, ``il.identify``.)

For every weight of a model, the known schemes (initlab's registry: torch's, Keras' and the papers' names, each at
its published defaults and at that weight's fans, as the structure layer reads them) and the frameworks' defaults
(torch's ``U(±1/√fan_in)`` for Linear and Conv, ``N(0, 1)`` for Embedding; Hugging Face's ``N(0, 0.02²)``) whose
distribution the values are consistent with, by the tests of :mod:`initlab.init._evidence`. A weight consistent
with none is told apart:

* **unknown init**: its entries still look independent draws of one normal or uniform law (the shape tests pass,
  every row has the same spread), at a scale no known scheme gives these fans;
* **looks trained**: heavy tails, a shape no initializer draws, or rows whose spreads differ far beyond sampling
  (a chi-square test of the row variances: training moves some units more than others).

So on a loaded checkpoint the layers that were never loaded (still at their fresh init) or were re-randomized stand
out from the trained ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from initlab._errors import InitlabError
from initlab._tables import Rows
from initlab.init import _formulas as f
from initlab.init._evidence import Evidence, Law, evidence, law_of, p_values
from initlab.init.fans import Fans, fans
from initlab.init.model import read_structure
from initlab.init.registry import get, schemes
from initlab.init.structure import unwrap

__all__ = ["ALPHA", "Candidate", "Identified", "IdentifyReport", "candidates", "identify", "orthogonality"]

ALPHA = 1e-3  # the family-wise false-alarm rate of one call (Bonferroni over its tests)
TOLERANCE_ORTHOGONAL = 1e-3  # max |W Wᵀ/g² − I| of an orthogonal weight drawn in float32
_NAMED = {
    "torch_default": "torch_default (torch's nn.Linear/Conv default)",
    "normal": "normal (torch's nn.Embedding default, N(0, 1))",
    "gpt2": "N(0, 0.02²) (Hugging Face's initializer_range, GPT-2)",
}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A scheme's distribution at one weight's fans, under every name that draws the same."""

    names: tuple[str, ...]
    law: Law | None  # None: orthogonal
    gain: float = 1.0

    def __str__(self) -> str:
        return " = ".join(self.names)


def candidates(layer_fans: Fans, shape: tuple[int, ...]) -> list[Candidate]:
    """Every known scheme (at its published defaults) that draws independent entries or an orthogonal matrix, at
    ``layer_fans``; schemes that draw the same distribution are one candidate."""
    found: dict[tuple[Any, ...], Candidate] = {}
    for scheme in schemes():
        if scheme.needs_data or scheme.zero or scheme.gain_rule or scheme.provider or scheme.embedding_rule:
            continue
        if scheme.residual_rule and scheme.name != "gpt2":
            continue
        try:
            dist = get(scheme.name).dist(layer_fans)
        except InitlabError:  # a scheme with no value for these fans
            continue
        law, gain = law_of(dist), dist.gain if isinstance(dist, f.Orthogonal) else 1.0
        if law is None and not (isinstance(dist, f.Orthogonal) and len(shape) >= 2):
            continue
        key = ("orthogonal", round(gain, 9)) if law is None else _same(law)
        name = _NAMED.get(scheme.name, scheme.name)
        old = found.get(key)
        found[key] = Candidate((*old.names, name) if old else (name,), law, gain)
    return list(found.values())


def _same(law: Law) -> tuple[Any, ...]:
    """What two laws share when they are the same distribution (up to rounding)."""
    return (
        law.family,
        round(law.std, 12),
        *(round(v / max(law.std, 1e-300), 6) for v in (law.mean, law.low, law.high)),
    )


def orthogonality(values: Tensor, gain: float, blocks: int = 1, spare: int = 0) -> float:
    """How far a weight read as a (rows × rest) matrix, or each of its ``blocks`` row blocks (an LSTM's gates), is
    from gain × a (semi-)orthogonal matrix: the largest |σ²/g² − 1| over its singular values σ, except that
    ``spare`` of them may lie anywhere in [0, g] (rows a plan fixed, such as a padding row, were taken out)."""
    worst = 0.0
    for block in values.detach().chunk(blocks):
        matrix = block.reshape(block.shape[0], -1).double()
        if matrix.shape[0] > matrix.shape[1]:
            matrix = matrix.T
        norms = (matrix * matrix).sum(dim=1) / gain**2  # the Gram matrix's diagonal: a cheap first refusal
        if not spare and float((norms - 1).abs().max()) > TOLERANCE_ORTHOGONAL:
            return float((norms - 1).abs().max())
        squares = torch.linalg.eigvalsh(matrix @ matrix.T / gain**2)  # ascending: σ²/g²
        kept, low = squares[spare:], squares[:spare]
        off = float((kept - 1).abs().max()) if kept.numel() else 0.0
        if low.numel():
            off = max(off, float((low - 1).clamp(min=0).max()), float((-low).clamp(min=0).max()))
        worst = max(worst, off)
    return worst


def consistent(ev: Evidence, candidate: Candidate, values: Tensor, threshold: float, blocks: int = 1) -> bool:
    if candidate.law is None:
        return orthogonality(values, candidate.gain, blocks) <= TOLERANCE_ORTHOGONAL
    return min(p_values(ev, candidate.law, until=threshold).values(), default=1.0) >= threshold


@dataclasses.dataclass
class Identified:
    """What one weight's values are consistent with."""

    name: str
    shape: tuple[int, ...]
    fan_in: int | None
    fan_out: int | None
    std: float
    verdict: str  # "fresh init", "constant", "unknown init", "looks trained"
    matches: str  # the candidates it is consistent with, most specific first
    why: str


@dataclasses.dataclass
class IdentifyReport(Rows):
    """Per weight: the schemes and defaults its values are consistent with, or why none."""

    rows: list[Identified]
    alpha: float = ALPHA
    notes: list[str] = dataclasses.field(default_factory=list)
    title: ClassVar[str] = "initlab.identify"
    columns: ClassVar[tuple[str, ...]] = ("name", "shape", "fan_in", "fan_out", "std", "verdict", "matches", "why")

    def verdicts(self) -> dict[str, str]:
        return {row.name: row.verdict for row in self.rows}


def identify(model: nn.Module, *, example: Any = None, alpha: float = ALPHA) -> IdentifyReport:
    """For every weight of ``model`` (every parameter of rank ≥ 2; each tied weight once), the schemes and defaults
    its distribution is consistent with (module docs), with fans from the model's structure (one forward pass on
    ``example``, or an input read off the model; else the layer types). ``alpha``: the chance that a weight drawn by
    a listed scheme is not named for it, over the whole call."""
    model = unwrap(model)
    structure = read_structure(model, example, None)
    weights = {name: (p, *_fans_of(name, p, structure, model)) for name, p in model.named_parameters() if p.ndim >= 2}
    return identify_weights(weights, alpha, structure.why)


def identify_weights(weights: Mapping[str, tuple[Tensor, Fans, int]], alpha: float = ALPHA,
                     why: str = "") -> IdentifyReport:  # fmt: skip
    """:func:`identify` on named tensors with their fans and row blocks (a checkpoint read without its model)."""
    threshold = alpha / max(1, 5 * len(weights))  # five tests per candidate and weight
    rows = [_identify_one(name, *weight, threshold) for name, weight in weights.items()]
    notes = [f"fans from the model's structure: {why}"] if why else []
    return IdentifyReport(rows, alpha, notes)


def _identify_one(name: str, values: Tensor, layer_fans: Fans, blocks: int, threshold: float) -> Identified:
    ev = evidence(values)
    row = Identified(name, tuple(values.shape), layer_fans.fan_in, layer_fans.fan_out, ev.std, "", "", "")
    if ev.std == 0:
        row.verdict, row.matches = "constant", f"constant {ev.mean:.4g}"
        return row
    shape = tuple(values.shape)
    matched = [c for c in candidates(layer_fans, shape) if consistent(ev, c, values, threshold, blocks)]
    if any(c.law is None for c in matched):  # exactly orthogonal: no draw of independent entries is
        matched = [c for c in matched if c.law is None]
    if matched:
        row.verdict, row.matches = "fresh init", "; ".join(map(str, matched))
        return row
    row.verdict, row.why = unknown_or_trained(ev, values, threshold)
    return row


def unknown_or_trained(ev: Evidence, values: Tensor, threshold: float) -> tuple[str, str]:
    """("unknown init", the law it looks drawn from) or ("looks trained", why) for a weight no candidate matches."""
    fitted = []
    for family in ("normal", "uniform"):
        law = Law(family, ev.mean, ev.std)
        if family == "uniform":
            half = ev.std * math.sqrt(3.0)
            law = dataclasses.replace(law, low=ev.mean - half, high=ev.mean + half)
        p = p_values(ev, law)
        if min(p.get("shape", 1.0), p.get("tails", 1.0), p.get("bounds", 1.0)) >= threshold:
            fitted.append(law)
    spread = row_spread(values, ev)
    if fitted and spread[1] >= threshold:
        return "unknown init", f"{fitted[0]} (mean {ev.mean:.3g}): no known scheme draws this std at these fans"
    kurt = ev.kurtosis
    reasons = [f"kurtosis {kurt:.3g} (normal 3, uniform 1.8)"] if not fitted else []
    if spread[1] < threshold:
        reasons.append(f"its rows' (or columns') spreads differ ×{spread[0]:.3g} beyond sampling (p {spread[1]:.2g})")
    return "looks trained", "; ".join(reasons) or "no initializer's shape"


def row_spread(values: Tensor, ev: Evidence) -> tuple[float, float]:
    """How unequal the variances of the rows (or of the columns, whichever is further from equal) are: the max/min
    ratio of their stds and the p-value of "as equal as independent draws of one law make them":
    Σ (vᵢ − v̄)² / (v̄² (κ − 1)/m) is χ² with R − 1 degrees of freedom for R rows of m independent entries of
    kurtosis κ. Training moves some units, and some inputs, more than others."""
    from scipy import stats

    if values.ndim < 2 or not math.isfinite(ev.kurtosis):
        return 1.0, 1.0
    matrix = values.detach().reshape(values.shape[0], -1).double()
    worst = (1.0, 1.0)
    for side in (matrix, matrix.T):
        if side.shape[0] < 8 or side.shape[1] < 16:
            continue
        variances = side.var(dim=1, correction=0)
        mean = float(variances.mean())
        if mean <= 0:
            continue
        statistic = float(((variances - mean) ** 2).sum()) / (mean**2 * max(ev.kurtosis - 1, 1e-6) / side.shape[1])
        p = float(stats.chi2.sf(statistic, side.shape[0] - 1))
        if p < worst[1]:
            worst = (math.sqrt(float(variances.max()) / max(float(variances.min()), 1e-300)), p)
    return worst


def _fans_of(name: str, p: Tensor, structure: Any, model: nn.Module) -> tuple[Fans, int]:
    """A weight's fans (of one row block, where its blocks are separate layers) and its number of row blocks."""
    layer = structure.layers.get(name)
    if layer is not None and layer.use.op not in ("recurrent", "attention"):
        return Fans(layer.use.fan_in, layer.use.fan_out), 1
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    if isinstance(owner, nn.RNNBase | nn.MultiheadAttention):  # gates or q/k/v: the fans of one block
        blocks = {"LSTM": 4, "GRU": 3}.get(getattr(owner, "mode", ""), 3 if "in_proj" in name else 1)
        return fans(p.chunk(blocks)[0]), blocks
    layer_type = nn.Linear | nn.Embedding | nn.modules.conv._ConvNd
    return fans(p, layer=owner if isinstance(owner, layer_type) else None), 1
