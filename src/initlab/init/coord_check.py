"""The coordinate check of Tensor Programs V (Yang et al. 2021, §D.1), as a tool: is a parametrization right?

Build the model at several widths (or depths), train each a few steps on the same batch, and record the typical size
of every layer's output, mean |x| per coordinate, at each step, by role: ``embedding`` (lookup tables' outputs),
``hidden`` (weight layers inside the network), ``branch`` (the last layer of each residual branch: what the branch
adds to the stream), ``stream`` (each residual block's output), ``attention logits`` (q·kᵀ times the attention's
scale, from the queries and keys of every ``scaled_dot_product_attention`` call) and ``readout`` (the layer that
produces the model's output; the model's output itself where that is not a weight layer's). Under a
parametrization that transfers across size (µP for width, CompleteP for depth), these do not grow or shrink with the
size at any step: the slope of log mean|x| against log size stays near 0. Under the standard parametrization with
Adam, the readout's (and the hidden layers') grow with width after the first update (slope ~1), the attention
logits with width under 1/√d scaling, and the residual stream with depth.
``coord_check`` fits that slope per role and step and passes a role where |slope| ≤ ``tolerance`` at every step
(attention logits: slope ≤ ``tolerance``, since µP's 1/d scaling makes their initial part shrink as d^-½ by design;
over depths the ``branch`` role is shown but not judged: a depth parametrization scales it as m^-α by design);
``CoordCheck.figure()`` draws the curves (what the ``mup`` package plots).

Roles come from the structure layer (:mod:`initlab.init.structure`), so any model works; attention logits from a
``TorchFunctionMode`` around the forward pass (they are no module's output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init._walk import structure_of

__all__ = ["CoordCheck", "CoordRecord", "CoordSlope", "coord_check"]

ROLES = ("embedding", "hidden", "branch", "stream", "attention logits", "readout")
# Judged only against growth: under µP's 1/d attention the logits' random part at initialization is Θ(d^-½) by design
# (Yang et al. 2021, §4), so they shrink with width until the learned part (Θ(1)) dominates; they must not grow.
SHRINK_BY_DESIGN = ("attention logits",)


@dataclasses.dataclass(frozen=True)
class CoordRecord:
    """mean |x| of one role's outputs (averaged over its layers and the seeds) at one step and size."""

    role: str
    step: int
    size: int
    mean_abs: float


@dataclasses.dataclass
class CoordSlope:
    """The slope of log mean|x| against log size, for one role at one step."""

    role: str
    step: int
    slope: float
    ok: bool


@dataclasses.dataclass
class CoordCheck(Rows):
    """Per role and step: the slope over sizes and whether it is within the tolerance; ``records``: the curves."""

    rows: list[CoordSlope]
    axis: str = "width"
    sizes: list[int] = dataclasses.field(default_factory=list)
    tolerance: float = 0.15
    records: list[CoordRecord] = dataclasses.field(default_factory=list)
    title: ClassVar[str] = "initlab.coord_check"
    columns: ClassVar[tuple[str, ...]] = ("role", "step", "slope", "ok")

    @property
    def ok(self) -> bool:
        """Every judged role passes (over depths the branch role is not judged: a depth parametrization scales
        each branch's output as m^-α by design, and its last layer carries that multiplier)."""
        return all(row.ok for row in self.rows if not (self.axis == "depth" and row.role == "branch"))

    def passed(self, role: str) -> bool:
        return all(row.ok for row in self.rows if row.role == role)

    def slopes(self, role: str) -> list[float]:
        return [row.slope for row in self.rows if row.role == role]

    def figure(self) -> Any:
        """log mean|x| against log size, one panel per role, one line per step (the slope in its label)."""
        from matplotlib.figure import Figure

        roles = [r for r in ROLES if any(rec.role == r for rec in self.records)]
        figure = Figure(figsize=(4 * len(roles), 3.4), layout="constrained")
        for ax, role in zip(figure.subplots(1, len(roles), squeeze=False)[0], roles, strict=True):
            for row in (r for r in self.rows if r.role == role):
                points = sorted((rec.size, rec.mean_abs) for rec in self.records
                                if rec.role == role and rec.step == row.step)  # fmt: skip
                ax.loglog(*zip(*points, strict=True), marker="o", label=f"step {row.step}: slope {row.slope:+.2f}")
            ax.set_title(role)
            ax.set_xlabel(self.axis)
            ax.set_ylabel("mean |x|")
            ax.legend(fontsize=7)
        return figure


def coord_check(
    build: Callable[[int], nn.Module],
    data: tuple[Tensor, Tensor],
    *,
    widths: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
    steps: int = 4,
    seeds: int = 2,
    tolerance: float = 0.15,
    loss: Callable[[Any, Tensor], Tensor] | None = None,
) -> CoordCheck:
    """Train ``build(size)`` for ``steps`` steps on the batch ``data = (x, y)`` at each of ``widths`` (or ``depths``)
    and ``seeds`` seeds, and fit, per role and step, the slope of log mean|x| against log size (module docs).

    Args:
        build: the model at one size (a width or a depth), with its initialization (and µP's, if it is being
            checked: ``il.mup`` inside ``build``).
        optimizer: the optimizer of a model (µP's parameter groups, say); default Adam at lr 1e-3.
        loss: ``loss(output, y)``; default cross-entropy over the output's last dimension.
    """
    sizes = _sizes(widths, depths)
    optimizer = optimizer or (lambda model: torch.optim.Adam(model.parameters(), lr=1e-3))
    loss = loss or _cross_entropy
    means: dict[tuple[str, int, int], list[float]] = {}
    for size in sizes:
        for seed in range(seeds):
            torch.manual_seed(seed)
            for (role, step), value in _train(build(size), data, optimizer, loss, steps).items():
                means.setdefault((role, step, size), []).append(value)
    records = [CoordRecord(role, step, size, float(np.mean(v))) for (role, step, size), v in sorted(means.items())]
    rows = []
    for role in ROLES:
        for step in range(1, steps + 1):
            points = [(r.size, r.mean_abs) for r in records if r.role == role and r.step == step and r.mean_abs > 0]
            if len(points) >= 2:
                slope = float(np.polyfit(np.log([p[0] for p in points]), np.log([p[1] for p in points]), 1)[0])
                rows.append(
                    CoordSlope(role, step, slope, (slope if role in SHRINK_BY_DESIGN else abs(slope)) <= tolerance)
                )
    return CoordCheck(rows, "width" if widths is not None else "depth", list(sizes), tolerance, records)


def _sizes(widths: Sequence[int] | None, depths: Sequence[int] | None) -> list[int]:
    given = widths if depths is None else depths
    if (widths is None) == (depths is None) or given is None or len(set(given)) < 2 or min(given) < 1:
        raise fail("coord_check scales one size: pass widths= or depths=, two or more different sizes",
                   received={"widths": widths, "depths": depths},
                   fix="coord_check(build, (x, y), widths=[64, 256, 1024]).")  # fmt: skip
    return sorted(set(given))


def _cross_entropy(output: Any, y: Tensor) -> Tensor:
    logits = getattr(output, "logits", output)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _train(model: nn.Module, data: tuple[Tensor, Tensor], optimizer: Callable[[nn.Module], torch.optim.Optimizer],
           loss: Callable[[Any, Tensor], Tensor], steps: int) -> dict[tuple[str, int], float]:  # fmt: skip
    """mean |x| per role at each step's forward pass (step t: after t - 1 updates)."""
    x, y = data
    roles = _roles(model, x)
    seen: dict[str, list[float]] = {}

    def hook(role: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, Tensor) and out.is_floating_point():
                seen.setdefault(role, []).append(float(out.detach().abs().mean()))

        return record

    handles = [module.register_forward_hook(hook(role)) for module, role in roles]
    opt, out = optimizer(model), dict[tuple[str, int], float]()
    try:
        for step in range(1, steps + 1):
            seen.clear()
            logits_seen: list[float] = []
            with _Logits(logits_seen):
                output = model(x)
            if logits_seen:
                seen["attention logits"] = logits_seen
            logits = getattr(output, "logits", output)
            if not any(role == "readout" for _, role in roles) and isinstance(logits, Tensor):
                seen.setdefault("readout", []).append(float(logits.detach().abs().mean()))
            out.update({(role, step): float(np.mean(values)) for role, values in seen.items()})
            opt.zero_grad()
            loss(output, y).backward()  # type: ignore[no-untyped-call]
            opt.step()
    finally:
        for handle in handles:
            handle.remove()
    return out


class _Logits(TorchFunctionMode):
    """mean |q·kᵀ × scale| of every ``scaled_dot_product_attention`` call (keys repeated to the queries' heads
    where they have fewer, as grouped-query attention does)."""

    def __init__(self, into: list[float]) -> None:
        super().__init__()
        self.into = into

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k = args[0].detach(), args[1].detach()
            scale = kwargs.get("scale", args[6] if len(args) > 6 else None)
            if q.ndim >= 3 and k.ndim == q.ndim and q.shape[-3] % k.shape[-3] == 0:
                k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
            with torch.no_grad():
                logits = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
            self.into.append(float(logits.abs().mean()))
        return func(*args, **kwargs)


def _roles(model: nn.Module, x: Tensor) -> list[tuple[nn.Module, str]]:
    """Each weight layer's module and its role, and each residual block's, from the structure layer."""
    structure = structure_of(model, x[:2])
    ends = set(structure.branch_ends())
    out: list[tuple[nn.Module, str]] = []
    for name, layer in structure.layers.items():
        role = ("embedding" if layer.use.op == "embedding" else "readout" if name == structure.output
                else "branch" if name in ends else "hidden")  # fmt: skip
        module = model.get_submodule(structure.owner(name))
        if not any(m is module for m, _ in out):
            out.append((module, role))
    for block in dict.fromkeys(r.module for r in structure.residuals if r.module):
        out.append((model.get_submodule(block), "stream"))
    if not out:
        raise fail("coord_check found no weight layer in the model", fix="Pass a model with Linear, Conv or "
                   "Embedding layers (or any weight the structure layer reads).")  # fmt: skip
    return out
