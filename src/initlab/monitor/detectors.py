"""Findings: what is going wrong in training, in plain words, with the evidence and what to try.

Thresholds start from the literature and are all configurable (:class:`Thresholds`):

* vanishing gradients: ‖g_first‖/‖g_last‖ < 1e-3 and ‖g_first‖ < 1e-4 — AUTOTRAINER (Zhang et al., ICSE 2021);
* exploding gradients: that ratio > 70, or any gradient NaN/Inf — AUTOTRAINER; or the activations' std
  growing more than 70× from the first watched layer to the last. The second test is initlab's: with
  σ_w² = 4/fan_in in a ReLU net, activations and back-propagated deltas both grow √2× per layer, so every
  weight gradient ``δ_l x_{l-1}ᵀ`` has the same norm and AUTOTRAINER's ratio stays near 1 while the signal
  has grown 1000× over 20 layers;
* dying ReLU: ≥ 70% of a ReLU layer's outputs ≤ 0 — DeepDiagnosis (Wardat et al., ICSE 2022), AUTOTRAINER's
  70% of zero gradients;
* saturation: > 50% of a tanh/sigmoid layer's pre-activations beyond |5| — DeepDiagnosis;
* NaN/Inf in the loss, an activation or a gradient: the first step and the first layer where it appeared;
* loss plateau: the loss moved less than 1% over the last ``plateau_steps`` recorded steps while every
  gradient norm stayed below 1e-4;
* residual stream growth (initlab's, from :mod:`initlab.monitor.residual`): the stream's std grows more than 8×
  from the first block's input to the last block's output. The remedy is predicted first: with each of the L
  branches' last layer ×1/√L (GPT-2's rule) and the stream Var(x_0) + ΣVar(branch) (pre-LN: each branch sees a
  normalized input, branches roughly independent of the stream), the growth g becomes √(1 + (g² − 1)/L);
* attention collapse: an attention module's mean normalized entropy below 0.1 (each query puts nearly all its
  weight on one token). The remedy, µP's 1/d attention, is named only where the entropy it predicts (from the
  same logits ×1/√d_head) is higher.

A condition must hold on ``patience`` consecutive recorded steps (NaN: at once) before it becomes a finding,
and each (kind, layer) is reported once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from initlab._errors import fail

__all__ = ["PREDICTED_INIT", "REMEDIES", "Finding", "Thresholds", "detect"]


@dataclass(frozen=True)
class Thresholds:
    """Detector thresholds (defaults from AUTOTRAINER and DeepDiagnosis; see the module docs)."""

    vanishing_ratio: float = 1e-3
    vanishing_norm: float = 1e-4
    exploding_ratio: float = 70.0
    dead_fraction: float = 0.7
    saturated_fraction: float = 0.5
    plateau_change: float = 0.01
    plateau_grad: float = 1e-4
    plateau_steps: int = 10
    patience: int = 3
    stream_growth: float = 8.0
    attention_entropy: float = 0.1

    def __post_init__(self) -> None:
        for name in ("plateau_steps", "patience"):  # counts of recorded steps: the loss window, the streak
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fix = f"Pass {name}={getattr(Thresholds, name)} (the default) or more."
                problem = f"Thresholds.{name} must be a whole number of recorded steps"
                raise fail(problem, accepted="an int >= 1", received=value, fix=fix)


@dataclass
class Finding:
    """One problem: where and when it appeared, the numbers behind it, and ranked remedies.

    ``remedies`` is computed when it is first read: a predicted initialization takes a mean-field solve per
    layer (~10 ms each), which must not stall the training step in which the finding fires (issue 35). What it
    is predicted from (the weights' moments) was taken at that step, so reading it later gives the same text.
    """

    step: int
    layer: str
    kind: str  # vanishing, exploding, dying_relu, saturation, nan, plateau, stream_growth, attention_collapse
    message: str
    evidence: dict[str, float] = field(default_factory=dict)
    ranked: list[str] | Callable[[], list[str]] = field(default_factory=list, repr=False, compare=False)

    @property
    def remedies(self) -> list[str]:
        """The ranked remedies, most likely to help first."""
        if callable(self.ranked):
            self.ranked = self.ranked()
        return self.ranked

    def __getstate__(self) -> dict[str, object]:
        """Pickled (to a sweep's driver, a Ray cluster) with its remedies computed: the closure does not travel."""
        return {**self.__dict__, "ranked": self.remedies}

    def to_dict(self) -> dict[str, Any]:
        """The finding in plain values (remedies computed), as a run store or a checkpoint keeps it."""
        return {"step": self.step, "layer": self.layer, "kind": self.kind, "message": self.message,
                "evidence": dict(self.evidence), "remedies": list(self.remedies)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Finding:
        return cls(values["step"], values["layer"], values["kind"], values["message"], dict(values["evidence"]),
                   list(values["remedies"]))  # fmt: skip

    def __str__(self) -> str:
        tries = "; ".join(f"({i}) {r}" for i, r in enumerate(self.remedies, 1))
        return f"step {self.step}, {self.layer}: {self.message} Try: {tries}"


# Where a remedy is an initialization, it is named only once theory predicts it helps (issue 22): the monitor
# replaces this marker by the scheme whose predicted χ1 is closer to 1 than the model's weights give, with both
# numbers, or drops it where no scheme is (``detect``'s ``init_fix``).
PREDICTED_INIT = "<an initialization predicted to bring χ1 closer to 1>"


def _scaled_branches(evidence: dict[str, float]) -> str | None:
    if not evidence["predicted_growth"] < evidence["growth"]:
        return None
    return (f"scale each residual branch's last layer by 1/√{evidence['branches']:.0f} (initialize(model, scheme, "
            f"residual='scaled'), or the gpt2 scheme): predicted growth {evidence['predicted_growth']:.2g}× instead "
            f"of {evidence['growth']:.3g}×")  # fmt: skip


def _one_over_d(evidence: dict[str, float]) -> str | None:
    if not evidence["entropy_1/d"] > evidence["entropy"]:
        return None
    return (
        f"use µP's 1/d attention with zero-initialized queries (parametrization='mup', or initlab.mup): "
        f"predicted entropy {evidence['entropy_1/d']:.2g} of the maximum instead of {evidence['entropy']:.2g}"
    )


Remedy = str | Callable[[dict[str, float]], str | None]  # a callable: a remedy predicted from the evidence

REMEDIES: dict[str, list[Remedy]] = {
    "vanishing": [
        PREDICTED_INIT,
        "add BatchNorm after each hidden layer",
        "add residual connections so gradients have a short path",
        "use Adam, whose per-parameter step size does not shrink with the gradient",
        "replace sigmoid/tanh by ReLU or LeakyReLU",
    ],
    "exploding": [
        "clip gradients by norm (torch.nn.utils.clip_grad_norm_(params, 1.0))",
        "lower the learning rate by 10×",
        PREDICTED_INIT,
        "add BatchNorm after each hidden layer",
    ],
    "dying_relu": [
        "use LeakyReLU (negative slope 0.01–0.2) so inactive units still get a gradient",
        "start biases at 0 (initlab's default), not negative",
        "lower the learning rate: a large step can push units into the dead region",
        PREDICTED_INIT,
    ],
    "saturation": [
        PREDICTED_INIT,
        "add BatchNorm before the activation",
        "replace tanh/sigmoid by ReLU or LeakyReLU",
        "lower the learning rate",
    ],
    "nan": [
        "lower the learning rate by 10× or more",
        "clip gradients by norm",
        "look for log(0), division by zero or overflow in the loss",
        "use Adam with a smaller learning rate",
    ],
    "plateau": [
        PREDICTED_INIT,
        "raise the learning rate or use Adam",
        "add BatchNorm or residual connections",
    ],
    "stream_growth": [
        _scaled_branches,
        "normalize the stream: post-LN with DeepNorm (x ← LN(α·x + f(x)), the deepnorm scheme)",
        "lower the learning rate, if the growth appeared during training",
    ],
    "attention_collapse": [
        _one_over_d,
        "lower the learning rate or clip gradients by norm",
        "use pre-LN, so that the queries' and keys' inputs stay normalized",
    ],
}


# A model with a residual stream the monitor watches (a transformer) already has residual connections and
# normalization, and mean-field χ1 does not describe it: its gradient findings get the architecture's remedies.
STREAM_REMEDIES: dict[str, list[Remedy]] = {
    "vanishing": [
        "move the LayerNorms inside the branches (pre-LN: x + f(LN(x)), a final LayerNorm): the identity path "
        "carries gradients to the first blocks (Xiong et al. 2020)",
        "or keep post-LN with DeepNorm: x ← LN(α·x + f(x)), α = (2N)^¼, and the deepnorm scheme (Wang et al. 2022)",
        "warm the learning rate up over the first steps (post-LN needs it: Liu et al. 2020)",
    ],
    "exploding": [
        "clip gradients by norm (torch.nn.utils.clip_grad_norm_(params, 1.0))",
        "lower the learning rate by 10×",
        "scale each residual branch's last layer by 1/√(2N) (residual='scaled', or the gpt2 scheme)",
    ],
}


@dataclass
class DetectorState:
    """What detection remembers between recorded steps."""

    streaks: dict[tuple[str, str], int] = field(default_factory=dict)
    reported: set[tuple[str, str]] = field(default_factory=set)
    losses: list[float] = field(default_factory=list)
    layout: _Layout | None = None

    def state_dict(self) -> dict[str, list[Any]]:
        """What detection remembers, in plain lists (a checkpoint loaded with ``weights_only`` reads them)."""
        return {"streaks": [[*key, n] for key, n in self.streaks.items()], "reported": [list(k) for k in self.reported],
                "losses": list(self.losses)}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, list[Any]]) -> DetectorState:
        return cls({(a, b): n for a, b, n in state["streaks"]}, {(a, b) for a, b in state["reported"]},
                   list(state["losses"]))  # fmt: skip


Record = dict[tuple[str, str], float]
Candidate = tuple[str, str, str, dict[str, float]]


class _Layout:
    """Where each statistic sits in a record. A run's records share one key order (the probes' names), so
    this is built once, and each record is then read with a few short list comprehensions instead of a walk
    over its hundreds of keys: at every step, detection runs right after the backward pass, where any
    Python loop costs several times its isolated time (cold caches; ``bench/monitor_overhead.py``)."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        self.by_stat: dict[str, list[tuple[str, int]]] = {}
        for i, (layer, stat) in enumerate(keys):
            self.by_stat.setdefault(stat, []).append((layer, i))
        self.watched = [i for i, (_, stat) in enumerate(keys) if stat in _NAN_WATCHED]


class _View:
    """A record read through its layout: the (layer, value) pairs of a statistic in record order, and the
    first non-finite activation, gradient or loss value."""

    def __init__(self, record: Record, layout: _Layout) -> None:
        self.record, self.layout = record, layout
        self.values = list(record.values())

    def stat(self, name: str) -> list[tuple[str, float]]:
        values = self.values
        return [(layer, values[i]) for layer, i in self.layout.by_stat.get(name, ())]

    @property
    def first_nonfinite(self) -> tuple[str, str, float] | None:
        values = self.values
        watched = [values[i] for i in self.layout.watched]
        if math.isfinite(sum(watched)):  # NaN and ±Inf propagate through a sum; an overflow only costs the scan
            return None
        for i in self.layout.watched:
            if not math.isfinite(values[i]):
                layer, stat = self.layout.keys[i]
                return layer, stat, values[i]
        return None


_NAN_WATCHED = frozenset(("mean", "std", "grad_norm", "loss"))


def _vanishing_exploding(view: _View, weights: Sequence[str], t: Thresholds) -> list[Candidate]:
    norms = [view.record.get((w, "grad_norm"), math.nan) for w in weights]
    if len(norms) < 2 or not all(math.isfinite(n) for n in norms) or norms[-1] == 0:
        return []
    first, last = norms[0], norms[-1]
    ratio = first / last
    evidence = {"first_grad_norm": first, "last_grad_norm": last, "ratio": ratio}
    if view.layout.by_stat.get("stream_in"):
        evidence["residual_stream"] = 1.0  # a transformer: see STREAM_REMEDIES
    if ratio < t.vanishing_ratio and first < t.vanishing_norm:
        return [
            (
                "vanishing",
                weights[0],
                f"gradients vanish: the first layer's gradient norm is {first:.2g}, "
                f"{ratio:.2g} of the last layer's ({last:.2g}); the first layers barely learn.",
                evidence,
            )
        ]
    if ratio > t.exploding_ratio:
        return [
            (
                "exploding",
                weights[0],
                f"gradients explode: the first layer's gradient norm is {first:.3g}, "
                f"{ratio:.3g}× the last layer's ({last:.3g}).",
                evidence,
            )
        ]
    return _exploding_signal(view, t)


def _exploding_signal(view: _View, t: Thresholds) -> list[Candidate]:
    stds = [(layer, v) for layer, v in view.stat("std") if math.isfinite(v)]
    if len(stds) < 2 or stds[0][1] <= 0:
        return []
    growth = stds[-1][1] / stds[0][1]
    if growth <= t.exploding_ratio:
        return []
    evidence = {"first_std": stds[0][1], "last_std": stds[-1][1], "growth": growth}
    return [
        (
            "exploding",
            stds[-1][0],
            f"activations explode: their std grows {growth:.3g}× from layer "
            f"{stds[0][0]} ({stds[0][1]:.3g}) to layer {stds[-1][0]} ({stds[-1][1]:.3g}); gradients grow the "
            "same way backwards.",
            evidence,
        )
    ]


def _units(view: _View, t: Thresholds) -> list[Candidate]:
    out: list[Candidate] = []
    for layer, value in view.stat("dead"):
        if value >= t.dead_fraction:
            out.append(
                (
                    "dying_relu",
                    layer,
                    f"dying ReLU: {value:.0%} of this layer's outputs are ≤ 0, so their units pass no gradient.",
                    {"dead_fraction": value},
                )
            )
    for layer, value in view.stat("saturated"):
        if value > t.saturated_fraction:
            out.append(
                (
                    "saturation",
                    layer,
                    f"saturated units: {value:.0%} of this layer's pre-activations are "
                    "beyond ±5, where tanh/sigmoid have almost no slope.",
                    {"saturated_fraction": value},
                )
            )
    return out


def _nan(view: _View) -> list[Candidate]:
    first = view.first_nonfinite  # records keep forward order: activations, then parameters
    if first is None:
        return []
    layer, stat, value = first
    where = "the loss" if stat == "loss" else ("an activation" if stat in ("mean", "std") else "a gradient")
    return [
        (
            "nan",
            layer,
            f"NaN/Inf first appeared in {where} ({stat} = {value}) at this layer; training has diverged.",
            {stat: value},
        )
    ]


def _plateau(state: DetectorState, view: _View, t: Thresholds) -> list[Candidate]:
    loss = view.record.get(("model", "loss"), math.nan)
    if not math.isfinite(loss):
        return []
    state.losses.append(loss)
    del state.losses[: -t.plateau_steps]  # only the window is ever read
    recent = state.losses
    if len(recent) < t.plateau_steps:
        return []
    change = abs(recent[0] - recent[-1]) / max(abs(recent[0]), 1e-12)
    grads = [v for _, v in view.stat("grad_norm")] if change < t.plateau_change else []
    if not grads or max(grads) >= t.plateau_grad:
        return []
    return [
        (
            "plateau",
            "model",
            f"the loss plateaued ({change:.2%} change over {t.plateau_steps} recorded steps) "
            f"while every gradient norm is below {t.plateau_grad:g}.",
            {"loss": loss, "change": change},
        )
    ]


def _residual_stream(view: _View, t: Thresholds) -> list[Candidate]:
    ins, outs, branches = view.stat("stream_in"), view.stat("stream_out"), view.stat("branch_ratio")
    if not ins or not outs or not ins[0][1] > 0 or not math.isfinite(outs[-1][1]):
        return []
    first, (block, last) = ins[0][1], outs[-1]
    growth = last / first
    if not growth > t.stream_growth:
        return []
    count = max(len(branches), 1)
    predicted = math.sqrt(1 + (growth**2 - 1) / count)
    return [(
        "stream_growth",
        block,
        f"the residual stream grows {growth:.3g}× over {len(outs)} blocks (std {first:.3g} → {last:.3g}): each "
        "block adds to it, and nothing brings it back.",
        {"growth": growth, "first_std": first, "last_std": last, "branches": float(count),
         "predicted_growth": predicted},
    )]  # fmt: skip


def _attention(view: _View, t: Thresholds) -> list[Candidate]:
    out: list[Candidate] = []
    for layer, entropy in view.stat("entropy"):
        if entropy < t.attention_entropy:
            logit, predicted = view.record.get((layer, "logit_std"), math.nan), view.record.get((layer, "entropy_1/d"),
                                                                                              math.nan)  # fmt: skip
            out.append((
                "attention_collapse",
                layer,
                f"attention collapsed: each query puts nearly all its weight on one token (entropy {entropy:.2g} of "
                f"the maximum; logit std {logit:.3g}).",
                {"entropy": entropy, "logit_std": logit, "entropy_1/d": predicted},
            ))  # fmt: skip
    return out


def detect(state: DetectorState, step: int, record: Record, weights: Sequence[str], t: Thresholds,
           init_fix: Callable[[], Callable[[], str | None]] = lambda: lambda: None,
           silent: Callable[[str], bool] = lambda layer: False) -> list[Finding]:  # fmt: skip
    """New findings for one recorded step (``record``: (layer, stat) -> value; ``weights``: forward order).
    ``init_fix`` is asked, only when a finding's remedies include an initialization, for what predicts one (taken
    now, cheaply; the prediction itself runs when the finding's remedies are read).
    ``silent(layer)``: whether the layer's input is exactly zero by construction (a residual branch that starts
    at zero): its zero outputs are then not dead units (issue 21), and no dying-ReLU finding is raised."""
    keys = list(record)
    if state.layout is None or state.layout.keys != keys:
        state.layout = _Layout(keys)
    view = _View(record, state.layout)
    candidates = _nan(view)
    immediate = {c[0] for c in candidates}
    candidates += _vanishing_exploding(view, weights, t) + _units(view, t) + _plateau(state, view, t)
    candidates += _residual_stream(view, t) + _attention(view, t)
    seen = {(kind, layer) for kind, layer, *_ in candidates}
    for key in list(state.streaks):
        if key not in seen:
            del state.streaks[key]
    findings = []
    for kind, layer, message, evidence in candidates:
        if kind == "dying_relu" and silent(layer):
            continue
        key = (kind, layer)
        state.streaks[key] = state.streaks.get(key, 0) + 1
        ready = kind in immediate or kind == "plateau" or state.streaks[key] >= t.patience
        if ready and key not in state.reported and not _shadowed(kind, state):
            state.reported.add(key)
            findings.append(Finding(step, layer, kind, message, evidence, _remedies(kind, init_fix, evidence)))
    return findings


def _remedies(kind: str, init_fix: Callable[[], Callable[[], str | None]],
              evidence: dict[str, float]) -> Callable[[], list[str]]:  # fmt: skip
    """The finding's remedies, to be computed when read; ``init_fix()`` (asked now, only where a remedy is a
    predicted initialization) takes what the prediction needs at this step and returns the prediction."""
    candidates = STREAM_REMEDIES[kind] if evidence.get("residual_stream") else REMEDIES[kind]
    predicted = init_fix() if PREDICTED_INIT in candidates else lambda: None

    def ranked() -> list[str]:
        remedies = []
        for remedy in candidates:
            text = remedy(evidence) if callable(remedy) else predicted() if remedy == PREDICTED_INIT else remedy
            if text is not None:
                remedies.append(text)
        return remedies

    return ranked


def _shadowed(kind: str, state: DetectorState) -> bool:
    """After NaN, everything else is noise."""
    return kind != "nan" and any(k == "nan" for k, _ in state.reported)
