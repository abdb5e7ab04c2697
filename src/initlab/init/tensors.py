"""Weight initializers for torch tensors, following the ``torch.nn.init`` contract.

Every ``name_`` function fills the tensor in place under ``torch.no_grad()``, returns it, and accepts
``generator=`` for reproducibility; fan-based ones accept ``fans=`` (see :func:`initlab.init.fans`) for layers
whose fans the shape alone cannot tell (grouped and transposed convs, RNN gates). A zero-element tensor is
returned unchanged by every initializer. fp16/bf16 tensors are filled through float32.

Which ``*_normal_`` is truncated: Keras' names (``glorot_normal_``, ``he_normal_``, ``lecun_normal_``) draw
from a truncated normal rescaled to the exact target variance, as Keras and JAX do; torch's names
(``xavier_normal_``, ``kaiming_normal_``) draw from an untruncated normal, as torch does. Both have the same
variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from initlab._errors import fail
from initlab.init import _formulas as f
from initlab.init._torch_draw import draw_
from initlab.init.fans import FanMode, Fans, fans
from initlab.init.gains import gain as _gain

__all__ = [
    "constant_",
    "delta_orthogonal_",
    "dirac_",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "small_random_",
    "sparse_",
    "torch_default_",
    "truncated_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

Generator = torch.Generator | None


def _fans(tensor: Tensor, given: Fans | None) -> Fans:
    return given if given is not None else fans(tensor)


def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: FanMode = "fan_in",
    distribution: f.Distribution = "truncated_normal",
    *,
    fans: Fans | None = None,
    generator: Generator = None,
) -> Tensor:
    """Fill with variance ``scale / n``, ``n`` = fan_in, fan_out or their mean.

    The family behind Glorot, He and LeCun (Keras 3 ``VarianceScaling``, JAX ``variance_scaling``).

    Args:
        scale: the variance numerator; 1 keeps variance through a linear layer, 2 through a ReLU.
        mode: ``"fan_in"`` preserves forward activations, ``"fan_out"`` back-propagated gradients,
            ``"fan_avg"`` is Glorot's compromise between the two.
        distribution: ``"truncated_normal"`` (no outliers; exact variance), ``"normal"`` or ``"uniform"``.

    >>> w = variance_scaling_(torch.empty(256, 512), 2.0, "fan_in", "uniform",
    ...                       generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() * 512, 1)
    2.0
    """
    if tensor.numel() == 0:
        return tensor
    return draw_(tensor, f.variance_scaling(_fans(tensor, fans), scale, mode, distribution), generator)


def glorot_uniform_(
    tensor: Tensor, gain: float = 1.0, generator: Generator = None, *, fans: Fans | None = None
) -> Tensor:
    """Glorot/Xavier uniform: ``U(±gain·√(6/(fan_in+fan_out)))``, variance ``gain²·2/(fan_in+fan_out)``.

    Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural networks".
    The gain comes from the activation (``initlab.gain("tanh")``). Same as ``torch.nn.init.xavier_uniform_``.

    >>> glorot_uniform_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    return variance_scaling_(tensor, f.kaiming_scale(gain), "fan_avg", "uniform", fans=fans, generator=generator)


def glorot_normal_(
    tensor: Tensor, gain: float = 1.0, generator: Generator = None, *, fans: Fans | None = None
) -> Tensor:
    """Glorot/Xavier normal, *truncated* as in Keras: std ``gain·√(2/(fan_in+fan_out))`` exactly.

    Glorot & Bengio (2010). For torch's untruncated version use :func:`xavier_normal_`.

    >>> glorot_normal_(torch.empty(3, 5)).abs().max().item() < 2 * math.sqrt(2 / 8) / 0.8796 + 1e-6
    True
    """
    return variance_scaling_(
        tensor, f.kaiming_scale(gain), "fan_avg", "truncated_normal", fans=fans, generator=generator
    )


def xavier_normal_(
    tensor: Tensor, gain: float = 1.0, generator: Generator = None, *, fans: Fans | None = None
) -> Tensor:
    """Glorot/Xavier normal, untruncated as in torch: ``N(0, gain²·2/(fan_in+fan_out))``.

    Glorot & Bengio (2010). A drop-in for ``torch.nn.init.xavier_normal_``.

    >>> xavier_normal_(torch.empty(3, 5)).shape
    torch.Size([3, 5])
    """
    return variance_scaling_(tensor, f.kaiming_scale(gain), "fan_avg", "normal", fans=fans, generator=generator)


xavier_uniform_ = glorot_uniform_


def _kaiming_gain(a: float, nonlinearity: str, gain: float | None) -> float:
    return gain if gain is not None else _gain(nonlinearity, a)


def he_uniform_(
    tensor: Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Generator = None,
    *,
    gain: float | None = None,
    fans: Fans | None = None,
) -> Tensor:
    """He/Kaiming uniform: ``U(±gain·√(3/n))``, variance ``gain²/n``; ReLU's gain √2 gives ``2/fan_in``.

    He et al. (2015), "Delving Deep into Rectifiers". Arguments as ``torch.nn.init.kaiming_uniform_``
    (``a`` is the leaky-ReLU slope; ``nonlinearity`` names the activation that follows, any name
    :func:`initlab.gain` knows); ``gain=`` overrides both.

    >>> w = he_uniform_(torch.empty(512, 512), generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() * 512, 1)
    2.0
    """
    scale = f.kaiming_scale(_kaiming_gain(a, nonlinearity, gain))
    return variance_scaling_(tensor, scale, mode, "uniform", fans=fans, generator=generator)


kaiming_uniform_ = he_uniform_


def he_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Generator = None,
    *,
    gain: float | None = None,
    fans: Fans | None = None,
) -> Tensor:
    """He/Kaiming normal, *truncated* as in Keras' ``HeNormal``: std ``gain/√n`` exactly.

    He et al. (2015). For torch's untruncated version use :func:`kaiming_normal_`.

    >>> w = he_normal_(torch.empty(512, 512), generator=torch.Generator().manual_seed(0))
    >>> round(w.var().item() * 512, 1)
    2.0
    """
    scale = f.kaiming_scale(_kaiming_gain(a, nonlinearity, gain))
    return variance_scaling_(tensor, scale, mode, "truncated_normal", fans=fans, generator=generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Generator = None,
    *,
    gain: float | None = None,
    fans: Fans | None = None,
) -> Tensor:
    """He/Kaiming normal, untruncated as in torch: ``N(0, gain²/n)``; a drop-in for ``kaiming_normal_``.

    He et al. (2015), "Delving Deep into Rectifiers".

    >>> kaiming_normal_(torch.empty(4, 4), nonlinearity="relu").shape
    torch.Size([4, 4])
    """
    scale = f.kaiming_scale(_kaiming_gain(a, nonlinearity, gain))
    return variance_scaling_(tensor, scale, mode, "normal", fans=fans, generator=generator)


def lecun_uniform_(tensor: Tensor, generator: Generator = None, *, fans: Fans | None = None) -> Tensor:
    """LeCun uniform: ``U(±√(3/fan_in))``, variance ``1/fan_in``.

    LeCun et al. (1998), "Efficient BackProp"; the init of self-normalizing SELU nets (Klambauer et al. 2017).

    >>> lecun_uniform_(torch.empty(2, 3)).shape
    torch.Size([2, 3])
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "uniform", fans=fans, generator=generator)


def lecun_normal_(tensor: Tensor, generator: Generator = None, *, fans: Fans | None = None) -> Tensor:
    """LeCun normal, truncated as in Keras: std ``1/√fan_in`` exactly. LeCun et al. (1998).

    >>> lecun_normal_(torch.empty(2, 3)).shape
    torch.Size([2, 3])
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", fans=fans, generator=generator)


def torch_default_(tensor: Tensor, generator: Generator = None, *, fans: Fans | None = None) -> Tensor:
    """torch's own Linear/Conv default: ``kaiming_uniform_(a=√5)`` = ``U(±1/√fan_in)``.

    Its variance ``1/(3·fan_in)`` is Glorot's "standard" init, not He's (pytorch#15314, #57109): in a deep
    ReLU net the signal shrinks about 6× per layer. Named here so it can be compared with the others.

    >>> torch_default_(torch.empty(4, 16)).abs().max().item() <= 0.25
    True
    """
    if tensor.numel() == 0:
        return tensor
    return draw_(tensor, f.torch_default(_fans(tensor, fans)), generator)


def truncated_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: Generator = None,
    *,
    bounds: str = "std",
) -> Tensor:
    """Truncated normal whose values have standard deviation exactly ``std`` and never leave the bounds.

    ``bounds="std"`` (default): ``a``, ``b`` are in units of the parent normal's sigma, so the default keeps
    values within ``mean ± 2σ`` with ``σ = std / 0.8796`` at any ``std`` (torch's ``trunc_normal_`` uses
    absolute ±2, which truncates nothing at ``std=1e-3``). ``bounds="absolute"``: ``a``, ``b`` are values, as in
    torch, and σ is solved so the result still has std ``std`` (torch's shrinks to 0.88×).
    Sampling is by inverse CDF with a clamp in standard units, so float32/bf16 rounding cannot produce the
    outliers of pytorch#155588.

    >>> w = truncated_normal_(torch.empty(10_000), std=1e-3, generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= 2 * 1e-3 / 0.8796)
    True
    """
    return draw_(tensor, f.truncated(mean, std, a, b, bounds), generator)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    """(Semi-)orthogonal matrix times ``gain``, Haar-distributed (QR with sign fix), any dtype.

    Saxe et al. (2014), "Exact solutions to the nonlinear dynamics of learning in deep linear networks".
    Dimensions after the first are flattened, as in ``torch.nn.init.orthogonal_``. fp16/bf16 are computed in
    float32 (torch's fails: pytorch#9315).

    >>> q = orthogonal_(torch.empty(3, 5))
    >>> torch.allclose(q @ q.T, torch.eye(3), atol=1e-5)
    True
    """
    f.check_scale("gain", gain)
    return draw_(tensor, f.Orthogonal(gain), generator)


def delta_orthogonal_(tensor: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    """Delta-orthogonal conv kernel: zero except an orthogonal ``(out, in)`` matrix at the center tap.

    Xiao et al. (2018), "Dynamical Isometry and a Mean Field Theory of CNNs": with ``out ≥ in`` the conv is an
    isometry at init, which trains 10,000-layer vanilla CNNs. With ``out < in`` the rows are orthonormal.

    >>> w = delta_orthogonal_(torch.empty(8, 8, 3, 3))
    >>> int((w != 0).sum(dim=(0, 1)).count_nonzero())
    1
    """
    f.check_scale("gain", gain)
    return draw_(tensor, f.DeltaOrthogonal(gain), generator)


def identity_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Identity matrix times ``gain`` (2-D; on non-square matrices, ones on the main diagonal).

    Le et al. (2015), "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units" (IRNN).

    >>> identity_(torch.empty(2, 3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    if tensor.ndim != 2:
        raise fail(
            "identity_ needs a 2-D weight",
            received=tuple(tensor.shape),
            fix="For conv kernels use dirac_, which keeps the identity per channel.",
        )
    return draw_(tensor, f.Identity(f.check_scale("gain", gain, allow_zero=True)))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Dirac delta per channel: a conv that passes its input through (per group), like ``torch.nn.init.dirac_``.

    >>> dirac_(torch.empty(2, 2, 3))[:, :, 1].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    return draw_(tensor, f.Dirac(groups))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator: Generator = None) -> Tensor:
    """``N(0, std²)`` with a fraction ``sparsity`` of each column set to zero (2-D).

    Martens (2010), "Deep learning via Hessian-free optimization". Unlike ``torch.nn.init.sparse_``, the
    zeroed positions come from ``generator`` too, so the result is reproducible.

    >>> w = sparse_(torch.empty(10, 4), 0.3, generator=torch.Generator().manual_seed(0))
    >>> (w == 0).sum(dim=0).tolist()
    [3, 3, 3, 3]
    """
    if not 0.0 <= sparsity <= 1.0:
        raise fail("sparsity is the fraction of zeros per column", accepted="a number in [0, 1]", received=sparsity)
    return draw_(tensor, f.Sparse(sparsity, f.check_scale("std", std)), generator)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0. Cannot break symmetry: every unit of a layer stays identical through training.

    >>> zeros_(torch.empty(2)).tolist()
    [0.0, 0.0]
    """
    return draw_(tensor, f.Constant(0.0))


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1 (the usual norm-layer scale).

    >>> ones_(torch.empty(2)).tolist()
    [1.0, 1.0]
    """
    return draw_(tensor, f.Constant(1.0))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``.

    >>> constant_(torch.empty(2), 0.5).tolist()
    [0.5, 0.5]
    """
    if not math.isfinite(val):
        raise fail("constant_ needs a finite value", received=val)
    return draw_(tensor, f.Constant(float(val)))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator = None) -> Tensor:
    """Fill from ``N(mean, std²)``.

    >>> normal_(torch.empty(3), std=0.01).shape
    torch.Size([3])
    """
    return draw_(tensor, f.Normal(float(mean), f.check_scale("std", std, allow_zero=True)), generator)


def small_random_(tensor: Tensor, std: float = 0.01, generator: Generator = None) -> Tensor:
    """The classic "small random numbers" ``N(0, 0.01²)``: vanishes in deep nets (Glorot & Bengio 2010).

    >>> small_random_(torch.empty(3)).shape
    torch.Size([3])
    """
    return normal_(tensor, 0.0, std, generator=generator)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Generator = None) -> Tensor:
    """Fill from ``U(a, b)``.

    >>> bool(uniform_(torch.empty(100), -1, 1).abs().max() <= 1)
    True
    """
    if not a <= b:
        raise fail("uniform_ needs a <= b", received=(a, b))
    return draw_(tensor, f.Uniform(float(a), float(b)), generator)
