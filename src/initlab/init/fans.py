"""Fan-in and fan-out of a weight tensor, for every layer type and both torch and Keras layouts.

The fans are how many inputs feed one output unit (``fan_in``, what the forward pass sums over) and how many
outputs one input unit feeds (``fan_out``, what the backward pass sums over). Variance-scaling initializers
divide by one of them, so a wrong fan is a wrongly scaled layer. Nothing else in initlab computes fans.

Where initlab differs from ``torch.nn.init._calculate_fan_in_and_fan_out`` (on purpose):

* grouped and depthwise convolutions: torch's ``fan_out`` is ``out * prod(k)``, ``groups`` times too large,
  because each output channel only sees ``in / groups`` inputs and each input only feeds ``out / groups``
  outputs (pytorch#23854). initlab gives ``(out / groups) * prod(k)``.
* transposed convolutions store their weight as ``(in, out / groups, k...)``; torch reads dim 1 as the fan
  in. initlab gives ``fan_in = (in / groups) * prod(k)`` and ``fan_out = (out / groups) * prod(k)``, the fans
  of the forward map (exact for stride 1; like torch and Keras, strides are not counted).
* RNN/LSTM/GRU weights stack their gates along dim 0 (1, 4 or 3 blocks): the fans are those of one gate.
* an Embedding is a lookup of one row: ``fan_in = 1``, ``fan_out = embedding_dim``, so ``lecun_normal``
  gives torch's own N(0, 1) and every variance-scaling scheme a unit-scale output.
* Keras' depthwise kernel ``(k..., in, multiplier)``: Keras' ``fan_in = in * prod(k)`` is ``in`` times too
  large; initlab gives ``prod(k)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeGuard

from initlab._errors import fail, unknown_name

if TYPE_CHECKING:  # torch is imported where a tensor or module is looked at: `initlab schemes` starts without it
    import torch
    from torch import nn

__all__ = ["FanMode", "Fans", "LayerKind", "Layout", "fans"]

FanMode = Literal["fan_in", "fan_out", "fan_avg"]
Layout = Literal["torch", "keras"]
LayerKind = Literal["linear", "conv", "conv_transpose", "depthwise", "embedding", "rnn", "lstm", "gru"]
FAN_MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_KINDS: tuple[str, ...] = ("linear", "conv", "conv_transpose", "depthwise", "embedding", "rnn", "lstm", "gru")


@dataclass(frozen=True)
class Fans:
    """Fans of one weight tensor.

    ``receptive_field`` is the number of kernel taps (1 for a dense matrix); it is already included in
    ``fan_in`` and ``fan_out``.
    """

    fan_in: int
    fan_out: int
    receptive_field: int = 1

    def of(self, mode: FanMode | str) -> float:
        """The fan a variance-scaling mode divides by: ``fan_in``, ``fan_out`` or their mean ``fan_avg``.

        >>> Fans(100, 300).of("fan_avg")
        200.0
        """
        if mode == "fan_in":
            return float(self.fan_in)
        if mode == "fan_out":
            return float(self.fan_out)
        if mode == "fan_avg":
            return (self.fan_in + self.fan_out) / 2.0
        raise fail(
            f"unknown fan mode {mode!r}",
            accepted="'fan_in' (keeps forward variance), 'fan_out' (keeps backward variance), "
            "'fan_avg' (Glorot's compromise)",
            fix="Pass one of these as mode=.",
        )


def fans(
    tensor_or_shape: torch.Tensor | Sequence[int],
    layer: nn.Module | LayerKind | str | None = None,
    layout: Layout | str = "torch",
    groups: int = 1,
    *,
    in_axes: Sequence[int] | None = None,
    out_axes: Sequence[int] | None = None,
) -> Fans:
    """Compute the fans of a weight tensor.

    Args:
        tensor_or_shape: the weight tensor or its shape.
        layer: the module that owns the weight, or its kind (``"linear"``, ``"conv"``, ``"conv_transpose"``,
            ``"depthwise"``, ``"embedding"``, ``"rnn"``, ``"lstm"``, ``"gru"``). Without it the kind is read
            from the rank: 2-D is dense, 3-D and more is a convolution.
        layout: ``"torch"`` (``(out, in, k...)``) or ``"keras"`` (channels-last: ``(k..., in, out)``).
        groups: convolution groups (taken from ``layer`` when it is a module).
        in_axes, out_axes: for any other layout, the axes that hold the input and output units; every other
            axis is receptive field (JAX's ``variance_scaling(in_axis=, out_axis=)`` semantics).

    Returns:
        :class:`Fans` with ``fan_in``, ``fan_out`` and ``receptive_field``.

    Raises:
        InitlabError: rank 0/1 shapes, an unknown layer kind or layout, ``groups`` not dividing the channels.

    >>> fans((64, 8, 3, 3), groups=8)   # grouped conv: out=64, in=64, 8 groups
    Fans(fan_in=72, fan_out=72, receptive_field=9)
    >>> fans((3, 3, 16, 32), layout="keras")
    Fans(fan_in=144, fan_out=288, receptive_field=9)
    """
    shape = tuple(int(s) for s in (tensor_or_shape.shape if hasattr(tensor_or_shape, "shape") else tensor_or_shape))
    if in_axes is not None or out_axes is not None:
        return _fans_from_axes(shape, in_axes, out_axes)
    if len(shape) < 2:
        raise fail(
            f"fans need a weight of rank 2 or more, got rank {len(shape)}",
            accepted="a Linear (out, in), conv (out, in/groups, k...) or Keras (k..., in, out) weight",
            received=shape,
            fix="A bias or other 1-D tensor has no fan: use zeros_/constant_/normal_ with an explicit std, "
            "or pass fans=Fans(fan_in, fan_out).",
        )
    if layout == "torch" and len(shape) == 2 and _unknown_dense(layer):
        used = _fans_by_use(layer, shape)
        if used is not None:
            return used
    kind, groups = _kind_and_groups(layer, groups, len(shape))
    if layout == "torch":
        return _torch_fans(shape, kind, groups)
    if layout == "keras":
        return _keras_fans(shape, kind, groups)
    raise unknown_name("layout", layout, ("torch", "keras"))


def _kind_and_groups(layer: nn.Module | str | None, groups: int, rank: int) -> tuple[str, int]:
    if layer is not None and not isinstance(layer, str):  # a module (torch is loaded, as it made one)
        groups = int(getattr(layer, "groups", groups))
        layer = _module_kind(layer)
    if groups < 1:
        raise fail("groups must be a positive integer", accepted="1, 2, ...", received=groups)
    if layer is None:
        return ("linear" if rank == 2 else "conv"), groups
    if layer not in _KINDS:
        raise unknown_name("layer kind", layer, _KINDS)
    return layer, groups


def _module_kind(module: nn.Module) -> str:
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return "embedding"
    if isinstance(module, nn.LSTM | nn.LSTMCell):
        return "lstm"
    if isinstance(module, nn.GRU | nn.GRUCell):
        return "gru"
    if isinstance(module, nn.RNN | nn.RNNCell):
        return "rnn"
    return "linear"


def _unknown_dense(layer: object) -> TypeGuard[nn.Module]:
    """A module with a matrix weight that is none of torch's layers (GPT-2's Conv1D, a custom projection)."""
    if layer is None or isinstance(layer, str):
        return False
    from torch import nn

    known = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag, nn.RNNBase,
             nn.RNNCellBase, nn.MultiheadAttention)  # fmt: skip
    return isinstance(layer, nn.Module) and not isinstance(layer, known)


def _fans_by_use(layer: nn.Module, shape: tuple[int, ...]) -> Fans | None:
    """The fans of an unknown module's weight as its forward pass uses it: it is run on a meta input of each
    width the weight could take (issue 30: torch's rule reversed the fans of Conv1D's (in, out) weight)."""
    import torch

    from initlab.init.structure import capture

    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != shape:
        return None
    for width in dict.fromkeys((shape[1], shape[0])):
        try:  # two rows on the weight's device (meta stays meta: nothing is computed)
            found = capture(layer, torch.zeros(2, width, device=weight.device)).layers.get("weight")
        except Exception:  # that width is not the one it takes
            continue
        if found is not None:
            return Fans(found.use.fan_in, found.use.fan_out, 1)
    return None


def _divide(channels: int, groups: int, what: str) -> int:
    if channels % groups:
        raise fail(
            f"groups={groups} does not divide the {what} channels ({channels})",
            accepted="a groups value that divides both in_channels and out_channels",
            received=groups,
            fix="Pass the layer's own groups (or the module as layer=).",
        )
    return channels // groups


def _torch_fans(shape: tuple[int, ...], kind: str, groups: int) -> Fans:
    rf = math.prod(shape[2:])
    if kind == "embedding":
        return Fans(1, shape[1], 1)
    if kind in _GATES:
        return Fans(shape[1], shape[0] // _GATES[kind], 1)
    if kind == "conv_transpose":  # (in, out/groups, k...)
        return Fans(_divide(shape[0], groups, "input") * rf, shape[1] * rf, rf)
    # Linear (out, in) and conv (out, in/groups, k...): torch#23854 forgets to divide fan_out by groups.
    return Fans(shape[1] * rf, _divide(shape[0], groups, "output") * rf, rf)


def _keras_fans(shape: tuple[int, ...], kind: str, groups: int) -> Fans:
    rf = math.prod(shape[:-2])
    if kind == "embedding":  # (input_dim, output_dim)
        return Fans(1, shape[1], 1)
    if kind in _GATES:  # (in, gates * units)
        return Fans(shape[0], shape[1] // _GATES[kind], 1)
    if kind == "depthwise":  # (k..., in, multiplier): each output sees one input channel
        return Fans(rf, shape[-1] * rf, rf)
    if kind == "conv_transpose":  # Keras stores (k..., out, in)
        return Fans(shape[-1] * rf, shape[-2] * rf, rf)
    return Fans(shape[-2] * rf, _divide(shape[-1], groups, "output") * rf, rf)


def _fans_from_axes(shape: tuple[int, ...], in_axes: Sequence[int] | None, out_axes: Sequence[int] | None) -> Fans:
    if in_axes is None or out_axes is None:
        raise fail(
            "in_axes and out_axes go together",
            accepted="both, as sequences of axes",
            received=(in_axes, out_axes),
        )
    rank = len(shape)
    try:
        ins = {a % rank for a in in_axes}
        outs = {a % rank for a in out_axes}
    except ZeroDivisionError:
        raise fail("a scalar has no axes", received=shape) from None
    if ins & outs or any(not -rank <= a < rank for a in (*in_axes, *out_axes)):
        raise fail(
            "in_axes and out_axes must be distinct axes of the shape",
            received=(in_axes, out_axes),
            fix=f"The shape {shape} has axes 0..{rank - 1}.",
        )
    rf = math.prod(s for i, s in enumerate(shape) if i not in ins | outs)
    return Fans(math.prod(shape[i] for i in ins) * rf, math.prod(shape[i] for i in outs) * rf, rf)
