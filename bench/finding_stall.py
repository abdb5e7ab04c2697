"""The step in which a finding fires (issue 35): it used to solve the mean field for its remedies on the
training thread (a 0.4 s stall on a 30-layer MLP, over 1 s at 100 layers).

Run: .venv/bin/python bench/finding_stall.py
Target: the step in which the first vanishing finding fires costs <= 2x the median recorded step.
A 30- and a 100-layer width-256 ReLU MLP at torch's default initialization (gradients vanish), batch 128, SGD,
the monitor recording every step. Each repetition builds a fresh net and monitor and times every step; the figure
is the median over repetitions of (finding step) / (median of the other recorded steps). The baseline in the same
run is the old behaviour: the remedies read inside the finding's step (``on_finding`` reads ``finding.remedies``),
which is what the training thread paid before.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from initlab.monitor import Finding, Monitor

STEPS, REPEATS = 12, 5


def build(depth: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def finding_step_ratio(depth: int, seed: int, read_at_once: bool) -> float:
    """(time of the step in which the vanishing finding fires) / (median time of the other steps)."""
    net = build(depth, seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
    fired: list[int] = []

    def on_finding(finding: Finding) -> None:
        if finding.kind == "vanishing" and not fired:
            fired.append(mon.steps)
            if read_at_once:
                _ = finding.remedies

    times = []
    with Monitor(net, every=1, on_finding=on_finding) as mon:
        for _ in range(STEPS):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - start)
    if not fired:
        raise SystemExit(f"no vanishing finding at depth {depth}: the bench measures nothing")
    index = fired[0] - 1
    others = times[1:index] + times[index + 1 :]  # the first step also pays one-off costs
    return times[index] / statistics.median(others)


def main() -> None:
    torch.set_num_threads(2)
    for depth in (30, 100):
        eager, lazy = [], []
        for seed in range(REPEATS):  # interleaved: machine noise hits both alike
            eager.append(finding_step_ratio(depth, seed, read_at_once=True))
            lazy.append(finding_step_ratio(depth, seed, read_at_once=False))
        e, v = statistics.median(eager), statistics.median(lazy)
        print(
            f"depth {depth}: finding step / normal step: remedies computed in the step (before) {e:.1f}x, "
            f"initlab (computed when read) {v:.2f}x (target <= 2x); before/after {e / v:.0f}x"
        )


if __name__ == "__main__":
    main()
