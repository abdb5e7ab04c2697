"""What an operator does with a weight operand, and the fans of that use (the structure layer's rules, one per
operator: ``linear``, ``addmm`` (GPT-2's Conv1D), ``matmul``, ``conv*``, ``embedding``, ``bilinear``, ``einsum``,
``multi_head_attention_forward`` and the recurrent kernels). fan_in is the dimension the use contracts."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

__all__ = ["operand", "uses"]

_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def operand(args: tuple[Any, ...], kwargs: Any, index: int, name: str, default: Any = None) -> Any:
    """An operator's argument by position, or by keyword where it was passed as one."""
    return args[index] if len(args) > index else kwargs.get(name, default)


Entry = tuple[Any, str, int, int, dict[str, Any]]  # (operand, op, fan_in, fan_out, extra fields of the Use)
_MATMULS = ("matmul", "mm", "bmm", "__matmul__", "__rmatmul__")


def _matrix(t: Any) -> bool:
    return isinstance(t, Tensor) and t.ndim >= 2


def _linear(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    w = operand(args, kwargs, 1, "weight")
    return [(w, "linear", w.shape[-1], w.shape[0], {})] if _matrix(w) else []


def _addmm(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    a, b = operand(args, kwargs, 1, "mat1"), operand(args, kwargs, 2, "mat2")  # y = bias + a @ b
    out: list[Entry] = [(b, "addmm", b.shape[0], b.shape[1], {})] if _matrix(b) else []  # Conv1D: (in, out)
    return out + ([(a, "addmm", a.shape[1], a.shape[0], {})] if _matrix(a) else [])


def _matmul(args: tuple[Any, ...], kwargs: Any, swap: bool = False) -> list[Entry]:
    a, b = (args[1], args[0]) if swap else (args[0], args[1])
    out: list[Entry] = [(b, "matmul", b.shape[-2], b.shape[-1], {})] if _matrix(b) else []
    return out + ([(a, "matmul", a.shape[-1], a.shape[-2], {})] if _matrix(a) else [])


def _conv(args: tuple[Any, ...], kwargs: Any, transposed: bool = False) -> list[Entry]:
    w, groups = operand(args, kwargs, 1, "weight"), int(operand(args, kwargs, 6, "groups") or 1)
    if not _matrix(w):
        return []
    taps, stride = math.prod(w.shape[2:]), {"stride": _ints(args, kwargs, 3)}
    if transposed:  # weight (in, out/groups, k...)
        return [(w, "conv_transpose", w.shape[0] // groups * taps, w.shape[1] * taps, stride)]
    return [(w, "conv", w.shape[1] * taps, w.shape[0] // groups * taps, stride)]  # pytorch#23854: out / groups


def _embedding(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    w = operand(args, kwargs, 1, "weight")
    return [(w, "embedding", 1, w.shape[1], {})] if _matrix(w) else []


def _bilinear(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    w = operand(args, kwargs, 2, "weight")
    return [(w, "bilinear", w.shape[1] + w.shape[2], w.shape[0], {})] if _matrix(w) else []


def _attention(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    """``F.multi_head_attention_forward``: packed (3E, E) or separate q/k/v projections, and the output one."""
    out: list[Entry] = []
    packed = operand(args, kwargs, 5, "in_proj_weight")
    if _matrix(packed):
        out.append((packed, "attention", packed.shape[1], packed.shape[0] // 3, {"blocks": 3}))
    for i, key in ((15, "q_proj_weight"), (16, "k_proj_weight"), (17, "v_proj_weight")):
        w = operand(args, kwargs, i, key)
        if _matrix(w):
            out.append((w, "attention", w.shape[1], w.shape[0], {}))
    w = operand(args, kwargs, 11, "out_proj_weight")
    return out + ([(w, "linear", w.shape[1], w.shape[0], {})] if _matrix(w) else [])


def _recurrent(args: tuple[Any, ...], kwargs: Any, gates: int = 1) -> list[Entry]:
    """``_VF.lstm``/``gru``/``rnn_*``: the flat weights, each (gates·H, in) used as ``gates`` blocks."""
    lists = [a for a in args if isinstance(a, list | tuple) and a and isinstance(a[0], Tensor)]
    flat = max(lists, key=len) if lists else ()  # the flat weights, not the (h, c) state
    return [(w, "recurrent", w.shape[1], w.shape[0] // gates, {"blocks": gates}) for w in flat if _matrix(w)]


def _einsum(args: tuple[Any, ...], kwargs: Any) -> list[Entry]:
    """fan_in: the product of the operand's dimensions that are summed over (absent from the result)."""
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    lhs, _, result = str(equation).replace(" ", "").partition("->")
    terms = lhs.split(",")
    if not result or len(terms) != len(operands) or "." in lhs:
        return []
    out: list[Entry] = []
    for term, tensor in zip(terms, operands, strict=True):
        if _matrix(tensor) and len(term) == tensor.ndim:
            sizes = dict(zip(term, tensor.shape, strict=True))
            fan_in = math.prod(s for c, s in sizes.items() if c not in result)
            out.append((tensor, "einsum", fan_in, math.prod(s for c, s in sizes.items() if c in result), {}))
    return out


_RULES: dict[str, Callable[[tuple[Any, ...], Any], list[Entry]]] = {
    "linear": _linear,
    "addmm": _addmm,
    **dict.fromkeys(_MATMULS[:-1], _matmul),
    "__rmatmul__": lambda a, k: _matmul(a, k, swap=True),
    **dict.fromkeys(("conv1d", "conv2d", "conv3d"), _conv),
    **dict.fromkeys(("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
                    lambda a, k: _conv(a, k, transposed=True)),
    **dict.fromkeys(("embedding", "embedding_bag"), _embedding),
    "bilinear": _bilinear,
    "einsum": _einsum,
    "multi_head_attention_forward": _attention,
    **{name: functools.partial(_recurrent, gates=gates) for name, gates in _GATES.items()},
}  # fmt: skip


def uses(name: str, args: tuple[Any, ...], kwargs: Any) -> list[tuple[dict[str, Any], Tensor]]:
    """The weight operands of one operator with their use's fields (an operator without a rule: none)."""
    rule = _RULES.get(name)
    if rule is None:
        return []
    return [
        ({"op": op, "fan_in": int(fi), "fan_out": int(fo), **extra}, t) for t, op, fi, fo, extra in rule(args, kwargs)
    ]


def _ints(args: tuple[Any, ...], kwargs: Any, index: int) -> tuple[int, ...]:
    value = operand(args, kwargs, index, "stride")
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else (int(value),) if value else ()
