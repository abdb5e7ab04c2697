"""The main job: a curated sweep that shows, with measured numbers, why initialization matters.

Six claims from the literature, each a comparison between runs of one sweep (run locally on all cores, into a
run store), judged from the store alone and written back to it as a measured comparison; then the HTML report.

1. zero (constant) init cannot break symmetry;
2. small random N(0, 0.01²) in a deep tanh net: the monitor flags vanishing gradients and training stalls;
3. a 20-layer ReLU MLP with plain SGD: He trains while Glorot and torch's default learn slower or stall;
4. tanh at depth 5: Glorot's normalized init trains faster than the "standard" U(±1/√n);
5. remedies (BatchNorm, residual connections, gradient clipping, Leaky ReLU, Adam) against one failing baseline;
6. the ``critical`` init trains a deep tanh net at a depth where an off-critical one fails, beside the depth
   mean-field theory predicts each scheme can train (6·ξ_c).

Where a claim does not reproduce on the data, the verdict says so and the numbers show by how much.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from initlab._errors import unknown_name
from initlab.compare.data import load
from initlab.compare.report.html import build_report, epochs_to, score
from initlab.compare.store import Store
from initlab.compare.sweep.runner import Backend, Reporter, SweepSummary, run_sweep
from initlab.compare.sweep.spec import SweepSpec, expand
from initlab.compare.train import TrainConfig
from initlab.theory.schemes import trainable_depth

__all__ = ["CLAIMS", "DATASETS", "Claim", "DemoResult", "demo_spec", "judge", "run_demo"]

DATASETS = ("digits", "fashion-mnist", "mnist1d")
CHANCE = 0.1  # ten classes in every demo data set
TRAINS = 0.8  # a run "trains" when it reaches this fraction of the best score any run of the demo reached


@dataclasses.dataclass(frozen=True)
class Settings:
    """How big the demo is: --quick trades seeds, epochs and depths for time."""

    epochs: int
    seeds: tuple[int, ...]
    critical_depths: tuple[int, ...]
    bar: float = 0.8  # the test accuracy that counts as "trains": TRAINS × the best score measured on this data

    @classmethod
    def of(cls, quick: bool, data: str) -> Settings:
        if data not in DATASETS:
            raise unknown_name("demo data set", data, DATASETS)
        small = data in ("digits", "mnist1d")  # Fashion-MNIST: fewer epochs, each one is many more steps
        if quick:
            return cls(epochs=6 if small else 1, seeds=(0,), critical_depths=(10, 30))
        return cls(epochs=15 if small else 3, seeds=(0, 1), critical_depths=(10, 20, 30))


# -- the runs each claim compares --------------------------------------------------------------------------
RELU_DEEP = {"depth": 20, "activation": "relu"}
REMEDIES: dict[str, dict[str, Any]] = {
    "BatchNorm": {"norm": "batch"},
    "residual connections": {"residual": True, "residual_init": "zero_last"},
    "gradient clipping": {"clip_grad_norm": 1.0},
    "Leaky ReLU": {"activation": "leaky_relu"},
    "Adam": {"optimizer": "adam", "lr": 0.001},
}


def _roles(claim: str, settings: Settings) -> dict[str, dict[str, Any]]:
    """The named runs of one claim (TrainConfig overrides on the demo's base)."""
    if claim == "symmetry":
        return {s: {"depth": 5, "activation": "tanh", "scheme": s} for s in ("zeros", "glorot_normal")}
    if claim == "vanishing":
        return {s: {"depth": 10, "activation": "tanh", "scheme": s} for s in ("small_random", "glorot_normal")}
    if claim == "he_vs_glorot":  # a learning rate at which He's net trains smoothly
        return {s: {**RELU_DEEP, "scheme": s, "lr": 0.02} for s in ("he_normal", "glorot_normal", "torch_default")}
    if claim == "glorot_vs_standard":
        return {s: {"depth": 5, "activation": "tanh", "scheme": s} for s in ("glorot_uniform", "torch_default")}
    if claim == "remedies":
        baseline = {**RELU_DEEP, "scheme": "glorot_normal"}
        return {"baseline": baseline, **{name: {**baseline, **change} for name, change in REMEDIES.items()}}
    if claim == "critical":
        return {f"{s}@{d}": {"depth": d, "activation": "tanh", "scheme": s}
                for d in settings.critical_depths for s in CRITICAL_SCHEMES}  # fmt: skip
    raise unknown_name("demo claim", claim, [c.id for c in CLAIMS])


CRITICAL_SCHEMES = ("critical", "torch_default", "he_normal")


def _base(settings: Settings, data: str, data_dir: str) -> dict[str, Any]:
    return {
        "data": data, "data_dir": data_dir, "width": 128, "batch_size": 64, "lr": 0.1, "optimizer": "sgd",
        "epochs": settings.epochs, "monitor_every": 10, "snapshots": True,
    }  # fmt: skip


def demo_spec(quick: bool = False, data: str = "digits", data_dir: str = "") -> SweepSpec:
    """Every run the six claims need, each once per seed."""
    settings = Settings.of(quick, data)
    points = [role for claim in CLAIMS for role in _roles(claim.id, settings).values()]
    return expand(_base(settings, data, data_dir), include=points, seeds=list(settings.seeds),
                  name="demo-quick" if quick else "demo")  # fmt: skip


# -- judging from the store --------------------------------------------------------------------------------
@dataclasses.dataclass
class RunGroup:
    """One role's runs (one per seed) as read back from the store."""

    run_ids: list[str]
    curves: list[list[float]]  # test accuracy per epoch, per seed
    findings: list[list[dict[str, Any]]]
    measures: list[dict[str, float]]
    diverged: list[bool]

    @property
    def score(self) -> float:
        """Median over seeds of the mean test accuracy of the last three epochs (chance if it diverged)."""
        return statistics.median(score(c, d, CHANCE) for c, d in zip(self.curves, self.diverged, strict=True))

    def epochs_to(self, bar: float) -> float:
        """Median over seeds of the first epoch with test accuracy ≥ ``bar`` (inf if never)."""
        return statistics.median(epochs_to(c, bar) for c in self.curves)

    @property
    def first_epoch(self) -> float:
        return statistics.median(c[0] if c else CHANCE for c in self.curves)

    def flagged(self, kind: str) -> list[int]:
        """The first step of each seed's finding of ``kind`` (seeds without one are left out)."""
        return [min(f["step"] for f in fs if f["kind"] == kind) for fs in self.findings if any(f["kind"] == kind
                for f in fs)]  # fmt: skip

    def evidence(self, bar: float) -> dict[str, Any]:
        steps = sorted({f["kind"] for fs in self.findings for f in fs})
        reach = self.epochs_to(bar)
        return {"score": round(self.score, 4), "epochs_to_bar": reach if math.isfinite(reach) else None,
                "first_epoch_accuracy": round(self.first_epoch, 4), "findings": steps, "runs": self.run_ids,
                "diverged": sum(self.diverged)}  # fmt: skip


def _read(store: Store, run: dict[str, Any]) -> RunGroup:
    """One run read back from the store (its metrics, findings and measures), as a group of one."""
    i = run["id"]
    metrics = [[m["test_accuracy"] for m in store.metrics(i)]]
    return RunGroup([i], metrics, [store.findings(i)], [store.measures(i)], [bool(run["diverged"])])


def _join(runs: list[RunGroup]) -> RunGroup:
    return RunGroup(*([x for r in runs for x in getattr(r, f.name)] for f in dataclasses.fields(RunGroup)))


Verdict = tuple[str, str, dict[str, Any]]  # "reproduced" / "partly reproduced" / "not reproduced", text, evidence


def _verdict(held: int, of: int) -> str:
    return "reproduced" if held == of else "partly reproduced" if held else "not reproduced"


def _when(n: float) -> str:
    return "never" if not math.isfinite(n) else f"at epoch {n:g}"


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    title: str
    source: str
    judge: Callable[[Mapping[str, RunGroup], Settings], Verdict]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _symmetry(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    zero, glorot = g["zeros"], g["glorot_normal"]
    distinct = min(m.get("distinct_units", math.nan) for m in zero.measures)
    ok = _verdict(distinct <= 0.05 and zero.score <= 2 * CHANCE and glorot.score >= zero.score + 0.3, 1)
    text = (f"after training, the zero-initialized net has {distinct:.3f} of its hidden units distinct (all "
            f"units in a layer stay identical) and reaches {_pct(zero.score)} test accuracy (chance {_pct(CHANCE)}); "
            f"Glorot reaches {_pct(glorot.score)}.")  # fmt: skip
    return ok, text, {"zeros_distinct_units": distinct}


def _vanishing(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    small, glorot = g["small_random"], g["glorot_normal"]
    steps = small.flagged("vanishing")
    ok = _verdict(len(steps) == len(small.run_ids) and small.score <= 2 * CHANCE and glorot.score >= s.bar, 1)
    when = f"at step {min(steps)}" if steps else "never"
    text = (f"the monitor flagged vanishing gradients in the N(0, 0.01²) 10-layer tanh net {when} "
            f"({len(steps)} of {len(small.run_ids)} seeds); it reached {_pct(small.score)} test accuracy, "
            f"Glorot {_pct(glorot.score)}.")  # fmt: skip
    return ok, text, {"vanishing_first_step": min(steps) if steps else None}


def _he_vs_glorot(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    he, glorot, default = g["he_normal"], g["glorot_normal"], g["torch_default"]
    beats = {name: he.score >= other.score + 0.05 or he.epochs_to(s.bar) < other.epochs_to(s.bar)
             for name, other in (("Glorot", glorot), ("torch's default", default))}  # fmt: skip
    text = (f"20-layer ReLU MLP, plain SGD, lr 0.02: He {_pct(he.score)} (reaches {_pct(s.bar)} "
            f"{_when(he.epochs_to(s.bar))}), Glorot {_pct(glorot.score)} ({_when(glorot.epochs_to(s.bar))}), "
            f"torch's default {_pct(default.score)} ({_when(default.epochs_to(s.bar))}). He trains faster than "
            + (" and ".join(n for n, b in beats.items() if b) or "neither") + "; "
            + (", ".join(f"not faster than {n}" for n, b in beats.items() if not b) or "as the paper found")
            + ".")  # fmt: skip
    return _verdict(sum(beats.values()), len(beats)), text, {"he_beats": beats}


def _glorot_vs_standard(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    glorot, standard = g["glorot_uniform"], g["torch_default"]
    fast, slow = glorot.epochs_to(s.bar), standard.epochs_to(s.bar)
    ok = fast < slow or (fast == slow and glorot.first_epoch > standard.first_epoch + 0.05)
    text = (f"5-layer tanh MLP: after one epoch Glorot's normalized init is at {_pct(glorot.first_epoch)}, the "
            f"standard U(±1/√n) at {_pct(standard.first_epoch)}; {_pct(s.bar)} is reached {_when(fast)} vs "
            f"{_when(slow)}; final {_pct(glorot.score)} vs {_pct(standard.score)}.")  # fmt: skip
    return _verdict(ok, 1), text, {}


def _remedies(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    base = g["baseline"]
    rescued = {name: g[name].score >= max(s.bar, base.score + 0.2) for name in REMEDIES}
    parts = [f"{name} {_pct(g[name].score)} ({'rescued' if ok else 'not rescued'})" for name, ok in rescued.items()]
    text = (f"baseline (20-layer ReLU, Glorot, SGD lr 0.1) {_pct(base.score)}; " + "; ".join(parts) + ". A remedy "
            f"rescues when it reaches ≥ {_pct(s.bar)} and ≥ 20 points above the baseline.")  # fmt: skip
    return _verdict(sum(rescued.values()), len(rescued)), text, {"rescued": rescued}


def _critical(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    deepest = max(s.critical_depths)
    crit = g[f"critical@{deepest}"]
    others = {name: g[f"{name}@{deepest}"] for name in CRITICAL_SCHEMES if name != "critical"}
    failing = [name for name, grp in others.items() if grp.score <= 0.5]
    predicted = {name: trainable_depth(name, "tanh") for name in CRITICAL_SCHEMES}
    ok = _verdict(crit.score >= s.bar and bool(failing), 1)
    text = (f"{deepest}-layer tanh MLP: critical init {_pct(crit.score)}, "
            + ", ".join(f"{n} {_pct(grp.score)}" for n, grp in others.items())
            + "; predicted trainable depth 6·ξ_c: "
            + ", ".join(f"{n} {_depth_text(d)}" for n, d in predicted.items()) + ".")  # fmt: skip
    grid = {name: {str(d): round(g[f"{name}@{d}"].score, 4) for d in s.critical_depths} for name in CRITICAL_SCHEMES}
    return ok, text, {"predicted_depth": predicted, "grid": grid}


def _depth_text(depth: float) -> str:
    return "unbounded" if not math.isfinite(depth) else "> 1000" if depth > 1000 else f"{depth:.0f}"


CLAIMS = (
    Claim("symmetry", "Zero init cannot break symmetry", "Goodfellow et al. 2016, §8.4", _symmetry),
    Claim(
        "vanishing", "Small random weights make gradients vanish in a deep tanh net", "Glorot & Bengio 2010", _vanishing
    ),
    Claim(
        "he_vs_glorot",
        "He init trains a 20-layer ReLU net that Glorot and torch's default train slowly",
        "He et al. 2015, Fig. 3",
        _he_vs_glorot,
    ),
    Claim(
        "glorot_vs_standard",
        "Glorot's normalized init beats the standard U(±1/√n) for tanh",
        "Glorot & Bengio 2010",
        _glorot_vs_standard,
    ),
    Claim(
        "remedies",
        "Remedies rescue a failing deep ReLU net",
        "Ioffe & Szegedy 2015; He et al. 2016; Pascanu et al. 2013; Maas et al. 2013; Kingma & Ba 2015",
        _remedies,
    ),
    Claim(
        "critical",
        "Critical (edge-of-chaos) init trains where an off-critical one fails",
        "Schoenholz et al. 2017",
        _critical,
    ),
)


def judge(store: Store, quick: bool = False, data: str = "digits", data_dir: str = "") -> list[dict[str, Any]]:
    """Judge every claim from the runs in ``store`` and record each as a measured comparison in it. A claim
    whose runs did not finish (failed: see the store) is recorded as "not judged", with the reason."""
    settings = Settings.of(quick, data)
    base = _base(settings, data, data_dir)
    done = {r["id"]: r for r in store.runs("done")}
    ids = {p.run_id for p in demo_spec(quick, data, data_dir).points}
    runs = {i: _read(store, r) for i, r in done.items() if i in ids}  # each demo run read once
    settings = dataclasses.replace(settings, bar=round(TRAINS * max((r.score for r in runs.values()), default=1.0), 3))
    results = []
    for claim in CLAIMS:
        roles = {role: [TrainConfig.from_dict({**base, **overrides, "seed": seed}) for seed in settings.seeds]
                 for role, overrides in _roles(claim.id, settings).items()}  # fmt: skip
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


def run_demo(out: str | Path, backend: Backend, *, quick: bool = False, data: str = "digits", data_dir: str = "",
             reporter: Reporter | None = None) -> DemoResult:  # fmt: skip
    """Run the demo sweep into ``out/runs.db`` (resuming what is done), judge the claims, write ``out/report.html``."""
    spec = demo_spec(quick, data, data_dir)
    load(data, data_dir=data_dir or None)  # a missing data set is a clear error now, not 48 failed runs later
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock = [time.perf_counter()]
    summary = run_sweep(spec, out / "runs.db", backend, resume=True, reporter=reporter)
    clock.append(time.perf_counter())
    with Store(out / "runs.db") as store:
        claims = judge(store, quick, data, data_dir)
    clock.append(time.perf_counter())
    report = build_report(out / "runs.db", out / "report.html")
    clock.append(time.perf_counter())
    seconds = dict(zip(("sweep", "judge", "report"), np.diff(clock).tolist(), strict=True))
    return DemoResult(out / "runs.db", report, summary, claims, seconds)
