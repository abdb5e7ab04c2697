"""The main job: a curated sweep that shows, with measured numbers, why initialization matters.

Nine claims from the literature, each a comparison between runs of one sweep (run locally on all cores, into a
run store), judged from the store alone and written back to it as a measured comparison; then the HTML report.

1. zero (constant) init cannot break symmetry;
2. small random N(0, 0.01²) in a deep tanh net: the monitor flags vanishing gradients and training stalls;
3. a 30-layer ReLU MLP with plain SGD: He trains where the published Xavier init (gain 1) and torch's default
   stall (He et al. 2015, Fig. 3), at a depth beyond both competitors' predicted trainable depth;
4. tanh at depth 5: Glorot's normalized init trains faster than the "standard" U(±1/√n);
5. remedies, each changing one thing, against a baseline with an initialization pathology the monitor flags
   (the published Xavier init in a 30-layer ReLU net: vanishing gradients); Adam at its standard rate 1e-3;
6. the ``critical`` init trains a deep tanh net at a depth beyond every off-critical competitor's predicted
   trainable depth (6·ξ_c), each shown beside its measured result;
7. *depth* (transformers): a 12-block post-LN language model with the standard (Xavier) init stalls at a
   learning rate (Adam 3e-3, no warmup) where pre-LN, DeepNorm and the ``gpt2`` scaled init train
   (Xiong et al. 2020; Wang et al. 2022), on the ``text`` data set, scored in held-out bits per character;
8. *width* (µP): over MLP widths 64 → 1024, the learning rate with the lowest training loss after a fixed
   budget moves with width under the standard parametrization and stays put under µP (Yang et al. 2021,
   Tensor Programs V, Fig. 1, qualitatively);
9. *depth transfer* (CompleteP): over pre-LN transformer depths 2 → 16, the learning rate with the lowest
   held-out loss after a fixed budget moves by ≥ 2 grid steps under the standard parametrization and by ≤ 1
   under CompleteP (Dey et al. 2025, Fig. 1). The last three always run on their own data (text; digits),
   whatever ``data`` says: they are about architectures, not data sets. ``--quick`` leaves the ninth out.

``claims`` selects a subset (``initlab demo --claims depth,width``).

Every role runs once per seed (≥ 3 in the full demo, 2 with ``--quick``). A comparison counts only when the
gap between the medians exceeds the spread (max - min) of both roles across seeds; the report shows each
role's min-max. Where a claim does not reproduce on the data, the verdict says so with the numbers.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from initlab._errors import unknown_name
from initlab.compare._claims import CLAIMS, Claim
from initlab.compare._demo_runs import DATASETS, TRAINS, Settings, _base, _join, _read, _roles
from initlab.compare.data import load
from initlab.compare.report.html import build_report
from initlab.compare.report.recommend import Recommendation, recommend_store
from initlab.compare.store import Store
from initlab.compare.sweep.runner import Backend, Reporter, SweepSummary, run_sweep
from initlab.compare.sweep.spec import SweepSpec, expand
from initlab.compare.train import TrainConfig

__all__ = ["CLAIMS", "DATASETS", "Claim", "DemoResult", "claim_ids", "demo_spec", "judge", "run_demo"]


def claim_ids(claims: str | None) -> tuple[str, ...]:
    """The ids a ``--claims`` list names (comma-separated; ``None`` or empty: every claim).

    >>> claim_ids("depth, width")
    ('depth', 'width')
    """
    if not claims:
        return tuple(c.id for c in CLAIMS)
    chosen = tuple(part.strip() for part in claims.split(",") if part.strip())
    for name in chosen:
        if name not in {c.id for c in CLAIMS}:
            raise unknown_name("demo claim", name, [c.id for c in CLAIMS])
    return chosen


def demo_spec(quick: bool = False, data: str = "digits", data_dir: str = "", claims: str | None = None) -> SweepSpec:
    """Every run the chosen claims need (all by default), each once per seed."""
    settings = Settings.of(quick, data)
    chosen = claim_ids(claims)
    points = [role for claim in CLAIMS if claim.id in chosen for role in _roles(claim.id, settings).values()]
    if not points:  # only claims these settings leave out
        return SweepSpec("demo-quick" if quick else "demo", ())
    return expand(_base(settings, data, data_dir), include=points, seeds=list(settings.seeds),
                  name="demo-quick" if quick else "demo")  # fmt: skip


def judge(store: Store, quick: bool = False, data: str = "digits", data_dir: str = "",
          claims: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Judge the chosen claims (all by default) from the runs in ``store`` and record each as a measured comparison
    in it. A claim whose runs did not finish (failed: see the store) is recorded as "not judged", with the
    reason."""
    settings = Settings.of(quick, data)
    base = _base(settings, data, data_dir)
    done = {r["id"]: r for r in store.runs("done")}
    chosen = claim_ids(claims)
    ids = {p.run_id for p in demo_spec(quick, data, data_dir, claims).points}
    runs = {i: _read(store, r) for i, r in done.items() if i in ids}  # each demo run read once
    settings = dataclasses.replace(settings, bar=round(TRAINS * max((r.score for r in runs.values()), default=1.0), 3))
    results = []
    for claim in (c for c in CLAIMS if c.id in chosen):
        roles = {role: [TrainConfig.from_dict({**base, **overrides, "seed": seed}) for seed in settings.seeds]
                 for role, overrides in _roles(claim.id, settings).items()}  # fmt: skip
        if not roles:  # these settings leave the claim out: said, not recorded as a comparison
            summary = "--quick leaves this claim out (it would double the quick demo's time): run the full demo"
            results.append({"claim": claim.id, "title": claim.title, "verdict": "not run", "summary": summary})
            continue
        missing = [c.run_id for configs in roles.values() for c in configs if c.run_id not in runs]
        if missing:
            summary = f"{len(missing)} of its runs did not finish ({', '.join(missing[:3])}…): see the store's errors"
            store.compare(claim.id, claim.title, "not judged", summary, {"missing": missing}, missing)
            results.append({"claim": claim.id, "title": claim.title, "verdict": "not judged", "summary": summary})
            continue
        groups = {role: _join([runs[c.run_id] for c in configs]) for role, configs in roles.items()}
        verdict, summary, extra = claim.judge(groups, settings)
        evidence = {"roles": {r: g.evidence(settings.bar) for r, g in groups.items()}, "bar": settings.bar, **extra}
        run_ids = [i for g in groups.values() for i in g.run_ids]
        store.compare(claim.id, claim.title, verdict, f"{summary} [{claim.source}]", evidence, run_ids)
        results.append({"claim": claim.id, "title": claim.title, "verdict": verdict, "summary": summary})
    return results


@dataclasses.dataclass
class DemoResult:
    store: Path
    report: Path
    summary: SweepSummary
    claims: list[dict[str, Any]]
    seconds: dict[str, float]  # wall time of the sweep (training, with the monitor), judging, and the report
    recommendations: list[Recommendation] = dataclasses.field(default_factory=list)


def run_demo(out: str | Path, backend: Backend, *, quick: bool = False, data: str = "digits", data_dir: str = "",
             reporter: Reporter | None = None, claims: str | None = None) -> DemoResult:  # fmt: skip
    """Run the demo sweep into ``out/runs.db`` (resuming what is done), judge the claims (all, or those ``claims``
    names), write ``out/report.html``."""
    spec = demo_spec(quick, data, data_dir, claims)
    load(data, data_dir=data_dir or None)  # a missing data set is a clear error now, not 48 failed runs later
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock = [time.perf_counter()]
    summary = run_sweep(spec, out / "runs.db", backend, resume=True, reporter=reporter)
    clock.append(time.perf_counter())
    with Store(out / "runs.db") as store:
        verdicts = judge(store, quick, data, data_dir, claims)
        recommendations = recommend_store(store)
    clock.append(time.perf_counter())
    report = build_report(out / "runs.db", out / "report.html")
    clock.append(time.perf_counter())
    seconds = dict(zip(("sweep", "judge", "report"), np.diff(clock).tolist(), strict=True))
    return DemoResult(out / "runs.db", report, summary, verdicts, seconds, recommendations)
