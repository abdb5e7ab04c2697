"""The demo's learning-rate transfer claims (issues 26 and 34): a grid of learning rates 2^k run at several sizes
(MLP widths; transformer depths) under two parametrizations, judged by where the best rate lies at each size and
how many grid steps it moves between the smallest size and any other."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["Transfer", "best_power", "transfer"]


@dataclasses.dataclass(frozen=True)
class Best:
    """One size's grid: the best power (lowest median over seeds), each power's median, each seed's best."""

    power: int
    medians: list[float]
    per_seed: list[int]


def best_power(losses: Sequence[Sequence[float]], powers: Sequence[int]) -> Best:
    """``losses[i][seed]`` at learning rate ``2^powers[i]`` (inf where a run diverged).

    >>> best_power([[3.0, 2.9], [2.5, 2.7], [2.8, 2.6]], [-9, -8, -7])
    Best(power=-8, medians=[2.95, 2.6, 2.7], per_seed=[-8, -7])
    """
    medians = [statistics.median(seeds) for seeds in losses]
    per_seed = [powers[int(np.argmin(column))] for column in zip(*losses, strict=True)]
    return Best(powers[int(np.argmin(medians))], medians, per_seed)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Per parametrization and size, the best learning rate; how far it moves from the smallest size."""

    sizes: tuple[int, ...]
    best: dict[str, dict[int, Best]]

    @property
    def moves(self) -> dict[str, int]:
        """Grid steps between the smallest size's best power and the farthest other size's."""
        return {p: max(abs(b[s].power - b[self.sizes[0]].power) for s in self.sizes) for p, b in self.best.items()}

    def where(self, param: str, name: str) -> str:
        """``name: 2^-7, 2^-8 (moves 1 grid step; per seed -7,-7; -8,-8)``."""
        b, steps = self.best[param], self.moves[param]
        optima = ", ".join(f"2^{b[s].power}" for s in self.sizes)
        seeds = "; ".join(",".join(f"2^{k}" for k in b[s].per_seed) for s in self.sizes)
        return f"{name}: {optima} (moves {steps} grid step{'s' * (steps != 1)}; per seed {seeds})"

    def evidence(self, powers: Sequence[int], size: str, metric: str) -> dict[str, object]:
        """What the store keeps: the grid (``size``: "widths" or "depths"), the moves, the best powers, each power's
        median ``metric``."""

        def rounded(xs: list[float]) -> list[float | None]:
            return [round(x, 5) if math.isfinite(x) else None for x in xs]

        best = self.best.items()
        return {"powers": list(powers), size: list(self.sizes), "moves": self.moves,
                "best": {p: {str(s): x.power for s, x in b.items()} for p, b in best},
                f"median_{metric}": {p: {str(s): rounded(x.medians) for s, x in b.items()} for p, b in best},
                "best_per_seed": {p: {str(s): x.per_seed for s, x in b.items()} for p, b in best}}  # fmt: skip


def transfer(losses: Mapping[str, Mapping[int, Sequence[Sequence[float]]]], powers: Sequence[int]) -> Transfer:
    """``losses[param][size][i][seed]``: the grid of one claim, judged per parametrization and size."""
    sizes = tuple(next(iter(losses.values())))
    return Transfer(sizes, {p: {s: best_power(by_size[s], powers) for s in sizes} for p, by_size in losses.items()})
