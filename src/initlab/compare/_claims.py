"""The demo's claims (:mod:`initlab.compare.demo`): each with its title, its source and how it is judged from its
roles' runs, as a verdict ("reproduced", "partly reproduced", "not reproduced"), the text the report shows and the
evidence the store keeps."""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from initlab.compare._demo_runs import (
    CHANCE,
    CRITICAL_SCHEMES,
    DEPTH_PARAMS,
    DEPTH_ROLES,
    HE_SCHEMES,
    PARAMETRIZATIONS,
    RELU_DEEP,
    REMEDIES,
    TRANSFER_BASE,
    TRANSFER_LM,
    TRANSFER_POWERS,
    TRANSFORMER,
    WIDTH_MLP,
    WIDTHS,
    RunGroup,
    Settings,
)
from initlab.compare._lr_transfer import transfer
from initlab.compare.data import TextDataset, load
from initlab.theory.schemes import trainable_depth

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
