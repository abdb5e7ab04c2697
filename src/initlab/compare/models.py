"""Configurable models for experiments: ``mlp``, ``cnn`` and ``rnn`` classifiers and a ``transformer`` language
model (:mod:`initlab.compare.transformer`), each built from plain options.

Every model keeps its activation as a module, so ``initialize`` and the monitor find it, and exposes
``model.activation`` (the name) for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn.utils import parametrizations

from initlab._errors import fail, unknown_name
from initlab.init.activations import activation_module

__all__ = ["MAX_PARAMETERS", "MODEL_KINDS", "NORMS", "ModelSpec", "build", "parameter_count"]

NORMS: tuple[str, ...] = ("none", "batch", "layer")
MODEL_KINDS: tuple[str, ...] = ("mlp", "cnn", "rnn", "transformer")
RNN_CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")


@dataclass(frozen=True)
class ModelSpec:
    """What to build. ``in_shape`` is one example's shape: ``(features,)``, ``(C, H, W)``, ``(T, features)`` or,
    for the transformer, ``(T,)`` token ids (``classes`` is then the vocabulary)."""

    kind: str = "mlp"
    depth: int = 5  # hidden layers (mlp), conv layers (cnn) or recurrent layers (rnn)
    width: int = 128  # hidden units, channels, or hidden size
    activation: str = "relu"
    norm: str = "none"  # "batch" or "layer" after each hidden linear/conv, before the activation
    dropout: float = 0.0
    weight_norm: bool = False  # Salimans & Kingma (2016)
    residual: bool = False  # x + f(x) blocks of [linear/conv, norm, act] (He et al. 2016)
    groups: int = 1  # cnn only
    cell: str = "rnn"  # rnn only: rnn, lstm, gru
    norm_position: str = "pre"  # transformer only: pre, post or deepnorm (post-LN with DeepNet's α)
    heads: int = 4  # transformer only
    tied: bool = False  # transformer only: the output layer shares the token embedding


def _norm(norm: str, width: int, conv: bool) -> nn.Module | None:
    if norm == "none":
        return None
    if norm == "batch":
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if norm == "layer":
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    raise unknown_name("norm", norm, NORMS)


def _layer(layer: nn.Module, spec: ModelSpec) -> nn.Module:
    return parametrizations.weight_norm(layer) if spec.weight_norm else layer


def _block(layer: nn.Module, spec: ModelSpec, conv: bool) -> list[nn.Module]:
    parts: list[nn.Module] = [_layer(layer, spec)]
    norm = _norm(spec.norm, spec.width, conv)
    if norm is not None:
        parts.append(norm)
    parts.append(activation_module(spec.activation))
    if spec.dropout > 0:
        parts.append(nn.Dropout2d(spec.dropout) if conv else nn.Dropout(spec.dropout))
    return parts


class Residual(nn.Module):
    """``x + f(x)``: the skip connection of He et al. (2016)."""

    def __init__(self, *body: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _stack(first: nn.Module, make: type[nn.Module], spec: ModelSpec, conv: bool) -> list[nn.Module]:
    layers: list[nn.Module] = _block(first, spec, conv)
    for _ in range(spec.depth - 1):
        layer = make(spec.width, spec.width, 3, padding=1, groups=spec.groups) if conv else make(spec.width, spec.width)
        block = _block(layer, spec, conv)
        layers.append(Residual(*block) if spec.residual else nn.Sequential(*block))
    return layers


def mlp(spec: ModelSpec, in_features: int, classes: int) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear classifier."""
    hidden = _stack(nn.Linear(in_features, spec.width), nn.Linear, spec, conv=False)
    return nn.Sequential(nn.Flatten(), *hidden, nn.Linear(spec.width, classes))


def cnn(spec: ModelSpec, in_shape: tuple[int, ...], classes: int) -> nn.Sequential:
    """``depth`` 3×3 same-size convolutions of ``width`` channels, global average pooling, a linear classifier."""
    if len(in_shape) == 2:
        in_shape = (1, *in_shape)
    if len(in_shape) != 3:
        raise fail("a cnn needs image inputs", accepted="(H, W) or (C, H, W) per example", received=in_shape)
    if spec.width % spec.groups:
        raise fail(f"groups={spec.groups} does not divide width={spec.width}", accepted="a divisor of width")
    first = nn.Conv2d(in_shape[0], spec.width, 3, padding=1)
    hidden = _stack(first, nn.Conv2d, spec, conv=True)
    return nn.Sequential(*hidden, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.width, classes))


class RecurrentClassifier(nn.Module):
    """An RNN/LSTM/GRU over a sequence ``(batch, T, features)``; the last hidden state feeds a linear classifier."""

    def __init__(self, spec: ModelSpec, features: int, classes: int) -> None:
        super().__init__()
        if spec.cell not in RNN_CELLS:
            raise unknown_name("recurrent cell", spec.cell, RNN_CELLS)
        cell = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]
        kwargs = {"nonlinearity": spec.activation} if spec.cell == "rnn" else {}
        if spec.cell == "rnn" and spec.activation not in ("tanh", "relu"):
            raise fail(
                "torch's nn.RNN supports tanh and relu only",
                received=spec.activation,
                fix="Use --activation tanh or relu, or cell lstm/gru.",
            )
        self.rnn = cell(features, spec.width, spec.depth, batch_first=True, dropout=spec.dropout, **kwargs)
        self.head = nn.Linear(spec.width, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


MAX_PARAMETERS = 2**31  # 8 GiB of float32 weights: more than a model of this tool's kind should ever need


def parameter_count(spec: ModelSpec, in_shape: tuple[int, ...], classes: int) -> int:
    """The number of weights ``build`` would create (biases and norm scales included), without building it.

    >>> parameter_count(ModelSpec("mlp", depth=2, width=8), (4,), 3)
    139
    """
    features, w, d = math.prod(in_shape), spec.width, spec.depth
    if spec.kind == "cnn":
        channels = in_shape[0] if len(in_shape) == 3 else 1
        hidden = channels * w * 9 + (d - 1) * w * (w // max(spec.groups, 1)) * 9
    elif spec.kind == "transformer":
        tokens, blocks = classes * w * (1 if spec.tied else 2) + in_shape[0] * w, d * (12 * w * w + 13 * w)
        return int(tokens + blocks + (2 * w if spec.norm_position == "pre" else 0))
    elif spec.kind == "rnn":
        gates = {"lstm": 4, "gru": 3}.get(spec.cell, 1)
        hidden = gates * (in_shape[-1] * w + (2 * d - 1) * w * w + 2 * d * w) - d * w  # its own biases
    else:
        hidden = features * w + (d - 1) * w * w
    norms = 2 * d * w if spec.norm != "none" else 0
    return int(hidden + d * w + norms + w * classes + classes)


def build(spec: ModelSpec, in_shape: tuple[int, ...], classes: int) -> nn.Module:
    """Build the model a spec describes for inputs of ``in_shape`` (one example) and ``classes`` outputs.

    >>> import torch
    >>> build(ModelSpec("mlp", depth=2, width=8), (4,), 3)(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
    """
    if spec.depth < 1 or spec.width < 1:
        raise fail("depth and width must be at least 1", received=(spec.depth, spec.width))
    if not 0 <= spec.dropout < 1:
        raise fail("dropout is a probability", accepted="0 <= dropout < 1", received=spec.dropout)
    count = parameter_count(spec, in_shape, classes)
    if count > MAX_PARAMETERS:  # checked before allocating: `init --width 1000000000` asked torch for 256 GB
        raise fail(f"a {spec.kind} of depth {spec.depth} and width {spec.width} would have {count:,} parameters "
                   f"({4 * count / 2**30:,.0f} GiB as float32)", accepted=f"at most {MAX_PARAMETERS:,} parameters",
                   received=(spec.depth, spec.width), fix="Use a smaller width or depth.")  # fmt: skip
    if spec.kind == "mlp":
        model: nn.Module = mlp(spec, math.prod(in_shape), classes)
    elif spec.kind == "cnn":
        model = cnn(spec, in_shape, classes)
    elif spec.kind == "rnn":
        model = RecurrentClassifier(spec, in_shape[-1], classes)
    elif spec.kind == "transformer":
        from initlab.compare.transformer import TransformerLM

        model = TransformerLM(classes, in_shape[0], spec.width, spec.depth, spec.heads, activation=spec.activation,
                              norm_position=spec.norm_position, tied=spec.tied)  # fmt: skip
    else:
        raise unknown_name("model", spec.kind, MODEL_KINDS)
    model.activation = spec.activation  # type: ignore[assignment]
    return model
