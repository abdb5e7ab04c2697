"""The recorder (issue 30): the model runs once under a ``TorchFunctionMode``; every value derived from the input is
numbered, and, when it computes, the recorder propagates the values' statistics through each operator (the maps of
:mod:`initlab.theory._maps`, chosen by :mod:`initlab.theory._rules`) and keeps a tape of backward maps. It names the
rows (modules, innermost first; operators by their module) and keeps their values for a measuring pass."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from initlab._errors import InitlabError, fail
from initlab.init._operators import uses
from initlab.init.structure import Structure, acts_as_activation, call, identify_activation, module_hooks
from initlab.theory._maps import Back, Stat, Sub, elementwise, lookup, reduce_to, sampled
from initlab.theory._rules import AUGMENTED, IGNORE, MOVE, RULES, Call, is_row, out_of_place

__all__ = ["Source", "backward", "inputs_of", "output_value", "record"]


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

    def __init__(self, params: Mapping[int, str], compute: bool, sampled: Mapping[nn.Module, str]) -> None:
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
        if self.opaque or name in IGNORE:
            return func(*args, **kwargs)
        if kwargs.get("inplace") is True:  # keep the producer's value: rows hold it
            kwargs["inplace"] = False
        if name in AUGMENTED:  # x += y rebinds x to what the operator returns: a new tensor keeps the old value
            func, name = getattr(Tensor, AUGMENTED[name]), AUGMENTED[name]
        if out_of_place(func, name) is not func and args and isinstance(args[0], Tensor):
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
            if name in MOVE:  # token ids reshaped: still token ids
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
        row = is_row(func, name, args, kwargs, floats)
        if not self.compute:
            return nones, None, "", row
        missing = [n for n in floats if self.stats[n] is None]
        if missing:
            after = next((p.name for p in self.places.values() if p.value == missing[0]), "an earlier value")
            return nones, None, f"not predicted: after {after}", row
        if not floats:  # a lookup of token ids, or a weight use on a constant input
            if name == "embedding" and tracked:
                return [lookup(args, kwargs, outs[0])], None, "", True
            return [Stat(t.detach().double(), torch.zeros(t.shape, dtype=torch.float64)) for t in outs], None, "", True
        stat = {n: s for n in floats if (s := self.stats[n]) is not None}
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor) and id(a) in self.number]
        sub = Sub({id(a): self.number[id(a)] for a in tensors}, stat)  # as numbered now: an in-place result renumbers
        func = out_of_place(func, name)  # the rules' operands are statistics, never to be changed in place
        call = Call(func, name, args, kwargs, sub, outs)
        for rule in RULES:
            try:
                ruled = rule(call)
            except (RuntimeError, TypeError, ValueError, IndexError):  # a rule that does not fit this call: sample
                break
            if ruled is not None:
                return *ruled, "", row
        try:
            stats, back = sampled(func, args, kwargs, sub, outs)
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
                    sub = Sub({id(src): n_in}, {n_in: s})
                    (stat, *_), back = sampled(module.forward, args, {}, sub, [out])
                    note = "sampled"
                finally:
                    self.opaque -= 1
            else:
                stat, back = elementwise(identify_activation(module).fn, s)
        n = self._new(out, stat)
        if back is not None:
            self.tape.append(_Step([n], [n_in], back))
        self.places[n] = _Place(n, name, type(module).__name__, note=note, modules=[name])
        self.values[n] = out


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
    for key, t in inputs_of(example):
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


def inputs_of(example: Any) -> list[tuple[str, Tensor]]:
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


def backward(recorder: _Recorder, final: int | None) -> dict[int, Tensor]:
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
                g = reduce_to(g, target.var.shape) if g.numel() >= target.var.numel() else g.expand_as(target.var)
            grads[n] = grads[n] + g if n in grads else g
    return grads
