"""``initialize`` for Keras 3 models: every kernel, recurrent kernel, embedding, depthwise kernel, bias and norm
scale assigned through the layer's variables, on any backend.

The activation that follows a layer is the layer's own ``activation`` (Keras puts it there), so nothing is
traced; a separate ``Activation`` layer after it is read too. Fans are Keras' channels-last ones with the true
fans of grouped and depthwise convs; recurrent kernels are orthogonal per gate, LSTM forget-gate biases 1. A layer
with weights initlab does not know (attention, custom layers) is left as Keras initialized it and named in the
report's notes, never skipped in silence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from initlab._errors import fail
from initlab.init import _formulas as f
from initlab.init._numpy_draw import draw
from initlab.init._plan import Fill, Plan
from initlab.init._report import InitReport, LayerInit, notes_on_gains, record_gain, target_std, weight_gain
from initlab.init.activations import Activation, activation
from initlab.init.fans import Fans, fans
from initlab.init.registry import Initializer

__all__ = [
    "initialize_keras", "is_keras_model", "keras_activation", "keras_kernels", "keras_layers", "keras_numpy",
    "plan_keras",
]  # fmt: skip

_GATES = {"SimpleRNNCell": ("rnn", 1), "LSTMCell": ("lstm", 4), "GRUCell": ("gru", 3)}
_NORMS = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")


def is_keras_model(model: object) -> bool:
    """A Keras 3 layer or model (on the torch backend it is also an ``nn.Module``)."""
    return any(c.__module__.startswith("keras.") for c in type(model).__mro__) and hasattr(model, "weights")


def keras_layers(layer: Any) -> Iterator[Any]:
    """Every leaf layer in call order (Keras keeps ``model.layers`` in that order)."""
    for inner in getattr(layer, "layers", []):
        if type(inner).__name__ == "InputLayer":
            continue
        yield from keras_layers(inner) if hasattr(inner, "layers") else (inner,)


def keras_kernels(model: Any) -> list[tuple[Any, Any]]:
    """``(layer, kernel variable)`` in forward order: depthwise, dense/conv and pointwise kernels, embeddings and
    recurrent cells' input kernels (what the monitor compares for vanishing and exploding gradients)."""
    out = []
    for layer in keras_layers(model):
        owner = getattr(layer, "cell", layer)
        for name in ("embeddings", "depthwise_kernel", "kernel", "pointwise_kernel"):
            variable = getattr(owner, name, None)
            if variable is not None and hasattr(variable, "path"):
                out.append((layer, variable))
    return out


def keras_numpy(variable: Any) -> np.ndarray:
    """A Keras variable's values as float64 NumPy, on any backend (on torch without Keras' numpy-2 warning)."""
    value = getattr(variable, "value", variable)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def keras_activation(layer: Any) -> Activation | None:
    """The activation a layer applies to its output (``Dense(activation="tanh")``, ``Activation``, ``ReLU``); None
    for none, and for softmax (an output, not a hidden activation)."""
    import keras

    kind = type(layer).__name__
    if kind in ("ReLU", "LeakyReLU", "ELU"):
        return activation({"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu"}[kind])
    act = getattr(layer, "activation", None)
    name = keras.activations.serialize(act) if act is not None else "linear"
    return activation(name) if isinstance(name, str) and name not in ("linear", "softmax") else None


class _Walk:
    """The plans of a Keras model's variables (:class:`~initlab.init._plan.Plan`, as torch's: the layer, the
    variable's attribute, a fill, the report's row), made in call order; :meth:`draw` fills them once every plan is
    made and every rule has run, then assigns every variable (a refusal midway leaves the model as it was)."""

    def __init__(self, init: Initializer, bias: Initializer | float | None, recurrent: Initializer, seed: int | None,
                 policy: str) -> None:  # fmt: skip
        self.init, self.bias, self.recurrent, self.policy = init, bias, recurrent, policy
        self.rng = np.random.default_rng(seed)
        self.plans: list[Plan] = []
        self.notes: list[str] = []
        self.mismatches: dict[tuple[str, str], list[tuple[float, float]]] = {}

    @property
    def rows(self) -> list[LayerInit]:
        return [plan.row for plan in self.plans if plan.row is not None]

    def plan(self, layer: Any, variable: Any, fill: Fill, row: LayerInit, dist: f.Dist | None) -> Plan:
        self.plans.append(Plan(*_holder(layer, variable), fill, variable.path, row, dist=dist))
        return self.plans[-1]

    def draw(self) -> None:
        """Every plan's value, in plan order from the one generator (zeroed, multiplied, its fixed entries set), then
        every variable assigned."""
        values = []
        for plan in self.plans:
            variable = getattr(plan.module, plan.pname)
            value = np.zeros(tuple(int(n) for n in variable.shape))
            if not plan.zero:
                plan.fill(value, self.rng)
                value *= plan.scale
            for fix in plan.fixed:
                fix(value)
            values.append((variable, value))
        for variable, value in values:
            variable.assign(value.astype(np.dtype(str(variable.dtype).replace("torch.", ""))))

    def weight(self, layer: Any, variable: Any, layer_fans: Fans, act: Activation | None, source: str,
               init: Initializer | None = None, fixed_gain: float | None = None) -> None:  # fmt: skip
        init = init or self.init
        gain, how = weight_gain(init, act, source, self.policy, fixed_gain)
        shape = tuple(int(n) for n in variable.shape)
        dist = init.dist(layer_fans, gain)
        std = target_std(dist, shape[::-1])
        record_gain(self.mismatches, init, act, how, std, layer_fans.fan_in)
        shown = gain if gain is not None else init.scheme.default_gain
        row = LayerInit(variable.path, type(layer).__name__, shape, layer_fans.fan_in, layer_fans.fan_out, init.name,
                        std, shown if init.scheme.gain_param else None, act.name if act else "linear", how)  # fmt: skip
        self.plan(layer, variable, functools.partial(_scheme_fill, init, layer_fans, gain), row, dist)

    def constant(self, layer: Any, variable: Any, value: float, label: str) -> Plan:
        row = LayerInit(variable.path, type(layer).__name__, tuple(int(n) for n in variable.shape), None, None, label,
                        0.0, None, "-", "bias" if label != "ones" else "norm")  # fmt: skip
        dist = f.Constant(value)
        return self.plan(layer, variable, functools.partial(_dist_fill, dist), row, dist)

    def embedding(self, layer: Any, table: Any) -> None:
        """A lookup table as torch's ``initialize`` draws one: the scheme's own embedding rule (small_embedding),
        else the scheme with gain 1."""
        table_fans = fans(tuple(table.shape), layer="embedding", layout="keras")
        rule = self.init.scheme.embedding_rule
        if rule is None:
            self.weight(layer, table, table_fans, None, "lookup", fixed_gain=1.0)
            return
        shape = tuple(int(n) for n in table.shape)
        dist = rule(table_fans, self.init.params)
        row = LayerInit(table.path, type(layer).__name__, shape, table_fans.fan_in, table_fans.fan_out,
                        f"{self.init.name} (embedding)", target_std(dist, shape), None, "linear", "lookup")  # fmt: skip
        self.plan(layer, table, functools.partial(_dist_fill, dist), row, dist)

    def bias_of(self, layer: Any, variable: Any | None, layer_fans: Fans, act: Activation | None = None) -> None:
        """The bias as torch's ``initialize`` draws it: the ``bias=`` given, else the scheme's own bias rule
        (``critical``: σ_b² of its point on the edge of chaos, for the activation after the layer), else zeros."""
        if variable is None:
            return
        shape = tuple(int(n) for n in variable.shape)
        if self.bias is None and self.init.scheme.bias_rule is not None:
            dist, label = self.init.scheme.bias_rule(act, layer_fans, self.init.params), f"{self.init.name} bias"
        elif isinstance(self.bias, Initializer):
            dist, label = self.bias.dist(layer_fans), self.bias.name
        else:
            self.constant(layer, variable, float(self.bias or 0.0), "constant" if self.bias else "zeros")
            return
        row = LayerInit(variable.path, type(layer).__name__, shape, None, None, label, target_std(dist, shape), None,
                        "-", "bias")  # fmt: skip
        self.plan(layer, variable, functools.partial(_dist_fill, dist), row, dist)


def _holder(layer: Any, variable: Any) -> tuple[Any, str]:
    """The layer (or its recurrent cell) and the attribute that hold ``variable``: a plan's module and name."""
    for owner in (layer, getattr(layer, "cell", None)):
        for name in ("kernel", "bias", "embeddings", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel",
                     "gamma", "beta", "scale"):  # fmt: skip
            if owner is not None and getattr(owner, name, None) is variable:
                return owner, name
    raise AssertionError(f"{variable.path} is no variable of {layer.name}")


def _scheme_fill(init: Initializer, layer_fans: Fans, gain: float | None, out: np.ndarray, rng: Any) -> None:
    out[...] = init.numpy(out.shape, rng, layout="keras", fans=layer_fans, gain=gain, dtype=np.float64)


def _dist_fill(dist: f.Dist, out: np.ndarray, rng: Any) -> None:
    out[...] = draw(out.shape, dist, rng, np.float64)


def _activation_of(layer: Any, after: Any | None) -> tuple[Activation | None, str]:
    """The activation after a layer: its own, else that of a weightless activation layer right after it."""
    own = keras_activation(layer)
    if own is None and after is not None and not after.weights:
        following = keras_activation(after)
        if following is not None:
            return following, "next layer"
    return own, "layer"


def initialize_keras(
    model: Any,
    init: Initializer,
    bias: Initializer | float | None,
    recurrent: Initializer,
    generator: torch.Generator | None,
    policy: str,
) -> InitReport:
    """Initialize a Keras model in place (see the module's docstring) and report every variable."""
    seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    walk = plan_keras(model, init, bias, recurrent, policy, seed)
    walk.draw()
    return InitReport(walk.rows, init.name, notes_on_gains(walk.mismatches) + walk.notes)


def plan_keras(model: Any, init: Initializer, bias: Initializer | float | None, recurrent: Initializer, policy: str,
               seed: int | None = None) -> _Walk:  # fmt: skip
    """Every variable's plan, after the role rules; nothing drawn (``initialize`` draws them, ``verify`` compares)."""
    if not getattr(model, "built", True) or not model.weights:
        raise fail("the Keras model has no weights yet", accepted="a built Keras model",
                   fix="Build it first: give it an keras.Input(...) or call model.build(input_shape).")  # fmt: skip
    walk = _Walk(init, bias, recurrent, seed, policy)
    layers = list(keras_layers(model)) or [model]
    for i, layer in enumerate(layers):
        after = layers[i + 1] if i + 1 < len(layers) else None
        _one(walk, layer, after)
    _roles(walk, init)
    return walk


def _roles(walk: _Walk, init: Initializer) -> None:
    """The scheme's role rules, on the plans as on torch's: µP's readout (the last layer with a kernel) zeroed.
    Query projections (Keras' MultiHeadAttention keeps its own initialization) and the residual rules (initlab reads
    residual branches from a torch forward pass) cannot be applied here, and the report says so."""
    if "readout" in init.scheme.zero:
        kernels = [p for p in walk.plans if p.pname in ("kernel", "pointwise_kernel") and p.module is not None]
        readout = kernels[-1].module if kernels else None
        for plan in walk.plans:
            if plan.module is readout and plan.pname in ("kernel", "pointwise_kernel", "bias"):
                plan.zeroed("")
    if "query" in init.scheme.zero:
        walk.notes.append(f"{init.name} zeroes attention's query projections; a Keras MultiHeadAttention keeps Keras' "
                          "initialization")  # fmt: skip
    if init.scheme.residual_rule:
        walk.notes.append(f"{init.name}'s residual rule ({init.scheme.residual_rule}) was not applied: initlab reads "
                          "residual branches from a torch model's forward pass, not from a Keras model")  # fmt: skip


def _one(walk: _Walk, layer: Any, after: Any | None) -> None:
    kind = type(layer).__name__
    if not layer.weights:
        return
    if kind in _NORMS:
        for name, value in (("gamma", 1.0), ("beta", 0.0), ("scale", 1.0)):
            variable = getattr(layer, name, None)
            if hasattr(variable, "assign"):  # BatchNormalization's `scale` is a flag, RMSNormalization's a weight
                walk.constant(layer, variable, value, "ones" if value else "zeros")
        return
    cell = getattr(layer, "cell", None)
    if cell is not None and type(cell).__name__ in _GATES:
        _recurrent(walk, layer, cell)
        return
    act, source = _activation_of(layer, after)
    if kind == "Embedding":
        walk.embedding(layer, layer.embeddings)
        return
    names = (("depthwise_kernel", "depthwise"), ("kernel", None), ("pointwise_kernel", None))
    kernels = [(getattr(layer, a), k) for a, k in names if getattr(layer, a, None) is not None]
    if not kernels or kind.startswith("EinsumDense") or kind == "MultiHeadAttention":
        walk.notes.append(f"{layer.name} ({kind}) keeps Keras' initialization: initlab does not know its fans.")
        return
    for i, (variable, layer_kind) in enumerate(kernels):
        depthwise = layer_kind == "depthwise" or kind.startswith("DepthwiseConv")
        transpose = "Transpose" in kind
        layer_fans = fans(tuple(variable.shape),
                          layer="depthwise" if depthwise else "conv_transpose" if transpose else None,
                          layout="keras", groups=int(getattr(layer, "groups", 1) or 1))  # fmt: skip
        last = i == len(kernels) - 1
        walk.weight(layer, variable, layer_fans, act if last else None, source if last else "depthwise then pointwise")
    walk.bias_of(layer, getattr(layer, "bias", None), layer_fans, act)


def _recurrent(walk: _Walk, layer: Any, cell: Any) -> None:
    kind, gates = _GATES[type(cell).__name__]
    act, _ = _activation_of(cell, None)
    walk.weight(layer, cell.kernel, fans(tuple(cell.kernel.shape), layer=kind, layout="keras"), act, "cell")
    units = int(cell.recurrent_kernel.shape[0])
    row = LayerInit(cell.recurrent_kernel.path, type(layer).__name__, tuple(cell.recurrent_kernel.shape), units, units,
                    f"{walk.recurrent.name} per gate", 1 / math.sqrt(units), 1.0, act.name if act else "linear",
                    "recurrent")  # fmt: skip
    fill = functools.partial(_gates_fill, walk.recurrent, units, gates)
    walk.plan(layer, cell.recurrent_kernel, fill, row, walk.recurrent.dist(Fans(units, units), 1.0))
    bias = getattr(cell, "bias", None)
    if bias is not None:
        plan = walk.constant(layer, bias, 0.0, "zeros")
        if kind == "lstm" and getattr(cell, "unit_forget_bias", True):
            plan.fixed.append(functools.partial(_forget_gate, units))  # Keras' gate order i, f, c, o
            assert plan.row is not None
            plan.row.scheme = "zeros, forget gate 1"


def _gates_fill(init: Initializer, units: int, gates: int, out: np.ndarray, rng: Any) -> None:
    """A recurrent kernel (units, gates·units): each gate's block drawn on its own (orthogonal per gate)."""
    out[...] = np.concatenate([init.numpy((units, units), rng, dtype=np.float64, layout="keras")
                               for _ in range(gates)], axis=1)  # fmt: skip


def _forget_gate(units: int, bias: np.ndarray) -> None:
    bias[units : 2 * units] = 1.0
