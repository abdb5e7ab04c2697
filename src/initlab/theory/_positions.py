"""Correlation across positions (issue 30): a value's elements at different positions of a sequence are not
independent once attention has averaged them (each position's output averages the same values), and the next
attention's average keeps that shared part instead of shrinking it. Per-element statistics cannot say so; a value
may carry, beside them, an :class:`Along`: its position axis and the correlation between positions (a T×T matrix,
averaged over the value's other elements). It is born where an operator propagated by sampling (attention)
returns correlated outputs, and each rule carries it on:

* data movement: the position axis followed by moving position codes (0 … T−1) through the same operator;
* maps that keep positions apart (linear maps over features, scaling, norms over features, reductions over other
  axes, dropout): the correlation kept;
* elementwise functions: each correlation through the function's correlation map at the value's mean and
  variance (two-dimensional quadrature), as Poole et al. (2016) map the correlation of two inputs;
* sums and products of two values: combined (independent operands; an operand constant along positions is
  fully correlated across them);
* sampled operators: operands drawn with the correlation (a square root of it along the axis), and the outputs'
  correlation estimated from the samples along the axis where it is largest.

Anything else (a contraction over positions, a convolution) drops it: the value is taken as independent across
positions, as before.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from initlab._quadrature import normal_nodes

__all__ = ["Along", "correlated", "diluted", "estimated", "mixed", "moved_along", "multiplied", "through"]

_GRID = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)


@dataclasses.dataclass(frozen=True)
class Along:
    """A value's position axis (counted from the end, so that broadcasting keeps it) and the correlation between
    its positions."""

    axis: int
    rho: Tensor

    @property
    def size(self) -> int:
        return int(self.rho.shape[0])

    def at(self, ndim: int) -> int:
        """The axis as a non-negative index in a value of ``ndim`` dimensions."""
        return self.axis + ndim

    @functools.cached_property
    def root(self) -> Tensor:
        """A square root R of the correlation (R Rᵀ = rho; negative eigenvalues of an estimate clipped to 0)."""
        values, vectors = torch.linalg.eigh((self.rho + self.rho.T) / 2)
        return vectors * values.clamp_min(0).sqrt()


def correlated(z: Tensor, along: Along | None) -> Tensor:
    """Independent standard normals ``z`` made correlated along the value's position axis."""
    if along is None or z.ndim < -along.axis or z.shape[along.axis] != along.size:
        return z
    moved = z.movedim(along.axis, -1)
    return (moved @ along.root.T).movedim(-1, along.axis)


def estimated(samples: Tensor) -> Along | None:
    """The correlation between positions of sampled outputs (``samples``: the samples along the first dimension),
    along the axis where it is largest; None where no axis is correlated beyond the estimate's noise."""
    y = samples - samples.mean(0, keepdim=True)
    best: tuple[float, Along] | None = None
    for a in range(2, y.ndim):  # not the samples' axis, nor the batch's
        size = y.shape[a]
        n = y.numel() // size
        if size < 2 or n < 16 * size:
            continue
        flat = y.movedim(a, 0).reshape(size, -1)
        cov = flat @ flat.T / n
        scale = cov.diagonal().clamp_min(1e-300).sqrt()
        rho = (cov / scale[:, None] / scale[None, :]).clamp(-1, 1)
        rho.fill_diagonal_(1.0)
        off = float((rho.sum() - size) / (size * (size - 1)))
        if off > 4 / n**0.5 and (best is None or off > best[0]):
            best = off, Along(a - y.ndim, rho)
    return None if best is None else best[1]


def through(fn: Callable[[Tensor], Tensor], mean: Tensor, var: Tensor, along: Along | None) -> Along | None:
    """The correlation between positions after an elementwise function: each entry through the function's
    correlation map at the value's mean and variance (averaged over its elements)."""
    if along is None:
        return None
    m, q = float(mean.mean()), float(var.mean())
    if not q > 0:
        return None
    z, w = normal_nodes(6, 8)
    r = _GRID[:, None, None]
    s = q**0.5
    with torch.no_grad():
        f1 = fn(m + s * z).double()
        first, second = float((w * f1).sum()), float((w * f1 * f1).sum())
        spread = second - first**2
        if not spread > 0:
            return None
        f2 = fn(m + s * (r * z[:, None] + (1 - r * r).clamp_min(0).sqrt() * z[None, :])).double()
        cross = (w[:, None] * w[None, :] * f1[:, None] * f2).sum((1, 2))
    curve = ((cross - first**2) / spread).numpy()
    rho = np.interp(along.rho.numpy(), _GRID.numpy(), curve)
    return Along(along.axis, _unit(torch.from_numpy(rho)))


def diluted(along: Along | None, before: float, after: float) -> Along | None:
    """Independent noise added to each element (dropout's masks): the covariance between positions stays, the
    variance goes from ``before`` to ``after``, so each correlation shrinks by their ratio."""
    if along is None or after == before:
        return along
    return Along(along.axis, _unit(along.rho * (before / max(after, 1e-300))))


def _unit(rho: Tensor) -> Tensor:
    rho = rho.clamp(-1, 1)
    rho.fill_diagonal_(1.0)
    return rho


def _rho_in(shape: Sequence[int], along: Along | None, axis: int, size: int) -> Tensor:
    """An operand's correlation along the output's position ``axis``: its own; all ones where it is constant along
    positions (broadcast); else independent."""
    if along is not None and along.axis == axis and along.size == size:
        return along.rho
    if len(shape) < -axis or shape[axis] == 1:
        return torch.ones(size, size, dtype=torch.float64)
    return torch.eye(size, dtype=torch.float64)


def _axis_of(alongs: Sequence[Along | None]) -> Along | None:
    """The one position axis the operands agree on (None where none has one, or they disagree)."""
    found = [a for a in alongs if a is not None]
    if not found or any((a.axis, a.size) != (found[0].axis, found[0].size) for a in found):
        return None
    return found[0]


def mixed(operands: Sequence[tuple[float, Sequence[int], Along | None]]) -> Along | None:
    """A sum of independent values (weight = coefficient² × mean variance, shape, correlation): the correlations
    averaged by the variances they carry."""
    first = _axis_of([a for _, _, a in operands])
    total = sum(w for w, _, _ in operands)
    if first is None or not total > 0:
        return None
    rho = sum(w * _rho_in(shape, a, first.axis, first.size) for w, shape, a in operands) / total
    return Along(first.axis, _unit(torch.as_tensor(rho)))


def multiplied(a: tuple[Tensor, Tensor, Along | None], b: tuple[Tensor, Tensor, Along | None]) -> Along | None:
    """An elementwise product of two independent values (mean, variance, correlation each):
    Cov(a_i b_i, a_k b_k) = E[a_i a_k] E[b_i b_k] − E[a]² E[b]²."""
    first = _axis_of([a[2], b[2]])
    if first is None:
        return None
    terms = []
    for mean, var, along in (a, b):
        q, m2 = float(var.mean()), float((mean**2).mean())
        terms.append((q * _rho_in(mean.shape, along, first.axis, first.size) + m2, q + m2, m2))
    (ca, sa, ma), (cb, sb, mb) = terms
    spread = sa * sb - ma * mb
    if not spread > 0:
        return None
    return Along(first.axis, _unit((ca * cb - ma * mb) / spread))


Operands = dict[int, tuple[Tensor, Along | None]]  # value number -> (a tensor of its shape, its correlation)


def moved_along(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], operands: Operands, mapper: Any,
                outs: int) -> list[Along | None]:  # fmt: skip
    """Data movement: position codes moved by the same operator; an output keeps the correlation where the codes
    arrive intact along one axis (a slice, a transpose, a view that keeps the axis), else none."""
    alongs = [a for _, a in operands.values()]
    first = _axis_of(alongs)
    if first is None or any(a is None for a in alongs):
        return [None] * outs

    def code(n: int, t: Tensor) -> Tensor:
        shape = operands[n][0].shape
        view = [1] * len(shape)
        view[first.at(len(shape))] = first.size
        return torch.arange(first.size, dtype=torch.float64).reshape(view).expand(shape).clone()

    rho = sum(a.rho for a in alongs if a is not None) / len(alongs)
    new_args, new_kwargs = mapper(args, kwargs, code)
    try:
        ys = [y for y in torch.utils._pytree.tree_leaves(func(*new_args, **new_kwargs)) if isinstance(y, Tensor)]
    except (RuntimeError, TypeError, ValueError, IndexError):
        return [None] * outs
    return [_found(y.double(), first.size, torch.as_tensor(rho)) for y in ys][:outs] + [None] * (outs - len(ys))


def _found(codes: Tensor, size: int, rho: Tensor) -> Along | None:
    for d in range(codes.ndim):
        if codes.shape[d] != size:
            continue
        view = [1] * codes.ndim
        view[d] = size
        if torch.equal(codes, torch.arange(size, dtype=torch.float64).reshape(view).expand_as(codes)):
            return Along(d - codes.ndim, rho)
    return None
