"""Which map an operator takes (issue 30): the operator families, whether an operator's output is a row, and the
rules tried in order, each returning the outputs' statistics and the backward map or passing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor

from initlab.init.structure import function_activation
from initlab.theory._maps import (
    CONTRACTIONS,
    LINEAR,
    Back,
    Stat,
    Sub,
    divides_by_tracked,
    dropout,
    elementwise,
    linear_map,
    moved,
    normalized,
    product,
    reduced,
    scaled,
    summed,
)

__all__ = ["AUGMENTED", "IGNORE", "MOVE", "RULES", "Call", "is_row", "out_of_place"]

IGNORE = {"size", "dim", "numel", "__len__", "__set__", "stride", "is_contiguous", "data_ptr", "element_size",
           "__bool__", "__format__", "__repr__", "item", "tolist", "__hash__", "__setitem__",
           "is_floating_point", "get_device", "__iter__"}  # fmt: skip
MOVE = {
    "view", "view_as", "reshape", "reshape_as", "transpose", "transpose_", "permute", "contiguous", "flatten",
    "unflatten", "squeeze", "unsqueeze", "split", "split_with_sizes", "chunk", "unbind", "__getitem__", "expand",
    "expand_as", "narrow", "cat", "concat", "concatenate", "stack", "hstack", "vstack", "repeat", "tile", "to",
    "float", "half", "bfloat16", "double", "type", "type_as", "clone", "detach", "flip", "roll", "t", "movedim",
    "moveaxis", "swapaxes", "swapdims", "select", "index_select", "where", "tril", "triu", "__get__", "pad",
    "masked_fill", "masked_fill_", "repeat_interleave", "broadcast_to", "cpu",
}  # fmt: skip
AUGMENTED = {"__iadd__": "__add__", "__isub__": "__sub__", "__imul__": "__mul__", "__itruediv__": "__truediv__"}
_ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__", "sub", "__sub__", "__rsub__", "sub_", "__isub__"}
_MULS = {"mul", "__mul__", "__rmul__", "mul_", "__imul__", "div", "__truediv__", "div_", "__itruediv__"}
_MATMULS = CONTRACTIONS
_REDUCE = {"sum", "mean"}
_UNARY = {"pow", "__pow__", "rsqrt", "sqrt", "exp", "log", "abs", "reciprocal", "square", "sin", "cos", "erf",
          "neg", "__neg__", "log1p", "expm1", "clamp", "clip", "sign"}  # fmt: skip
_NORMS = {"layer_norm", "rms_norm", "group_norm", "batch_norm"}
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout"}


def out_of_place(func: Any, name: str) -> Any:
    """``Tensor.add`` for ``Tensor.add_`` (and so on); other operators as they are."""
    if name.endswith("_") and not name.endswith("__") and hasattr(Tensor, name[:-1]):
        return getattr(Tensor, name[:-1])
    return func


def is_row(func: Any, name: str, args: tuple[Any, ...], kwargs: Any, floats: list[int]) -> bool:
    """Whether an operator's output is a row: an activation, a sum or product of two values, a norm, an operator
    without a rule; not data movement, scaling, reductions and elementwise arithmetic inside a formula."""
    if function_activation(func, name, args, kwargs) is not None:
        return True
    if name in _ADDS | _MULS | _MATMULS:
        return len(floats) > 1
    return name not in MOVE | _REDUCE | _UNARY | _DROPOUT


@dataclasses.dataclass
class Call:
    """One operator call as the rules see it."""

    func: Any
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    sub: Sub
    outs: list[Tensor]

    @property
    def one(self) -> Stat | None:
        """The statistics of the only value among the operands (None where there are several)."""
        return next(iter(self.sub.stat.values())) if len(self.sub.stat) == 1 else None


Ruled = tuple[list[Stat | None], Back] | None


def _activation_rule(c: Call) -> Ruled:
    act = function_activation(c.func, c.name, c.args, c.kwargs)
    if act is None or c.one is None:
        return None
    s, back = elementwise(act.fn, c.one)
    return [s], back


def _move_rule(c: Call) -> Ruled:
    return moved(c.func, c.args, c.kwargs, c.sub, c.outs, c.name) if c.name in MOVE else None


def _linear_rule(c: Call) -> Ruled:
    if c.name not in LINEAR or list(c.sub.stat) != [c.sub.tracked_at(c.args, c.kwargs, int(c.name == "addmm"))]:
        return None
    return linear_map(c.func, c.args, c.kwargs, c.sub, c.name)


def _sum_rule(c: Call) -> Ruled:
    return summed(c.func, c.args, c.kwargs, c.sub, c.outs[0]) if c.name in _ADDS else None


def _product_rule(c: Call) -> Ruled:
    if c.name not in _MULS | _MATMULS:
        return None
    if c.one is not None and not divides_by_tracked(c.name, c.args, c.sub):
        return scaled(c.func, c.args, c.kwargs, c.sub)
    if len(c.sub.stat) == 2 and c.name not in ("div", "__truediv__", "div_", "__itruediv__"):
        return product(c.func, c.args, c.kwargs, c.sub)
    return None


def _reduce_rule(c: Call) -> Ruled:
    return reduced(c.func, c.args, c.kwargs, c.sub, c.name) if c.name in _REDUCE and c.one is not None else None


def _unary_rule(c: Call) -> Ruled:
    if c.name not in _UNARY or c.one is None or len(c.outs) != 1:
        return None
    rest = c.args[1:]

    def fn(z: Tensor) -> Tensor:
        return c.func(z, *rest, **c.kwargs)

    s, back = elementwise(fn, c.one)
    return [s], back


def _norm_rule(c: Call) -> Ruled:
    return normalized(c.name, c.args, c.kwargs, c.one) if c.name in _NORMS and c.one is not None else None


def _dropout_rule(c: Call) -> Ruled:
    return dropout(c.args, c.kwargs, c.one) if c.name in _DROPOUT and c.one is not None else None


RULES: tuple[Callable[[Call], Ruled], ...] = (
    _activation_rule,
    _move_rule,
    _linear_rule,
    _sum_rule,
    _product_rule,
    _reduce_rule,
    _unary_rule,
    _norm_rule,
    _dropout_rule,
)
