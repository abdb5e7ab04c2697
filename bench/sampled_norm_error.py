"""How far GradientNorms' sampled norms are from the exact ones (the figures in its docstring).

Run: .venv/bin/python bench/sampled_norm_error.py
The monitor benchmark's 30-layer width-256 ReLU MLP, trained 200 SGD steps; every 20 steps, each 256×256
weight matrix's gradient and weight norm estimated from its first k rows, ``√(rows/k)·‖g[:k]‖``, against the
exact norm. Prints the median, 90th percentile and worst relative error per k.
"""

from __future__ import annotations

import math
import statistics

from torch import nn

from monitor_overhead import build


def main() -> None:
    net, opt, x, y = build()
    ks = (16, 32, 64)
    grads: dict[int, list[float]] = {k: [] for k in ks}
    weights: dict[int, list[float]] = {k: [] for k in ks}
    for step in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        if step % 20 == 0:
            for p in net.parameters():
                if p.ndim == 2 and p.shape[0] > max(ks):
                    for k in ks:
                        for errors, t in ((grads, p.grad), (weights, p.detach())):
                            assert t is not None
                            estimate = math.sqrt(p.shape[0] / k) * t[:k].norm().item()
                            errors[k].append(abs(estimate / t.norm().item() - 1))
        opt.step()
    for label, errors in (("gradient", grads), ("weight", weights)):
        for k, e in errors.items():
            e.sort()
            print(f"{label} norm, first {k} of 256 rows: relative error median {statistics.median(e):.1%}, "
                  f"90th percentile {e[int(0.9 * len(e))]:.1%}, worst {e[-1]:.1%} ({len(e)} estimates)")  # fmt: skip


if __name__ == "__main__":
    main()
