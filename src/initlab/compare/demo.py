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
import functools
import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from initlab._errors import unknown_name
from initlab.compare._lr_transfer import transfer
from initlab.compare.data import TextDataset, load
from initlab.compare.report.html import build_report
from initlab.compare.report.recommend import Recommendation, recommend_store
from initlab.compare.report.scores import epochs_to, score, spread_text
from initlab.compare.store import Store
from initlab.compare.sweep.runner import Backend, Reporter, SweepSummary, run_sweep
from initlab.compare.sweep.spec import SweepSpec, expand
from initlab.compare.train import TrainConfig
from initlab.theory.schemes import trainable_depth

__all__ = ["CLAIMS", "DATASETS", "Claim", "DemoResult", "claim_ids", "demo_spec", "judge", "run_demo"]

DATASETS = ("digits", "fashion-mnist", "mnist1d")
CHANCE = 0.1  # ten classes in every demo data set
TRAINS = 0.8  # a run "trains" when it reaches this fraction of the best score any run of the demo reached


@dataclasses.dataclass(frozen=True)
class Settings:
    """How big the demo is: --quick trades seeds, epochs and depths for time."""

    epochs: int
    seeds: tuple[int, ...]
    critical_depths: tuple[int, ...]
    lm_steps: int = 100  # the depth claim's budget: Adam steps of the 12-block language models
    lr_powers: tuple[int, ...] = tuple(range(-12, -4))  # the width claim's learning rates 2^k
    transfer_depths: tuple[int, ...] = (2, 8, 16)  # the depth-transfer claim's depths (none: left out)
    bar: float = 0.8  # the test accuracy that counts as "trains": TRAINS × the best score measured on this data

    @classmethod
    def of(cls, quick: bool, data: str) -> Settings:
        if data not in DATASETS:
            raise unknown_name("demo data set", data, DATASETS)
        small = data in ("digits", "mnist1d")  # Fashion-MNIST: fewer epochs, each one is many more steps
        if quick:
            return cls(epochs=6 if small else 1, seeds=(0, 1), critical_depths=(CRITICAL_DEPTH,), lm_steps=100,
                       lr_powers=tuple(range(-12, -5)), transfer_depths=())  # fmt: skip
        return cls(epochs=15 if small else 3, seeds=(0, 1, 2), critical_depths=(10, 20, CRITICAL_DEPTH), lm_steps=200)


# -- the runs each claim compares --------------------------------------------------------------------------
RELU_DEEP = {"depth": 30, "activation": "relu"}  # beyond Xavier's (8.7) and torch default's (3.3) 6·ξ_c for ReLU
CRITICAL_DEPTH = 30  # beyond torch default's (5.4) and N(0, 1)'s (15.7) 6·ξ_c for tanh
# Each remedy changes one thing against the baseline, with the word the monitor's remedies use for it (a
# remedy counts for the verdict when the baseline's findings named it). Adam runs at its standard rate 1e-3.
REMEDIES: dict[str, tuple[dict[str, Any], str]] = {
    "He init": ({"scheme": "he_normal"}, "initialize"),
    "BatchNorm": ({"norm": "batch"}, "BatchNorm"),
    "residual connections": ({"residual": True, "residual_init": "zero_last"}, "residual"),
    "Adam (lr 1e-3)": ({"optimizer": "adam", "lr": 0.001}, "Adam"),
    "gradient clipping": ({"clip_grad_norm": 1.0}, "clip gradients"),
    "Leaky ReLU": ({"activation": "leaky_relu"}, "LeakyReLU"),
}


def _roles(claim: str, settings: Settings) -> dict[str, dict[str, Any]]:
    """The named runs of one claim (TrainConfig overrides on the demo's base)."""
    if claim == "symmetry":
        return {s: {"depth": 5, "activation": "tanh", "scheme": s} for s in ("zeros", "glorot_normal")}
    if claim == "vanishing":
        return {s: {"depth": 10, "activation": "tanh", "scheme": s} for s in ("small_random", "glorot_normal")}
    if claim == "he_vs_glorot":  # a learning rate at which He's net trains smoothly
        return {s: {**RELU_DEEP, "scheme": s, "lr": 0.02} for s in HE_SCHEMES}
    if claim == "glorot_vs_standard":
        return {s: {"depth": 5, "activation": "tanh", "scheme": s} for s in ("glorot_uniform", "torch_default")}
    if claim == "remedies":
        baseline = {**RELU_DEEP, "scheme": "glorot_normal"}
        return {"baseline": baseline, **{name: {**baseline, **change} for name, (change, _) in REMEDIES.items()}}
    if claim == "critical":  # LSUV (data-dependent) runs beside them, for the trainability grid; not a competitor
        return {f"{s}@{d}": {"depth": d, "activation": "tanh", "scheme": s}
                for d in settings.critical_depths for s in (*CRITICAL_SCHEMES, "lsuv")}  # fmt: skip
    if claim == "depth":
        return {role: {**TRANSFORMER, "max_steps": settings.lm_steps, **change} for role, change in DEPTH_ROLES.items()}
    if claim == "depth_transfer":  # at its base depth CompleteP is the standard parametrization: the same runs
        return {f"{p}@{d}@{k}": {**TRANSFER_LM, "depth": d, "lr": 2.0**k,
                                 "parametrization": p if d != TRANSFER_BASE else "standard"}
                for p in DEPTH_PARAMS for d in settings.transfer_depths for k in TRANSFER_POWERS}  # fmt: skip
    if claim == "width":
        return {f"{p}@{w}@{k}": {**WIDTH_MLP, "parametrization": p, "width": w, "lr": 2.0**k}
                for p in PARAMETRIZATIONS for w in WIDTHS for k in settings.lr_powers}  # fmt: skip
    raise unknown_name("demo claim", claim, [c.id for c in CLAIMS])


# Claim 7: a small GPT on CPython's help texts. Width 32 with 2 heads (head size 16: torch's fused CPU attention is
# 4x slower per value at head size 8); Adam at 3e-3 without warmup, which post-LN needs (Xiong et al. 2020).
TRANSFORMER = {"data": "text", "data_dir": "", "model": "transformer", "depth": 12, "width": 32, "heads": 2,
               "activation": "gelu", "optimizer": "adam", "lr": 3e-3, "epochs": 1, "batch_size": 16,
               "snapshots": False, "monitor_every": 20}  # fmt: skip
DEPTH_ROLES = {
    "post-LN": {"norm_position": "post", "scheme": "xavier_uniform"},  # the original Transformer's init
    "pre-LN": {"norm_position": "pre", "scheme": "xavier_uniform"},
    "DeepNorm": {"norm_position": "deepnorm", "scheme": "deepnorm"},
    "gpt2": {"norm_position": "pre", "scheme": "gpt2"},
}
# Claim 8: Tensor Programs V's learning-rate sweep across widths, small enough for two cores: a 3-hidden-layer
# ReLU MLP on digits, He init, Adam for 2 epochs, learning rates 2^-12 … 2^-5 (one grid step = 2x; --quick stops
# at 2^-6, still a step beyond every optimum it finds).
WIDTH_MLP = {"data": "digits", "data_dir": "", "model": "mlp", "depth": 3, "activation": "relu",
             "scheme": "he_normal", "optimizer": "adam", "epochs": 2, "batch_size": 64, "monitor": False,
             "snapshots": False, "base_width": 64}  # fmt: skip
WIDTHS = (64, 256, 1024)
PARAMETRIZATIONS = ("standard", "mup")

# Claim 9: CompleteP's depth transfer (Dey et al. 2025) at a size two cores afford: the pre-LN text transformer with
# Xavier init (the standard parametrization) at depths 2, 8 and 16, Adam for 100 steps, learning rates 2^-9 … 2^-5
# (every optimum measured lies inside: 2^-8 or 2^-7). --quick leaves it out (it would double quick's time).
TRANSFER_BASE = 2
TRANSFER_LM = {**TRANSFORMER, "norm_position": "pre", "scheme": "xavier_uniform", "max_steps": 100, "monitor": False,
               "base_depth": TRANSFER_BASE}  # fmt: skip
TRANSFER_POWERS = tuple(range(-9, -4))
DEPTH_PARAMS = ("standard", "completep")

HE_SCHEMES = ("he_normal", "glorot_normal", "torch_default")
CRITICAL_SCHEMES = ("critical", "torch_default", "normal")


def _base(settings: Settings, data: str, data_dir: str) -> dict[str, Any]:
    return {
        "data": data, "data_dir": data_dir, "width": 128, "batch_size": 64, "lr": 0.1, "optimizer": "sgd",
        "epochs": settings.epochs, "monitor_every": 10, "snapshots": True,
    }  # fmt: skip


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


# -- judging from the store --------------------------------------------------------------------------------
@dataclasses.dataclass
class RunGroup:
    """One role's runs (one per seed) as read back from the store."""

    run_ids: list[str]
    curves: list[list[float]]  # test accuracy per epoch, per seed
    losses: list[list[float]]  # training loss per epoch, per seed
    findings: list[list[dict[str, Any]]]
    measures: list[dict[str, float]]
    diverged: list[bool]

    @property
    def scores(self) -> list[float]:
        """Per seed: the mean test accuracy of the last three epochs (chance if it diverged)."""
        return [score(c, d, CHANCE) for c, d in zip(self.curves, self.diverged, strict=True)]

    @property
    def score(self) -> float:
        """Median over seeds of :attr:`scores`."""
        return statistics.median(self.scores)

    @property
    def spread(self) -> float:
        """Max - min of :attr:`scores` across seeds."""
        return max(self.scores) - min(self.scores)

    def text(self) -> str:
        """``median (min-max)`` in percent."""
        return spread_text(self.scores)

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
        return {"score": round(self.score, 4), "scores": [round(x, 4) for x in self.scores],
                "epochs_to_bar": reach if math.isfinite(reach) else None,
                "first_epoch_accuracy": round(self.first_epoch, 4), "findings": steps, "runs": self.run_ids,
                "diverged": sum(self.diverged)}  # fmt: skip


def _read(store: Store, run: dict[str, Any]) -> RunGroup:
    """One run read back from the store (its metrics, findings and measures), as a group of one."""
    i = run["id"]
    metrics = store.metrics(i)
    accuracy, loss = [m["test_accuracy"] for m in metrics], [m["train_loss"] for m in metrics]
    return RunGroup([i], [accuracy], [loss], [store.findings(i)], [store.measures(i)], [bool(run["diverged"])])


def _join(runs: list[RunGroup]) -> RunGroup:
    return RunGroup(*([x for r in runs for x in getattr(r, f.name)] for f in dataclasses.fields(RunGroup)))


Verdict = tuple[str, str, dict[str, Any]]  # "reproduced" / "partly reproduced" / "not reproduced", text, evidence


def _verdict(held: int, of: int) -> str:
    return "reproduced" if held == of else "partly reproduced" if held else "not reproduced"


def beats(a: RunGroup, b: RunGroup, by: float = 0.05) -> bool:
    """``a`` scores higher than ``b`` beyond the noise: the medians differ by more than the spread across seeds
    of either role, and by at least ``by`` (a difference inside the seeds' spread is no evidence)."""
    return a.score - b.score > max(a.spread, b.spread, by)


def _stalls(g: RunGroup) -> bool:
    """Every seed within twice chance: the net learned (almost) nothing."""
    return max(g.scores) <= 2 * CHANCE


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
    distinct = max(m.get("distinct_units", math.nan) for m in zero.measures)
    ok = _verdict(distinct <= 0.05 and _stalls(zero) and beats(glorot, zero, by=0.3), 1)
    text = (f"after training, the zero-initialized net has at most {distinct:.3f} of its hidden units distinct "
            f"(all units in a layer stay identical) and reaches {zero.text()} test accuracy (chance "
            f"{_pct(CHANCE)}); Glorot reaches {glorot.text()}.")  # fmt: skip
    return ok, text, {"zeros_distinct_units": distinct}


def _vanishing(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    small, glorot = g["small_random"], g["glorot_normal"]
    steps = small.flagged("vanishing")
    ok = _verdict(len(steps) == len(small.run_ids) and _stalls(small) and beats(glorot, small), 1)
    when = f"at step {min(steps)}" if steps else "never"
    text = (f"the monitor flagged vanishing gradients in the N(0, 0.01²) 10-layer tanh net {when} "
            f"({len(steps)} of {len(small.run_ids)} seeds); it reached {small.text()} test accuracy, "
            f"Glorot {glorot.text()}.")  # fmt: skip
    return ok, text, {"vanishing_first_step": min(steps) if steps else None}


def _he_vs_glorot(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    he, xavier, default = g["he_normal"], g["glorot_normal"], g["torch_default"]
    predicted = {name: trainable_depth(name, "relu") for name in HE_SCHEMES}
    held = {name: beats(he, other) and _stalls(other) for name, other in (("Xavier", xavier),
                                                                           ("torch's default", default))}  # fmt: skip
    text = (f"{RELU_DEEP['depth']}-layer ReLU MLP, plain SGD, lr 0.02, median (min–max) over {len(he.run_ids)} "
            f"seeds: He {he.text()}, the published Xavier (gain 1) {xavier.text()}, torch's default {default.text()}; "
            "predicted trainable depth 6·ξ_c: " + ", ".join(f"{n} {_depth_text(d)}" for n, d in predicted.items())
            + ". He trains where " + (" and ".join(n for n, b in held.items() if b) or "neither") + " stall"
            + "".join(f"; {n} does not stall below He beyond the seeds' spread" for n, b in held.items() if not b)
            + ".")  # fmt: skip
    return _verdict(sum(held.values()), len(held)), text, {"he_beats": held, "predicted_depth": predicted}


def _glorot_vs_standard(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    glorot, standard = g["glorot_uniform"], g["torch_default"]
    firsts = {name: [c[0] if c else CHANCE for c in grp.curves] for name, grp in (("g", glorot), ("s", standard))}
    gap = statistics.median(firsts["g"]) - statistics.median(firsts["s"])
    spread = max(max(v) - min(v) for v in firsts.values())
    ok = gap > max(spread, 0.05)
    text = (f"5-layer tanh MLP: after one epoch Glorot's normalized init is at {_pct(glorot.first_epoch)}, the "
            f"standard U(±1/√n) at {_pct(standard.first_epoch)} (medians; the seeds spread by up to {_pct(spread)}); "
            f"{_pct(s.bar)} is reached {_when(glorot.epochs_to(s.bar))} vs {_when(standard.epochs_to(s.bar))}; "
            f"final {glorot.text()} vs {standard.text()}.")  # fmt: skip
    return _verdict(ok, 1), text, {"first_epoch_gap": round(gap, 4), "first_epoch_spread": round(spread, 4)}


def _remedies(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    base = g["baseline"]
    kinds = sorted({f["kind"] for fs in base.findings for f in fs})
    flagged = all(any(f["kind"] in ("vanishing", "exploding") for f in fs) for fs in base.findings)
    named = {name: any(word in r for fs in base.findings for f in fs for r in f["remedies"])
             for name, (_, word) in REMEDIES.items()}  # fmt: skip
    rescued = {name: g[name].score >= s.bar and beats(g[name], base, by=0.2) for name in REMEDIES}
    unnamed = "; not named by the monitor for this baseline"
    parts = [f"{name} {g[name].text()} ({'rescued' if rescued[name] else 'not rescued'}"
             f"{'' if named[name] else unnamed})" for name in REMEDIES]  # fmt: skip
    text = (f"baseline: {RELU_DEEP['depth']}-layer ReLU, the published Xavier init, SGD lr 0.1: {base.text()}, "
            f"monitor findings {', '.join(kinds) or 'none'}; " + "; ".join(parts) + ". A remedy rescues when it "
            f"reaches ≥ {_pct(s.bar)} and beats the baseline by ≥ 20 points beyond the seeds' spread; the verdict "
            "counts the remedies the monitor named.")  # fmt: skip
    judged = [n for n in REMEDIES if named[n]]
    verdict = _verdict(sum(rescued[n] for n in judged), len(judged)) if flagged and judged else "not reproduced"
    return verdict, text, {"rescued": rescued, "named": named, "baseline_flagged": flagged}


def _critical(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    deepest = max(s.critical_depths)
    crit = g[f"critical@{deepest}"]
    others = {name: g[f"{name}@{deepest}"] for name in CRITICAL_SCHEMES if name != "critical"}
    predicted = {name: trainable_depth(name, "tanh") for name in CRITICAL_SCHEMES}
    beyond = all(predicted[name] < deepest for name in others)
    held = crit.score >= s.bar and beyond and all(beats(crit, grp) for grp in others.values())
    text = (f"{deepest}-layer tanh MLP, median (min–max) over {len(crit.run_ids)} seeds, each beside its predicted "
            f"trainable depth 6·ξ_c: critical {crit.text()} ({_depth_text(predicted['critical'])}), "
            + ", ".join(f"{n} {grp.text()} ({_depth_text(predicted[n])})" for n, grp in others.items())
            + ".")  # fmt: skip
    grid = {name: {str(d): round(g[f"{name}@{d}"].score, 4) for d in s.critical_depths} for name in CRITICAL_SCHEMES}
    return _verdict(held, 1), text, {"predicted_depth": predicted, "grid": grid, "depth": deepest}


def _bits(g: RunGroup) -> list[float]:
    """Held-out bits per character per seed (inf where the run diverged)."""
    return [math.inf if d else m.get("test_bits_per_char", math.inf) for m, d in zip(g.measures, g.diverged,
                                                                                      strict=True)]  # fmt: skip


def _bits_text(bits: list[float]) -> str:
    finite = [b for b in bits if math.isfinite(b)]
    if not finite:
        return "diverged"
    median = statistics.median(bits)
    return (f"{median:.2f}" if math.isfinite(median) else "diverged") + f" ({min(finite):.2f}–{max(bits):.2f})"


def _depth(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    unigram = _unigram_bits()
    bits = {role: _bits(g[role]) for role in DEPTH_ROLES}
    post, others = bits["post-LN"], {r: b for r, b in bits.items() if r != "post-LN"}
    stalls = all(b >= unigram - 0.25 for b in post)  # at best letter frequencies: nothing of context learned
    trains = {r: max(b) <= unigram - 0.5 and max(b) < min(post) for r, b in others.items()}  # every seed, clear gap
    findings = sorted({f["kind"] for fs in g["post-LN"].findings for f in fs})
    text = (f"12-block transformer language model, Adam lr {TRANSFORMER['lr']:g} without warmup, {s.lm_steps} steps; "
            f"held-out bits per character, median (min–max) over {len(g['post-LN'].run_ids)} seeds: "
            + ", ".join(f"{r} {_bits_text(b)}" for r, b in bits.items())
            + f". Letter frequencies alone score {unigram:.2f}. Post-LN "
            + ("stalls at that level" if stalls else "learns beyond it") + " (monitor: " + (", ".join(findings) or
            "no finding") + "); " + (", ".join(r for r, ok in trains.items() if ok) or "none") + " train"
            + "".join(f"; {r} does not train clearly better" for r, ok in trains.items() if not ok) + ".")  # fmt: skip
    verdict = _verdict(sum(trains.values()), len(trains)) if stalls else "not reproduced"
    evidence = {"bits_per_char": bits, "unigram_bits": unigram, "steps": s.lm_steps, "post_ln_findings": findings}
    return verdict, text, evidence


@functools.cache
def _unigram_bits() -> float:
    """The text data set's unigram entropy in bits (computed once per process)."""
    data = load("text")
    assert isinstance(data, TextDataset)
    return data.unigram_bits


def _final_losses(g: Mapping[str, RunGroup], roles: Mapping[str, Mapping[int, list[str]]],
                  final: Callable[[RunGroup], list[float]]) -> dict[str, dict[int, list[list[float]]]]:  # fmt: skip
    """Per parametrization and size, per learning rate, each seed's final loss (``roles``: the grid's role names)."""
    return {p: {size: [final(g[r]) for r in names] for size, names in by_size.items()} for p, by_size in roles.items()}


def _train_loss(g: RunGroup) -> list[float]:
    return [math.inf if d or not ls else ls[-1] for ls, d in zip(g.losses, g.diverged, strict=True)]


def _width(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    roles = {p: {w: [f"{p}@{w}@{k}" for k in s.lr_powers] for w in WIDTHS} for p in PARAMETRIZATIONS}
    result = transfer(_final_losses(g, roles, _train_loss), s.lr_powers)
    moves = result.moves
    held = moves["standard"] >= 2 and moves["mup"] <= 1
    names = {"standard": "the standard parametrization", "mup": f"µP (base width {WIDTH_MLP['base_width']})"}
    text = (f"{WIDTH_MLP['depth']}-hidden-layer ReLU MLP on digits, He init, Adam for {WIDTH_MLP['epochs']} epochs, "
            f"learning rates 2^{s.lr_powers[0]} … 2^{s.lr_powers[-1]}; the lowest training loss at widths "
            f"{', '.join(map(str, WIDTHS))} (median over {len(s.seeds)} seeds) is at "
            + "; ".join(result.where(p, names[p]) for p in PARAMETRIZATIONS) + ".")  # fmt: skip
    return _verdict(held, 1), text, result.evidence(s.lr_powers, "widths", "loss")


def _depth_transfer(g: Mapping[str, RunGroup], s: Settings) -> Verdict:
    roles = {p: {d: [f"{p}@{d}@{k}" for k in TRANSFER_POWERS] for d in s.transfer_depths} for p in DEPTH_PARAMS}
    result = transfer(_final_losses(g, roles, _bits), TRANSFER_POWERS)
    moves, deepest = result.moves, s.transfer_depths[-1]
    held = [moves["standard"] >= 2, moves["completep"] <= 1]
    direction = moves["standard"] > moves["completep"]  # the paper's contrast, short of its size
    lowest = {p: min(result.best[p][deepest].medians) for p in DEPTH_PARAMS}
    names = {"standard": "the standard parametrization", "completep": f"CompleteP (base depth {TRANSFER_BASE})"}
    text = (f"pre-LN transformer language model (width {TRANSFER_LM['width']}), Xavier init, Adam for "
            f"{TRANSFER_LM['max_steps']} steps, learning rates 2^{TRANSFER_POWERS[0]} … 2^{TRANSFER_POWERS[-1]}; the "
            f"lowest held-out bits per character at depths {', '.join(map(str, s.transfer_depths))} (median over "
            f"{len(s.seeds)} seeds) is at " + "; ".join(result.where(p, names[p]) for p in DEPTH_PARAMS) + ". The "
            f"claim needs ≥ 2 grid steps under the standard parametrization and ≤ 1 under CompleteP. At depth "
            f"{deepest} the best median is " + ", ".join(f"{p.replace('completep', 'CompleteP')} {lowest[p]:.3f}"
            for p in DEPTH_PARAMS) + " bits per character.")  # fmt: skip
    verdict = _verdict(sum(held), 2) if all(held) or direction else "not reproduced"
    return verdict, text, result.evidence(TRANSFER_POWERS, "depths", "bits")


def _depth_text(depth: float) -> str:
    return "unbounded" if not math.isfinite(depth) else "> 1000" if depth > 1000 else f"{depth:.0f}"


CLAIMS = (
    Claim("symmetry", "Zero init cannot break symmetry", "Goodfellow et al. 2016, §8.4", _symmetry),
    Claim(
        "vanishing", "Small random weights make gradients vanish in a deep tanh net", "Glorot & Bengio 2010", _vanishing
    ),
    Claim(
        "he_vs_glorot",
        "He init trains a 30-layer ReLU net where the published Xavier init and torch's default stall",
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
        "Remedies rescue a deep ReLU net whose initialization makes gradients vanish",
        "Ioffe & Szegedy 2015; He et al. 2016; Pascanu et al. 2013; Maas et al. 2013; Kingma & Ba 2015",
        _remedies,
    ),
    Claim(
        "critical",
        "Critical (edge-of-chaos) init trains beyond the depth off-critical inits can",
        "Schoenholz et al. 2017",
        _critical,
    ),
    Claim(
        "depth",
        "A deep post-LN transformer with the standard init stalls where pre-LN, DeepNorm and gpt2's init train",
        "Xiong et al. 2020; Wang et al. 2022; Radford et al. 2019",
        _depth,
    ),
    Claim(
        "width",
        "The best learning rate moves with width under the standard parametrization and stays under µP",
        "Yang et al. 2021, Tensor Programs V, Fig. 1",
        _width,
    ),
    Claim(
        "depth_transfer",
        "The best learning rate moves with depth under the standard parametrization and stays under CompleteP",
        "Dey et al. 2025, CompleteP, Fig. 1; Yang et al. 2023, Tensor Programs VI",
        _depth_transfer,
    ),
)


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
