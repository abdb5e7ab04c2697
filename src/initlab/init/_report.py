"""What ``initialize`` reports, for torch and Keras models alike: one row per parameter, the gain each weight got
and where it came from, and the notes on published gains that do not suit a ReLU-like activation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from initlab._tables import Rows
from initlab.init import _formulas as f
from initlab.init.activations import Activation
from initlab.init.gains import gain as gain_of
from initlab.init.registry import Initializer, get

__all__ = ["HOMOGENEOUS", "InitReport", "LayerInit", "notes_on_gains", "record_gain", "target_std", "weight_gain"]

HOMOGENEOUS = ("relu", "leaky_relu")  # φ(ax) = aφ(x): the variance factor per layer is exactly (gain/needed)²


@dataclasses.dataclass
class LayerInit:
    """What ``initialize`` did to one parameter."""

    name: str
    kind: str
    shape: tuple[int, ...]
    fan_in: int | None
    fan_out: int | None
    scheme: str
    std: float | None
    gain: float | None
    activation: str
    source: str


@dataclasses.dataclass
class InitReport(Rows):
    """Per-parameter record of an initialization: name, shape, fans, scheme, target std, gain, activation."""

    rows: list[LayerInit]
    scheme: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    calibration: Any = None  # lsuv: the per-layer LsuvReport (std before and after, scale, passes)
    title: ClassVar[str] = "initlab.initialize"
    columns: ClassVar[tuple[str, ...]] = (
        "name",
        "kind",
        "shape",
        "fan_in",
        "fan_out",
        "scheme",
        "std",
        "gain",
        "activation",
        "source",
    )


def target_std(dist: f.Dist, shape: tuple[int, ...]) -> float | None:
    if isinstance(dist, f.Orthogonal):
        return math.sqrt(dist.variance_for(shape[0], math.prod(shape[1:])))
    variance = getattr(dist, "variance", None)
    return math.sqrt(variance) if isinstance(variance, float) else None


def weight_gain(init: Initializer, act: Activation | None, source_of_activation: str, policy: str,
          fixed: float | None) -> tuple[float | None, str]:  # fmt: skip
    """The gain for one weight (None: the scheme's published one) and where it came from."""
    explicit = init.params.get(init.scheme.gain_param) if init.scheme.gain_param else None
    if fixed is not None:
        return fixed, "fixed"  # embeddings and recurrent weights: gain 1 by construction
    if explicit is not None:
        return float(explicit), "gain="  # the user's own gain wins
    if init.scheme.gain_rule is not None:  # the scheme is defined by the activation (critical)
        return init.scheme.gain_rule(act, init.params), f"{init.name} ({source_of_activation})"
    if policy == "activation" and init.scheme.gain_param is not None:
        return gain_of(act if act is not None else "linear"), f"activation ({source_of_activation})"
    return None, "published"


def record_gain(mismatches: dict[tuple[str, str], list[tuple[float, float]]], init: Initializer,
                act: Activation | None, source: str, std: float | None, fan_in: int | None) -> None:  # fmt: skip
    """Remember a layer's forward gain (std·√fan_in) beside the gain its ReLU-like activation needs, where its gain is
    the scheme's published one (for :func:`notes_on_gains`)."""
    if source == "published" and act is not None and act.name in HOMOGENEOUS and std and fan_in:
        mismatches.setdefault((init.name, act.name), []).append((std * math.sqrt(fan_in), gain_of(act)))


def notes_on_gains(mismatches: dict[tuple[str, str], list[tuple[float, float]]]) -> list[str]:
    """One note per (scheme, ReLU-like activation) whose published gain is off by more than 10%."""
    notes = []
    for (scheme, act), pairs in mismatches.items():
        have = sorted(g for g, _ in pairs)[len(pairs) // 2]
        needed = pairs[0][1]
        if abs(have / needed - 1) <= 0.1:
            continue
        opt_in = (f"initialize(model, {scheme!r}, gain_from='activation') scales by {act}'s gain"
                  if get(scheme).scheme.gain_param else f"{scheme} has no gain; he_normal matches {act}")  # fmt: skip
        notes.append(f"{scheme} keeps its published gain: its {len(pairs)} layers before {act} have a forward "
                     f"gain of {have:.3g} where {act} needs {needed:.3g}, so the signal's variance is multiplied "
                     f"by {(have / needed) ** 2:.2f} per layer. {opt_in}.")  # fmt: skip
    return notes
