"""train() vs a hand-written PyTorch loop on the same model and data (issue 6).

Run: .venv/bin/python bench/train_overhead.py
Targets: throughput ratio (hand-written time / train() time) >= 0.95 with the monitor off, >= 0.93 with the
monitor at its default schedule (every 10 steps); both with the init/end snapshots (audit and histograms, added
after the issue) off, and once more with them on, for information. Both loops do the same work: 5 epochs of a 10-layer
width-256 ReLU MLP on digits, batch 64, SGD, with a test-set evaluation after each epoch. Interleaved
repetitions, medians.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from initlab import initialize
from initlab.compare.data import load
from initlab.compare.models import ModelSpec, build
from initlab.compare.train import TrainConfig, evaluate, train

CONFIG = TrainConfig(depth=10, width=256, epochs=5, batch_size=64, lr=0.05, monitor=False, snapshots=False)


def hand_written() -> None:
    data = load("digits")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = build(ModelSpec("mlp", CONFIG.depth, CONFIG.width, "relu"), data.in_shape, 10)
    initialize(model, "he_normal", generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=CONFIG.lr)
    for _ in range(CONFIG.epochs):
        model.train()
        for x, y in data.batches(CONFIG.batch_size, g):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        evaluate(model, data.test_x, data.test_y)


def main() -> None:
    data = load("digits")
    runs = {
        "hand-written": hand_written,
        "train(), monitor off": lambda: train(CONFIG, data=data),
        "train(), monitor every 10": lambda: train(TrainConfig(**{**CONFIG.to_dict(), "monitor": True}), data=data),
        "train(), monitor + snapshots (as in the demo)": lambda: train(
            TrainConfig(**{**CONFIG.to_dict(), "monitor": True, "snapshots": True}), data=data
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    items = list(runs.items())
    for i in range(9):
        for label, fn in items[i % len(items) :] + items[: i % len(items)]:
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times["hand-written"])
    print(f"hand-written loop: {base:.3f} s for {CONFIG.epochs} epochs")
    for label, target in (("train(), monitor off", "0.95"), ("train(), monitor every 10", "0.93"),
                          ("train(), monitor + snapshots (as in the demo)", "none: informational")):  # fmt: skip
        t = statistics.median(times[label])
        print(f"{label}: {t:.3f} s, throughput ratio {base / t:.3f} (target >= {target})")


if __name__ == "__main__":
    main()
