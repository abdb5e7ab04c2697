"""How far the monitor's sampled norms are from the exact ones (the figures in GradientNorms' and
UpdateRatio's docstrings).

Run: .venv/bin/python bench/sampled_norm_error.py
The monitor benchmark's 30-layer width-256 ReLU MLP, trained 200 steps; every 20 steps, each 256×256 weight
matrix's gradient and weight norm estimated from its first k rows, ``√(rows/k)·‖g[:k]‖``, against the exact
norm, and its update/weight ratio ``‖ΔW[:k]‖/‖W[:k]‖`` against ``‖ΔW‖/‖W‖``, under SGD (lr 0.01, as the
benchmark) and under Adam (lr 1e-3, a second run from the same start). Prints the median, 90th percentile and
worst relative error per k.

Then the bound the monitor stores beside each sampled gradient norm (``grad_norm_err``, a ~95% relative bound
from the spread of the sampled rows; issue 35): the same net under ``Monitor(every=1)`` for 200 SGD steps, and
how often the exact norm (computed here) lies within the monitor's value ± its bound. Target: ~95%.
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


def bound_coverage() -> tuple[float, list[float], list[float]]:
    """The share of the monitor's sampled gradient norms whose exact value lies within the stored bound; the
    bounds and the errors."""
    from initlab.monitor import Monitor

    net, opt, x, y = build()
    inside, bounds, errors = 0, [], []
    with Monitor(net, every=1) as mon:
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            record = mon.history.records[-1]
            for name, p in net.named_parameters():
                if (name, "grad_norm_err") not in record or p.grad is None:
                    continue
                exact = p.grad.norm().item()
                error, bound = abs(record[(name, "grad_norm")] / exact - 1), record[(name, "grad_norm_err")]
                inside += error <= bound
                bounds.append(bound)
                errors.append(error)
            opt.step()
    return inside / len(bounds), bounds, errors


def main() -> None:
    share, bounds, errors = bound_coverage()
    print(f"monitor at every step, 64 of 256 rows: the exact gradient norm lies within the stored ±bound in "
          f"{share:.1%} of {len(bounds)} estimates (target ~95%); bound median {statistics.median(bounds):.1%}, "
          f"error median {statistics.median(errors):.1%}")  # fmt: skip
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
