"""Where a recorded step's monitor cost goes (issue 5 diagnostics; the speed figure is monitor_overhead.py).

Run: .venv/bin/python bench/monitor_parts.py
Same loop as monitor_overhead.py (30-layer width-256 ReLU MLP, batch 128, SGD, CPU, 2 threads).

1. Own time per recorded step (every=1), by part: ``perf_counter`` around the monitor's hooks and methods,
   medians over 280 steps. The wrappers add ~1 µs per call. With the fused kernels built (the default), the
   layer hooks reduce their outputs themselves and the forward end has nothing left to do; without them
   (or for tensors the kernels do not take) the reduction is at the forward end.
2. Why the activation outputs are let go at the end of the forward pass: the same loop without the monitor,
   with forward hooks on the 30 ReLUs that (a) do nothing, (b) keep each output until after the backward pass,
   (c) keep them until the forward pass ends and then stack their first 16 rows into a buffer (what the
   monitor does). Median forward and backward times and minor page faults per step, the three rotating step
   by step. The baseline here is the no-op hook, not a plain loop: the difference between (b) and (c) is the
   point.
"""

from __future__ import annotations

import collections
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import initlab.monitor.core as core
import initlab.monitor.probes as probes
from initlab.monitor import Monitor
from monitor_overhead import build

SPENT: dict[str, float] = collections.defaultdict(float)
HOOKS = "30 layer hooks (fused path: each reduces its output)"


def timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper adding its wall time to ``SPENT[label]``."""
    inner = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def own_time() -> None:
    timed(probes.ActivationStats, "on_forward_end", "activations: stack and reduce at the forward end (torch path)")
    timed(probes.ActivationStats, "compute", "activations: copy to host and finish")
    timed(probes.GradientNorms, "compute", "gradient norms")
    timed(core, "detect", "detectors")
    timed(core.Monitor, "_record", "record, in all")
    timed(core.Monitor, "_on_root_forward", "model-output hook, in all")
    make_hook = core.Monitor._layer_hook

    def layer_hook(self: Monitor, name: str) -> Callable[..., None]:
        hook = make_hook(self, name)

        def wrapper(*args: Any) -> None:
            start = time.perf_counter()
            hook(*args)
            SPENT[HOOKS] += time.perf_counter() - start

        return wrapper

    core.Monitor._layer_hook = layer_hook  # type: ignore[method-assign]
    net, opt, x, y = build()
    steps: list[dict[str, float]] = []
    with Monitor(net, every=1) as mon:
        for i in range(300):
            SPENT.clear()
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y)
            mon.observe_loss(loss)
            loss.backward()
            opt.step()
            if i >= 20:
                steps.append(dict(SPENT))
    print("1. own time per recorded step (median ms):")
    for label in steps[0]:
        print(f"   {label:62s} {statistics.median(s.get(label, 0.0) for s in steps) * 1e3:.3f}")
    total = [s["record, in all"] + s["model-output hook, in all"] + s.get(HOOKS, 0.0) for s in steps]
    print(f"   {'total (hooks + model-output hook + record)':62s} {statistics.median(total) * 1e3:.3f}")


def held_outputs() -> None:
    net, opt, x, y = build()
    relus = [m for m in net if isinstance(m, nn.ReLU)]
    held: list[torch.Tensor] = []
    buffer = torch.empty(len(relus), 16, 256)
    modes = ("no-op hook", "held through backward", "let go at forward end")
    fwd: dict[str, list[float]] = {m: [] for m in modes}
    bwd: dict[str, list[float]] = {m: [] for m in modes}
    faults: dict[str, list[int]] = {m: [] for m in modes}

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        held.append(output)

    def nothing(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        return None

    for i in range(600):
        mode = modes[i % len(modes)]
        handles = [m.register_forward_hook(nothing if mode == modes[0] else keep) for m in relus]
        opt.zero_grad(set_to_none=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(net(x), y)
        if mode == modes[2]:
            with torch.no_grad():
                torch.stack([h[:16] for h in held], out=buffer)
            held.clear()
        middle = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        held.clear()
        opt.step()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for handle in handles:
            handle.remove()
        if i >= 30:
            fwd[mode].append(middle - start)
            bwd[mode].append(end - middle)
            faults[mode].append(after - before)
    print("2. outputs held by forward hooks (median per step):")
    for mode in modes:
        f, b = statistics.median(fwd[mode]) * 1e3, statistics.median(bwd[mode]) * 1e3
        n = statistics.median(faults[mode])
        print(f"   {mode:24s} forward {f:.2f} ms, backward {b:.2f} ms, {n:.0f} page faults")


def main() -> None:
    torch.set_num_threads(2)
    own_time()
    held_outputs()


if __name__ == "__main__":
    main()
