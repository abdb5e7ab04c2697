"""Predict per-value forward and backward variance through a concrete model, from its actual parameters.

Mean-field propagation at the operator level, through any eager model (Hugging Face models, torch's own
modules, functional code): the model runs once on a one-example input under a ``TorchFunctionMode``, and every
operator that a value derived from the input enters also propagates that value's statistics. A value carries,
per element, the mean and the variance of a Gaussian over inputs (float64 tensors of the value's shape).

* linear maps with constant coefficients (``linear``, GPT-2's ``addmm``, ``matmul``/``einsum`` against a weight,
  ``conv*`` with its padding and stride, scaling by a constant, sums and means): ``mean' = A(mean)``, ``var' =
  A∘A(var)`` (the same map with squared coefficients), exact for independent inputs;
* products of two values (attention scores ``q·kᵀ``, ``attn·v``, gates): independent factors;
* sums (residual additions), data movement (``view``, ``transpose``, ``split``, ``cat``, indexing ...): exact;
* elementwise functions (every activation, functional or module, with its parameters; ``pow``, ``rsqrt`` ...):
  ``E[φ(h)]`` and ``Var φ(h)`` for ``h ~ N(mean, var)`` by quadrature, per distinct (mean, var);
* ``layer_norm``, ``rms_norm``, ``group_norm``, ``batch_norm`` (train: batch statistics; eval: running ones),
  ``dropout``; ``embedding`` of token ids: the table's per-column mean and variance (ids taken as uniform);
* any other operator (softmax, attention kernels, pooling, recurrent kernels ...) is propagated by *sampling*:
  Gaussians at the predicted statistics pushed through the operator itself, and the row says "sampled".

Backward, relative to the output: gradient second moments go back through the same maps (squared coefficients,
``E[φ'(h)²]``, sampled vector-Jacobian products), summing over the uses of a value (the gradient-independence
assumption of Schoenholz et al. 2017). Rows are the outputs of modules, activations, weight uses, residual sums,
norms, products and sampled operators, named by module (``h.0.mlp.c_fc``) or by operator (``h.0.attn.softmax``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from initlab._errors import InitlabError, fail
from initlab._quadrature import normal_nodes
from initlab._tables import Rows
from initlab.init._keras_model import is_keras_model
from initlab.init._operators import uses
from initlab.init.structure import (
    Structure,
    acts_as_activation,
    call,
    capture_or_why,
    function_activation,
    identify,
    module_hooks,
    restored,
    unwrap,
)

__all__ = ["LayerPrediction", "Prediction", "predict"]

Back = Callable[[list[Tensor | None]], list[Tensor | None]]
SAMPLES = 64  # Gaussians per sampled operator (forward); the backward uses half as many


@dataclasses.dataclass
class Stat:
    """Per-element mean and variance of a value over inputs (float64 tensors of the value's shape)."""

    mean: Tensor
    var: Tensor

    @property
    def population_var(self) -> float:
        """Variance over all elements and inputs: the mean within-element variance plus the spread of the means."""
        return float(self.var.mean() + self.mean.var(unbiased=False))


@dataclasses.dataclass
class LayerPrediction:
    """One value in the model: its predicted forward variance and its gradient second moment."""

    name: str
    kind: str
    shape: tuple[int, ...]
    forward_var: float | None
    backward_var: float | None
    note: str = ""
    weights: tuple[str, ...] = ()  # the weights whose use produced this value
    modules: tuple[str, ...] = ()  # the modules that returned it, innermost first


@dataclasses.dataclass
class Prediction(Rows):
    """Per-value predicted forward variance and backward gradient variance (relative to the output's)."""

    rows: list[LayerPrediction]
    input_var: float = 1.0
    title: ClassVar[str] = "initlab.predict"
    columns: ClassVar[tuple[str, ...]] = ("name", "kind", "shape", "forward_var", "backward_var", "note")


# -- operator families ---------------------------------------------------------------------------------------
_IGNORE = {"size", "dim", "numel", "__len__", "__set__", "stride", "is_contiguous", "data_ptr", "element_size",
           "__bool__", "__format__", "__repr__", "item", "tolist", "__hash__", "__eq__hash__", "__setitem__",
           "is_floating_point", "get_device", "__iter__"}  # fmt: skip
_MOVE = {
    "view", "view_as", "reshape", "reshape_as", "transpose", "transpose_", "permute", "contiguous", "flatten",
    "unflatten", "squeeze", "unsqueeze", "split", "split_with_sizes", "chunk", "unbind", "__getitem__", "expand",
    "expand_as", "narrow", "cat", "concat", "concatenate", "stack", "hstack", "vstack", "repeat", "tile", "to",
    "float", "half", "bfloat16", "double", "type", "type_as", "clone", "detach", "flip", "roll", "t", "movedim",
    "moveaxis", "swapaxes", "swapdims", "select", "index_select", "where", "tril", "triu", "__get__", "pad",
    "masked_fill", "masked_fill_", "repeat_interleave", "broadcast_to", "cpu",
}  # fmt: skip
_AUGMENTED = {"__iadd__": "__add__", "__isub__": "__sub__", "__imul__": "__mul__", "__itruediv__": "__truediv__"}
_FILL_VALUE = {"pad": (3, "value"), "masked_fill": (2, "value"), "masked_fill_": (2, "value")}
_ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__", "sub", "__sub__", "__rsub__", "sub_", "__isub__"}
_MULS = {"mul", "__mul__", "__rmul__", "mul_", "__imul__", "div", "__truediv__", "div_", "__itruediv__"}
_MATMULS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "einsum"}
_LINEAR = {"linear": (2, "bias"), "conv1d": (2, "bias"), "conv2d": (2, "bias"), "conv3d": (2, "bias"),
           "conv_transpose1d": (2, "bias"), "conv_transpose2d": (2, "bias"), "conv_transpose3d": (2, "bias"),
           "addmm": (0, "input")}  # op -> its additive operand (dropped for the variance)  # fmt: skip
_REDUCE = {"sum", "mean"}
_UNARY = {"pow", "__pow__", "rsqrt", "sqrt", "exp", "log", "abs", "reciprocal", "square", "sin", "cos", "erf",
          "neg", "__neg__", "log1p", "expm1", "clamp", "clip", "sign"}  # fmt: skip
_NORMS = {"layer_norm", "rms_norm", "group_norm", "batch_norm"}
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout"}


@dataclasses.dataclass
class _Place:
    """A row: the value's number, how it is named, its kind, the weight that produced it, a note."""

    value: int
    name: str
    kind: str
    weights: tuple[str, ...] = ()
    note: str = ""
    modules: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Step:
    outs: list[int]
    ins: list[int]
    back: Back


class _Recorder(TorchFunctionMode):
    """Runs the model once; numbers every value derived from the input, and (``compute``) propagates statistics
    through each operator; remembers the rows' values (``values``) for a measuring pass."""

    def __init__(self, params: Mapping[int, str], compute: bool, sampled: Mapping[nn.Module, str] = {}) -> None:
        super().__init__()
        self.params = params
        self.compute = compute
        self.sampled = sampled  # modules propagated whole, by sampling (norms written as several operators)
        self.number: dict[int, int] = {}  # id(tensor) -> value number
        self.keep: list[Tensor] = []
        self.stats: dict[int, Stat | None] = {}
        self.index: set[int] = set()  # values that are token ids
        self.tape: list[_Step] = []
        self.places: dict[int, _Place] = {}
        self.values: dict[int, Tensor] = {}
        self.changed: dict[int, tuple[float, bool]] = {}  # rows changed in place: variance before, gradient kept
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.opaque = 0

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def source(self, t: Tensor, stat: Stat | None, index: bool = False) -> None:
        n = self._new(t, stat)
        if index:
            self.index.add(n)

    def _new(self, t: Tensor, stat: Stat | None) -> int:
        n = len(self.stats)
        self.number[id(t)] = n
        self.keep.append(t)
        self.stats[n] = stat
        return n

    def _label(self, name: str) -> str:
        prefix = f"{self.stack[-1]}." if self.stack and self.stack[-1] else ""
        key = prefix + name.strip("_")
        k = self.counts.get(key, 0)
        self.counts[key] = k + 1
        return f"{key}_{k}" if k else key

    # -- the operator hook -------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if self.opaque or name in _IGNORE:
            return func(*args, **kwargs)
        if kwargs.get("inplace") is True:  # keep the producer's value: rows hold it
            kwargs["inplace"] = False
        if name in _AUGMENTED:  # x += y rebinds x to what the operator returns: a new tensor keeps the old value
            func, name = getattr(Tensor, _AUGMENTED[name]), _AUGMENTED[name]
        if _out_of_place(func, name) is not func and args and isinstance(args[0], Tensor):
            self._before_change(args[0], name)
        out = func(*args, **kwargs)
        self._follow(func, name, args, kwargs, out)
        return out

    def _follow(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Number the outputs of an operator a value (or a weight) entered, with their statistics and backward."""
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor)]
        tracked = list(dict.fromkeys(self.number[id(a)] for a in tensors if id(a) in self.number))
        weights = tuple(dict.fromkeys(self.params[id(w)] for _, w in uses(name, args, kwargs) if id(w) in self.params))
        if not tracked and not weights:
            return
        label = self._label(name)
        outs = [t for t in tree_leaves(out) if isinstance(t, Tensor)]
        if not [n for n in tracked if n not in self.index] and tracked:  # only token ids in
            if name in _MOVE:  # token ids reshaped: still token ids
                for t in outs:
                    if not t.is_floating_point():
                        self.source(t, None, index=True)
            if name != "embedding":
                return  # a mask or a position computed from ids: a constant
        stats, back, note, place = self._rule(func, name, args, kwargs, tracked, outs, bool(weights))
        numbers = [self._new(t, s) for t, s in zip(outs, stats, strict=True) if t.is_floating_point()]
        if back is not None and numbers:
            self.tape.append(_Step([self.number[id(t)] for t in outs if id(t) in self.number], tracked, back))
        if numbers and (place or weights):
            self.places[numbers[0]] = _Place(numbers[0], label, name, weights, note)
            self.values[numbers[0]] = outs[0]

    def _before_change(self, t: Tensor, name: str) -> None:
        """A row's value about to be changed in place (``h += residual`` runs as ``add_``): its variance is read
        now; its gradient is the changed tensor's where the change is a sum (identity Jacobian), else unknown."""
        n = self.number.get(id(t))
        if n is not None and n in self.values and n not in self.changed:
            self.changed[n] = (float(t.detach().double().var(unbiased=False)), name in ("add_", "sub_"))

    # -- rules -------------------------------------------------------------------------------------------
    def _rule(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], tracked: list[int],
              outs: list[Tensor], weight: bool) -> tuple[list[Stat | None], Back | None, str, bool]:  # fmt: skip
        """Each output's statistics, the backward map, a note, and whether the output is a row."""
        nones: list[Stat | None] = [None] * len(outs)
        floats = [n for n in tracked if n not in self.index]
        row = _is_row(func, name, args, kwargs, floats)
        if not self.compute:
            return nones, None, "", row
        missing = [n for n in floats if self.stats[n] is None]
        if missing:
            after = next((p.name for p in self.places.values() if p.value == missing[0]), "an earlier value")
            return nones, None, f"not predicted: after {after}", row
        if not floats:  # a lookup of token ids, or a weight use on a constant input
            if name == "embedding" and tracked:
                return [_lookup(args, kwargs, outs[0])], None, "", True
            return [Stat(t.detach().double(), torch.zeros(t.shape, dtype=torch.float64)) for t in outs], None, "", True
        stat = {n: s for n in floats if (s := self.stats[n]) is not None}
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor) and id(a) in self.number]
        sub = _Sub({id(a): self.number[id(a)] for a in tensors}, stat)  # as numbered now: an in-place result renumbers
        func = _out_of_place(func, name)  # the rules' operands are statistics, never to be changed in place
        call = _Call(func, name, args, kwargs, sub, outs)
        for rule in _RULES:
            try:
                ruled = rule(call)
            except (RuntimeError, TypeError, ValueError, IndexError):  # a rule that does not fit this call: sample
                break
            if ruled is not None:
                return *ruled, "", row
        try:
            stats, back = _sampled(func, args, kwargs, sub, outs)
        except Exception as error:  # an operator that does not run on samples: said, never a crash
            return nones, None, f"not predicted: {name} ({type(error).__name__})", row
        return stats, back, "sampled", row

    # -- modules: rows named by module; activation modules as one elementwise function -----------------------
    def enter(self, module: nn.Module, name: str | None) -> bool:
        self.stack.append(self.stack[-1] if name is None and self.stack else name or "")
        if (module in self.sampled or acts_as_activation(module)) and not self.opaque:
            self.opaque += 1
            return True
        return False

    def leave(self, module: nn.Module, args: tuple[Any, ...], output: Any, opaque: bool) -> None:
        name = self.stack.pop()
        if opaque:
            self.opaque -= 1
            self._whole(module, name, args, output)
            return
        out = next((t for t in tree_leaves(output) if isinstance(t, Tensor) and t.is_floating_point()), None)
        if out is None or id(out) not in self.number or not name:
            return
        n = self.number[id(out)]
        place = self.places.get(n)
        if place is None:
            self.places[n] = place = _Place(n, name, type(module).__name__)
            self.values[n] = out
        if not place.modules:  # the innermost module names the value
            place.name, place.kind = name, type(module).__name__
        place.modules.append(name)

    def _whole(self, module: nn.Module, name: str, args: tuple[Any, ...], output: Any) -> None:
        """A module propagated as one function: an activation module by quadrature (the activation it computes,
        identified by its values), a norm written as several operators by sampling (normalization is not a
        product of independent factors)."""
        src = next((a for a in args if isinstance(a, Tensor) and id(a) in self.number), None)
        out = next((t for t in tree_leaves(output) if isinstance(t, Tensor)), None)
        if src is None or out is None or not out.is_floating_point() or self.number[id(src)] in self.index:
            return
        n_in = self.number[id(src)]
        stat: Stat | None = None
        back: Back | None = None
        note = ""
        if self.compute and (s := self.stats[n_in]) is not None:
            if module in self.sampled:
                self.opaque += 1  # the module's own operators run unrecorded
                try:
                    sub = _Sub({id(src): n_in}, {n_in: s})
                    (stat, *_), back = _sampled(module.forward, args, {}, sub, [out])
                    note = "sampled"
                finally:
                    self.opaque -= 1
            else:
                stat, back = _elementwise(identify(module).fn, s)
        n = self._new(out, stat)
        if back is not None:
            self.tape.append(_Step([n], [n_in], back))
        self.places[n] = _Place(n, name, type(module).__name__, note=note, modules=[name])
        self.values[n] = out


def _out_of_place(func: Any, name: str) -> Any:
    """``Tensor.add`` for ``Tensor.add_`` (and so on); other operators as they are."""
    if name.endswith("_") and not name.endswith("__") and hasattr(Tensor, name[:-1]):
        return getattr(Tensor, name[:-1])
    return func


def _is_row(func: Any, name: str, args: tuple[Any, ...], kwargs: Any, floats: list[int]) -> bool:
    """Whether an operator's output is a row: an activation, a sum or product of two values, a norm, an operator
    without a rule; not data movement, scaling, reductions and elementwise arithmetic inside a formula."""
    if function_activation(func, name, args, kwargs) is not None:
        return True
    if name in _ADDS | _MULS | _MATMULS:
        return len(floats) > 1
    return name not in _MOVE | _REDUCE | _UNARY | _DROPOUT


@dataclasses.dataclass
class _Call:
    """One operator call as the rules see it."""

    func: Any
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    sub: _Sub
    outs: list[Tensor]

    @property
    def one(self) -> Stat | None:
        """The statistics of the only value among the operands (None where there are several)."""
        return next(iter(self.sub.stat.values())) if len(self.sub.stat) == 1 else None


Ruled = tuple[list[Stat | None], Back] | None


def _activation_rule(c: _Call) -> Ruled:
    act = function_activation(c.func, c.name, c.args, c.kwargs)
    if act is None or c.one is None:
        return None
    s, back = _elementwise(act.fn, c.one)
    return [s], back


def _move_rule(c: _Call) -> Ruled:
    return _move(c.func, c.args, c.kwargs, c.sub, c.outs, c.name) if c.name in _MOVE else None


def _linear_rule(c: _Call) -> Ruled:
    if c.name not in _LINEAR or list(c.sub.stat) != [c.sub.tracked_at(c.args, c.kwargs, int(c.name == "addmm"))]:
        return None
    return _linear(c.func, c.args, c.kwargs, c.sub, c.name)


def _sum_rule(c: _Call) -> Ruled:
    return _sum(c.func, c.args, c.kwargs, c.sub, c.outs[0]) if c.name in _ADDS else None


def _product_rule(c: _Call) -> Ruled:
    if c.name not in _MULS | _MATMULS:
        return None
    if c.one is not None and not _divides_by_tracked(c.name, c.args, c.sub):
        return _scaled(c.func, c.args, c.kwargs, c.sub)
    if len(c.sub.stat) == 2 and c.name not in ("div", "__truediv__", "div_", "__itruediv__"):
        return _product(c.func, c.args, c.kwargs, c.sub)
    return None


def _reduce_rule(c: _Call) -> Ruled:
    return _reduce(c.func, c.args, c.kwargs, c.sub, c.name) if c.name in _REDUCE and c.one is not None else None


def _unary_rule(c: _Call) -> Ruled:
    if c.name not in _UNARY or c.one is None or len(c.outs) != 1:
        return None
    rest = c.args[1:]

    def fn(z: Tensor) -> Tensor:
        return c.func(z, *rest, **c.kwargs)

    s, back = _elementwise(fn, c.one)
    return [s], back


def _norm_rule(c: _Call) -> Ruled:
    return _norm(c.name, c.args, c.kwargs, c.one) if c.name in _NORMS and c.one is not None else None


def _dropout_rule(c: _Call) -> Ruled:
    return _dropout(c.args, c.kwargs, c.one) if c.name in _DROPOUT and c.one is not None else None


class _Sub:
    """Operands replaced for a rule: each tracked tensor by its mean, its variance, a sample or a leaf."""

    def __init__(self, number: Mapping[int, int], stat: Mapping[int, Stat]) -> None:
        self.number, self.stat = number, stat

    def of(self, t: Tensor) -> int | None:
        n = self.number.get(id(t))
        return n if n in self.stat else None

    def tracked_at(self, args: tuple[Any, ...], kwargs: Any, i: int) -> int | None:
        arg = args[i] if len(args) > i else kwargs.get("input")
        return self.of(arg) if isinstance(arg, Tensor) else None

    def map(self, args: tuple[Any, ...], kwargs: Any, tracked: Callable[[int, Tensor], Any],
            const: Callable[[Tensor], Any] | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:  # fmt: skip
        """The arguments with each tracked operand replaced by ``tracked(number, tensor)`` and each other tensor by
        ``const(tensor)`` (default: float64)."""
        const = const or _double

        def one(a: Any) -> Any:
            if not isinstance(a, Tensor):
                return a
            n = self.of(a)
            return tracked(n, a) if n is not None else const(a)

        new_args, new_kwargs = tree_map(one, (args, kwargs))
        return tuple(new_args), dict(new_kwargs)


def _double(t: Tensor) -> Tensor:
    return t.detach().double() if t.is_floating_point() else t


def _zero_const(t: Tensor) -> Tensor:
    return torch.zeros(t.shape, dtype=torch.float64) if t.is_floating_point() else t


def _floats(out: Any) -> list[Tensor]:
    return [t.double() for t in tree_leaves(out) if isinstance(t, Tensor)]


def _vjp(fn: Callable[[dict[int, Tensor]], Any], at: Mapping[int, Tensor]) -> Back:
    """The backward map of a map linear in its tracked operands: the vector-Jacobian product of ``fn``."""

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        with torch.enable_grad():
            leaves = {n: torch.zeros_like(t).requires_grad_() for n, t in at.items()}
            ys = [y for y in tree_leaves(fn(leaves)) if isinstance(y, Tensor)]
            pairs = [(y, g.to(y.dtype)) for y, g in zip(ys, grads, strict=False) if g is not None and y.requires_grad]
            if not pairs:
                return [None] * len(leaves)
            got = torch.autograd.grad([y for y, _ in pairs], list(leaves.values()), [g for _, g in pairs],
                                      allow_unused=True)  # fmt: skip
        return [None if g is None else g.double() for g in got]

    return back


def _move(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub, outs: list[Tensor],
          name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """Data movement: the same operator moves the means and the variances (fill values: mean as given, var 0)."""
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, _zero_const)
    if name in _FILL_VALUE:
        i, key = _FILL_VALUE[name]
        if len(a_v) > i:
            a_v = (*a_v[:i], 0.0, *a_v[i + 1 :])
        elif key in k_v:
            k_v[key] = 0.0
    means, variances = _floats(func(*a_m, **k_m)), _floats(func(*a_v, **k_v))
    stats = _aligned(outs, means, variances)

    def moved(leaves: Mapping[int, Tensor]) -> Any:
        new_args, new_kwargs = sub.map(args, kwargs, lambda n, t: leaves[n], _zero_const)
        return func(*new_args, **new_kwargs)

    return stats, _vjp(moved, {n: s.var for n, s in sub.stat.items()})


def _aligned(outs: list[Tensor], means: list[Tensor], variances: list[Tensor]) -> list[Stat | None]:
    """Statistics for each float output (``means`` and ``variances`` hold one entry per output tensor)."""
    return [Stat(m, v.clamp_min(0)) if t.is_floating_point() else None
            for t, m, v in zip(outs, means, variances, strict=False)]  # fmt: skip


def _linear(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub,
            name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """``y = A x + b`` with constant A: mean through A and b, variance through A∘A."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    i, key = _LINEAR[name]
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, lambda t: _double(t) ** 2)
    if len(a_v) > i:
        a_v = (*a_v[:i], torch.zeros_like(a_v[i]) if name == "addmm" else None, *a_v[i + 1 :])
    elif key in k_v:
        k_v[key] = torch.zeros_like(k_v[key]) if name == "addmm" else None
    if "alpha" in k_v:
        k_v["alpha"] = k_v["alpha"] ** 2
    mean, var = _floats(func(*a_m, **k_m))[0], _floats(func(*a_v, **k_v))[0]
    return [Stat(mean, var)], _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})


def _call_with(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub, leaves: Mapping[int, Tensor]
) -> Any:
    """``func`` on arguments where each tracked operand's stand-in is replaced by a leaf (by identity)."""
    ids = {id(sub.stat[n].var): n for n in leaves} | {id(sub.stat[n].mean): n for n in leaves}

    def one(a: Any) -> Any:
        return leaves[ids[id(a)]] if isinstance(a, Tensor) and id(a) in ids else a

    new_args, new_kwargs = tree_map(one, (args, kwargs))
    return func(*new_args, **new_kwargs)


def _sum(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub,
         out: Tensor) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A sum or difference: means combine as the operator does, variances add (independent summands)."""
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    mean = _floats(func(*a_m, **k_m))[0]
    alpha = float(kwargs.get("alpha", 1.0))
    operands = [(a, 1.0 if i == 0 else alpha**2) for i, a in enumerate(args[:2])]
    coef = {n: c for a, c in operands if isinstance(a, Tensor) and (n := sub.of(a)) is not None}
    var = torch.zeros(out.shape, dtype=torch.float64)
    for n, c in coef.items():
        var = var + c * sub.stat[n].var
    shapes = {n: sub.stat[n].var.shape for n in coef}

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        g = grads[0]
        return [None if g is None or n not in coef else coef[n] * _reduce_to(g, shapes[n]) for n in sub.stat]

    return [Stat(mean, var)], back


def _reduce_to(g: Tensor, shape: torch.Size) -> Tensor:
    """A gradient summed over the dimensions a smaller operand was broadcast along."""
    while g.ndim > len(shape):
        g = g.sum(0)
    dims = [d for d, size in enumerate(shape) if size == 1 and g.shape[d] != 1]
    return g.sum(dims, keepdim=True) if dims else g


def _divides_by_tracked(name: str, args: tuple[Any, ...], sub: _Sub) -> bool:
    return (
        name in ("div", "__truediv__", "div_", "__itruediv__")
        and len(args) > 1
        and (isinstance(args[1], Tensor) and sub.of(args[1]) is not None)
    )


def _squared(a: Any) -> Any:
    return a * a if isinstance(a, int | float) and not isinstance(a, bool) else a


def _scaled(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            sub: _Sub) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """One value times (or divided by, or contracted with) constants: the variance through squared constants."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var, lambda t: _double(t) ** 2)
    a_v = tuple(_squared(a) for a in a_v)
    mean, var = _floats(func(*a_m, **k_m))[0], _floats(func(*a_v, **k_v))[0]
    return [Stat(mean, var)], _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})


def _product(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             sub: _Sub) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A product (or contraction) of two independent values: E[ab] = E[a]E[b], E[(ab)²] = E[a²]E[b²]."""
    a, b = sub.stat
    second = {n: s.var + s.mean**2 for n, s in sub.stat.items()}
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_s, k_s = sub.map(args, kwargs, lambda n, t: second[n], lambda t: _double(t) ** 2)
    a_q, k_q = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean ** 2, lambda t: _double(t) ** 2)
    a_s, a_q = tuple(_squared(x) for x in a_s), tuple(_squared(x) for x in a_q)
    mean = _floats(func(*a_m, **k_m))[0]
    var = (_floats(func(*a_s, **k_s))[0] - _floats(func(*a_q, **k_q))[0]).clamp_min(0)
    ids = {n: id(second[n]) for n in (a, b)}

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        out: list[Tensor | None] = []
        for n in (a, b):  # the other factor at its second moment; this one a leaf
            with torch.enable_grad():
                leaf = torch.zeros_like(second[n]).requires_grad_()
                new_args, new_kwargs = tree_map(
                    lambda x, n=n, leaf=leaf: leaf if isinstance(x, Tensor) and id(x) == ids[n] else x, (a_s, k_s)
                )
                y = func(*new_args, **new_kwargs)
                g = grads[0]
                (got,) = torch.autograd.grad(y, leaf, g.to(y.dtype)) if g is not None else (None,)
            out.append(None if got is None else got.double())
        return out

    return [Stat(mean, var)], back


def _reduce(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub,
            name: str) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """A sum or mean over dimensions of independent elements."""
    (n,) = sub.stat
    a_m, k_m = sub.map(args, kwargs, lambda n, t: sub.stat[n].mean)
    a_v, k_v = sub.map(args, kwargs, lambda n, t: sub.stat[n].var)
    mean = _floats(func(*a_m, **k_m))[0]
    var = _floats(func(*a_v, **k_v))[0]
    per = sub.stat[n].mean.numel() / max(mean.numel(), 1) if name == "mean" else 1.0
    inner = _vjp(lambda leaves: _call_with(func, a_v, k_v, sub, leaves), {n: sub.stat[n].var})

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        return [None if g is None else g / per for g in inner(grads)]

    return [Stat(mean, var / per)], back


def _elementwise(fn: Callable[[Tensor], Tensor], s: Stat) -> tuple[Stat, Back]:
    """``E[φ(h)]``, ``Var φ(h)`` and ``E[φ'(h)²]`` for ``h ~ N(mean, var)``, by quadrature, once per distinct
    (mean, var) pair (a statistic broadcast over positions is computed once)."""
    pairs = torch.stack([s.mean.reshape(-1), s.var.clamp_min(0).reshape(-1)], 1)
    unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    z, w = normal_nodes(12, 8)
    m1, m2, d2 = [], [], []
    for chunk in unique.split(max(1, 2**20 // z.numel())):
        with torch.enable_grad():
            x = (chunk[:, :1] + chunk[:, 1:].sqrt() * z).requires_grad_()
            y = fn(x)
            (d,) = torch.autograd.grad(y.sum(), x, allow_unused=True) if y.requires_grad else (None,)
        y = torch.nan_to_num(y.detach().double(), nan=0.0, posinf=0.0, neginf=0.0)
        d = torch.zeros_like(y) if d is None else torch.nan_to_num(d.double(), nan=0.0, posinf=0.0, neginf=0.0)
        m1.append((y * w).sum(-1))
        m2.append((y * y * w).sum(-1))
        d2.append((d * d * w).sum(-1))
    mean, square, slope = (torch.cat(v)[inverse].reshape(s.mean.shape) for v in (m1, m2, d2))
    return Stat(mean, (square - mean**2).clamp_min(0)), lambda grads: [None if grads[0] is None else grads[0] * slope]


def _arg(args: tuple[Any, ...], kwargs: Any, i: int, key: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(key, default)


def _norm(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], s: Stat) -> tuple[list[Stat | None], Back]:
    """Normalization by the population statistics of the normalized group (row, group or batch channel)."""
    x = args[0]
    if name in ("layer_norm", "rms_norm"):
        dims = tuple(range(x.ndim - len(_arg(args, kwargs, 1, "normalized_shape")), x.ndim))
        w, b = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias") if name == "layer_norm" else None
        shape = x.shape
    elif name == "group_norm":
        groups = int(_arg(args, kwargs, 1, "num_groups"))
        w, b = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
        shape, dims = (x.shape[0], groups, -1), (2,)
    else:  # batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        w, b = _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias")
        shape, dims = x.shape, tuple(d for d in range(x.ndim) if d != 1)
    mean, var = s.mean.reshape(shape), s.var.reshape(shape)
    if name == "batch_norm" and not bool(_arg(args, kwargs, 5, "training", False)):
        rm, rv = _arg(args, kwargs, 1, "running_mean"), _arg(args, kwargs, 2, "running_var")
        eps = float(_arg(args, kwargs, 7, "eps", 1e-5))
        view = (1, -1) + (1,) * (x.ndim - 2)
        center, scale = _double(rm).reshape(view), (_double(rv).reshape(view) + eps)
    else:
        center = torch.zeros(()) if name == "rms_norm" else mean.mean(dims, keepdim=True)
        scale = (var + mean**2).mean(dims, keepdim=True) - center**2 + 1e-12
    gamma = torch.ones(()) if w is None else _double(w)
    beta = torch.zeros(()) if b is None else _double(b)
    if name in ("group_norm", "batch_norm"):
        view = (1, -1) + (1,) * (x.ndim - 2)
        gamma, beta = gamma.reshape(view) if gamma.ndim else gamma, beta.reshape(view) if beta.ndim else beta
    normed_mean = ((mean - center) / scale.sqrt()).reshape(x.shape)
    normed_var = (var / scale).reshape(x.shape)
    out = Stat(normed_mean * gamma + beta, normed_var * gamma**2)
    gain = ((1 / scale).expand_as(mean).reshape(x.shape) * gamma**2).broadcast_to(x.shape)
    return [out], lambda grads: [None if grads[0] is None else grads[0] * gain]


def _dropout(args: tuple[Any, ...], kwargs: dict[str, Any], s: Stat) -> tuple[list[Stat | None], Back]:
    p = float(_arg(args, kwargs, 1, "p", 0.5))
    p = p if bool(_arg(args, kwargs, 2, "training", True)) and p < 1 else 0.0
    out = Stat(s.mean, (s.var + s.mean**2) / (1 - p) - s.mean**2)
    return [out], lambda grads: [None if grads[0] is None else grads[0] / (1 - p)]


def _lookup(args: tuple[Any, ...], kwargs: Any, out: Tensor) -> Stat:
    """Token ids taken as uniform over the table: each column's mean and variance over the rows."""
    table = _double(_arg(args, kwargs, 1, "weight"))
    return Stat(table.mean(0).expand(out.shape).clone(), table.var(0, unbiased=False).expand(out.shape).clone())


def _sampled(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sub: _Sub,
             outs: list[Tensor]) -> tuple[list[Stat | None], Back]:  # fmt: skip
    """Gaussians at the operands' statistics pushed through the operator: the outputs' mean and variance; backward,
    cotangents at the outputs' gradient second moments pulled back through it. An operator that draws random
    numbers itself (attention's dropout) draws them from a fixed seed."""
    order = list(sub.stat)

    def run(generator: torch.Generator, grad: bool) -> tuple[dict[int, Tensor], list[Tensor]]:
        leaves: dict[int, Tensor] = {}

        def draw(n: int, t: Tensor) -> Tensor:
            if n not in leaves:
                s = sub.stat[n]
                z = torch.randn(s.mean.shape, generator=generator, dtype=torch.float64)
                leaves[n] = (s.mean + s.var.sqrt() * z).to(t.dtype).requires_grad_(grad)
            return leaves[n]

        new_args, new_kwargs = sub.map(args, kwargs, draw, lambda t: t)
        return leaves, [y for y in tree_leaves(func(*new_args, **new_kwargs)) if isinstance(y, Tensor)]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        samples = [[y.double() for y in run(g, False)[1]] for _ in range(SAMPLES)]
    means = [torch.stack(ys).mean(0) for ys in zip(*samples, strict=True)]
    variances = [torch.stack(ys).var(0, unbiased=False) for ys in zip(*samples, strict=True)]

    def back(grads: list[Tensor | None]) -> list[Tensor | None]:
        total: dict[int, Tensor] = {}
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(1)
            g = torch.Generator().manual_seed(1)
            for _ in range(SAMPLES // 2):
                leaves, ys = run(g, True)
                pairs = [(y, (gr.sqrt() * torch.randn(gr.shape, generator=g, dtype=torch.float64)).to(y.dtype))
                         for y, gr in zip(ys, grads, strict=False) if gr is not None and y.requires_grad]  # fmt: skip
                if not pairs:
                    return [None] * len(order)
                got = torch.autograd.grad([y for y, _ in pairs], [leaves[n] for n in order], [c for _, c in pairs],
                                          allow_unused=True)  # fmt: skip
                for n, gr in zip(order, got, strict=True):
                    if gr is not None:
                        total[n] = total[n] + gr.double() ** 2 if n in total else gr.double() ** 2
        return [total[n] / (SAMPLES // 2) if n in total else None for n in order]

    return _aligned(outs, means, variances), back


_RULES: tuple[Callable[[_Call], Ruled], ...] = (
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


# -- running a model under the recorder ---------------------------------------------------------------------
@contextlib.contextmanager
def _modules(recorder: _Recorder, model: nn.Module) -> Iterator[None]:
    names = {m: n for n, m in model.named_modules()}
    opaque: list[bool] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        opaque.append(recorder.enter(module, names.get(module)))  # a module built on the fly: its caller's name

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        recorder.leave(module, args, output, opaque.pop())

    with module_hooks(pre, post):
        yield


Source = Callable[[Tensor, str], tuple[Stat | None, bool]]  # an input -> (its statistics, whether token ids)


def record(model: nn.Module, example: Any, source: Source, compute: bool,
           structure: Structure | str) -> tuple[_Recorder, Any]:  # fmt: skip
    """Run ``model`` on ``example`` under a recorder; each input tensor's statistics come from ``source``;
    ``structure``: the model's (its norms written as several operators are propagated whole), or why there is
    none."""
    params: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params.setdefault(id(p), name)  # a tied weight by its first name, as the structure layer names it
    recorder = _Recorder(params, compute, _norms_to_sample(model, structure))
    for key, t in _inputs(example):
        stat, index = source(t, key)
        if t.is_floating_point() or index:
            recorder.source(t, stat, index and not t.is_floating_point())
    try:
        with _modules(recorder, model), recorder:
            output = call(model, example)
    except InitlabError:
        raise
    except Exception as error:  # the model's own error on this input, said as one: never a traceback from deep inside
        raise fail("predict and audit could not run the model on the example input",
                   accepted="an input the model's forward takes: a shape (for one tensor input), a tensor, a tuple "
                   "of positional inputs or a dict of keyword inputs",
                   received=f"{type(error).__name__}: {str(error)[:200]}",
                   fix="Pass the batch you would give the model, e.g. predict(model, x[:8]).") from error  # fmt: skip
    return recorder, output


_RULED_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _norms_to_sample(model: nn.Module, structure: Structure | str) -> dict[nn.Module, str]:
    """The norm modules the structure layer found that are written as several operators (Llama's RMSNorm, T5's
    LayerNorm ...): propagated whole. torch's own norms call one operator with a rule."""
    if isinstance(structure, str):
        return {}
    modules = dict(model.named_modules())
    return {modules[n]: n for n in structure.norms if n in modules and not isinstance(modules[n], _RULED_NORMS)}


def _inputs(example: Any) -> list[tuple[str, Tensor]]:
    if isinstance(example, Mapping):
        return [(k, v) for k, v in example.items() if isinstance(v, Tensor)]
    if isinstance(example, tuple):
        return [(str(i), v) for i, v in enumerate(example) if isinstance(v, Tensor)]
    return [("0", example)] if isinstance(example, Tensor) else []


def output_value(recorder: _Recorder, output: Any) -> int | None:
    """The value number of the model's output: its first float tensor (a ``ModelOutput``'s logits, not its loss)."""
    if hasattr(output, "to_tuple") and isinstance(output, Mapping):
        output = [v for k, v in output.items() if k != "loss"]
    for t in tree_leaves(output):
        if isinstance(t, Tensor) and t.is_floating_point() and id(t) in recorder.number:
            n = recorder.number[id(t)]
            if n not in recorder.index:
                return n
    return None


def _backward(recorder: _Recorder, final: int | None) -> dict[int, Tensor]:
    grads: dict[int, Tensor] = {}
    out = recorder.stats.get(final) if final is not None else None
    if final is None or out is None:
        return grads
    grads[final] = torch.ones_like(out.var)
    for step in reversed(recorder.tape):
        gouts = [grads.get(n) for n in step.outs]
        if all(g is None for g in gouts):
            continue
        try:
            gins = step.back(gouts)
        except Exception:  # a backward map that does not run: the values upstream get no gradient prediction
            continue
        for n, g in zip(step.ins, gins, strict=False):
            if g is None or n in recorder.index:
                continue
            target = recorder.stats.get(n)
            if target is not None and g.shape != target.var.shape:
                g = _reduce_to(g, target.var.shape) if g.numel() >= target.var.numel() else g.expand_as(target.var)
            grads[n] = grads[n] + g if n in grads else g
    return grads


def propagate(model: nn.Module, example: Any, source: Source, structure: Structure | str) -> Prediction:
    """Forward and backward propagation through ``model`` run on ``example``; one row per place."""
    model = unwrap(model)
    params = list(model.parameters())
    if any(p.is_meta for p in params):
        raise fail("predict and audit need the model's weights, and this model's parameters are on the meta device",
                   fix="Materialize it first (model.to_empty(device='cpu') and initialize it), "
                   "then predict.")  # fmt: skip
    with restored(model), torch.no_grad():
        recorder, output = record(model, example, source, True, structure)
    grads = _backward(recorder, output_value(recorder, output))
    rows = []
    for n, place in sorted(recorder.places.items()):
        s, g, value = recorder.stats.get(n), grads.get(n), recorder.values[n]
        note = place.note
        rows.append(LayerPrediction(place.name, place.kind, tuple(value.shape[1:]),
                                    s.population_var if s is not None else None, float(g.mean()) if g is not None
                                    else None, note, place.weights, tuple(place.modules)))  # fmt: skip
    return Prediction(rows)


def check_keras(model: Any) -> None:
    if is_keras_model(model):
        raise fail(
            "predict and audit run a torch model; a Keras model is not supported yet",
            received=type(model).__name__,
            fix="Build the same network in torch for predict/audit; for Keras, initlab.initialize(keras_model, ...) "
            "assigns the weights and initlab.keras.Monitor watches model.fit.",
        )


def main_input(model: nn.Module, key: str) -> bool:
    """Whether an integer input named ``key`` is the model's token ids (a lookup's statistics), not a mask."""
    return key in ("0", "input_ids", getattr(model, "main_input_name", "input_ids"))


def one_example(example: Any) -> Any:
    """The first example of a batch (tensors sliced along their first dimension; other inputs kept)."""
    if isinstance(example, Mapping):
        return {k: v[:1] if isinstance(v, Tensor) and v.ndim else v for k, v in example.items()}
    if isinstance(example, tuple):
        return tuple(v[:1] if isinstance(v, Tensor) and v.ndim else v for v in example)
    return example[:1]


def predict(model: nn.Module, example: Any, input_var: float = 1.0) -> Prediction:
    """Predict per-value forward variance and backward gradient variance from the model's current parameters.

    Args:
        model: any ``nn.Module`` (Hugging Face models, wrapped or compiled ones); its train/eval mode decides
            BatchNorm and Dropout behaviour.
        example: the model's input: the shape of one example (``784`` or ``(1, 28, 28)``: a Gaussian input), a
            tensor (integer token ids included), a tuple of positional inputs or a dict of keyword inputs. Only
            the first example of a batch is run.
        input_var: the variance of every float input element (taken as independent with mean 0).

    Returns:
        A :class:`Prediction`: per value, ``forward_var`` (variance over inputs and elements) and
        ``backward_var`` (gradient second moment, relative to the output's); ``note`` says "sampled" where an
        operator without a rule was propagated by sampling.

    >>> from initlab import initialize
    >>> net = nn.Sequential(nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 500))
    >>> _ = initialize(net, "kaiming_normal", activation={"2": "relu"}, generator=torch.Generator().manual_seed(0))
    >>> [round(r.forward_var, 1) for r in predict(net, 500)]  # He: 2·input_var; relu: Var = q(1/2 - 1/2π)
    [2.0, 0.7, 1.9]
    """
    check_keras(model)
    if isinstance(input_var, bool) or not isinstance(input_var, int | float) or not 0 < input_var < math.inf:
        raise fail("input_var must be a finite variance > 0", accepted="a number > 0, e.g. 1.0 for standardized "
                   "inputs", received=input_var, fix="Pass the variance of one input element.")  # fmt: skip
    inner = unwrap(model)
    if isinstance(example, int) and not isinstance(example, bool):
        example = (example,)
    if isinstance(example, tuple | list) and all(isinstance(d, int) and not isinstance(d, bool) for d in example):
        if not example or min(example) < 1:
            raise fail("predict needs the shape of one example", accepted="positive sizes, e.g. 784 or (1, 28, 28)",
                       received=example,
                       fix="Pass the shape without the batch dimension, or an example input.")  # fmt: skip
        dtype = next((p.dtype for p in inner.parameters() if p.is_floating_point()), torch.float32)
        example = torch.zeros(1, *example, dtype=dtype)
    elif not isinstance(example, Tensor | tuple | Mapping):
        raise fail("predict takes the model's input", accepted="a shape (784 or (1, 28, 28)), a tensor, a tuple of "
                   "inputs or a dict of keyword inputs", received=type(example).__name__,
                   fix="Pass an example input as the model takes it.")  # fmt: skip

    def source(t: Tensor, key: str) -> tuple[Stat | None, bool]:
        if t.is_floating_point():
            zeros = torch.zeros(t.shape, dtype=torch.float64)
            return Stat(zeros, torch.full(t.shape, float(input_var), dtype=torch.float64)), False
        return None, main_input(inner, key)

    prediction = predict_with(inner, example, source)
    prediction.input_var = float(input_var)
    return prediction


def predict_with(
    model: nn.Module, example: Any, source: Source, structure: Structure | str | None = None
) -> Prediction:
    """Propagate on one example; where the model needs two (BatchNorm in train mode on (1, C)), on two.
    ``structure``: the model's, if known (else captured here on one example)."""
    one = one_example(example)
    structure = capture_or_why(model, one) if structure is None else structure
    try:
        return propagate(model, one, source, structure)
    except InitlabError as error:
        if "Expected more than 1 value per channel" not in str(error):
            raise
    two = {k: v[:2] if isinstance(v, Tensor) else v for k, v in example.items()} if isinstance(example, Mapping) \
        else (example[:2] if isinstance(example, Tensor) else tuple(v[:2] for v in example))  # fmt: skip
    if isinstance(two, Tensor) and two.shape[0] < 2:
        two = two.expand(2, *two.shape[1:])
    return propagate(model, two, source, structure)
