"""How a run is scored from its test-accuracy curve: the one definition the report, the demo and the
recommendations share."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["epochs_to", "score", "spread_text"]


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


def spread_text(scores: Sequence[float]) -> str:
    """Scores across seeds as ``median (min–max)`` in percent.

    >>> spread_text([0.5, 0.8, 0.6])
    '60.0% (50.0–80.0%)'
    """
    return f"{100 * statistics.median(scores):.1f}% ({100 * min(scores):.1f}–{100 * max(scores):.1f}%)"
