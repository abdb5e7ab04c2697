"""The demo's wall time and where it goes (issues 8, 26, 34).

Run: .venv/bin/python bench/demo_time.py [quick|full]   (default: both)
Targets on 2 CPU cores (digits): the full demo with all nine claims within 10 minutes (issue 34; eight within 8
minutes before) and --quick within 90 s (issue 26; it leaves the ninth, depth transfer, out), the six MLP claims
keeping their budgets of 5 minutes and 1 minute (issue 8).

For each of --quick and the full demo, in one invocation: the demo as `initlab demo` runs it (a fresh output
directory; pool start-up, the sweep with the monitor and snapshots, judging the claims, the report), then the
same sweep with the monitor and snapshots off. Training = that second sweep; monitoring = the difference between
the two sweeps; reporting = judging + writing the report. Per claim: the summed run time of its runs (from the
store: CPU-seconds of one worker each) and that share of the sweep's wall time; the six MLP claims' share is
compared with their old budget.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from initlab.compare.demo import demo_spec, run_demo
from initlab.compare.store import Store
from initlab.compare.sweep import LocalPool, run_sweep
from initlab.compare.sweep.spec import SweepSpec


def main() -> None:
    which = sys.argv[1:] or ["quick", "full"]
    for quick in (name == "quick" for name in which):
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
        limit = 90 if quick else 600
        judged = [c for c in result.claims if c["verdict"] != "not run"]  # --quick leaves depth transfer out
        print(f"{name}: {len(spec.points)} runs, wall {wall:.1f} s (target <= {limit} s) = sweep {sweep:.1f} s "
              f"[training {training:.1f} s incl. pool start-up + monitoring {sweep - training:.1f} s] + reporting "
              f"{reporting:.1f} s [judging {result.seconds['judge']:.1f} s, report {result.seconds['report']:.1f} s]"
              f"; {sum(c['verdict'] == 'reproduced' for c in result.claims)}/{len(judged)} judged claims "
              f"reproduced; store {out / 'runs.db'}")  # fmt: skip
        with Store(out / "runs.db") as store:
            seconds = {r["id"]: r["seconds"] or 0.0 for r in store.runs("done")}
            per_claim = {c["claim"]: sum(seconds.get(i, 0.0) for i in c["run_ids"]) for c in store.comparisons()}
        total = sum(per_claim.values()) or 1.0
        for claim, cpu in per_claim.items():
            print(f"  {claim}: runs {cpu:.1f} s, ~{sweep * cpu / total:.1f} s of the sweep's wall time")
        old = sum(cpu for claim, cpu in per_claim.items() if claim not in ("depth", "width", "depth_transfer"))
        print(
            f"  the six MLP claims: ~{sweep * old / total + reporting:.1f} s with reporting "
            f"(their budget: {60 if quick else 300} s); the transformer and width claims: "
            f"~{sweep * (1 - old / total):.1f} s"
        )


if __name__ == "__main__":
    main()
