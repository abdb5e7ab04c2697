"""Plots with matplotlib (Agg backend: files and embedded PNGs, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from initlab.theory.meanfield import PhaseDiagram

__all__ = ["phase_diagram_figure", "png_bytes", "save"]


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


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (closes it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure to ``path`` (format from the suffix) and close it."""
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
