"""``build_report(store, out)``: one self-contained HTML page (images embedded) built only from the run store.

The report never reads in-memory objects: a sweep that ran on a Ray cluster, or was killed and resumed,
reports exactly like a local one.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure

from initlab.compare.report import plots
from initlab.compare.report.recommend import recommend
from initlab.compare.report.scores import epochs_to, score
from initlab.compare.store import Store

__all__ = ["build_report", "epochs_to", "remedy", "score"]

TARGET = 0.8
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("initlab.compare.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def remedy(config: dict[str, Any]) -> str:
    """The remedies a config applies, in words ("none" for a plain net).

    >>> remedy({"norm": "batch", "optimizer": "adam", "clip_grad_norm": 1.0})
    'BatchNorm + clip norm 1.0 + adam'
    """
    parts = []
    if config.get("norm", "none") != "none":
        parts.append({"batch": "BatchNorm", "layer": "LayerNorm"}.get(config["norm"], config["norm"]))
    if config.get("residual"):
        init = config.get("residual_init", "none")
        parts.append("residual" + (f" ({init})" if init != "none" else ""))
    if config.get("dropout", 0):
        parts.append(f"dropout {config['dropout']}")
    if config.get("weight_norm"):
        parts.append("weight norm")
    for key, name in (("clip_grad_norm", "clip norm"), ("clip_grad_value", "clip value"),
                      ("clip_weight", "weight clip"), ("max_norm", "max-norm")):  # fmt: skip
        if config.get(key, 0):
            parts.append(f"{name} {config[key]}")
    if config.get("optimizer", "sgd") != "sgd":
        parts.append(config["optimizer"])
    if config.get("model") == "transformer":  # where the LayerNorms sit is the transformer's remedy
        parts.insert(0, {"pre": "pre-LN", "post": "post-LN", "deepnorm": "DeepNorm"}[config["norm_position"]])
    if config.get("parametrization", "standard") != "standard":
        parts.append(f"µP (base width {config['base_width']})")
    return " + ".join(parts) or "none"


@dataclasses.dataclass
class _Run:
    id: str
    config: dict[str, Any]
    row: dict[str, Any]
    metrics: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    measures: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def accuracies(self) -> list[float]:
        """Test accuracy per epoch; epochs without one (a Keras fit without validation data) are left out."""
        return [m["test_accuracy"] for m in self.metrics if m["test_accuracy"] is not None]

    @property
    def score(self) -> float:
        return score(self.accuracies, bool(self.row["diverged"]))

    @property
    def label(self) -> str:
        c = self.config
        text = f"{c['activation']} depth {c['depth']} · {c['scheme']}"
        extra = remedy(c)
        return text + (f" · {extra}" if extra != "none" else "") + f" · seed {c['seed']}"

    @property
    def line(self) -> str:
        """Label of a curve: what distinguishes runs within a (data, activation, depth) group."""
        extra = remedy(self.config)
        return self.config["scheme"] + (f" + {extra}" if extra != "none" else "") + f" (lr {self.config['lr']})"


def read_runs(store: Store) -> list[_Run]:
    """Every finished run of the store with its metrics, findings and measures."""
    return [_Run(r["id"], r["config"], r, store.metrics(r["id"]), store.findings(r["id"]), store.measures(r["id"]))
            for r in store.runs("done")]  # fmt: skip


def _b64(fig: Any) -> str:
    return base64.b64encode(plots.png_bytes(fig)).decode()


def build_report(store_path: str | Path, out: str | Path, *, detail_runs: int = 6) -> Path:
    """Write the HTML report of every run in the store to ``out``; returns its path."""
    store_path, out = Path(store_path), Path(out)
    with Store(store_path) as store:
        runs = read_runs(store)
        failed = store.runs("failed")
        comparisons = store.comparisons()
        details = [_details(store, run) for run in _chosen(runs, detail_runs)]
    by_id = {r.id: r for r in runs}
    page = {
        "title": store_path.stem,
        "store": str(store_path),
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "datasets": sorted({r.config["data"] for r in runs}) or ["none"],
        "runs": [
            {"id": r.id, "label": r.label, "config_json": json.dumps(r.config, indent=2, sort_keys=True)} for r in runs
        ],
        "failed": failed,
        "claims": [_claim(c, by_id) for c in comparisons],
        "recommendations": recommend(
            {"config": r.config, "accuracies": r.accuracies, "diverged": bool(r.row["diverged"])} for r in runs
        ),
        "target_pct": f"{TARGET:.0%}",
        "summary_columns": [
            "run",
            "data",
            "activation",
            "depth",
            "scheme",
            "remedy",
            "lr",
            "seed",
            "final train loss",
            "test accuracy",
            "score",
            f"epochs to {TARGET:.0%}",
            "diverged",
            "init (verify)",
            "findings",
        ],
        "summary": [_summary_row(r) for r in runs],
        "curve_groups": _curve_groups(runs),
        "trainability": _trainability(runs),
        "details": details,
        "findings": [{"run": r.label, **f} for r in runs for f in r.findings],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_ENV.get_template("report.html.j2").render(**page), encoding="utf-8")
    return out


def _cell(value: Any, digits: int = 4) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {"text": str(value), "num": False, "sort": ""}
    if isinstance(value, float) and not math.isfinite(value):
        return {"text": "never" if value == math.inf else "—", "num": True, "sort": "Infinity"}
    text = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return {"text": text, "num": True, "sort": repr(float(value))}


def _summary_row(run: _Run) -> list[dict[str, Any]]:
    c, last = run.config, (run.metrics[-1] if run.metrics else {})
    reach = epochs_to(run.accuracies, TARGET)
    loss, accuracy = last.get("train_loss"), last.get("test_accuracy")  # None: not measured (a fit without validation)
    return [_cell(run.id), _cell(c["data"]), _cell(c["activation"]), _cell(c["depth"]), _cell(c["scheme"]),
            _cell(remedy(c)), _cell(float(c["lr"])), _cell(c["seed"]),
            _cell(float(loss) if loss is not None else math.nan),
            _cell(float(accuracy) if accuracy is not None else math.nan),
            _cell(run.score), _cell(float(reach) if reach != math.inf else math.inf),
            _cell("yes" if run.row["diverged"] else "no"), _cell(_init_check(run.measures)),
            _cell(", ".join(sorted({f["kind"] for f in run.findings})) or "—")]  # fmt: skip


def _init_check(measures: dict[str, float]) -> str:
    """Whether every parameter carried the run's scheme at step 0 (verify), as the summary says it."""
    off = measures.get("init_mismatches")
    if off is None:
        return "not checked"
    return "as planned" if off == 0 else f"{int(off)} differ"


def _curves(runs: list[_Run], label: Any) -> list[plots.Curve]:
    return [(label(r), [m["train_loss"] for m in r.metrics], r.accuracies) for r in runs]


def _claim(comparison: dict[str, Any], by_id: dict[str, _Run]) -> dict[str, Any]:
    figure = claim_figure(comparison, by_id)
    return {**comparison, "image": _b64(figure) if figure is not None else ""}


def claim_figure(comparison: dict[str, Any], by_id: dict[str, _Run]) -> Figure | None:
    """The figure of one claim as the report shows it (None where none of its runs is in the store)."""
    evidence = comparison["evidence"]
    if comparison["claim"] == "depth" and "bits_per_char" in evidence:
        bits = {role: [float(b) for b in seeds] for role, seeds in evidence["bits_per_char"].items()}
        return plots.bits_figure(bits, evidence["unigram_bits"], comparison["title"])
    if comparison["claim"] == "width" and "median_loss" in evidence:
        return plots.lr_transfer_figure(evidence["powers"], evidence["median_loss"], comparison["title"])
    if comparison["claim"] == "depth_transfer" and "median_bits" in evidence:
        return plots.lr_transfer_figure(evidence["powers"], evidence["median_bits"], comparison["title"], "depth",
                                        "held-out bits per character")  # fmt: skip
    runs = [by_id[i] for i in comparison["run_ids"] if i in by_id]
    if not runs:
        return None
    return plots.curves_figure(_curves(runs, lambda r: r.line.rsplit(" (", 1)[0] + f" · {r.config['depth']}L "
                                                        f"{r.config['activation']}"), comparison["title"],
                               chance=0.1)  # fmt: skip


MAX_CURVES = 12  # distinct lines in one curves figure: more is a sweep no legend can tell apart


def _curve_groups(runs: list[_Run]) -> list[dict[str, str]]:
    groups: dict[tuple[str, str, int], list[_Run]] = defaultdict(list)
    for r in runs:
        groups[(r.config["data"], r.config["activation"], r.config["depth"])].append(r)
    out = []
    for (data, act, depth), members in sorted(groups.items()):
        if len({r.line for r in members}) > MAX_CURVES:  # a learning-rate sweep: its claim has its own figure
            continue
        title = f"{data}: {act}, depth {depth} ({len(members)} runs)"
        out.append({"title": title, "image": _b64(plots.curves_figure(_curves(members, lambda r: r.line), title))})
    return out


def _trainability(runs: list[_Run]) -> list[dict[str, str]]:
    return [{"activation": act, "image": _b64(figure), "costs": _init_costs(mine)}
            for act, figure, mine in trainability_figures(runs)]  # fmt: skip


def trainability_figures(runs: list[_Run]) -> list[tuple[str, Figure, list[_Run]]]:
    """Per activation with plain runs at two depths or more: the grid of scores beside the predicted depth."""
    plain = [r for r in runs if remedy(r.config) == "none"]
    out = []
    for act in sorted({r.config["activation"] for r in plain}):
        mine = [r for r in plain if r.config["activation"] == act]
        depths = sorted({r.config["depth"] for r in mine})
        schemes = sorted({r.config["scheme"] for r in mine})
        if len(depths) < 2 or len(schemes) < 2:
            continue
        grid = np.full((len(depths), len(schemes)), np.nan)
        for (i, d), (j, s) in ((a, b) for a in enumerate(depths) for b in enumerate(schemes)):
            scores = [r.score for r in mine if r.config["depth"] == d and r.config["scheme"] == s]
            if scores:
                grid[i, j] = statistics.median(scores)
        width = int(statistics.median(r.config["width"] for r in mine))
        from initlab.theory.schemes import trainable_depth  # loads torch: only for a store with such runs

        predicted = {s: trainable_depth(s, act, width) for s in schemes}
        out.append((act, plots.trainability_figure(act, depths, schemes, grid, predicted), mine))
    return out


def _init_costs(runs: list[_Run]) -> str:
    """What the data-dependent schemes' calibration cost per run (their runs store ``init_seconds``)."""
    by_scheme: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        if "init_seconds" in r.measures:
            by_scheme[r.config["scheme"]].append(r.measures["init_seconds"])
    return "; ".join(f"{s}: calibration {statistics.median(v) * 1e3:.0f} ms per run (median of {len(v)}), on top of "
                     f"the formula's draw" for s, v in sorted(by_scheme.items()))  # fmt: skip


def _chosen(runs: list[_Run], limit: int) -> list[_Run]:
    """Runs worth a detailed look: the best and the worst plain run of each (data, activation, depth) group with
    several schemes, biggest contrast first (first seed only)."""
    groups: dict[tuple[str, str, int], list[_Run]] = defaultdict(list)
    first_seed = min((r.config["seed"] for r in runs), default=0)
    for r in runs:
        if remedy(r.config) == "none" and r.config["seed"] == first_seed:
            groups[(r.config["data"], r.config["activation"], r.config["depth"])].append(r)
    pairs = []
    for members in groups.values():
        if len({m.config["scheme"] for m in members}) > 1:
            ranked = sorted(members, key=lambda m: m.score)
            pairs.append((ranked[-1].score - ranked[0].score, ranked[0], ranked[-1]))
    chosen: list[_Run] = []
    for _, worst, best in sorted(pairs, key=lambda p: -p[0]):
        chosen += [worst, best]
    return chosen[:limit] or runs[:limit]


def _details(store: Store, run: _Run) -> dict[str, str]:
    label = run.label + f" (run {run.id}, score {run.score:.2f})"
    heat = ""
    rows = [r for r in store.layer_stats(run.id, "grad_norm") if r[1].endswith("weight")]
    if rows:
        layers = list(dict.fromkeys(r[1] for r in rows))
        steps = sorted({r[0] for r in rows})
        values = np.full((len(layers), len(steps)), np.nan)
        li, si = {n: i for i, n in enumerate(layers)}, {s: i for i, s in enumerate(steps)}
        for step, layer, _, value in rows:
            values[li[layer], si[step]] = np.nan if value is None else value
        heat = _b64(plots.heatmap_figure(layers, steps, values, f"gradient norm per layer — {run.label}"))
    hist = store.histograms(run.id)
    audit = store.audit(run.id)
    return {
        "label": label,
        "heatmap": heat,
        "histograms": _b64(plots.histograms_figure(hist, run.label)) if hist else "",
        "variance": _b64(plots.variance_figure(audit, run.label)) if audit else "",
    }
