"""Sweep scaling (issue 7): 8 equal runs with 1 worker vs 2 workers, and Ray vs the local pool, in one invocation.

Run: .venv/bin/python bench/sweep_scaling.py
Target: speed-up (1-worker wall time / 2-worker wall time) >= 1.7 on 2 cores.

Each backend first starts its workers with a warm-up sweep (one tiny run per worker: spawn, import torch and
initlab, torch's lazy first-use imports, load the data) — timed and printed as start-up — and then runs the 8
timed runs into a fresh store. End-to-end = start-up + runs. Thread split as the pool chooses by default (1 worker:
torch uses both cores; 2 workers: one thread each). Ray: a local instance with 2 CPUs, same warm-up, same runs.
Repetitions alternate the order of the backends; medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from initlab.compare.sweep import LocalPool, expand, run_sweep
from initlab.compare.sweep.runner import Backend

WIDTH = int(sys.argv[1]) if len(sys.argv) > 1 else 96
SPEC = expand({"depth": 20, "width": WIDTH, "epochs": 15, "batch_size": 64, "lr": 0.05},
              {"seed": list(range(8))}, name="scaling")  # fmt: skip
REPEATS = 3
ONE, ONE_THREAD, TWO, RAY = "1 worker", "1 worker, 1 thread", "2 workers", "ray (2 CPUs)"
TMP = Path(tempfile.mkdtemp())


def timed(make: Callable[[], Backend], workers: int, tag: str) -> tuple[float, float]:
    """(start-up seconds, seconds for the 8 runs) of a fresh backend."""
    start = time.perf_counter()
    backend = make()
    run_sweep(expand({"depth": 2, "width": 8, "epochs": 1}, {"seed": list(range(100, 100 + workers))}),
              TMP / f"warm-{tag}-{time.time_ns()}.db", backend)  # fmt: skip
    ready = time.perf_counter()
    summary = run_sweep(SPEC, TMP / f"{tag}-{time.time_ns()}.db", backend)
    done = time.perf_counter()
    backend.close()
    assert summary.ran == 8 and summary.failed == 0
    return ready - start, done - ready


def main() -> None:
    print(f"{len(SPEC.points)} runs: 20-layer width-{WIDTH} ReLU MLP, 15 epochs of digits, seeds 0-7; "
          f"{os.cpu_count()} cores; {REPEATS} alternating repetitions, medians")  # fmt: skip
    try:
        import ray

        from initlab.compare.sweep.ray_backend import RayCluster
    except ImportError:
        ray = None
    times: dict[str, list[tuple[float, float]]] = {ONE: [], ONE_THREAD: [], TWO: [], RAY: []}
    for i in range(REPEATS):
        plan = [(ONE, lambda: LocalPool(1), 1), (ONE_THREAD, lambda: LocalPool(1, threads=1), 1),
                (TWO, lambda: LocalPool(2), 2)]  # fmt: skip
        for name, make, workers in plan if i % 2 == 0 else plan[::-1]:
            times[name].append(timed(make, workers, str(len(times[name]))))
        if ray is not None:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                times[RAY].append(timed(lambda: RayCluster(workers=2), 2, "ray"))
            finally:
                ray.shutdown()
    med = {k: (statistics.median(s for s, _ in v), statistics.median(r for _, r in v)) for k, v in times.items() if v}
    for name, (startup, runs) in med.items():
        spread = ", ".join(f"{s + r:.1f}" for s, r in times[name])
        print(f"{name:>18}: start-up {startup:.1f} s + 8 runs {runs:.1f} s = {startup + runs:.1f} s (each: {spread})")
    (s1, r1), (s2, r2), (_, r1t) = med[ONE], med[TWO], med[ONE_THREAD]
    print(f"speed-up 2 vs 1 worker, 8 runs: {r1 / r2:.2f}x; end-to-end with start-up: {(s1 + r1) / (s2 + r2):.2f}x "
          f"(target >= 1.7); vs 1 worker held to 1 thread: {r1t / r2:.2f}x")  # fmt: skip
    if RAY in med:
        sr, rr = med[RAY]
        print(f"ray vs local pool (2 workers), 8 runs: {rr / r2:.2f}x; start-up {sr:.1f} s vs {s2:.1f} s")
    else:
        print("ray: not installed (pip install 'initlab[ray]'); Ray overhead not measured")


if __name__ == "__main__":
    main()
