"""Where an initialization scheme puts a deep net on the phase diagram, and how deep it can train."""

from __future__ import annotations

import math

from torch import nn

from initlab.init.activations import activation_module
from initlab.init.model import initialize
from initlab.theory import meanfield

__all__ = ["scheme_point", "trainable_depth"]


def scheme_point(scheme: str, act: str, width: int = 128) -> tuple[float, float]:
    """``(σ_w², σ_b²)`` that ``scheme`` draws for a hidden ``width × width`` layer feeding ``act``, from the exact
    distribution ``initialize`` uses (gain and bias rules included), not from a sample.

    >>> scheme_point("he_normal", "relu")
    (2.0, 0.0)
    """
    net = nn.Sequential(
        nn.Linear(width, width), activation_module(act), nn.Linear(width, width), activation_module(act),
        nn.Linear(width, 10),
    )  # fmt: skip
    rows = initialize(net, scheme).rows
    weight = next(r for r in rows if r.name.endswith("weight") and r.fan_in == width and r.fan_out == width)
    bias = next(r for r in rows if r.name == weight.name.replace("weight", "bias"))
    return round((weight.std or 0.0) ** 2 * width, 12), round((bias.std or 0.0) ** 2, 12)


def trainable_depth(scheme: str, act: str, width: int = 128) -> float:
    """6·ξ_c (Schoenholz et al. 2017): roughly the deepest net ``scheme`` lets signals cross; ``inf`` on the
    edge of chaos.

    >>> trainable_depth("torch_default", "tanh") < 10 < trainable_depth("critical", "tanh")
    True
    """
    weight_var, bias_var = scheme_point(scheme, act, width)
    xi_c = float(meanfield.depth_scales(act, weight_var, bias_var).xi_c)
    return 6 * xi_c if not math.isnan(xi_c) else math.nan
