"""The demo's wall time and where it goes (issue 8).

Run: .venv/bin/python bench/demo_time.py
Target: the full demo within 5 minutes on 2 CPU cores, --quick within 1 minute (both on digits).

For each of --quick and the full demo, in one invocation: the demo as `initlab demo` runs it (a fresh output
directory; pool start-up, the sweep with the monitor and snapshots, judging the six claims, the report), then the
same sweep with the monitor and snapshots off. Training = that second sweep; monitoring = the difference between
the two sweeps; reporting = judging + writing the report.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from initlab.compare.demo import demo_spec, run_demo
from initlab.compare.sweep import LocalPool, run_sweep
from initlab.compare.sweep.spec import SweepSpec


def main() -> None:
    for quick in (True, False):
        name = "quick demo" if quick else "full demo"
        out = Path(tempfile.mkdtemp())
        start = time.perf_counter()
        pool = LocalPool()
        result = run_demo(out, pool, quick=quick)
        pool.close()
        wall = time.perf_counter() - start
        spec = demo_spec(quick)
        bare = SweepSpec(spec.name, tuple(dataclasses.replace(p, monitor=False, snapshots=False) for p in spec.points))
        start = time.perf_counter()
        pool = LocalPool()
        run_sweep(bare, out / "bare.db", pool)
        pool.close()
        training = time.perf_counter() - start
        sweep, reporting = result.seconds["sweep"], result.seconds["judge"] + result.seconds["report"]
        limit = 60 if quick else 300
        print(f"{name}: {len(spec.points)} runs, wall {wall:.1f} s (target <= {limit} s) = sweep {sweep:.1f} s "
              f"[training {training:.1f} s incl. pool start-up + monitoring {sweep - training:.1f} s] + reporting "
              f"{reporting:.1f} s [judging {result.seconds['judge']:.1f} s, report {result.seconds['report']:.1f} s]"
              f"; {sum(c['verdict'] == 'reproduced' for c in result.claims)}/6 claims reproduced")  # fmt: skip


if __name__ == "__main__":
    main()
