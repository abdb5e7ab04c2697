"""Phase diagram speed (issue 4): a 200×200 tanh grid vs a per-point scipy.integrate.quad loop.

Run: .venv/bin/python bench/theory_speed.py
Target: the 200×200 diagram (χ1, q*, ξ_c) in under 2 s on CPU; report the speed-up over quad.

The quad baseline computes only q* (fixed-point iteration of the length map, one quad per step) and χ1 per
point; it skips ξ_c (a 2-D integral), so the comparison favours it. It runs over the full grid (~2 min).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import integrate

from initlab import theory as th

WEIGHT_VARS = np.linspace(0.1, 4.0, 200)
BIAS_VARS = np.linspace(0.0, 0.3, 200)


def _gauss_quad(f) -> float:  # type: ignore[no-untyped-def]
    return integrate.quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -np.inf, np.inf)[0]


def quad_point(wv: float, bv: float) -> tuple[float, float]:
    q = 1.0
    for _ in range(500):
        q_next = wv * _gauss_quad(lambda z, q=q: math.tanh(math.sqrt(q) * z) ** 2) + bv
        if abs(q_next - q) < 1e-10:
            q = q_next
            break
        q = q_next
    chi = wv * _gauss_quad(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    return q, chi


def main() -> None:
    th.phase_diagram("tanh", [1.0], [0.0])  # build the activation's tables once (cached per activation)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        diagram = th.phase_diagram("tanh", WEIGHT_VARS, BIAS_VARS)
        runs.append(time.perf_counter() - start)
    ours = float(np.median(runs))
    start = time.perf_counter()
    cold = th.phase_diagram("sigmoid", WEIGHT_VARS, BIAS_VARS)  # first call for sigmoid: tables included
    cold_time = time.perf_counter() - start
    print(
        f"initlab phase_diagram 200×200 tanh: median {ours:.3f} s over 5 runs (target < 2 s); "
        f"first call for a new activation (sigmoid, tables built): {cold_time:.3f} s"
    )

    start = time.perf_counter()
    quad = np.array([[quad_point(w, b) for w in WEIGHT_VARS] for b in BIAS_VARS])
    quad_time = time.perf_counter() - start
    print(f"scipy.integrate.quad loop over the same 200×200 grid (q*, χ1 only): {quad_time:.1f} s")
    print(f"speed-up: {quad_time / ours:.0f}×")
    err = np.abs(quad[..., 1] - diagram.chi1).max()
    print(f"max |χ1 difference| between the two: {err:.2e}; sigmoid grid finite: {np.isfinite(cold.chi1).all()}")


if __name__ == "__main__":
    main()
