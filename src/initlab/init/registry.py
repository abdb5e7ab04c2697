"""Every named initialization scheme: torch names, Keras names and class names, and their configs.

``initlab.get`` turns a name, a Keras-style config dict or a callable into an :class:`Initializer`, an
object that fills torch tensors (``init(tensor)``) and makes NumPy arrays (``init.numpy(shape)``) from the
same formula in ``_formulas``. Keras semantics hold for Keras names (``he_normal`` and ``glorot_normal`` are
truncated, ``random_normal`` has std 0.05); torch semantics for torch names (``kaiming_normal`` and
``xavier_normal`` are untruncated, ``normal`` has std 1).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from initlab._errors import fail, unknown_name
from initlab.init import _formulas as f
from initlab.init._numpy_draw import draw
from initlab.init.fans import Fans, fans

if TYPE_CHECKING:  # torch loads where a tensor is filled: listing the schemes needs none of it (issue 35)
    import torch

    from initlab.init.activations import Activation

__all__ = ["Initializer", "Scheme", "get", "new_scheme", "register", "scheme_names", "schemes"]

Plan = Callable[[Fans | None, Mapping[str, Any]], f.Dist]


@dataclass(frozen=True)
class Scheme:
    """A named scheme: how its parameters become a distribution, and what to tell a user about it."""

    name: str
    plan: Plan
    defaults: Mapping[str, Any]
    formula: str
    paper: str
    fan_based: bool = False
    gain_param: str | None = None  # the parameter initialize(..., gain_from="activation") sets from the activation
    default_gain: float | None = None  # the published gain, used when gain_param is left at None
    aliases: tuple[str, ...] = ()
    # Model-level rules: the gain for the activation after a layer (default: initlab.gain) and the
    # distribution of that layer's bias (default: zeros).
    gain_rule: Callable[[Activation | None, Mapping[str, Any]], float] | None = None
    bias_rule: Callable[[Activation | None, Fans, Mapping[str, Any]], f.Dist] | None = None
    needs_data: bool = False  # calibrated on a batch after the plan's draw (lsuv): initialize(..., data=)
    residual_rule: str | None = None  # applied to residual branches unless initialize(residual=) says otherwise
    embedding_rule: Plan | None = None  # the distribution of embedding tables, if not the plan's (fans (1, d))
    zero: tuple[str, ...] = ()  # layers that start at zero in a whole model: "readout" (the last), "query"
    provider: str | None = None  # the module that supplies the rules (see _provided), until it is imported

    @property
    def class_name(self) -> str:
        """Keras' CamelCase class name (``he_normal`` → ``HeNormal``)."""
        return _camel(self.name)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _vs(distribution: str, mode: str) -> Plan:
    def plan(layer_fans: Fans | None, p: Mapping[str, Any]) -> f.Dist:
        assert layer_fans is not None
        return f.variance_scaling(layer_fans, f.kaiming_scale(p["gain"]), p.get("mode", mode), distribution)

    return plan


def new_scheme(name: str, plan: Plan, defaults: Mapping[str, Any], formula: str, paper: str, **kw: Any) -> Scheme:
    """A :class:`Scheme`; with ``default_gain``, its plan sees that gain wherever ``gain`` is left at None."""
    default = kw.get("default_gain")
    if default is not None:
        inner = plan

        def plan(layer_fans: Fans | None, p: Mapping[str, Any]) -> f.Dist:
            return inner(layer_fans, {**p, "gain": default if p.get("gain") is None else p["gain"]})

    return Scheme(name, plan, dict(defaults), formula, paper, **kw)


_GLOROT = "Glorot & Bengio (2010), Understanding the difficulty of training deep feedforward neural networks"
_HE = "He et al. (2015), Delving Deep into Rectifiers"
_LECUN = "LeCun et al. (1998), Efficient BackProp"
_KERAS = "Keras 3 default"
_SQRT2 = math.sqrt(2.0)

_SCHEMES: list[Scheme] = [
    new_scheme("zeros", lambda _, p: f.Constant(0.0), {}, "W = 0", "cannot break symmetry", aliases=("zero",)),
    new_scheme("ones", lambda _, p: f.Constant(1.0), {}, "W = 1", "norm-layer scale", aliases=("one",)),
    new_scheme("constant", lambda _, p: f.Constant(float(p["value"])), {"value": 0.0}, "W = value", "-"),
    new_scheme(
        "normal",
        lambda _, p: f.Normal(p["mean"], f.check_scale("std", p["std"])),
        {"mean": 0.0, "std": 1.0},
        "N(mean, std²)",
        "torch.nn.init.normal_",
    ),
    new_scheme(
        "random_normal",
        lambda _, p: f.Normal(p["mean"], f.check_scale("stddev", p["stddev"])),
        {"mean": 0.0, "stddev": 0.05},
        "N(mean, stddev²)",
        _KERAS,
    ),
    new_scheme(
        "small_random",
        lambda _, p: f.Normal(0.0, f.check_scale("std", p["std"])),
        {"std": 0.01},
        "N(0, 0.01²)",
        "the classic small random init; vanishes in deep nets (Glorot & Bengio 2010)",
    ),
    new_scheme(
        "uniform",
        lambda _, p: f.Uniform(p["a"], p["b"]),
        {"a": 0.0, "b": 1.0},
        "U(a, b)",
        "torch.nn.init.uniform_",
    ),
    new_scheme(
        "random_uniform",
        lambda _, p: f.Uniform(p["minval"], p["maxval"]),
        {"minval": -0.05, "maxval": 0.05},
        "U(minval, maxval)",
        _KERAS,
    ),
    new_scheme(
        "truncated_normal",
        lambda _, p: f.truncated(p["mean"], p["stddev"] * f.TRUNCATED_STD_2, -2.0, 2.0, "std"),
        {"mean": 0.0, "stddev": 0.05},
        "N(mean, stddev²) truncated to ±2·stddev (Keras: std 0.88·stddev)",
        _KERAS,
    ),
    new_scheme(
        "variance_scaling",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), p["scale"], p["mode"], p["distribution"]),
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
        "Var W = scale / n (distribution truncated_normal, untruncated_normal or uniform, as in Keras)",
        "Keras VarianceScaling / JAX variance_scaling",
        fan_based=True,
    ),
    new_scheme(
        "glorot_uniform",
        _vs("uniform", "fan_avg"),
        {"gain": None},
        "U(±gain·√(6/(fan_in+fan_out)))",
        _GLOROT,
        fan_based=True,
        gain_param="gain",
        default_gain=1.0,
        aliases=("xavier_uniform",),
    ),
    new_scheme(
        "glorot_normal",
        _vs("truncated_normal", "fan_avg"),
        {"gain": None},
        "truncated N, std gain·√(2/(fan_in+fan_out))",
        _GLOROT,
        fan_based=True,
        gain_param="gain",
        default_gain=1.0,
    ),
    new_scheme(
        "xavier_normal",
        _vs("normal", "fan_avg"),
        {"gain": None},
        "N(0, gain²·2/(fan_in+fan_out))",
        _GLOROT,
        fan_based=True,
        gain_param="gain",
        default_gain=1.0,
    ),
    new_scheme(
        "he_uniform",
        _vs("uniform", "fan_in"),
        {"mode": "fan_in", "gain": None},
        "U(±gain·√(3/fan_in)), gain √2 for ReLU",
        _HE,
        fan_based=True,
        gain_param="gain",
        default_gain=_SQRT2,
        aliases=("kaiming_uniform",),
    ),
    new_scheme(
        "he_normal",
        _vs("truncated_normal", "fan_in"),
        {"mode": "fan_in", "gain": None},
        "truncated N, std gain/√fan_in",
        _HE,
        fan_based=True,
        gain_param="gain",
        default_gain=_SQRT2,
    ),
    new_scheme(
        "kaiming_normal",
        _vs("normal", "fan_in"),
        {"mode": "fan_in", "gain": None},
        "N(0, gain²/fan_in)",
        _HE,
        fan_based=True,
        gain_param="gain",
        default_gain=_SQRT2,
    ),
    new_scheme(
        "lecun_uniform",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), 1.0, "fan_in", "uniform"),
        {},
        "U(±√(3/fan_in))",
        _LECUN,
        fan_based=True,
    ),
    new_scheme(
        "lecun_normal",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), 1.0, "fan_in", "truncated_normal"),
        {},
        "truncated N, std 1/√fan_in",
        _LECUN,
        fan_based=True,
    ),
    new_scheme(
        "torch_default",
        lambda fn, p: f.torch_default(fn or Fans(1, 1)),
        {},
        "U(±1/√fan_in)",
        "torch's nn.Linear/Conv default, kaiming_uniform_(a=√5) (pytorch#15314)",
        fan_based=True,
        bias_rule=lambda act, layer_fans, p: f.torch_default(layer_fans),
    ),
    new_scheme(
        "orthogonal",
        lambda _, p: f.Orthogonal(p["gain"]),
        {"gain": None},
        "Haar orthogonal × gain",
        "Saxe et al. (2014), Exact solutions to the nonlinear dynamics of learning",
        gain_param="gain",
        default_gain=1.0,
    ),
    new_scheme(
        "delta_orthogonal",
        lambda _, p: f.DeltaOrthogonal(p["gain"]),
        {"gain": None},
        "orthogonal center tap, zeros elsewhere",
        "Xiao et al. (2018), Dynamical Isometry and a Mean Field Theory of CNNs",
        gain_param="gain",
        default_gain=1.0,
    ),
    new_scheme(
        "identity",
        lambda _, p: f.Identity(p["gain"]),
        {"gain": 1.0},
        "gain · I",
        "Le et al. (2015), A Simple Way to Initialize Recurrent Networks of Rectified Linear Units",
        aliases=("eye",),
    ),
    new_scheme(
        "dirac",
        lambda _, p: f.Dirac(int(p["groups"])),
        {"groups": 1},
        "identity per channel (conv)",
        "torch.nn.init.dirac_",
    ),
    new_scheme(
        "gpt2",
        lambda _, p: f.Normal(0.0, f.check_scale("std", p["std"])),
        {"std": 0.02},
        "N(0, 0.02²) everywhere; each residual branch's output projection ×1/√(2N) (N blocks)",
        "Radford et al. (2019), Language Models are Unsupervised Multitask Learners (GPT-2)",
        residual_rule="scaled",
    ),
    new_scheme(
        "deepnorm",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), 1.0, "fan_avg", "normal"),
        {},
        "Xavier normal; value, output and MLP projections ×β = (8N)^-¼ (N blocks), for x ← LN(α·x + f(x)), α = (2N)^¼",
        "Wang et al. (2022), DeepNet: Scaling Transformers to 1,000 Layers",
        fan_based=True,
        residual_rule="deepnorm",
    ),
    new_scheme(
        "small_embedding",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), 1.0, "fan_avg", "normal"),
        {},
        "embedding tables N(0, 2/(5d)) (d the width), Xavier normal elsewhere",
        "Nguyen & Salazar (2019), Transformers without Tears (SmallInit, as GPT-NeoX implements it)",
        fan_based=True,
        embedding_rule=lambda fn, p: f.Normal(0.0, math.sqrt(2 / (5 * max((fn or Fans(1, 1)).fan_out, 1.0)))),
    ),
    new_scheme(
        "mup",
        lambda fn, p: f.variance_scaling(fn or Fans(1, 1), 1.0, "fan_in", "normal"),
        {},
        "N(0, 1/fan_in); readout and query projections zero (µP at its base width; il.mup for wider models)",
        "Yang et al. (2021), Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer",
        fan_based=True,
        zero=("readout", "query"),
    ),
    new_scheme(
        "lsuv",
        lambda fn, p: lookup(p["base"]).plan(fn, lookup(p["base"]).defaults),
        {"base": "orthogonal", "target_std": 1.0, "tol": 0.1, "max_iter": 10, "stream": False},
        "the base scheme, then each layer scaled to output std target_std on a batch",
        "Mishkin & Matas (2016), All you need is a good init",
        fan_based=True,
        needs_data=True,
    ),
    new_scheme(
        "sparse",
        lambda _, p: f.Sparse(p["sparsity"], p["std"]),
        {"sparsity": 0.1, "std": 0.01},
        "N(0, std²) with a fraction of each column zero",
        "Martens (2010), Deep learning via Hessian-free optimization",
    ),
]


def _provided(name: str, module: str, defaults: Mapping[str, Any], formula: str, paper: str, **kw: Any) -> Scheme:
    """A scheme whose rules need a higher floor (``critical`` needs the mean field of ``initlab.theory``): listed
    here from the start, with its formula and paper, so that ``initlab schemes`` needs no torch; ``lookup``
    imports ``module`` the first time the scheme is used, and that module completes it with :func:`provide`.
    So the name works whatever the user imported first (issue 30: it was "unknown initializer" unless
    ``initlab.theory`` had been imported), and the registry still imports nothing above its floor."""

    def plan(layer_fans: Fans | None, p: Mapping[str, Any]) -> f.Dist:
        return lookup(name).plan(layer_fans, p)

    return new_scheme(name, plan, defaults, formula, paper, provider=module, **kw)


def provide(name: str, **rules: Any) -> Scheme:
    """Complete a scheme declared with :func:`_provided` with its rules (``plan``, ``gain_rule``, ...)."""
    scheme = dataclasses.replace(_BY_NAME[name], provider=None, **rules)
    return register(scheme)


_SCHEMES.append(
    _provided(
        "critical",
        "initlab.theory.critical",
        {"activation": None, "bias_var": None, "gain": None},
        "N(0, σ_w²*/fan_in), bias N(0, σ_b²) with χ1(σ_w²*, σ_b²) = 1 for the activation that follows",
        "Poole et al. (2016), Exponential expressivity; Schoenholz et al. (2017), Deep Information Propagation",
        fan_based=True,
        gain_param="gain",
        aliases=("edge_of_chaos",),
    )
)

_BY_NAME: dict[str, Scheme] = {}


def register(scheme: Scheme) -> Scheme:
    """Add a scheme; names must be new. ``initlab.theory.critical`` adds ``critical`` this way, so that the
    registry (a lower layer) does not import the mean-field theory it needs."""
    names = (scheme.name, *scheme.aliases)
    for key in {*names, *(n.replace("_", "") for n in names)}:
        existing = _BY_NAME.get(key)
        if existing is not None and existing.name != scheme.name:
            raise fail(f"the name {key!r} is taken by scheme {existing.name!r}")
        _BY_NAME[key] = scheme
    return scheme


for _s in _SCHEMES:
    register(_s)


def schemes() -> list[Scheme]:
    """Every registered scheme, in registration order, without aliases."""
    seen: dict[str, Scheme] = {}
    for s in _BY_NAME.values():
        seen.setdefault(s.name, s)
    return list(seen.values())


def scheme_names() -> list[str]:
    """Every accepted spelling: names, aliases (``kaiming_uniform``) and Keras class names (``HeNormal``)."""
    out: set[str] = set()
    for s in schemes():
        out.update((s.name, *s.aliases, s.class_name, *(_camel(a) for a in s.aliases)))
    return sorted(out)


def lookup(name: str) -> Scheme:
    """The scheme for a name, alias or class name (case-insensitive, ``-`` and ``_`` alike)."""
    key = name.strip().lower().replace("-", "_")
    scheme = _BY_NAME.get(key) or _BY_NAME.get(key.replace("_", ""))
    if scheme is None:
        raise unknown_name(
            "initializer", name, scheme_names(), see=f"See `initlab schemes` for all {len(schemes())} names."
        )
    if scheme.provider is not None:
        importlib.import_module(scheme.provider)  # it calls provide(): the complete scheme replaces this one
        scheme = _BY_NAME[scheme.name]
    return scheme


@dataclass
class Initializer:
    """A configured scheme that fills torch tensors and makes NumPy arrays.

    With ``seed``, the instance owns a generator seeded once, so consecutive calls give *different* but
    reproducible values (a Keras initializer with a fixed seed returns identical values on every call).
    """

    scheme: Scheme
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    _generator: torch.Generator | None = field(default=None, init=False, repr=False, compare=False)
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.scheme.name

    def dist(self, layer_fans: Fans | None, gain: float | None = None) -> f.Dist:
        """The distribution this initializer draws from for a weight with these fans."""
        params = dict(self.params)
        if gain is not None and self.scheme.gain_param is not None:
            params[self.scheme.gain_param] = gain
        return self.scheme.plan(layer_fans, params)

    def __call__(
        self,
        tensor: torch.Tensor | tuple[int, ...],
        dtype: Any = None,
        *,
        gain: float | None = None,
        fans: Fans | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill ``tensor`` in place and return it; ``gain`` sets the scheme's gain (if it has one).

        Called as Keras calls an initializer, ``init(shape, dtype=...)`` with a shape instead of a tensor, it
        returns a new Keras tensor of that shape (channels-last fans), so ``kernel_initializer=il.get(...)`` works.
        """
        import torch

        from initlab.init._torch_draw import draw_

        if not isinstance(tensor, torch.Tensor):
            return self._keras_tensor(tensor, dtype)
        if tensor.numel() == 0:
            return tensor
        layer_fans = (fans or _fans_of(tensor.shape)) if self.scheme.fan_based else fans
        return draw_(tensor, self.dist(layer_fans, gain), generator or self._torch_generator())

    def _keras_tensor(self, shape: Any, dtype: Any) -> Any:
        import keras  # only when Keras calls: initlab does not need Keras otherwise

        array = self.numpy(tuple(int(n) for n in shape), layout="keras")
        return keras.ops.convert_to_tensor(array, dtype=dtype or keras.config.floatx())

    def numpy(
        self,
        shape: tuple[int, ...] | int,
        rng: np.random.Generator | None = None,
        *,
        dtype: DTypeLike = np.float32,
        layout: str = "torch",
        fans: Fans | None = None,
        gain: float | None = None,
    ) -> NDArray[np.floating]:
        """A new NumPy array of ``shape`` from the same formula (``layout="keras"`` for channels-last)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype=dtype)
        if self.scheme.fan_based and fans is None:
            fans = _fans_of(shape, layout)
        return draw(shape, self.dist(fans, gain), rng or self._numpy_rng(), dtype)

    def get_config(self) -> dict[str, Any]:
        """The config Keras reads as the same distribution (``{"class_name": "HeNormal", "config": {"seed": 0}}``;
        a non-default gain or a torch name becomes Keras' ``VarianceScaling``, ``normal`` its ``RandomNormal``),
        or, for schemes Keras has no class for (``critical``, ``dirac``, ``sparse``...), initlab's own config,
        which :func:`get` reads back. Every config :func:`get` returns gives back the same distribution."""
        class_name, config = keras_config(self.scheme, self.params)
        return {"class_name": class_name, "config": config if class_name in _NO_SEED else {**config, "seed": self.seed}}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Initializer:
        """Inverse of :meth:`get_config`; also reads Keras' ``keras.initializers.serialize`` output."""
        return get(dict(config))

    def _torch_generator(self) -> torch.Generator | None:
        import torch

        if self.seed is not None and self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def _numpy_rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng


_NO_SEED = ("Zeros", "Ones", "Constant", "Identity", "Dirac")
_KERAS_VS = {  # Keras' fixed variance-scaling classes: (mode, distribution); their scale is the gain squared
    "glorot_normal": ("fan_avg", "truncated_normal"), "glorot_uniform": ("fan_avg", "uniform"),
    "he_normal": ("fan_in", "truncated_normal"), "he_uniform": ("fan_in", "uniform"),
    "lecun_normal": ("fan_in", "truncated_normal"), "lecun_uniform": ("fan_in", "uniform"),
    "xavier_normal": ("fan_avg", "untruncated_normal"), "kaiming_normal": ("fan_in", "untruncated_normal"),
    "torch_default": ("fan_in", "uniform"),
}  # fmt: skip
_KERAS_SAME = {"random_normal", "random_uniform", "truncated_normal", "variance_scaling", "zeros", "ones", "constant"}


def keras_config(scheme: Scheme, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(class_name, config)`` without the seed: Keras' spelling wherever Keras has the distribution."""
    name, p = scheme.name, dict(params)
    if name in _KERAS_VS:
        gain = p.get("gain") if p.get("gain") is not None else scheme.default_gain
        mode, distribution = p.get("mode", _KERAS_VS[name][0]), _KERAS_VS[name][1]
        scale = 1.0 / 3.0 if name == "torch_default" else (1.0 if gain is None else float(gain) ** 2)
        if (
            scheme.class_name
            in ("GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform")
            and gain in (None, scheme.default_gain)
            and mode == _KERAS_VS[name][0]
        ):
            return scheme.class_name, {}  # fmt: skip
        return "VarianceScaling", {"scale": scale, "mode": mode, "distribution": distribution}
    if name in _KERAS_SAME:
        return scheme.class_name, p
    if name in ("normal", "small_random"):
        return "RandomNormal", {"mean": float(p.get("mean", 0.0)), "stddev": float(p["std"])}
    if name == "uniform":
        return "RandomUniform", {"minval": float(p["a"]), "maxval": float(p["b"])}
    if name in ("orthogonal", "identity", "delta_orthogonal"):
        given = p.get("gain")
        return scheme.class_name, {"gain": float(given if given is not None else scheme.default_gain or 1.0)}
    return scheme.class_name, {k: v for k, v in p.items() if v is not None}


def _fans_of(shape: torch.Size | tuple[int, ...], layout: str = "torch") -> Fans:
    return fans(tuple(shape), layout=layout)


def get(identifier: str | Mapping[str, Any] | Initializer | Callable[..., Any], **params: Any) -> Initializer:
    """Resolve a name, config dict or callable to an :class:`Initializer`.

    Args:
        identifier: a name in torch or Keras spelling (``"kaiming_normal"``, ``"he_uniform"``, ``"HeNormal"``),
            a config ``{"class_name": "VarianceScaling", "config": {"scale": 2.0, ...}}`` (as Keras writes it),
            an :class:`Initializer`, or a callable ``fn(tensor)`` (wrapped as is).
        params: parameters that override the scheme's defaults (``get("orthogonal", gain=2.0)``).

    Raises:
        InitlabError: an unknown name (with the closest valid names) or an unknown parameter.

    >>> get("HeNormal").name
    'he_normal'
    >>> get({"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out"}}).params["mode"]
    'fan_out'
    """
    if isinstance(identifier, Initializer):
        return identifier if not params else get(identifier.get_config(), **params)
    if _is_keras_initializer(identifier):  # a keras.initializers object: read through its config
        config = getattr(identifier, "get_config")()  # noqa: B009  (a Keras object: typed as a callable here)
        return get({"class_name": type(identifier).__name__, "config": config}, **params)
    if isinstance(identifier, Mapping):
        if "class_name" not in identifier:
            raise fail(
                "an initializer config needs a 'class_name'",
                received=dict(identifier),
                fix='Write it as {"class_name": "HeNormal", "config": {}}.',
            )
        config = dict(identifier.get("config") or {})
        return get(str(identifier["class_name"]), **config, **params)
    if isinstance(identifier, str):
        return _from_name(identifier, params)
    if callable(identifier):
        return FunctionInitializer(identifier)
    raise fail(
        "an initializer is a name, a config dict or a callable",
        received=identifier,
        fix="Try initlab.get('he_normal').",
    )


def _from_name(identifier: str, params: dict[str, Any]) -> Initializer:
    scheme = lookup(identifier)
    seed = params.pop("seed", None)
    axes = (params.pop("input_axes", None), params.pop("output_axes", None))
    if axes != (None, None):
        raise fail(
            "input_axes/output_axes are not read from configs",
            received=axes,
            fix="Pass fans=initlab.init.fans(shape, in_axes=..., out_axes=...) when calling the initializer.",
        )
    if scheme.name == "variance_scaling" and params.get("distribution") == "normal":
        params["distribution"] = "truncated_normal"  # Keras' legacy spelling, and Keras reads it truncated
    unknown = set(params) - set(scheme.defaults)
    if unknown:
        raise fail(
            f"scheme {scheme.name!r} has no parameter {sorted(unknown)[0]!r}",
            accepted=", ".join(sorted(scheme.defaults)) or "no parameters",
            received=params,
        )
    init = Initializer(scheme, {**scheme.defaults, **params}, seed)
    if params:  # a bad value (scale=-1, mode="fan_sideways") fails here, not when the initializer is called
        scheme.plan(Fans(4, 4) if scheme.fan_based else None, init.params)
    return init


def _is_keras_initializer(obj: object) -> bool:
    return type(obj).__module__.startswith(("keras.", "initlab.keras")) and hasattr(obj, "get_config")


class FunctionInitializer(Initializer):
    """A user's ``fn(tensor)`` (e.g. ``torch.nn.init.kaiming_normal_``) behind the Initializer interface."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        name = getattr(fn, "__name__", type(fn).__name__)

        def plan(layer_fans: Fans | None, p: Mapping[str, Any]) -> f.Dist:
            raise fail(
                f"the callable initializer {name!r} has no closed-form distribution",
                fix="Use a named scheme for theory and NumPy arrays.",
            )

        super().__init__(Scheme(name, plan, {}, f"{name}(tensor)", "user-supplied"))
        self.fn = fn

    def __call__(
        self,
        tensor: torch.Tensor | tuple[int, ...],
        dtype: Any = None,
        *,
        gain: float | None = None,
        fans: Fans | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        import torch

        if not isinstance(tensor, torch.Tensor):
            return self._keras_tensor(tensor, dtype)
        with torch.no_grad():
            self.fn(tensor)
        return tensor

    def numpy(
        self,
        shape: tuple[int, ...] | int,
        rng: np.random.Generator | None = None,
        *,
        dtype: DTypeLike = np.float32,
        layout: str = "torch",
        fans: Fans | None = None,
        gain: float | None = None,
    ) -> NDArray[np.floating]:
        import torch

        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        seed = int((rng if rng is not None else np.random.default_rng()).integers(2**63))
        # The function draws from torch's global generator: seeded from ``rng`` for this call (so that the same
        # rng state gives the same array, as every other initializer's numpy()), the caller's state restored.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self(torch.empty(shape, dtype=torch.float64)).numpy().astype(dtype)

    def get_config(self) -> dict[str, Any]:
        raise fail(
            f"the callable initializer {self.name!r} has no config",
            fix="Use a named scheme (initlab.get('he_normal')) where a config must round-trip.",
        )
