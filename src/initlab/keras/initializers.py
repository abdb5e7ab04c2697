"""``keras.initializers``, name for name, plus initlab's schemes Keras does not have.

Change ``from keras import initializers`` to ``from initlab.keras import initializers``: every Keras name
(``GlorotNormal``, ``he_uniform``, ``VarianceScaling``, the legacy ``normal``/``uniform``/``one``/``zero``, ...)
is Keras' own class, so constructor arguments, ``get_config()`` keys, seed semantics (an int seed gives the same
values on every call, a ``keras.random.SeedGenerator`` advances) and saved models are exactly Keras'. Keras is
right about its own initializers, so there is nothing to change there; what this module adds:

- :class:`DeltaOrthogonal` (Xiao et al. 2018) for channels-last conv kernels ``(k..., in, out)``;
- :class:`Critical`: the edge-of-chaos weight variance for the activation that follows (mean-field theory);
- :class:`ActivationGain`: a Glorot/He/LeCun/VarianceScaling initializer rescaled by the gain of the activation
  that follows (initlab's ``gain_from="activation"`` opt-in);
- :func:`get`, :func:`serialize`, :func:`deserialize` that know all of them, and :func:`from_initlab` for an
  ``initlab.get(...)`` initializer.

The extras are ``keras.initializers.Initializer`` subclasses registered as ``initlab>Name``: usable as
``kernel_initializer=`` by instance or name, and saved and loaded with the model by ``keras.saving``. They draw
with ``keras.random`` and ``keras.ops``, so they run on every backend.

>>> import keras
>>> from initlab.keras import initializers
>>> layer = keras.layers.Conv2D(8, 3, kernel_initializer=initializers.DeltaOrthogonal(seed=0))
>>> layer.build((None, 16, 16, 8))
>>> int(keras.ops.sum(keras.ops.any(keras.ops.not_equal(layer.kernel, 0), axis=(2, 3))))  # the center tap only
1
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras.initializers import (
    STFT,
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    IdentityInitializer,
    Initializer,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    OrthogonalInitializer,
    RandomNormal,
    RandomUniform,
    STFTInitializer,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
)

from initlab._errors import fail, unknown_name
from initlab.init import gains

constant, identity, ones, zeros, orthogonal, stft = Constant, Identity, Ones, Zeros, Orthogonal, STFT
glorot_normal, glorot_uniform, he_normal, he_uniform = GlorotNormal, GlorotUniform, HeNormal, HeUniform
lecun_normal, lecun_uniform, variance_scaling = LecunNormal, LecunUniform, VarianceScaling
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
normal, uniform, one, zero = RandomNormal, RandomUniform, Ones, Zeros  # Keras' legacy names

__all__ = [
    "STFT", "ActivationGain", "Constant", "Critical", "DeltaOrthogonal", "GlorotNormal", "GlorotUniform", "HeNormal",
    "HeUniform", "Identity", "IdentityInitializer", "Initializer", "LecunNormal", "LecunUniform", "Ones",
    "Orthogonal", "OrthogonalInitializer", "RandomNormal", "RandomUniform", "STFTInitializer", "TruncatedNormal",
    "VarianceScaling", "Zeros", "activation_gain", "constant", "critical", "delta_orthogonal", "deserialize",
    "from_initlab", "get", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal",
    "lecun_uniform", "normal", "one", "ones", "orthogonal", "random_normal", "random_uniform", "serialize", "stft",
    "truncated_normal", "uniform", "variance_scaling", "zero", "zeros",
]  # fmt: skip
_PACKAGE = "initlab"
_VARIANCE_SCALING = {  # Keras' fixed variance-scaling classes as (scale, mode, distribution)
    "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
    "GlorotUniform": (1.0, "fan_avg", "uniform"),
    "HeNormal": (2.0, "fan_in", "truncated_normal"),
    "HeUniform": (2.0, "fan_in", "uniform"),
    "LecunNormal": (1.0, "fan_in", "truncated_normal"),
    "LecunUniform": (1.0, "fan_in", "uniform"),
}


def _seed_config(seed: Any) -> Any:
    return keras.saving.serialize_keras_object(seed)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DeltaOrthogonal(Initializer):  # type: ignore[misc]
    """A conv kernel ``(k..., in, out)`` that is zero except an orthogonal ``(in, out)`` matrix times ``gain`` at
    the center tap (Xiao et al. 2018, "Dynamical Isometry and a Mean Field Theory of CNNs"): with ``out ≥ in``
    the convolution is an isometry at initialization. ``seed`` as in Keras' ``Orthogonal``."""

    def __init__(self, gain: float = 1.0, seed: int | keras.random.SeedGenerator | None = None) -> None:
        self.gain = float(gain)
        self.seed = seed
        self._orthogonal = OrthogonalInitializer(gain=self.gain, seed=seed)

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        shape = tuple(int(s) for s in shape)
        if not 3 <= len(shape) <= 5:
            raise fail("DeltaOrthogonal needs a conv kernel (k..., in, out) of rank 3 to 5", received=shape,
                       fix="For a Dense kernel use Orthogonal.")  # fmt: skip
        *taps, cin, cout = shape
        center = np.zeros(taps, dtype="float32")
        center[tuple(k // 2 for k in taps)] = 1.0
        q = self._orthogonal((cin, cout), dtype=dtype)
        tap = keras.ops.reshape(keras.ops.convert_to_tensor(center, dtype=dtype), (*taps, 1, 1))
        return tap * keras.ops.reshape(q, (*[1] * len(taps), cin, cout))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": _seed_config(self.seed)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Critical(VarianceScaling):  # type: ignore[misc]
    """Weights on the edge of chaos for ``activation``: ``Var W = σ_w²* / fan_in`` with ``σ_w²*`` where mean-field
    theory puts χ1 = 1 for this bias variance (Poole et al. 2016; Schoenholz et al. 2017). ``bias_var`` is the
    variance the biases will have (0 for zero biases)."""

    def __init__(
        self,
        activation: str = "tanh",
        bias_var: float = 0.0,
        distribution: str = "untruncated_normal",
        seed: int | keras.random.SeedGenerator | None = None,
    ) -> None:
        from initlab.theory.critical import critical_weight_var

        self.activation, self.bias_var = activation, float(bias_var)
        super().__init__(scale=critical_weight_var(activation, self.bias_var), mode="fan_in",
                         distribution=distribution, seed=seed)  # fmt: skip

    def get_config(self) -> dict[str, Any]:
        return {"activation": self.activation, "bias_var": self.bias_var, "distribution": self.distribution,
                "seed": _seed_config(self._init_seed)}  # fmt: skip


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ActivationGain(VarianceScaling):  # type: ignore[misc]
    """A Glorot, He, LeCun or VarianceScaling initializer whose gain is the activation's that follows the layer
    (5/3 before tanh, √2 before ReLU, :func:`initlab.gain` for any other) instead of the published one: the
    scale becomes ``gain²`` (times a VarianceScaling's own scale), mode and distribution stay the base's."""

    def __init__(
        self,
        initializer: str | dict[str, Any] = "glorot_normal",
        activation: str = "tanh",
        seed: int | keras.random.SeedGenerator | None = None,
    ) -> None:
        base = get(initializer)
        name = type(base).__name__
        if name in _VARIANCE_SCALING:
            scale, mode, distribution = 1.0, *_VARIANCE_SCALING[name][1:]
        elif isinstance(base, VarianceScaling) and not isinstance(base, (Critical, ActivationGain)):
            scale, mode, distribution = base.scale, base.mode, base.distribution
        else:
            raise fail("ActivationGain rescales a variance-scaling initializer", received=name,
                       accepted=", ".join([*_VARIANCE_SCALING, "VarianceScaling"]))  # fmt: skip
        self.initializer, self.activation = initializer, activation
        super().__init__(scale=scale * gains.gain(activation) ** 2, mode=mode, distribution=distribution, seed=seed)

    def get_config(self) -> dict[str, Any]:
        return {"initializer": self.initializer, "activation": self.activation, "seed": _seed_config(self._init_seed)}


_EXTRAS: dict[str, type[Initializer]] = {"DeltaOrthogonal": DeltaOrthogonal, "Critical": Critical,
                                         "ActivationGain": ActivationGain}  # fmt: skip
delta_orthogonal, critical, activation_gain = DeltaOrthogonal, Critical, ActivationGain


def _extra(name: str) -> type[Initializer] | None:
    key = name.split(">")[-1].replace("_", "").lower()
    return next((cls for n, cls in _EXTRAS.items() if n.lower() == key), None)


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Initializer:
    """``keras.initializers.deserialize`` that also reads initlab's extras by bare class name."""
    cls = _extra(str(config.get("class_name", "")))
    if cls is not None:
        return cls.from_config(dict(config.get("config") or {}))
    return keras.initializers.deserialize(config, custom_objects=custom_objects)


def serialize(initializer: Initializer) -> dict[str, Any]:
    """``keras.initializers.serialize``: Keras' classes as Keras writes them, the extras as ``initlab>Name``."""
    return keras.initializers.serialize(initializer)


def get(identifier: Any) -> Initializer:
    """``keras.initializers.get`` for Keras' names, initlab's extras (``"delta_orthogonal"``, ``"Critical"``),
    configs of either, and initializers from ``initlab.get(...)``."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _extra(identifier)
        if cls is not None:
            return cls()
        try:
            return keras.initializers.get(identifier)
        except ValueError:
            known = [*(n for n in keras.initializers.__dict__ if not n.startswith("_")), *_EXTRAS]
            raise unknown_name("Keras initializer", identifier, known) from None
    if hasattr(identifier, "scheme") and hasattr(identifier, "get_config"):
        return from_initlab(identifier)
    if callable(identifier):
        return identifier
    raise fail("a Keras initializer is a name, a config, an Initializer or a callable", received=identifier)


def from_initlab(init: Any) -> Initializer:
    """The Keras initializer for an ``initlab.get(...)`` initializer (the same distribution, Keras' seed rules)."""
    return deserialize(init.get_config())
