"""The initializers for NumPy arrays: ``initlab.numpy.he_normal(shape, rng=np.random.default_rng(0))``.

Each function returns a new array drawn from exactly the distribution its torch twin fills a tensor with:
both read the formula from ``initlab.init._formulas`` through the registry, so no formula exists twice.
Shapes are in torch layout by default; pass ``layout="keras"`` for channels-last kernels ``(k..., in, out)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from initlab.init.fans import Fans
from initlab.init.registry import get, lookup

__all__ = [
    "constant",
    "delta_orthogonal",
    "dirac",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "sample",
    "small_random",
    "sparse",
    "torch_default",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]


class NumpyInitializer(Protocol):
    def __call__(
        self,
        shape: tuple[int, ...] | int,
        rng: np.random.Generator | None = None,
        *,
        dtype: DTypeLike = ...,
        layout: str = ...,
        fans: Fans | None = ...,
        **params: Any,
    ) -> NDArray[np.floating]: ...


def sample(
    scheme: str,
    shape: tuple[int, ...] | int,
    rng: np.random.Generator | None = None,
    *,
    dtype: DTypeLike = np.float32,
    layout: str = "torch",
    fans: Fans | None = None,
    **params: Any,
) -> NDArray[np.floating]:
    """Draw a new array of ``shape`` from the named scheme.

    Args:
        scheme: any name ``initlab.get`` accepts (``"he_normal"``, ``"GlorotUniform"``, …).
        rng: a ``numpy.random.Generator``; the same seed gives the same array.
        params: the scheme's parameters (``gain=``, ``mode=``, ``std=`` …).

    >>> w = sample("he_normal", (256, 512), np.random.default_rng(0))
    >>> w.dtype, round(float(w.var()) * 512, 1)
    (dtype('float32'), 2.0)
    """
    return get(scheme, **params).numpy(
        shape, rng if rng is not None else np.random.default_rng(), dtype=dtype, layout=layout, fans=fans
    )


def _named(name: str) -> NumpyInitializer:
    scheme = lookup(name)

    def initializer(
        shape: tuple[int, ...] | int,
        rng: np.random.Generator | None = None,
        *,
        dtype: DTypeLike = np.float32,
        layout: str = "torch",
        fans: Fans | None = None,
        **params: Any,
    ) -> NDArray[np.floating]:
        return sample(name, shape, rng, dtype=dtype, layout=layout, fans=fans, **params)

    initializer.__name__ = initializer.__qualname__ = name
    initializer.__doc__ = f"{scheme.formula} — {scheme.paper}. Parameters: {dict(scheme.defaults)}."
    return initializer


constant = _named("constant")
delta_orthogonal = _named("delta_orthogonal")
dirac = _named("dirac")
glorot_normal = _named("glorot_normal")
glorot_uniform = _named("glorot_uniform")
he_normal = _named("he_normal")
he_uniform = _named("he_uniform")
identity = _named("identity")
kaiming_normal = _named("kaiming_normal")
kaiming_uniform = _named("kaiming_uniform")
lecun_normal = _named("lecun_normal")
lecun_uniform = _named("lecun_uniform")
normal = _named("normal")
ones = _named("ones")
orthogonal = _named("orthogonal")
random_normal = _named("random_normal")
random_uniform = _named("random_uniform")
small_random = _named("small_random")
sparse = _named("sparse")
torch_default = _named("torch_default")
truncated_normal = _named("truncated_normal")
uniform = _named("uniform")
variance_scaling = _named("variance_scaling")
xavier_normal = _named("xavier_normal")
xavier_uniform = _named("xavier_uniform")
zeros = _named("zeros")
