"""``torch.nn.init``, name for name: change ``from torch.nn import init`` to ``from initlab.nn import init``.

Every public name of :mod:`torch.nn.init` (torch 2.13) is here with torch's signature, defaults and semantics,
the deprecated aliases included, plus the two private fan helpers that third-party code calls. Under the same
generator (or global seed) the values are bit-identical to torch's, except where torch has a known defect:

- ``orthogonal_`` on float16/bfloat16: torch's QR is not implemented there (pytorch#9315); the matrix is
  computed in float32 and rounded once.
- ``sparse_`` with ``generator=``: torch draws the zeroed rows with the global RNG, so a seeded generator does
  not reproduce the tensor; here they come from ``generator`` too (without one, torch's draws exactly).
- ``dirac_`` with ``groups`` not dividing the channels, and every error: ``InitlabError``, which *is* a
  ``ValueError``, with the accepted values and the fix in the text.

Additions that change nothing for torch code: ``layer=`` (keyword only) on the Xavier and Kaiming functions
takes the fans from the module (grouped and depthwise convs, pytorch#23854; transposed convs); without it the
fans are torch's, read from the tensor alone, which cannot know a conv's groups. ``calculate_gain`` also knows
activations torch has no value for (``"gelu"``, ``"silu"``, ... from :func:`initlab.gain`); for torch's names
it returns torch's numbers. ``trunc_normal_`` is torch's own: torch 2.13 samples it by rejection, which has
neither the outliers of pytorch#155588 nor a bias, so there is nothing to fix.

initlab's own API (``initlab.glorot_normal_``, ``initlab.truncated_normal_``, ...) keeps its different
semantics: Keras-style truncation in units of sigma with an exact std; this module is the drop-in.

>>> import torch
>>> from initlab.nn import init
>>> w = torch.empty(64, 32)
>>> ours = init.kaiming_uniform_(w.clone(), a=5 ** 0.5, generator=torch.Generator().manual_seed(0))
>>> theirs = torch.nn.init.kaiming_uniform_(w.clone(), a=5 ** 0.5, generator=torch.Generator().manual_seed(0))
>>> torch.equal(ours, theirs)
True
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab.init import fans as _fans
from initlab.init import gains as _gains
from initlab.init import tensors as _tensors
from initlab.init._torch_draw import orthogonal_matrix

__all__ = [
    "calculate_gain",
    "constant",
    "constant_",
    "dirac",
    "dirac_",
    "eye",
    "eye_",
    "kaiming_normal",
    "kaiming_normal_",
    "kaiming_uniform",
    "kaiming_uniform_",
    "normal",
    "normal_",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "sparse",
    "sparse_",
    "trunc_normal_",
    "uniform",
    "uniform_",
    "xavier_normal",
    "xavier_normal_",
    "xavier_uniform",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    """torch's recommended gain: 1 for linear/conv/sigmoid, 5/3 tanh, √2 relu, √(2/(1+slope²)) leaky_relu
    (slope 0.01 by default), 3/4 selu; any other activation initlab knows gets :func:`initlab.gain`.

    >>> calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    >>> round(calculate_gain("gelu"), 4)
    1.5335
    """
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise fail("negative_slope of leaky_relu must be a number", received=param,
                       fix="Pass a number such as 0.2, or None for torch's 0.01.")  # fmt: skip
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    if not isinstance(nonlinearity, str):
        raise fail("nonlinearity is a name", received=nonlinearity, fix="Pass e.g. 'relu' or 'tanh'.")
    try:
        return _gains.gain(nonlinearity, param)
    except ValueError:
        raise unknown_name("nonlinearity", nonlinearity, (*_LINEAR, "sigmoid", "tanh", "relu", "leaky_relu", "selu"),
                           see="initlab.activation_names() lists the others it also knows.") from None  # fmt: skip


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """torch's fans from the tensor alone: ``(size(1) · taps, size(0) · taps)``, rank 2 or more."""
    if tensor.dim() < 2:
        raise fail("fan in and fan out need a tensor of rank 2 or more", received=tuple(tensor.shape),
                   fix="Fans exist for weight matrices and conv kernels, not for biases.")  # fmt: skip
    found = _fans.fans(tensor)  # for a tensor alone (no groups known), initlab's fans are torch's
    return found.fan_in, found.fan_out


def _calculate_correct_fan(tensor: Tensor, mode: str, *, layer: nn.Module | None = None) -> int:
    """``fan_in`` or ``fan_out`` of the tensor, as torch computes them (or the module's true ones: ``layer=``)."""
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise unknown_name("mode", mode, ("fan_in", "fan_out"))
    fan_in, fan_out = _layer_fans(tensor, layer)
    return fan_in if mode == "fan_in" else fan_out


def _layer_fans(tensor: Tensor, layer: nn.Module | None) -> tuple[int, int]:
    if layer is None:
        return _calculate_fan_in_and_fan_out(tensor)
    fans = _fans.fans(tensor, layer=layer)
    return fans.fan_in, fans.fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill with ``U(a, b)``."""
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill with ``N(mean, std²)``."""
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``N(mean, std²)`` truncated to the *absolute* bounds ``[a, b]``: torch's own function (its rejection
    sampler is right; see the module's docstring). ``std`` is the parent normal's, so the values' std is smaller
    (0.88× at the defaults); for an exact std use :func:`initlab.truncated_normal_`."""
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b, generator=generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    with torch.no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    with torch.no_grad():
        return tensor.zero_()


def eye_(tensor: Tensor) -> Tensor:
    """The identity matrix (2-D only), preserving the identity of a Linear layer's input."""
    if tensor.ndimension() != 2:
        raise fail("eye_ needs a 2-D tensor", received=tuple(tensor.shape),
                   fix="For conv kernels use dirac_.")  # fmt: skip
    with torch.no_grad():
        torch.eye(*tensor.shape, out=tensor, requires_grad=tensor.requires_grad)
    return tensor


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """A Dirac delta per channel (rank 3 to 5): a conv that passes its input through, per group."""
    return _tensors.dirac_(tensor, groups)


def xavier_uniform_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *, layer: nn.Module | None = None
) -> Tensor:
    """Glorot & Bengio (2010): ``U(±gain·√(6/(fan_in + fan_out)))``; ``layer=`` for the module's true fans."""
    fan_in, fan_out = _layer_fans(tensor, layer)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def xavier_normal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *, layer: nn.Module | None = None
) -> Tensor:
    """Glorot & Bengio (2010): ``N(0, gain²·2/(fan_in + fan_out))``; ``layer=`` for the module's true fans."""
    fan_in, fan_out = _layer_fans(tensor, layer)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str, layer: nn.Module | None) -> float | None:
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode, layer=layer))


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    layer: nn.Module | None = None,
) -> Tensor:
    """He et al. (2015): ``U(±√3·gain/√fan)``, ``gain = calculate_gain(nonlinearity, a)``. torch's defaults
    (``a=0``, leaky_relu) give He's √2; ``nn.Linear``'s own init is ``a=√5``. ``layer=`` for the true fans."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, layer)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    layer: nn.Module | None = None,
) -> Tensor:
    """He et al. (2015): ``N(0, gain²/fan)``, ``gain = calculate_gain(nonlinearity, a)``; ``layer=`` for the
    module's true fans."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, layer)
    return tensor if std is None else normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator: torch.Generator | None = None) -> Tensor:
    """Saxe et al. (2014): a (semi-)orthogonal matrix times ``gain``, dimensions after the first flattened.
    Bit-identical to torch in float32/float64; float16/bfloat16 are computed in float32 (torch fails)."""
    if tensor.ndimension() < 2:
        raise fail("orthogonal_ needs a tensor of rank 2 or more", received=tuple(tensor.shape),
                   fix="Use it on a weight matrix or conv kernel, not on a bias.")  # fmt: skip
    if tensor.numel() == 0:
        return tensor
    rows, cols = tensor.size(0), tensor.numel() // tensor.size(0)
    if tensor.dtype in _LOW_PRECISION:
        q = orthogonal_matrix(rows, cols, gain, generator, torch.float32, tensor.device)
        with torch.no_grad():
            return tensor.copy_(q.reshape(tensor.shape))
    flat = tensor.new_empty((rows, cols)).normal_(0, 1, generator=generator)
    if rows < cols:
        flat.t_()
    q, r = torch.linalg.qr(flat)
    q *= torch.diag(r, 0).sign()  # the sign fix that makes Q Haar-distributed, as torch does
    if rows < cols:
        q.t_()
    with torch.no_grad():
        tensor.view_as(q).copy_(q)
        tensor.mul_(gain)
    return tensor


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """Martens (2010): ``N(0, std²)`` with ``ceil(sparsity · rows)`` zeros in every column (2-D). The zeroed rows
    come from ``generator`` when one is given (torch ignores it there); without one, exactly torch's draws."""
    if tensor.ndimension() != 2:
        raise fail("sparse_ needs a 2-D tensor", received=tuple(tensor.shape))
    rows, cols = tensor.shape
    zeros = math.ceil(sparsity * rows)
    with torch.no_grad():
        tensor.normal_(0, std, generator=generator)
        for col in range(cols):
            tensor[torch.randperm(rows, generator=generator)[:zeros], col] = 0
    return tensor


def _deprecated(new: Callable[..., Tensor]) -> Callable[..., Tensor]:
    old = new.__name__[:-1]

    @functools.wraps(new)
    def alias(*args: Any, **kwargs: Any) -> Tensor:
        warnings.warn(f"nn.init.{old} is now deprecated in favor of nn.init.{new.__name__}.", FutureWarning,
                      stacklevel=2)  # fmt: skip
        return new(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated alias of :func:`{new.__name__}` (as in torch)."
    return alias


uniform = _deprecated(uniform_)
normal = _deprecated(normal_)
constant = _deprecated(constant_)
eye = _deprecated(eye_)
dirac = _deprecated(dirac_)
xavier_uniform = _deprecated(xavier_uniform_)
xavier_normal = _deprecated(xavier_normal_)
kaiming_uniform = _deprecated(kaiming_uniform_)
kaiming_normal = _deprecated(kaiming_normal_)
orthogonal = _deprecated(orthogonal_)
sparse = _deprecated(sparse_)
