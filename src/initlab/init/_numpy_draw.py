"""Draw a :data:`~initlab.init._formulas.Dist` into a new NumPy array (the NumPy twin of ``_torch_draw``)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike, NDArray

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

__all__ = ["draw"]


def draw(shape: tuple[int, ...], dist: Dist, rng: np.random.Generator, dtype: DTypeLike) -> NDArray[np.floating]:
    """A new array of ``shape`` drawn from ``dist`` with ``rng``, cast to ``dtype``."""
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype=dtype)
    return _sample(shape, dist, rng).astype(dtype, copy=False)


def _sample(shape: tuple[int, ...], dist: Dist, rng: np.random.Generator) -> NDArray[np.float64]:
    match dist:
        case Constant(value):
            return np.full(shape, value, dtype=np.float64)
        case Uniform(low, high):
            return rng.uniform(low, high, size=shape)
        case Normal(mean, std):
            return rng.normal(mean, std, size=shape)
        case TruncatedNormal(mean, sigma, a, b):
            from scipy import special  # here only: listing the schemes needs no SciPy

            u = rng.uniform(special.ndtr(a), special.ndtr(b), size=shape)
            return mean + sigma * np.clip(special.ndtri(u), a, b)
        case Orthogonal(gain):
            rows = _rows(shape, "orthogonal")
            return _orthogonal(rows, math.prod(shape) // rows, gain, rng).reshape(shape)
        case DeltaOrthogonal(gain):
            return _delta_orthogonal(shape, gain, rng)
        case Identity(gain):
            return gain * np.eye(*_matrix(shape), dtype=np.float64)
        case Dirac(groups):
            return _dirac(shape, groups)
        case Sparse(sparsity, std):
            return _sparse(_matrix(shape), sparsity, std, rng)
    raise AssertionError(f"unhandled distribution {dist!r}")


def _rows(shape: tuple[int, ...], what: str) -> int:
    if len(shape) < 2:
        raise fail(f"{what} needs a shape of rank 2 or more", received=shape)
    return shape[0]


def _matrix(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2:
        raise fail("this initializer needs a 2-D shape", received=shape)
    return shape[0], shape[1]


def _orthogonal(rows: int, cols: int, gain: float, rng: np.random.Generator) -> NDArray[np.float64]:
    q, r = np.linalg.qr(rng.normal(size=(max(rows, cols), min(rows, cols))))
    d = np.sign(np.diag(r))
    q = q * np.where(d == 0, 1.0, d)
    return gain * (q.T if rows < cols else q)


def _delta_orthogonal(shape: tuple[int, ...], gain: float, rng: np.random.Generator) -> NDArray[np.float64]:
    if len(shape) < 3:
        raise fail("delta_orthogonal needs a conv shape (out, in, k...)", received=shape)
    out = np.zeros(shape)
    index: tuple[slice | int, ...] = (slice(None), slice(None), *center_tap(shape))
    out[index] = _orthogonal(shape[0], shape[1], gain, rng)
    return out


def _dirac(shape: tuple[int, ...], groups: int) -> NDArray[np.float64]:
    out = np.zeros(shape)
    for index in dirac_positions(shape, groups):
        out[index] = 1.0
    return out


def _sparse(shape: tuple[int, int], sparsity: float, std: float, rng: np.random.Generator) -> NDArray[np.float64]:
    out = rng.normal(0.0, std, size=shape)
    zeros = math.ceil(sparsity * shape[0])
    rows = np.argsort(rng.random(shape), axis=0)[:zeros]
    np.put_along_axis(out, rows, 0.0, axis=0)
    return out
