"""Predict per-layer forward and backward variance through a concrete model, from its actual parameters.

Mean-field propagation with the model's *current* weights (so it predicts torch's default, He, Glorot,
anything): every unit (or conv channel) carries the mean and variance of a Gaussian over inputs.

* Linear / Conv (any groups): ``mean' = W·mean + b`` and ``var' = (W∘W)·var``, exact for independent inputs;
  for convolutions each kernel tap is weighted by the fraction of output positions where it lands inside
  the input (zero padding), and the means and variances are per channel.
* activations: ``E[φ(h)]`` and ``Var φ(h)`` for ``h ~ N(mean_i, var_i)`` by quadrature, per unit.
* BatchNorm (train mode: ``mean' = β``, ``var' = γ²``; eval mode: the running statistics), LayerNorm and
  GroupNorm (normalized by the population moments), Dropout (train mode), residual additions (independent
  summands), flatten, average pooling (positions taken as independent: an approximation, flagged).
* backward, relative to the output: gradient second moments go back through ``(W∘W)ᵀ``, ``E[φ'(h)²]``,
  ``γ²/var`` and ``1/(1-p)``, summing over the uses of a value (the gradient-independence assumption of
  Schoenholz et al. 2017).

Layers it does not model (max pooling, attention, recurrent layers, arbitrary functions) are reported as
unsupported, and everything downstream of them too, instead of guessed.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from initlab._errors import fail
from initlab._quadrature import normal_nodes
from initlab._tables import Rows
from initlab.init._keras_model import is_keras_model
from initlab.init._tracing import trace
from initlab.init.activations import FUNCTIONS, METHODS, Activation, activation, is_activation_module

__all__ = ["LayerPrediction", "Prediction", "predict"]


@dataclasses.dataclass
class Stat:
    """Per-unit (or per-channel) mean and variance of a value; ``positions`` per channel (1 for features)."""

    mean: Tensor
    var: Tensor
    positions: int = 1

    @property
    def population_var(self) -> float:
        """Variance over all elements and inputs: within-unit variance plus spread of the unit means."""
        return float(self.var.mean() + self.mean.pow(2).mean() - self.mean.mean() ** 2)


@dataclasses.dataclass
class LayerPrediction:
    """One value in the model: its predicted forward variance and its gradient second moment."""

    name: str
    kind: str
    shape: tuple[int, ...]
    forward_var: float | None
    backward_var: float | None
    note: str = ""


@dataclasses.dataclass
class Prediction(Rows):
    """Per-layer predicted forward variance and backward gradient variance (relative to the output's)."""

    rows: list[LayerPrediction]
    input_var: float = 1.0
    title: ClassVar[str] = "initlab.predict"
    columns: ClassVar[tuple[str, ...]] = ("name", "kind", "shape", "forward_var", "backward_var", "note")


class Unsupported(Exception):
    """A node this propagation does not model."""


def _gaussian(fn: Callable[[Tensor], Tensor], stat: Stat) -> Tensor:
    z, w = normal_nodes(12, 8)
    x = stat.mean[..., None] + stat.var.clamp_min(0).sqrt()[..., None] * z
    return (fn(x) * w).sum(-1)


def _act_forward(act: Activation, s: Stat) -> Stat:
    m1 = _gaussian(act.fn, s)
    m2 = _gaussian(lambda x: act(x) ** 2, s)
    return Stat(m1, (m2 - m1**2).clamp_min(0), s.positions)


def _coverage(conv: nn.modules.conv._ConvNd, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> Tensor:
    """Fraction of output positions at which each kernel tap reads inside the (zero-padded) input."""
    cover = torch.ones((), dtype=torch.float64)
    for d, (n_in, n_out, k) in enumerate(zip(in_size, out_size, conv.kernel_size, strict=True)):
        stride, dil = conv.stride[d], conv.dilation[d]
        # padding="same"/"valid" strings: recover the left padding from the sizes
        implicit = ((n_out - 1) * stride + (k - 1) * dil + 1 - n_in) // 2
        pad = implicit if isinstance(conv.padding, str) else int(conv.padding[d])
        p = torch.arange(n_out)[:, None] * stride + torch.arange(k)[None, :] * dil - pad
        frac = ((p >= 0) & (p < n_in)).double().mean(0)
        cover = cover[..., None] * frac
    return cover


class _Propagator:
    def __init__(self, graph: fx.GraphModule) -> None:
        self.graph = graph
        self.modules = dict(graph.named_modules())
        self.stats: dict[fx.Node, Stat] = {}
        self.backward: dict[fx.Node, Callable[[Tensor], dict[fx.Node, Tensor]]] = {}
        self.notes: dict[fx.Node, str] = {}

    # -- forward ---------------------------------------------------------------------------------------
    def run(self, input_stat: Stat) -> None:
        broken: str | None = None
        for node in self.graph.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                if node.op == "placeholder":
                    self.stats[node] = input_stat
                continue
            if broken is not None:
                self.notes[node] = f"not predicted: after {broken}"
                continue
            try:
                self.stats[node] = self._forward(node)
            except Unsupported as reason:
                broken = label(node)
                self.notes[node] = f"unsupported: {reason}"

    def _arg(self, node: fx.Node, i: int = 0) -> tuple[fx.Node, Stat]:
        arg = node.args[i]
        if not isinstance(arg, fx.Node) or arg not in self.stats:
            raise Unsupported(f"argument {i} of {node.name} is not a tensor this propagation tracks")
        return arg, self.stats[arg]

    def _forward(self, node: fx.Node) -> Stat:
        if node.op == "call_module":
            return self._module(node, self.modules[str(node.target)])
        act = _function_activation(node)
        if act is not None:
            return self._activation(node, act)
        if node.op == "call_function" and node.target in (operator.add, torch.add, operator.iadd):
            return self._add(node)
        if (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target in ("flatten", "view", "reshape")
        ):
            return self._flatten(node)
        raise Unsupported(f"{node.op} {getattr(node.target, '__name__', node.target)}")

    def _module(self, node: fx.Node, m: nn.Module) -> Stat:
        if is_activation_module(m):
            return self._activation(node, activation(m))
        handlers: list[tuple[type | tuple[type, ...], Callable[[fx.Node, Any], Stat]]] = [
            (nn.Linear, self._linear),
            ((nn.Conv1d, nn.Conv2d, nn.Conv3d), self._conv),
            (nn.modules.batchnorm._BatchNorm, self._batchnorm),
            ((nn.LayerNorm, nn.GroupNorm), self._layernorm),
            ((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d), self._dropout),
            ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
              nn.AdaptiveAvgPool3d), self._avgpool),
            (nn.Flatten, self._flatten_module),
            (nn.Identity, self._identity),
        ]  # fmt: skip
        for kinds, handler in handlers:
            if isinstance(m, kinds):
                return handler(node, m)
        raise Unsupported(type(m).__name__)

    def _identity(self, node: fx.Node, m: nn.Module) -> Stat:
        src, s = self._arg(node)
        self.backward[node] = lambda g: {src: g}
        return s

    def _activation(self, node: fx.Node, act: Activation) -> Stat:
        src, s = self._arg(node)
        slope = _gaussian(lambda x: act.derivative(x) ** 2, s)
        self.backward[node] = lambda g: {src: g * slope}
        return _act_forward(act, s)

    def _linear(self, node: fx.Node, m: nn.Linear) -> Stat:
        src, s = self._arg(node)
        if s.positions != 1 or s.mean.numel() != m.in_features:
            raise Unsupported("Linear on a tensor of rank > 2")
        w = m.weight.detach().double()
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(m.out_features, dtype=torch.float64)
        w2 = w * w
        self.backward[node] = lambda g: {src: w2.T @ g}
        return Stat(w @ s.mean + b, w2 @ s.var)

    def _conv(self, node: fx.Node, m: nn.modules.conv._ConvNd) -> Stat:
        src, s = self._arg(node)
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        cover = _coverage(m, in_shape[2:], out_shape[2:])
        w = m.weight.detach().double()
        g_, co, ci = m.groups, m.out_channels // m.groups, m.in_channels // m.groups
        w_sum = (w * cover).flatten(2).sum(-1).reshape(g_, co, ci)
        w2_sum = (w * w * cover).flatten(2).sum(-1).reshape(g_, co, ci)
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(m.out_channels, dtype=torch.float64)
        mean = torch.einsum("goc,gc->go", w_sum, s.mean.reshape(g_, ci)).reshape(-1) + b
        var = torch.einsum("goc,gc->go", w2_sum, s.var.reshape(g_, ci)).reshape(-1)
        positions = math.prod(out_shape[2:])
        ratio = positions / max(s.positions, 1)

        def back(g: Tensor) -> dict[fx.Node, Tensor]:
            return {src: ratio * torch.einsum("goc,go->gc", w2_sum, g.reshape(g_, co)).reshape(-1)}

        self.backward[node] = back
        return Stat(mean, var, positions)

    def _batchnorm(self, node: fx.Node, m: nn.modules.batchnorm._BatchNorm) -> Stat:
        src, s = self._arg(node)
        gamma = m.weight.detach().double() if m.weight is not None else torch.ones_like(s.var)
        beta = m.bias.detach().double() if m.bias is not None else torch.zeros_like(s.var)
        if m.training or m.running_var is None:
            scale = gamma**2 / (s.var + m.eps)
            self.backward[node] = lambda g: {src: g * scale}
            return Stat(beta.clone(), gamma**2, s.positions)
        rv, rm = m.running_var.double() + m.eps, m.running_mean.double()  # type: ignore[union-attr]
        self.backward[node] = lambda g: {src: g * gamma**2 / rv}
        return Stat(gamma * (s.mean - rm) / rv.sqrt() + beta, gamma**2 * s.var / rv, s.positions)

    def _layernorm(self, node: fx.Node, m: nn.LayerNorm | nn.GroupNorm) -> Stat:
        src, s = self._arg(node)
        if isinstance(m, nn.GroupNorm) and m.num_groups != 1:
            raise Unsupported("GroupNorm with more than one group")
        pop_mean, pop_var = s.mean.mean(), s.population_var + 1e-12
        gamma = m.weight.detach().double().reshape(-1) if m.weight is not None else torch.ones_like(s.var)
        beta = m.bias.detach().double().reshape(-1) if m.bias is not None else torch.zeros_like(s.var)
        if gamma.numel() != s.var.numel():
            raise Unsupported("a norm whose affine shape differs from the tracked units")
        self.backward[node] = lambda g: {src: g * gamma**2 / pop_var}
        return Stat(gamma * (s.mean - pop_mean) / math.sqrt(pop_var) + beta, gamma**2 * s.var / pop_var, s.positions)

    def _dropout(self, node: fx.Node, m: nn.Module) -> Stat:
        src, s = self._arg(node)
        p = float(getattr(m, "p", 0.0)) if m.training else 0.0
        self.backward[node] = lambda g: {src: g / (1 - p)}
        return Stat(s.mean, (s.var + s.mean**2) / (1 - p) - s.mean**2, s.positions)

    def _avgpool(self, node: fx.Node, m: nn.Module) -> Stat:
        src, s = self._arg(node)
        positions = math.prod(_shape(node)[2:])
        window = max(s.positions // max(positions, 1), 1)
        self.notes[node] = "approximate: pooled positions taken as independent"
        self.backward[node] = lambda g: {src: g / window**2}
        return Stat(s.mean, s.var / window, positions)

    def _flatten_module(self, node: fx.Node, m: nn.Flatten) -> Stat:
        if m.start_dim != 1 or m.end_dim != -1:
            raise Unsupported("Flatten of other dims than 1..-1")
        return self._flatten(node)

    def _flatten(self, node: fx.Node) -> Stat:
        src, s = self._arg(node)
        out = _shape(node)
        if len(out) != 2:
            raise Unsupported("a reshape other than flattening to (batch, features)")
        rep = s.positions

        def back(g: Tensor) -> dict[fx.Node, Tensor]:
            return {src: g.reshape(-1, rep).mean(-1)}

        self.backward[node] = back
        return Stat(s.mean.repeat_interleave(rep), s.var.repeat_interleave(rep), 1)

    def _add(self, node: fx.Node) -> Stat:
        (a, sa), (b, sb) = self._arg(node, 0), self._arg(node, 1)
        if sa.mean.shape != sb.mean.shape:
            raise Unsupported("an addition of differently shaped values")
        self.backward[node] = lambda g: {a: g, b: g}
        return Stat(sa.mean + sb.mean, sa.var + sb.var, sa.positions)

    # -- backward --------------------------------------------------------------------------------------
    def run_backward(self) -> dict[fx.Node, Tensor]:
        grads: dict[fx.Node, Tensor] = {}
        nodes = list(self.graph.graph.nodes)
        output = next(n for n in nodes if n.op == "output")
        final = output.args[0]
        if isinstance(final, fx.Node) and final in self.stats:
            grads[final] = torch.ones_like(self.stats[final].var)
        for node in reversed(nodes):
            if node in grads and node in self.backward:
                for src, g in self.backward[node](grads[node]).items():
                    grads[src] = grads[src] + g if src in grads else g
        return grads


def _function_activation(node: fx.Node) -> Activation | None:
    if node.op == "call_function" and node.target in FUNCTIONS:
        return activation(FUNCTIONS[node.target])
    if node.op == "call_method" and node.target in METHODS:
        return activation(METHODS[str(node.target)])
    return None


def _shape(node: Any) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        raise Unsupported(f"no shape for {node}")
    return tuple(meta.shape)


def label(node: fx.Node) -> str:
    """How rows name a value: the module's path, or the traced function's node name."""
    return str(node.target) if node.op == "call_module" else node.name


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__
    return str(getattr(node.target, "__name__", node.target))


def input_stat(shape: tuple[int, ...], mean: Tensor | float = 0.0, var: Tensor | float = 1.0) -> Stat:
    """The statistics of an input of per-example ``shape``: per feature for (F,), per channel otherwise."""
    units = shape[0] if len(shape) > 1 else (shape[0] if shape else 1)
    positions = math.prod(shape[1:]) if len(shape) > 1 else 1
    m = torch.as_tensor(mean, dtype=torch.float64).expand(units).clone()
    v = torch.as_tensor(var, dtype=torch.float64).expand(units).clone()
    return Stat(m, v, positions)


def propagate(model: nn.Module, in_shape: tuple[int, ...], stat: Stat) -> tuple[Prediction, fx.GraphModule]:
    """Forward and backward propagation of ``stat`` through ``model``; rows for every traced value."""
    if is_keras_model(model):
        raise fail(
            "predict and audit read a torch model's layers (nn.Linear, nn.Conv2d, ...); a Keras model is not "
            "supported yet",
            received=type(model).__name__,
            fix="Build the same network in torch for predict/audit; for Keras, initlab.initialize(keras_model, ...) "
            "assigns the weights and initlab.keras.Monitor watches model.fit.",
        )
    graph = trace(model)
    if graph is None:
        raise fail(
            "predict needs a model that torch.fx can trace",
            received=type(model).__name__,
            fix="Remove data-dependent control flow from forward(), or predict a traceable sub-module.",
        )
    with torch.no_grad():
        ShapeProp(graph).propagate(torch.zeros(2, *in_shape))
    prop = _Propagator(graph)
    prop.run(stat)
    grads = prop.run_backward()
    rows = []
    for node in graph.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        s, g = prop.stats.get(node), grads.get(node)
        rows.append(LayerPrediction(
            label(node), _kind(node, prop.modules),
            tuple(_shape(node)[1:]) if hasattr(node.meta.get("tensor_meta"), "shape") else (),
            s.population_var if s is not None else None,
            float(g.mean()) if g is not None else None, prop.notes.get(node, ""),
        ))  # fmt: skip
    return Prediction(rows), graph


def predict(model: nn.Module, input_shape: tuple[int, ...] | int, input_var: float = 1.0) -> Prediction:
    """Predict per-layer forward variance and backward gradient variance from the model's current parameters.

    Args:
        model: a traceable ``nn.Module``; its train/eval mode decides BatchNorm and Dropout behaviour.
        input_shape: the shape of one example (``784`` or ``(1, 28, 28)``).
        input_var: the variance of every input element (inputs taken as independent with mean 0).

    Returns:
        A :class:`Prediction`: per value, ``forward_var`` (variance over inputs and units) and
        ``backward_var`` (gradient second moment, relative to the output's).

    >>> from initlab import initialize
    >>> net = nn.Sequential(nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 500))
    >>> _ = initialize(net, "kaiming_normal", activation={"2": "relu"}, generator=torch.Generator().manual_seed(0))
    >>> [round(r.forward_var, 1) for r in predict(net, 500)]  # He: 2·input_var; relu: Var = q(1/2 - 1/2π)
    [2.0, 0.7, 1.9]
    """
    if isinstance(input_var, bool) or not isinstance(input_var, int | float) or not 0 < input_var < math.inf:
        raise fail("input_var must be a finite variance > 0", accepted="a number > 0, e.g. 1.0 for standardized "
                   "inputs", received=input_var, fix="Pass the variance of one input element.")  # fmt: skip
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    return propagate(model, shape, input_stat(shape, 0.0, input_var))[0]
