"""The demo's runs (:mod:`initlab.compare.demo`): how big it is (:class:`Settings`), the runs each claim compares
(its roles: TrainConfig overrides on the demo's base), and a role's runs read back from the store
(:class:`RunGroup`)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from initlab._errors import unknown_name
from initlab.compare.report.scores import epochs_to, score, spread_text
from initlab.compare.store import Store

# the claims in the order the demo runs and reports them (initlab.compare._claims.CLAIMS holds one of each)
CLAIM_IDS = ("symmetry", "vanishing", "he_vs_glorot", "glorot_vs_standard", "remedies", "critical", "depth", "width",
             "depth_transfer")  # fmt: skip

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
    raise unknown_name("demo claim", claim, CLAIM_IDS)


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
