"""How a run is scored from its test-accuracy curve: the one definition the report, the demo and the
recommendations share."""

from __future__ import annotations

import math
import statistics

__all__ = ["epochs_to", "score"]


def score(accuracies: list[float], diverged: bool = False, chance: float = 0.1) -> float:
    """Mean test accuracy of the last three epochs (chance for a diverged run).

    >>> score([0.1, 0.5, 0.8, 0.9, 1.0])
    0.9
    """
    if diverged or not accuracies:
        return chance
    return round(statistics.fmean(accuracies[-3:]), 10)


def epochs_to(accuracies: list[float], bar: float) -> float:
    """The first epoch (from 1) whose test accuracy reaches ``bar``; ``inf`` if none does.

    >>> epochs_to([0.2, 0.7, 0.9], 0.8), epochs_to([0.2], 0.8)
    (3, inf)
    """
    return next((i for i, a in enumerate(accuracies, 1) if a >= bar), math.inf)
