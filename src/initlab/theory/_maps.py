"""Each operator's map of per-element statistics (issue 30): how a value's mean and variance go through a linear
map, a sum, a product, data movement, an elementwise function, a norm, dropout or a token lookup, and, for any
other operator, by sampling; with the backward map of gradient second moments beside each. The recorder
(:mod:`initlab.theory._recorder`) applies them operator by operator; the rules (:mod:`initlab.theory._rules`) say
which map an operator takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves, tree_map

from initlab._quadrature import normal_nodes
from initlab.init._operators import operand
from initlab.theory._positions import Along, correlated, diluted, estimated, mixed, moved_along, multiplied, through

__all__ = ["CONTRACTIONS", "FILL_VALUE", "LINEAR", "Back", "Stat", "Sub"]

Back = Callable[[list[Tensor | None]], list[Tensor | None]]
SAMPLES = 64  # Gaussians per sampled operator (forward); the backward uses half as many
FILL_VALUE = {"pad": (3, "value"), "masked_fill": (2, "value"), "masked_fill_": (2, "value")}
LINEAR = {"linear": (2, "bias"), "conv1d": (2, "bias"), "conv2d": (2, "bias"), "conv3d": (2, "bias"),
           "conv_transpose1d": (2, "bias"), "conv_transpose2d": (2, "bias"), "conv_transpose3d": (2, "bias"),
           "addmm": (0, "input")}  # op -> its additive operand (dropped for the variance)  # fmt: skip
CONTRACTIONS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "einsum"}


@dataclasses.dataclass
class Stat:
    """Per-element mean and variance of a value over inputs (float64 tensors of the value's shape)."""

    mean: Tensor
    var: Tensor
    along: Along | None = None  # the correlation between positions, where attention made one (_positions)

    @property
    def population_var(self) -> float:
        """Variance over all elements and inputs: the mean within-element variance plus the spread of the means."""
        return float(self.var.mean() + self.mean.var(unbiased=False))


class Sub:
    """Operands replaced for a rule: each tracked tensor by its mean, its variance, a sample or a leaf."""

    def __init__(self, number: Mapping[int, int], stat: Mapping[int, Stat]) -> None:
        self.number, self.stat = number, stat

    def of(self, t: Tensor) -> int | None:
        n = self.number.get(id(t))
        return n if n in self.stat else None

    def tracked_at(self, args: tuple[Any, ...], kwargs: Any, i: int) -> int | None:
        arg = args[i] if len(args) > i else kwargs.get("input")
        return self.of(arg) if isinstance(arg, Tensor) else None

    def map(self, args: tuple[Any, ...], kwargs: Any, tracked: Callable[[int, Tensor], Any],
            const: Callable[[Tensor], Any] | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:  # fmt: skip
        """The arguments with each tracked operand replaced by ``tracked(number, tensor)`` and each other tensor by
        ``const(tensor)`` (default: float64)."""
        const = const or _double

        def one(a: Any) -> Any:
            if not isinstance(a, Tensor):
                return a
            n = self.of(a)
            return tracked(n, a) if n is not None else const(a)

        new_args, new_kwargs = tree_map(one, (args, kwargs))
        return tuple(new_args), dict(new_kwargs)


def _double(t: Tensor) -> Tensor:
    return t.detach().double() if t.is_floating_point() else t


def _zero_const(t: Tensor) -> Tensor:
    return torch.zeros(t.shape, dtype=torch.float64) if t.is_floating_point() else t


def _floats(out: Any) -> list[Tensor]:
    return [t.double() for t in tree_leaves(out) if isinstance(t, Tensor)]


def _vjp(fn: Callable[[dict[int, Tensor]], Any], at: Mapping[int, Tensor]) -> Back:
    """The backward map of a map linear in its tracked operands: the vector-Jacobian product of ``fn``."""

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        with torch.enable_grad():
            leaves = {n: torch.zeros_like(t).requires_grad_() for n, t in at.items()}
            ys = [y for y in tree_leaves(fn(leaves)) if isinstance(y, Tensor)]
            pairs = [(y, g.to(y.dtype)) for y, g in zip(ys, grads, strict=False) if g is not None and y.requires_grad]
            if not pairs:
                return [None] * len(leaves)
            got = torch.autograd.grad([y for y, _ in pairs], list(leaves.values()), [g for _, g in pairs],
                                      allow_unused=True)  # fmt: skip
        return [None if g is None else g.double() for g in got]

    return back


def moved(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub, outs: list[Tensor],
          name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """Data movement: the same operator moves the means and the variances (fill values: mean as given, var 0)."""
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, _zero_const)
    if name in FILL_VALUE:
        i, key = FILL_VALUE[name]
        if len(a_v) > i:
            a_v = (*a_v[:i], 0.0, *a_v[i + 1 :])
        elif key in k_v:
            k_v[key] = 0.0
    means, variances = _floats(func(*a_m, **k_m)), _floats(func(*a_v, **k_v))
    at = {n: s.var for n, s in sub.stat.items()}
    alongs = None
    if any(s.along is not None for s in sub.stat.values()):
        operands = {n: (s.mean, s.along) for n, s in sub.stat.items()}
        alongs = moved_along(func, args, kwargs, operands, sub.map, len(outs))
    return _aligned(outs, means, variances, alongs), _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), at)


def _aligned(outs: list[Tensor], means: list[Tensor], variances: list[Tensor],
             alongs: list[Along | None] | None = None) -> list[Stat | None]:  # fmt: skip
    """Statistics for each float output (``means``, ``variances`` and ``alongs`` hold one entry per output)."""
    alongs = alongs or [None] * len(outs)
    return [Stat(m, v.clamp_min(0), a) if t.is_floating_point() else None
            for t, m, v, a in zip(outs, means, variances, alongs, strict=False)]  # fmt: skip


def linear_map(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub,
               name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """``y = A x + b`` with constant A: mean through A and b, variance through A∘A."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    i, key = LINEAR[name]
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, lambda t: _double(t) ** 2)
    if len(a_v) > i:
        a_v = (*a_v[:i], torch.zeros_like(a_v[i]) if name == "addmm" else None, *a_v[i + 1 :])
    elif key in k_v:
        k_v[key] = torch.zeros_like(k_v[key]) if name == "addmm" else None
    if "alpha" in k_v:
        k_v["alpha"] = k_v["alpha"] ** 2
    mean, var = _floats(func(*a_m, **k_m))[0], _floats(func(*a_v, **k_v))[0]
    along = sub.stat[n].along if name in ("linear", "addmm") else None  # a convolution mixes neighbouring positions
    out = Stat(mean, var, along if along is not None and along.axis != -1 else None)  # -1: the contracted axis
    return [out], _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})


def _call_with(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub, leaves: Mapping[int, Tensor]) -> Any:
    """``func`` on arguments where each tracked operand's stand-in is replaced by a leaf (by identity)."""
    ids = {id(sub.stat[n].var): n for n in leaves} | {id(sub.stat[n].mean): n for n in leaves}

    def one(a: Any) -> Any:
        return leaves[ids[id(a)]] if isinstance(a, Tensor) and id(a) in ids else a

    new_args, new_kwargs = tree_map(one, (args, kwargs))
    return func(*new_args, **new_kwargs)


def summed(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub,
           out: Tensor) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A sum or difference: means combine as the operator does, variances add (independent summands)."""
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    mean = _floats(func(*a_m, **k_m))[0]
    alpha = float(kwargs.get("alpha", 1.0))
    operands = [(a, 1.0 if i == 0 else alpha**2) for i, a in enumerate(args[:2])]
    coef = {n: c for a, c in operands if isinstance(a, Tensor) and (n := sub.of(a)) is not None}
    var = torch.zeros(out.shape, dtype=torch.float64)
    for n, c in coef.items():
        var = var + c * sub.stat[n].var
    shapes = {n: sub.stat[n].var.shape for n in coef}
    along = mixed([(c * float(sub.stat[n].var.mean()), shapes[n], sub.stat[n].along) for n, c in coef.items()])

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        g = grads[0]
        return [None if g is None or n not in coef else coef[n] * reduce_to(g, shapes[n]) for n in sub.stat]

    return [Stat(mean, var, along)], back


def reduce_to(g: Tensor, shape: torch.Size) -> Tensor:
    """A gradient summed over the dimensions a smaller operand was broadcast along."""
    while g.ndim > len(shape):
        g = g.sum(0)
    dims = [d for d, size in enumerate(shape) if size == 1 and g.shape[d] != 1]
    return g.sum(dims, keepdim=True) if dims else g


def divides_by_tracked(name: str, args: tuple[Any, ...], sub: Sub) -> bool:
    return (
        name in ("div", "__truediv__", "div_", "__itruediv__")
        and len(args) > 1
        and (isinstance(args[1], Tensor) and sub.of(args[1]) is not None)
    )


def _squared(a: Any) -> Any:
    return a * a if isinstance(a, int | float) and not isinstance(a, bool) else a


def scaled(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
           sub: Sub) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """One value times (or divided by, or contracted with) constants: the variance through squared constants."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, lambda t: _double(t) ** 2)
    a_v = tuple(_squared(a) for a in a_v)
    mean, var = _floats(func(*a_m, **k_m))[0], _floats(func(*a_v, **k_v))[0]
    along, name = sub.stat[n].along, getattr(func, "__name__", "")
    if along is not None and name in CONTRACTIONS:  # it keeps positions apart unless it contracts over them
        first = name != "__rmatmul__" and isinstance(args[0], Tensor) and sub.of(args[0]) == n
        along = along if name != "einsum" and along.axis != (-1 if first else -2) else None
    out = Stat(mean, var, along if along is not None and var.ndim >= -along.axis else None)
    return [out], _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})


def product(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            sub: Sub) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A product (or contraction) of two independent values: E[ab] = E[a]E[b], E[(ab)²] = E[a²]E[b²]."""
    a, b = sub.stat
    second = {n: s.var + s.mean**2 for n, s in sub.stat.items()}
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_s, k_s = sub.map(args, kwargs, lambda n, t: second[n], lambda t: _double(t) ** 2)
    a_q, k_q = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean ** 2, lambda t: _double(t) ** 2)
    a_s, a_q = tuple(_squared(x) for x in a_s), tuple(_squared(x) for x in a_q)
    mean = _floats(func(*a_m, **k_m))[0]
    var = (_floats(func(*a_s, **k_s))[0] - _floats(func(*a_q, **k_q))[0]).clamp_min(0)
    sa, sb = sub.stat[a], sub.stat[b]
    elementwise = getattr(func, "__name__", "") not in CONTRACTIONS
    along = multiplied((sa.mean, sa.var, sa.along), (sb.mean, sb.var, sb.along)) if elementwise else None
    ids = {n: id(second[n]) for n in (a, b)}

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        out: list[Tensor | None] = []
        for n in (a, b):  # the other factor at its second moment; this one a leaf
            with torch.enable_grad():
                leaf = torch.zeros_like(second[n]).requires_grad_()
                new_args, new_kwargs = tree_map(
                    lambda x, n=n, leaf=leaf: leaf if isinstance(x, Tensor) and id(x) == ids[n] else x, (a_s, k_s)
                )
                y = func(*new_args, **new_kwargs)
                g = grads[0]
                (got,) = torch.autograd.grad(y, leaf, g.to(y.dtype)) if g is not None else (None,)
            out.append(None if got is None else got.double())
        return out

    return [Stat(mean, var, along)], back


def reduced(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub,
            name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A sum or mean over dimensions of independent elements."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var)
    mean = _floats(func(*a_m, **k_m))[0]
    var = _floats(func(*a_v, **k_v))[0]
    per = sub.stat[n].mean.numel() / max(mean.numel(), 1) if name == "mean" else 1.0
    inner = _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        return [None if g is None else g / per for g in inner(grads)]

    return [Stat(mean, var / per, _reduced_along(args, kwargs, sub.stat[n], mean.ndim))], back


def _reduced_along(args: tuple[Any, ...], kwargs: dict[str, Any], s: Stat, out_ndim: int) -> Along | None:
    """A reduction over other axes keeps the correlation between positions; one over positions drops it."""
    dim = operand(args, kwargs, 1, "dim")
    if s.along is None or dim is None:
        return None
    ndim = s.mean.ndim
    dims = {d % ndim for d in (dim if isinstance(dim, list | tuple) else (dim,))}
    axis = s.along.at(ndim)
    if axis in dims:
        return None
    kept = axis if out_ndim == ndim else axis - sum(d < axis for d in dims)
    return Along(kept - out_ndim, s.along.rho)


def elementwise(fn: Callable[[Tensor], Tensor], s: Stat) -> tuple[Stat, Back]:
    """``E[φ(h)]``, ``Var φ(h)`` and ``E[φ'(h)²]`` for ``h ~ N(mean, var)``, by quadrature, once per distinct
    (mean, var) pair (a statistic broadcast over positions is computed once)."""
    pairs = torch.stack([s.mean.reshape(-1), s.var.clamp_min(0).reshape(-1)], 1)
    unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    z, w = normal_nodes(12, 8)
    m1, m2, d2 = [], [], []
    for chunk in unique.split(max(1, 2**20 // z.numel())):
        with torch.enable_grad():
            x = (chunk[:, :1] + chunk[:, 1:].sqrt() * z).requires_grad_()
            y = fn(x)
            (d,) = torch.autograd.grad(y.sum(), x, allow_unused=True) if y.requires_grad else (None,)
        y = torch.nan_to_num(y.detach().double(), nan=0.0, posinf=0.0, neginf=0.0)
        d = torch.zeros_like(y) if d is None else torch.nan_to_num(d.double(), nan=0.0, posinf=0.0, neginf=0.0)
        m1.append((y * w).sum(-1))
        m2.append((y * y * w).sum(-1))
        d2.append((d * d * w).sum(-1))
    mean, square, slope = (torch.cat(v)[inverse].reshape(s.mean.shape) for v in (m1, m2, d2))
    out = Stat(mean, (square - mean**2).clamp_min(0), through(fn, s.mean, s.var, s.along))
    return out, lambda grads: [None if grads[0] is None else grads[0] * slope]


def normalized(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], s: Stat) -> tuple[list[Stat | None], Back]:
    """Normalization by the population statistics of the normalized group (row, group or batch channel)."""
    x = args[0]
    if name in ("layer_norm", "rms_norm"):
        dims = tuple(range(x.ndim - len(operand(args, kwargs, 1, "normalized_shape")), x.ndim))
        w, b = operand(args, kwargs, 2, "weight"), operand(args, kwargs, 3, "bias") if name == "layer_norm" else None
        shape = x.shape
    elif name == "group_norm":
        groups = int(operand(args, kwargs, 1, "num_groups"))
        w, b = operand(args, kwargs, 2, "weight"), operand(args, kwargs, 3, "bias")
        shape, dims = (x.shape[0], groups, -1), (2,)
    else:  # batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        w, b = operand(args, kwargs, 3, "weight"), operand(args, kwargs, 4, "bias")
        shape, dims = x.shape, tuple(d for d in range(x.ndim) if d != 1)
    mean, var = s.mean.reshape(shape), s.var.reshape(shape)
    if name == "batch_norm" and not bool(operand(args, kwargs, 5, "training", False)):
        rm, rv = operand(args, kwargs, 1, "running_mean"), operand(args, kwargs, 2, "running_var")
        eps = float(operand(args, kwargs, 7, "eps", 1e-5))
        view = (1, -1) + (1,) * (x.ndim - 2)
        center, scale = _double(rm).reshape(view), (_double(rv).reshape(view) + eps)
    else:
        center = torch.zeros(()) if name == "rms_norm" else mean.mean(dims, keepdim=True)
        scale = (var + mean**2).mean(dims, keepdim=True) - center**2 + 1e-12
    gamma = torch.ones(()) if w is None else _double(w)
    beta = torch.zeros(()) if b is None else _double(b)
    if name in ("group_norm", "batch_norm"):
        view = (1, -1) + (1,) * (x.ndim - 2)
        gamma, beta = gamma.reshape(view) if gamma.ndim else gamma, beta.reshape(view) if beta.ndim else beta
    normed_mean = ((mean - center) / scale.sqrt()).reshape(x.shape)
    normed_var = (var / scale).reshape(x.shape)
    along = s.along if name in ("layer_norm", "rms_norm") and s.along and s.along.at(x.ndim) < dims[0] else None
    out = Stat(normed_mean * gamma + beta, normed_var * gamma**2, along)  # normalized over features: kept
    gain = ((1 / scale).expand_as(mean).reshape(x.shape) * gamma**2).broadcast_to(x.shape)
    return [out], lambda grads: [None if grads[0] is None else grads[0] * gain]


def dropout(args: tuple[Any, ...], kwargs: dict[str, Any], s: Stat) -> tuple[list[Stat | None], Back]:
    p = float(operand(args, kwargs, 1, "p", 0.5))
    p = p if bool(operand(args, kwargs, 2, "training", True)) and p < 1 else 0.0
    var = (s.var + s.mean**2) / (1 - p) - s.mean**2
    out = Stat(s.mean, var, diluted(s.along, float(s.var.mean()), float(var.mean())))
    return [out], lambda grads: [None if grads[0] is None else grads[0] / (1 - p)]


def lookup(args: tuple[Any, ...], kwargs: Any, out: Tensor) -> Stat:
    """Token ids taken as uniform over the table: each column's mean and variance over the rows."""
    table = _double(operand(args, kwargs, 1, "weight"))
    return Stat(table.mean(0).expand(out.shape).clone(), table.var(0, unbiased=False).expand(out.shape).clone())


def sampled(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: Sub,
            outs: list[Tensor]) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """Gaussians at the operands' statistics pushed through the operator: the outputs' mean and variance; backward,
    cotangents at the outputs' gradient second moments pulled back through it. An operator that draws random
    numbers itself (attention's dropout) draws them from a fixed seed."""
    order = list(sub.stat)

    def run(generator: torch.Generator, grad: bool) -> tuple[dict[int, Tensor], list[Tensor]]:
        leaves: dict[int, Tensor] = {}

        def draw(n: int, t: Tensor) -> Tensor:
            if n not in leaves:
                s = sub.stat[n]
                z = correlated(torch.randn(s.mean.shape, generator=generator, dtype=torch.float64), s.along)
                leaves[n] = (s.mean + s.var.sqrt() * z).to(t.dtype).requires_grad_(grad)
            return leaves[n]

        new_args, new_kwargs = sub.map(args, kwargs, draw, lambda t: t)
        return leaves, [y for y in tree_leaves(func(*new_args, **new_kwargs)) if isinstance(y, Tensor)]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        samples = [[y.double() for y in run(g, False)[1]] for _ in range(SAMPLES)]
    stacks = [torch.stack(ys) for ys in zip(*samples, strict=True)]
    means, variances = [y.mean(0) for y in stacks], [y.var(0, unbiased=False) for y in stacks]

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        total: dict[int, Tensor] = {}
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(1)
            g = torch.Generator().manual_seed(1)
            for _ in range(SAMPLES // 2):
                leaves, ys = run(g, True)
                pairs = [(y, (gr.sqrt() * torch.randn(gr.shape, generator=g, dtype=torch.float64)).to(y.dtype))
                         for y, gr in zip(ys, grads, strict=False) if gr is not None and y.requires_grad]  # fmt: skip
                if not pairs:
                    return [None] * len(order)
                got = torch.autograd.grad([y for y, _ in pairs], [leaves[n] for n in order], [c for _, c in pairs],
                                          allow_unused=True)  # fmt: skip
                for n, gr in zip(order, got, strict=True):
                    if gr is not None:
                        total[n] = total[n] + gr.double() ** 2 if n in total else gr.double() ** 2
        return [total[n] / (SAMPLES // 2) if n in total else None for n in order]

    return _aligned(outs, means, variances, [estimated(y) for y in stacks]), back
