"""The answer at a glance: for each activation the runs cover, which initialization trained best, and why.

Read from a run store only (like everything the report shows). Runs are compared on equal footing: "plain" runs
(no normalization, residuals, dropout, weight normalization, clipping or max-norm; plain SGD) that share the
activation, depth and learning rate, at the deepest depth where two or more schemes ran (an activation with one
scheme only, such as a remedy's run, is no comparison and gets no row). The scheme with the
highest median score across seeds wins; the theory's reason is each scheme's χ1 and predicted trainable depth
(6·ξ_c) for the activation, from the distribution ``initialize`` draws.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from initlab.compare.report.scores import score, spread_text
from initlab.compare.store import Store

__all__ = ["Recommendation", "recommend", "recommend_store"]

_PLAIN = {"norm": "none", "residual": False, "dropout": 0.0, "weight_norm": False, "clip_grad_norm": 0.0,
          "clip_grad_value": 0.0, "clip_weight": 0.0, "max_norm": 0.0, "optimizer": "sgd",
          "parametrization": "standard"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One row of the table: an activation's best scheme, its runner-up, and the theory's reason."""

    activation: str
    depth: int
    lr: float
    best: str
    best_scores: tuple[float, ...]
    runner_up: str
    runner_up_scores: tuple[float, ...]
    reason: str

    @property
    def tied(self) -> bool:
        """The demo's rule for a comparison: the gap between the medians must exceed either scheme's spread across
        seeds; where it does not, the two are a tie and the table says so.

        >>> Recommendation("tanh", 30, 0.1, "lsuv", (0.944, 0.95, 0.956), "critical", (0.931, 0.944, 0.944), "").tied
        True
        """
        gap = statistics.median(self.best_scores) - statistics.median(self.runner_up_scores)
        spread = max(max(s) - min(s) for s in (self.best_scores, self.runner_up_scores))
        return gap <= spread

    @property
    def best_label(self) -> str:
        """The best scheme's name, marked when the runner-up is within the seeds' spread."""
        return f"{self.best} (tied with {self.runner_up})" if self.tied else self.best

    @property
    def best_text(self) -> str:
        return spread_text(self.best_scores)

    @property
    def runner_up_text(self) -> str:
        return spread_text(self.runner_up_scores)


@functools.lru_cache(maxsize=256)  # the demo asks twice per row (its table, then the report), ~1 s each
def _theory(scheme: str, act: str, width: int) -> str:
    # the theory (and torch) load only for a store that has runs to explain: `initlab report` starts without them
    from initlab.theory import meanfield
    from initlab.theory.schemes import scheme_point, trainable_depth

    weight_var, bias_var = scheme_point(scheme, act, width)
    if weight_var == 0:
        return f"{scheme}: zero weights, no signal"
    depth = trainable_depth(scheme, act, width)
    chi = float(meanfield.chi1(act, weight_var, bias_var))
    reach = "any depth" if not math.isfinite(depth) or depth > 1000 else f"≈ {depth:.0f} layers"
    return f"{scheme}: χ1 = {chi:.2f}, trainable to {reach}"


def recommend(runs: Iterable[Mapping[str, Any]]) -> list[Recommendation]:
    """One :class:`Recommendation` per activation, from runs given as ``{"config": {...}, "accuracies": [...],
    "diverged": bool}`` (the report's and the demo's view of a store)."""
    groups: dict[tuple[str, int, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    width: dict[str, int] = {}
    for run in runs:
        config = run["config"]
        if any(config.get(k, v) != v for k, v in _PLAIN.items()) or config.get("gain", "published") != "published":
            continue
        key = (config["activation"], int(config["depth"]), float(config["lr"]))
        groups[key][config["scheme"]].append(score(run["accuracies"], bool(run["diverged"])))
        width[config["activation"]] = int(config["width"])
    out = []
    for act in sorted({k[0] for k in groups}):
        contested = [k for k in groups if k[0] == act and len(groups[k]) >= 2]
        if not contested:  # one scheme only (a remedy's run): nothing was compared
            continue
        key = max(contested, key=lambda k: (k[1], len(groups[k])))
        ranked = sorted(groups[key].items(), key=lambda item: statistics.median(item[1]), reverse=True)
        (best, best_scores), (runner, runner_scores) = ranked[0], ranked[1]
        reason = f"{_theory(best, act, width[act])}; {_theory(runner, act, width[act])}"
        out.append(Recommendation(act, key[1], key[2], best, tuple(best_scores), runner, tuple(runner_scores),
                                  reason))  # fmt: skip
    return out


def recommend_store(store: Store) -> list[Recommendation]:
    """:func:`recommend` over every finished run of ``store``."""
    return recommend(
        {"config": run["config"], "accuracies": [m["test_accuracy"] for m in store.metrics(run["id"])
                                                 if m["test_accuracy"] is not None],  # a Keras fit without validation
         "diverged": bool(run["diverged"])}
        for run in store.runs("done")
    )  # fmt: skip
