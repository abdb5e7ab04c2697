"""Draw a :data:`~initlab.init._formulas.Dist` into a torch tensor, in place and without autograd.

fp16/bf16 tensors are filled through a float32 buffer: QR is not implemented for them (pytorch#9315) and
erfinv in low precision produces far outliers (pytorch#145498). A zero-element tensor is returned untouched:
one documented behaviour for every initializer (torch divides by zero, warns, or silently returns).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from initlab._errors import fail
from initlab.init._formulas import (
    Constant,
    DeltaOrthogonal,
    Dirac,
    Dist,
    Identity,
    Normal,
    Orthogonal,
    Sparse,
    TruncatedNormal,
    Uniform,
    center_tap,
    dirac_positions,
)

__all__ = ["draw_"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def draw_(tensor: Tensor, dist: Dist, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from ``dist`` and return it."""
    if not isinstance(tensor, Tensor):
        raise fail(
            "initializers fill a torch.Tensor in place",
            received=type(tensor).__name__,
            fix="For NumPy arrays use initlab.numpy; for a shape, create torch.empty(shape) first.",
        )
    if tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        work = _buffer(tensor, dist)
        _fill(work, dist, generator)
        if work is not tensor:
            tensor.copy_(work)
    return tensor


def _buffer(tensor: Tensor, dist: Dist) -> Tensor:
    wide_tail = isinstance(dist, TruncatedNormal) and max(abs(dist.a), abs(dist.b)) > 3.0
    if wide_tail and tensor.dtype != torch.float64:
        # float32 erfinv cannot reach past ~5.3 sigma; float64 keeps the tails right.
        return torch.empty(tensor.shape, dtype=torch.float64, device=tensor.device)
    if tensor.dtype in _LOW_PRECISION:
        return torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
    return tensor


def check_shape(dist: Dist, shape: tuple[int, ...]) -> None:
    """Refuse a shape the distribution cannot fill. ``initialize`` calls it for every plan before anything is drawn,
    so that a refusal leaves the model as it was."""
    match dist:
        case Orthogonal() if len(shape) < 2:
            raise fail("orthogonal_ needs a tensor of rank 2 or more", received=shape,
                       fix="Use it on a weight matrix or conv kernel, not on a bias.")  # fmt: skip
        case DeltaOrthogonal() if len(shape) < 3:
            raise fail("delta_orthogonal_ needs a conv weight (out, in, k...) of rank 3 to 5", received=shape,
                       fix="For a Linear weight use orthogonal_.")  # fmt: skip
        case Sparse() if len(shape) != 2:
            raise fail("sparse_ needs a 2-D weight", received=shape)


def _fill(t: Tensor, dist: Dist, gen: torch.Generator | None) -> None:
    check_shape(dist, tuple(t.shape))
    match dist:
        case Constant(value):
            t.fill_(value)
        case Uniform(low, high):
            t.uniform_(low, high, generator=gen)
        case Normal(mean, std):
            t.normal_(mean, std, generator=gen)
        case TruncatedNormal():
            _truncated(t, dist, gen)
        case Orthogonal(gain):
            _orthogonal(t, gain, gen)
        case DeltaOrthogonal(gain):
            _delta_orthogonal(t, gain, gen)
        case Identity(gain):
            t.zero_()
            t.fill_diagonal_(gain)
        case Dirac(groups):
            _dirac(t, groups)
        case Sparse(sparsity, std):
            _sparse(t, sparsity, std, gen)


def _truncated(t: Tensor, d: TruncatedNormal, gen: torch.Generator | None) -> None:
    # Inverse-CDF sampling, then a clamp in standard units: erfinv's rounding near ±1 can never leave
    # [a, b] (pytorch#155588), and scaling after the clamp is monotone, so no value leaves the bounds.
    lo, hi = math.erf(d.a / math.sqrt(2)), math.erf(d.b / math.sqrt(2))
    t.uniform_(lo, hi, generator=gen)
    t.erfinv_()
    t.mul_(math.sqrt(2.0))
    t.clamp_(d.a, d.b)
    t.mul_(d.sigma)
    if d.mean:
        t.add_(d.mean)


def orthogonal_matrix(
    rows: int,
    cols: int,
    gain: float,
    gen: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> Tensor:
    """A Haar-distributed semi-orthogonal (rows × cols) matrix times ``gain`` (sign-fixed QR, Mezzadri 2007)."""
    flat = torch.empty(max(rows, cols), min(rows, cols), dtype=dtype, device=device).normal_(generator=gen)
    q, r = torch.linalg.qr(flat)
    q *= torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
    if rows < cols:
        q = q.T
    return q * gain


def _orthogonal(t: Tensor, gain: float, gen: torch.Generator | None) -> None:
    rows = t.shape[0]
    cols = t.numel() // rows
    t.copy_(orthogonal_matrix(rows, cols, gain, gen, t.dtype, t.device).reshape(t.shape))


def _delta_orthogonal(t: Tensor, gain: float, gen: torch.Generator | None) -> None:
    t.zero_()
    index: tuple[slice | int, ...] = (slice(None), slice(None), *center_tap(tuple(t.shape)))
    t[index] = orthogonal_matrix(t.shape[0], t.shape[1], gain, gen, t.dtype, t.device)


def _dirac(t: Tensor, groups: int) -> None:
    t.zero_()
    for index in dirac_positions(tuple(t.shape), groups):
        t[index] = 1.0


def _sparse(t: Tensor, sparsity: float, std: float, gen: torch.Generator | None) -> None:
    rows = t.shape[0]
    zeros = math.ceil(sparsity * rows)
    t.normal_(0.0, std, generator=gen)
    if zeros:
        # argsort of uniform keys per column: a random permutation drawn from `generator`, unlike
        # torch.nn.init.sparse_, whose randperm ignores it.
        keys = torch.rand(t.shape, generator=gen, device=t.device)
        t.scatter_(0, keys.argsort(dim=0)[:zeros], 0.0)
