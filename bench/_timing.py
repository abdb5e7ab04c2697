"""Interleaved timing: baseline and candidate alternate, so machine noise hits both alike; medians reported."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    baseline: Callable[[], object], candidate: Callable[[], object], repeats: int = 7, warmup: int = 1
) -> tuple[float, float]:
    """Median seconds of ``baseline`` and ``candidate`` over ``repeats`` alternating runs."""
    for _ in range(warmup):
        baseline()
        candidate()
    base, cand = [], []
    for i in range(repeats):
        order = (baseline, candidate) if i % 2 == 0 else (candidate, baseline)
        for fn in order:
            start = time.perf_counter()
            fn()
            (base if fn is baseline else cand).append(time.perf_counter() - start)
    return statistics.median(base), statistics.median(cand)


def report(label: str, base: float, cand: float, target: str) -> None:
    print(
        f"{label}: baseline {base * 1e3:.1f} ms, initlab {cand * 1e3:.1f} ms, ratio {cand / base:.3f} (target {target})"
    )
