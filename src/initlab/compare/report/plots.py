"""Plots with matplotlib (Agg backend: files and embedded PNGs, no display needed)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from initlab._errors import fail

if TYPE_CHECKING:
    from initlab.theory.diagram import PhaseDiagram

__all__ = [
    "bits_figure",
    "curves_figure",
    "heatmap_figure",
    "histograms_figure",
    "lr_transfer_figure",
    "phase_diagram_figure",
    "phase_plot",
    "png_bytes",
    "save",
    "trainability_figure",
    "variance_figure",
]


def phase_diagram_figure(d: PhaseDiagram, point: tuple[float, float] | None = None,
                         depth: int | None = None) -> Figure:  # fmt: skip
    """χ1 over (σ_w², σ_b²): blue ordered (vanishing), red chaotic (exploding), the critical line χ1 = 1,
    contours of the trainable depth 6·ξ_c, and the point asked about."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    log_chi = np.log10(np.clip(d.chi1, 1e-6, 1e6))
    # each side of χ1 = 1 spans its own colour range, so a mildly chaotic region is still visibly red
    low, high = min(float(np.nanmin(log_chi)), -1e-3), max(float(np.nanmax(log_chi)), 1e-3)
    mesh = ax.pcolormesh(d.weight_vars, d.bias_vars, log_chi, cmap="coolwarm", shading="auto",
                         norm=TwoSlopeNorm(0.0, low, high))  # fmt: skip
    fig.colorbar(mesh, ax=ax, label="log10 χ1   (< 0 ordered: gradients vanish;  > 0 chaotic: explode)")
    ax.contour(d.weight_vars, d.bias_vars, d.chi1, levels=[1.0], colors="black", linewidths=2.0)
    depth_levels = [lv for lv in (10, 20, 50, 100, 200) if np.nanmax(d.trainable_depth) > lv]
    if depth_levels:
        cs = ax.contour(d.weight_vars, d.bias_vars, np.nan_to_num(d.trainable_depth, nan=0.0, posinf=1e9),
                        levels=depth_levels, colors="dimgray", linewidths=0.8, linestyles="--")  # fmt: skip
        ax.clabel(cs, fmt=lambda v: f"6ξc={v:.0f}", fontsize=8)
    if point is not None:
        ax.plot(*point, marker="*", markersize=16, color="gold", markeredgecolor="black")
        if depth is not None:
            ax.annotate(f"depth {depth}", point, textcoords="offset points", xytext=(8, 8))
    ax.set_xlabel("σ_w² (weight variance × fan_in)")
    ax.set_ylabel("σ_b² (bias variance)")
    ax.set_title(f"{d.activation}: order-to-chaos phase diagram (black: edge of chaos, χ1 = 1)")
    fig.tight_layout()
    return fig


def phase_plot(activation: str, weight_var: float, bias_var: float, depth: int) -> Figure:
    """The phase diagram ``initlab predict --plot`` draws: a 200×200 grid around the point, the point marked."""
    from initlab.theory.diagram import phase_diagram

    wv_max, bv_max = max(4.0, weight_var * 1.5), max(0.5, bias_var * 1.5)
    diagram = phase_diagram(activation, np.linspace(0.05, wv_max, 200), np.linspace(0.0, bv_max, 200))
    return phase_diagram_figure(diagram, (weight_var, bias_var), depth)


_SMALL = 7  # points: 9.7 px at the figures' 100 dpi, shown at most at native size on the 1100 px page


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (closes it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure to ``path`` (format from the suffix) and close it."""
    out = Path(path)
    formats = fig.canvas.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        plt.close(fig)
        raise fail(f"cannot write a figure to {out}: its suffix names no image format",
                   accepted=", ".join(f".{k}" for k in sorted(formats)), received=out.suffix or "no suffix",
                   fix=f"Name the file {out.with_suffix('.png').name}, for example.")  # fmt: skip
    fig.savefig(out)
    plt.close(fig)
    return out


# -- the report's figures (everything drawn from rows read out of the run store) ---------------------------
Curve = tuple[str, list[float], list[float]]  # label, train loss per epoch, test accuracy per epoch


def curves_figure(curves: list[Curve], title: str, chance: float | None = None) -> Figure:
    """Training loss (log scale) and test accuracy per epoch; runs with the same label (seeds) share a colour."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=100)
    labels = list(dict.fromkeys(label for label, _, _ in curves))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colors, shown = {label: cmap(i % 20) for i, label in enumerate(labels)}, set()
    for label, loss, acc in curves:
        color, first = colors[label], label not in shown
        shown.add(label)
        finite = np.array([v if v is not None and np.isfinite(v) and v > 0 else np.nan for v in loss], dtype=float)
        marker = "." if len(loss) < 3 else ""
        loss_ax.plot(np.arange(1, len(finite) + 1), finite, color=color, marker=marker, linewidth=1.2)
        acc_ax.plot(np.arange(1, len(acc) + 1), acc, color=color, marker=marker, linewidth=1.2,  # none: no test set
                    label=label if first else None)  # fmt: skip
    loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="training loss (log)", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy", ylim=(0, 1))
    acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))  # the text speaks in percent too
    if chance is not None:
        acc_ax.axhline(chance, color="gray", linestyle=":", linewidth=1, label="chance")
    acc_ax.legend(fontsize=_SMALL, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def trainability_figure(activation: str, depths: list[int], schemes: list[str], score: np.ndarray,
                        predicted: dict[str, float]) -> Figure:  # fmt: skip
    """Measured trainability (test accuracy; depth × scheme) above the depth mean-field theory predicts each
    scheme can train (6·ξ_c), scheme by scheme in the same columns."""
    fig, (grid_ax, theory_ax) = plt.subplots(2, 1, figsize=(1.3 * len(schemes) + 3, 0.55 * len(depths) + 4.6),
                                             dpi=100, sharex=True,
                                             gridspec_kw={"height_ratios": [max(len(depths), 2), 2.2]})  # fmt: skip
    mesh = grid_ax.imshow(np.ma.masked_invalid(score), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for (row, col), value in np.ndenumerate(score):
        if np.isfinite(value):
            grid_ax.text(col, row, f"{100 * value:.0f}%", ha="center", va="center",
                         color="white" if value < 0.6 else "black")  # fmt: skip
    grid_ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    grid_ax.set(ylabel="depth", title=f"{activation}: measured test accuracy (blank: not run)")
    fig.colorbar(mesh, ax=[grid_ax], label="test accuracy (%)", fraction=0.04, format=PercentFormatter(1.0))
    raw = [predicted.get(s, np.nan) for s in schemes]
    shown = [min(max(v, 0.5), 1e4) if not np.isnan(v) else np.nan for v in raw]
    theory_ax.bar(range(len(schemes)), shown, color="slateblue", width=0.6)
    for depth in depths:
        theory_ax.axhline(depth, color="gray", linestyle=":", linewidth=1)
    for i, v in enumerate(raw):
        text = "n/a" if np.isnan(v) else "∞" if np.isinf(v) else "> 10⁴" if v > 1e4 else f"{v:.0f}"
        theory_ax.text(i, shown[i] if np.isfinite(shown[i]) else 1.0, text, ha="center", va="bottom", fontsize=8)
    theory_ax.set_yscale("log")
    theory_ax.set_ylim(0.5, 1e5)
    theory_ax.set_xticks(range(len(schemes)), schemes, rotation=25, ha="right", fontsize=8)
    theory_ax.set(ylabel="6·ξ_c (log)", title="predicted trainable depth (mean-field theory; dotted: depths run)")
    fig.colorbar(mesh, ax=[theory_ax], fraction=0.04).remove()  # keep both panels the same width
    return fig


def bits_figure(bits: dict[str, list[float]], unigram: float, title: str) -> Figure:
    """Held-out bits per character per role: each seed a dot (diverged: at the top, marked ✕), the median a bar, and
    the level of a model that learned letter frequencies only (the unigram entropy)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    finite = [b for seeds in bits.values() for b in seeds if np.isfinite(b)]
    top = max([unigram, *finite]) + 0.4
    for i, seeds in enumerate(bits.values()):
        values = [b if np.isfinite(b) else top for b in seeds]
        ax.bar(i, float(np.median(values)), width=0.6, color="lightsteelblue")
        ax.scatter([i] * len(values), values, color="navy", zorder=3, s=18,
                   marker="o" if all(np.isfinite(seeds)) else "x")  # fmt: skip
    ax.axhline(unigram, color="firebrick", linestyle="--", linewidth=1.2,
               label=f"letter frequencies only ({unigram:.2f} bits)")  # fmt: skip
    ax.set_xticks(range(len(bits)), list(bits))
    ax.set(ylabel="held-out bits per character", ylim=(min(finite, default=0.0) - 0.5, top + 0.2))
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.legend(fontsize=_SMALL, loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def lr_transfer_figure(powers: list[int], losses: dict[str, dict[str, list[float | None]]], title: str,
                       size: str = "width", metric: str = "training loss") -> Figure:  # fmt: skip
    """Tensor Programs V's Fig. 1: the final loss (``metric``) against log2 learning rate, a line per ``size``
    (width or depth), one panel per parametrization; each size's best learning rate marked."""
    fig, axes = plt.subplots(1, len(losses), figsize=(5.2 * len(losses), 3.8), dpi=100, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (param, by_width) in zip(axes, losses.items(), strict=True):
        cmap = plt.get_cmap("viridis")
        for i, (width, values) in enumerate(by_width.items()):
            color = cmap(i / max(len(by_width) - 1, 1))
            y = np.array([v if v is not None and np.isfinite(v) else np.nan for v in values], dtype=float)
            ax.plot(powers, y, color=color, marker=".", label=f"{size} {width}")
            best = int(np.nanargmin(y))
            ax.scatter([powers[best]], [y[best]], color=color, marker="*", s=140, zorder=3, edgecolors="black")
        ax.set_yscale("log")
        ax.set(xlabel="log2 learning rate", title={"mup": "µP", "completep": "CompleteP"}.get(param, param))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=_SMALL, frameon=False)
    axes[0].set_ylabel(f"{metric} after the budget (log)")
    fig.suptitle(title + f" (★: each {size}'s best learning rate)", fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_figure(layers: list[str], steps: list[int], values: np.ndarray, title: str) -> Figure:
    """Per-layer gradient norm over training steps, log colour scale (layers from input to output, top down)."""
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(8, 0.18 * len(layers) + 1.8), dpi=100)
    positive = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max())) if positive.size else None
    mesh = ax.pcolormesh(steps, np.arange(len(layers)), np.ma.masked_invalid(np.where(values > 0, values, np.nan)),
                         norm=norm, cmap="magma", shading="nearest")  # fmt: skip
    ax.set_yticks(range(len(layers)), layers, fontsize=_SMALL)
    ax.invert_yaxis()
    ax.set(xlabel="step", ylabel="layer (input at top)", title=title)
    if positive.size:
        fig.colorbar(mesh, ax=ax, label="gradient norm (log)")
    else:  # an empty ±0.1 colour scale said nothing
        ax.text(0.5, 0.5, "all gradients are exactly 0", ha="center", va="center", transform=ax.transAxes,
                fontsize=11, bbox={"facecolor": "white", "edgecolor": "gray"})  # fmt: skip
    fig.tight_layout()
    return fig


def histograms_figure(rows: list[dict[str, object]], title: str) -> Figure:
    """Per-layer histograms of activations and back-propagated gradients at initialization and at the end
    (Glorot & Bengio 2010, Figs. 6–7): one line per layer, darker = deeper."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 5.5), dpi=100, squeeze=False)
    for col, phase in enumerate(("init", "end")):
        for row, kind in enumerate(("activation", "gradient")):
            ax = axes[row][col]
            chosen = [r for r in rows if r["phase"] == phase and r["kind"] == kind]
            shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(chosen), 1)))
            for shade, r in zip(shades, chosen, strict=False):
                edges, counts = np.asarray(r["edges"]), np.asarray(r["counts"], dtype=float)
                total = counts.sum() or 1.0
                ax.plot((edges[:-1] + edges[1:]) / 2, counts / total, color=shade, linewidth=1, label=str(r["layer"]))
            ax.set_title(f"{kind}s at {'initialization' if phase == 'init' else 'the end'}", fontsize=9)
            ax.set(xlabel="value" if kind == "activation" else "back-propagated gradient", ylabel="fraction")
            ax.xaxis.set_major_locator(MaxNLocator(5))  # long gradient values overlapped at the default count
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
            if not chosen:
                ax.text(0.5, 0.5, "not recorded (the run diverged)", ha="center", transform=ax.transAxes)
            elif len(chosen) <= 8:
                ax.legend(fontsize=_SMALL, title="layer", title_fontsize=_SMALL)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def variance_figure(rows: list[dict[str, object]], title: str) -> Figure:
    """Predicted (mean-field, from the actual weights) vs measured (one batch) per-layer variance at init."""
    fig, (fwd, bwd) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    for ax, key, label in ((fwd, "var", "forward variance"), (bwd, "grad", "gradient second moment")):
        xs = np.arange(len(rows))
        predicted = np.array([_num(r[f"predicted_{key}"]) for r in rows])
        measured = np.array([_num(r[f"measured_{key}"]) for r in rows])
        ax.plot(xs, measured, marker="o", markersize=3, label="measured (one batch)")
        ax.plot(xs, predicted, marker="x", markersize=4, linestyle="--", label="predicted (mean-field)")
        ax.set_yscale("log")
        ax.set(xlabel="value in the model (input → output)", ylabel=label, title=label)
        ax.legend(fontsize=_SMALL)
        zeros = sum(1 for r in rows if r[f"predicted_{key}"] == 0 or r[f"measured_{key}"] == 0)
        if zeros:  # a log scale cannot show them: say so rather than leave a gap (zero weights carry no signal)
            note = f"{zeros} of {len(rows)} values are exactly 0 (e.g. after zero weights):\nnot drawn on a log scale"
            ax.text(0.02, 0.04, note, transform=ax.transAxes, fontsize=_SMALL, color="dimgray")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else np.nan
