"""Why the monitor costs more in a training loop than in isolation (notes of issue 5): the same small operation
timed right after a backward pass of the monitor benchmark's 30-layer MLP ("first") and at once again ("again").

Run: .venv/bin/python bench/first_call_cost.py
The ratio first/again is the price of code the training step has pushed out of the caches.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from monitor_overhead import build

REPEATS = 90


def main() -> None:
    torch.set_num_threads(2)
    net, opt, x, y = build()
    a = torch.relu(torch.randn(30, 4096))
    mask = torch.empty_like(a)

    def numpy_ops() -> None:
        v = np.arange(30.0)
        for _ in range(20):
            v = v * 1.0

    ops: dict[str, Callable[[], object]] = {
        "a.sum(1), 30x4096": lambda: a.sum(1),
        "count of positives": lambda: torch.gt(a, 0, out=mask).sum(1),
        "20 tiny NumPy ops": numpy_ops,
    }
    times: dict[tuple[str, str], list[float]] = {}
    names = list(ops)
    for r in range(REPEATS * len(names)):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        name = names[r % len(names)]
        for tag in ("first", "again"):
            start = time.perf_counter()
            ops[name]()
            times.setdefault((name, tag), []).append(time.perf_counter() - start)
        opt.step()
    for name in names:
        first, again = (statistics.median(times[(name, tag)]) for tag in ("first", "again"))
        print(f"{name:20s} first {first * 1e6:6.1f} us, again {again * 1e6:6.1f} us, ratio {first / again:.1f}")


if __name__ == "__main__":
    main()
