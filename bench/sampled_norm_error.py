"""How far the monitor's sampled norms are from the exact ones (the figures in GradientNorms' and
UpdateRatio's docstrings).

Run: .venv/bin/python bench/sampled_norm_error.py
The monitor benchmark's 30-layer width-256 ReLU MLP, trained 200 steps; every 20 steps, each 256×256 weight
matrix's gradient and weight norm estimated from its first k rows, ``√(rows/k)·‖g[:k]‖``, against the exact
norm, and its update/weight ratio ``‖ΔW[:k]‖/‖W[:k]‖`` against ``‖ΔW‖/‖W‖``, under SGD (lr 0.01, as the
benchmark) and under Adam (lr 1e-3, a second run from the same start). Prints the median, 90th percentile and
worst relative error per k.
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from monitor_overhead import build

KS = (16, 32, 64)


def train(adam: bool) -> dict[str, dict[int, list[float]]]:
    """Relative errors of each estimate, per sampled row count k."""
    net, opt, x, y = build()
    if adam:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    errors: dict[str, dict[int, list[float]]] = {s: {k: [] for k in KS} for s in ("gradient", "weight", "update")}
    matrices = [p for p in net.parameters() if p.ndim == 2 and p.shape[0] > max(KS)]
    for step in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        if step % 20:
            opt.step()
            continue
        before = [p.detach().clone() for p in matrices]
        for p in matrices:
            for stat, t in (("gradient", p.grad), ("weight", p.detach())):
                assert t is not None
                for k in KS:
                    estimate = math.sqrt(p.shape[0] / k) * t[:k].norm().item()
                    errors[stat][k].append(abs(estimate / t.norm().item() - 1))
        opt.step()
        for p, b in zip(matrices, before, strict=True):
            w = p.detach()
            d, exact = w - b, ((w - b).norm() / w.norm()).item()
            if exact == 0:
                continue  # no update at all (a layer behind dead units): the sampled ratio is 0 as well
            for k in KS:
                errors["update"][k].append(abs((d[:k].norm() / w[:k].norm()).item() / exact - 1))
    return errors


def main() -> None:
    for adam in (False, True):
        errors = train(adam)
        for stat in ("gradient", "weight", "update") if not adam else ("update",):
            for k, e in errors[stat].items():
                e.sort()
                what = f"{stat} {'ratio' if stat == 'update' else 'norm'} ({'Adam' if adam else 'SGD'})"
                p90, n = e[int(0.9 * len(e))], len(e)
                print(f"{what}, first {k} of 256 rows: relative error median {statistics.median(e):.1%}, "
                      f"90th percentile {p90:.1%}, worst {e[-1]:.1%} ({n} estimates)")  # fmt: skip


if __name__ == "__main__":
    main()
