"""The gain for an activation: by torch's table where torch has one, numerically for anything else.

A gain ``g`` multiplies the weight std so that a layer followed by φ keeps the signal's second moment:
``Var W = g² / fan``. torch's table (``torch.nn.init.calculate_gain``) is reproduced value for value, so
``initlab.gain`` is a drop-in. For activations torch has no entry for (GELU, SiLU, ELU, softplus, Mish,
hardswish, softsign, …, or any callable) initlab uses the principled numeric gain
``g = 1 / sqrt(E[φ(z)²])``, ``z ~ N(0, 1)``, by quadrature (see ``_quadrature``): it gives √2 for ReLU (He et al.
2015) and ``sqrt(2 / (1 + a²))`` for leaky ReLU, exactly the table's values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab.init.activations import Activation, activation, expected_square

__all__ = ["GainMethod", "gain"]

GainMethod = Literal["auto", "table", "numeric"]

# torch.nn.init.calculate_gain, value for value.
_TABLE: dict[str, Callable[[float | None], float]] = {
    "linear": lambda p: 1.0,
    "sigmoid": lambda p: 1.0,
    "tanh": lambda p: 5.0 / 3,
    "relu": lambda p: math.sqrt(2.0),
    "leaky_relu": lambda p: math.sqrt(2.0 / (1 + (0.01 if p is None else p) ** 2)),
    "selu": lambda p: 3.0 / 4,
}


def gain(
    activation_: str | nn.Module | Callable[[Tensor], Tensor] | Activation,
    param: float | None = None,
    *,
    method: GainMethod = "auto",
) -> float:
    """Return the recommended gain for an activation.

    Formula: torch's table where it has the activation (``method="auto"`` or ``"table"``), else
    ``1 / sqrt(E[φ(z)²])`` with ``z ~ N(0, 1)`` (``method="numeric"``), after He et al. (2015), "Delving Deep
    into Rectifiers", whose condition ``½·n·Var W = 1`` this generalizes.

    Args:
        activation_: a name (``"relu"``, ``"gelu"``, ``"swish"``, torch's ``"conv2d"`` …), an ``nn.Module``
            (``nn.LeakyReLU(0.2)``) or a callable.
        param: leaky ReLU's negative slope (torch's default 0.01), ELU's alpha, softplus' beta.
        method: ``"auto"`` (torch's value where torch has one, so code ported from torch gives the same
            weights), ``"table"`` (torch's only; an error elsewhere), ``"numeric"`` (always the quadrature).

    Returns:
        The gain, a positive float.

    >>> gain("tanh")
    1.6666666666666667
    >>> round(gain("relu", method="numeric"), 9)
    1.414213562
    >>> round(gain("gelu"), 4)
    1.5335
    """
    act = activation(activation_, param)
    if method not in ("auto", "table", "numeric"):
        raise unknown_name("gain method", method, ("auto", "table", "numeric"))
    if method != "numeric" and act.name in _TABLE:
        return _TABLE[act.name](act.param)
    if method == "table":
        raise fail(
            f"torch's gain table has no entry for {act.name!r}",
            accepted=", ".join(sorted(_TABLE)),
            fix="Use method='auto' or 'numeric' for the quadrature gain 1/sqrt(E[φ(z)²]).",
        )
    return _numeric(act)


@functools.lru_cache(maxsize=256)
def _numeric(act: Activation) -> float:
    second_moment = expected_square(act)
    if second_moment <= 0:
        raise fail(
            f"activation {act.name!r} is zero on N(0, 1), so no gain can restore its variance",
            received=second_moment,
        )
    return 1.0 / math.sqrt(second_moment)
