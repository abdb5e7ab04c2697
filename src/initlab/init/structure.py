"""One view of a model's structure, from one real forward pass (issue 30).

Every verb needs the same facts about a model: which parameters are weights and how each is used (its fan_in is
the *contracted* dimension of that use, so GPT-2's ``Conv1D`` (in, out) weight, ``F.linear(x, self.w)``, an einsum
projection and a tied readout all come out right), which activation follows each weight (a module or a function,
with its parameters), where the residual additions are (and the last weight of each branch), what is frozen or
parametrized, which weight is the output. :func:`capture` answers all of it once, by running the model on an
example input under a ``TorchFunctionMode`` that records every operator a parameter enters, and global module
hooks that say which module is running.

Why a function mode and not ``torch.export``: export (non-strict) builds an ``ExportedProgram`` per model
(measured in ``bench/structure_capture.py`` on a toy GPT-2: 424 ms against 9.5 ms for :func:`capture`, and its
default call fails on the model's ``DynamicCache`` output until ``use_cache=False`` is passed), it specializes or
refuses data-dependent control flow, and it lowers modules to ATen, where module boundaries (which activation
module ran) are gone; the function mode costs one ordinary forward pass (on meta tensors where no values are
needed), sees Python control flow as it ran, keyword inputs, ``ModelOutput``, wrapped and compiled models
(unwrapped first), and keeps the module stack. torch.fx symbolic tracing fails on every Hugging Face model.

The record is operator-level: a weight used by ``linear``, ``addmm``, ``matmul``, ``conv*``, ``embedding``,
``einsum``, ``bilinear``, ``multi_head_attention_forward`` (packed projections) or a recurrent kernel
(``lstm``/``gru``/``rnn_*``: gates) is a weight layer with its fans; a 1-D parameter is a vector (bias, norm
scale); a parameter the pass never used, or used by an operator without a rule, is *unclassified* and named in
:attr:`Structure.unclassified` (the verbs warn), never skipped in silence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from initlab.init._examples import example_input
from initlab.init._meta import meta_ghost, sharded, to_meta
from initlab.init._operators import uses
from initlab.init._pass import (
    acts_as_activation,
    call,
    function_activation,
    identify_activation,
    module_hooks,
    restored,
    unwrap,
)
from initlab.init.activations import Activation

__all__ = [
    "Layer", "Residual", "Structure", "Use", "acts_as_activation", "call", "capture", "capture_or_why",
    "example_input", "function_activation", "identify_activation", "module_hooks", "restored", "unwrap",
]  # fmt: skip

_ADDS = {"add", "__add__", "__radd__", "add_", "__iadd__"}
_SCORES = {"matmul", "__matmul__", "bmm", "einsum", "scaled_dot_product_attention", "baddbmm"}
# operators through which a weight's output keeps flowing towards "its" activation (shape and dtype changes,
# dropout, scaling, normalization, sums): anything else (a product of two activations, attention, a weight layer)
# ends the search, and the weight then feeds no activation (linear)
_PASS = {
    "view", "reshape", "transpose", "permute", "contiguous", "flatten", "unflatten", "squeeze", "unsqueeze",
    "split", "chunk", "unbind", "__getitem__", "to", "float", "half", "bfloat16", "type", "clone", "dropout",
    "alpha_dropout", "feature_dropout", "layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm",
    "mul", "__mul__", "__rmul__", "mul_", "div", "__truediv__", "div_", "sub", "__sub__", "expand", "narrow", "neg",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "pad", "cat", *_ADDS,
}  # fmt: skip


@dataclass(frozen=True)
class Use:
    """One use of a weight by an operator: what it computes, and the fans of that use."""

    op: str  # linear, addmm, matmul, conv, conv_transpose, embedding, einsum, bilinear, attention, recurrent
    fan_in: int  # the contracted dimension: inputs summed per output unit
    fan_out: int  # outputs one input unit feeds
    blocks: int = 1  # row blocks used as separate layers (gates, packed q/k/v)
    stride: tuple[int, ...] = ()
    module: str = ""  # the innermost module that ran the operator
    order: int = 0  # position among all weight uses of the pass


@dataclass
class Layer:
    """A weight (a parameter, or a weight computed by a parametrization) and what the pass did with it."""

    name: str  # the first name of the tensor (tied copies in ``aliases``)
    shape: tuple[int, ...]
    uses: list[Use] = field(default_factory=list)
    activation: Activation | None = None
    activation_source: str = "none"  # "module", "function", "none"; without a pass: "fx", "module order" ...
    activation_module: str = ""  # the module that applied it, where a module did
    aliases: tuple[str, ...] = ()
    frozen: bool = False
    parametrized: bool = False
    role: str = "hidden"  # "embedding", "hidden", "output", "recurrent"

    @property
    def use(self) -> Use:
        """The first use (what initialization plans for)."""
        return self.uses[0]


@dataclass(frozen=True)
class Residual:
    """A residual addition ``out = skip + branch``: the branch's weight layers in order (the last one is what
    residual rules scale), and the module whose forward adds them (the block)."""

    branch: tuple[str, ...]
    order: int
    module: str = ""

    @property
    def last(self) -> str:
        return self.branch[-1]


@dataclass
class Structure:
    """What one forward pass showed of a model."""

    layers: dict[str, Layer]  # weight layers by name, in order of first use
    vectors: dict[str, str]  # 1-D parameters -> what uses them ("bias", "scale", ...)
    residuals: list[Residual]
    unclassified: dict[str, str]  # parameter -> why it is not classified
    frozen: list[str]
    output: str | None = None  # the readout: the weight layer that produces the model's output (tied: the table)
    norms: list[str] = field(default_factory=list)  # modules that normalize (scale and shift vectors of their own)
    attention: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)  # (queries, keys)
    why: str = ""  # empty for a forward pass; else why there was none (the structure then came from module types)
    residuals_known: bool = True  # False where neither a forward pass nor torch.fx could see the additions

    @property
    def source(self) -> str:
        return "forward pass" if not self.why else "torch.fx or module order"

    def owner(self, layer: str) -> str:
        """The module that holds a weight layer's parameter."""
        return layer.rsplit(".", 1)[0] if "." in layer else ""

    def main_activation(self) -> str | None:
        """The activation most weight layers feed (linear outputs left out), None where none feeds one."""
        names = [layer.activation.name for layer in self.layers.values() if layer.activation is not None]
        names = [n for n in names if n != "linear"]
        return max(set(names), key=names.count) if names else None

    def queries_and_keys(self) -> tuple[set[str], set[str]]:
        """The modules of the query and the key projections: the weight layers whose outputs meet in attention
        scores (``q @ k.transpose(-2, -1)``, ``scaled_dot_product_attention(q, k, v)``), found by the data flow."""
        queries = {self.owner(n) for q, _ in self.attention for n in q}
        keys = {self.owner(n) for _, k in self.attention for n in k}
        return queries, keys

    def branch_ends(self) -> list[str]:
        """The last weight layer of each residual branch, once each, in order."""
        return list(dict.fromkeys(r.last for r in self.residuals))


@dataclass
class _Flow:
    """What is known of a tensor: the weight layers whose output reaches it with no activation yet (``pending``)
    and every weight use upstream of it (``ancestry``, by order)."""

    pending: frozenset[str]
    ancestry: frozenset[int]


_EMPTY = _Flow(frozenset(), frozenset())


OnResidual = Callable[[Residual, Tensor, Tensor], Tensor]  # (residual, skip, branch) -> the sum to go on with


class _Recorder(TorchFunctionMode):
    def __init__(self, names: Mapping[int, str], module_stack: list[tuple[str, nn.Module]],
                 on_residual: OnResidual | None = None) -> None:  # fmt: skip
        super().__init__()
        self.on_residual = on_residual
        self.names = names  # id(tensor) -> parameter (or computed weight) name
        self.stack = module_stack
        self.layers: dict[str, Layer] = {}
        self.vectors: dict[str, str] = {}
        self.unclassified: dict[str, str] = {}
        self.flows: dict[int, _Flow] = {}
        self.keep: list[Any] = []  # tensors whose ids are keys of flows stay alive while recording
        self.residuals: list[Residual] = []
        self.attention: list[tuple[tuple[str, ...], tuple[str, ...]]] = []  # (query layers, key layers)
        self.order = 0
        self.use_layer: dict[int, str] = {}  # order -> layer name
        self.opaque = 0  # > 0 inside an activation module: its own ops are not recorded
        self.modules: list[tuple[str, nn.Module, str]] = []  # (layer, the activation module it fed, its name)
        self.module_ops: dict[str, set[str]] = {}  # module -> the operators its own forward ran

    # -- the operator hook -------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("__get__", "__set__", "size", "dim", "numel", "__len__"):
            return out
        if self.stack and not self.opaque:
            self.module_ops.setdefault(self.stack[-1][0], set()).add(name)
        inputs = [a for a in _flat(args, kwargs) if isinstance(a, Tensor)]
        flows = [f for a in inputs if (f := self.flows.get(id(a))) is not None]
        pending: frozenset[str] = frozenset().union(*(f.pending for f in flows)) if flows else frozenset()
        ancestry: frozenset[int] = frozenset().union(*(f.ancestry for f in flows)) if flows else frozenset()
        weights = [(i, a) for i, a in enumerate(inputs) if id(a) in self.names]
        if weights and not self.opaque:
            used = self._weights(name, args, kwargs, weights)
            if used:
                pending, ancestry = frozenset(n for n, _ in used), ancestry | {order for _, order in used}
            elif name not in _PASS:
                pending = frozenset()
        elif not self.opaque:
            out, pending = self._no_weight(func, name, args, kwargs, inputs, pending, out)
        self._mark(out, pending, ancestry)
        return out

    def _no_weight(self, func: Any, name: str, args: tuple[Any, ...], kwargs: Any, inputs: list[Tensor],
                   pending: frozenset[str], out: Any) -> tuple[Any, frozenset[str]]:  # fmt: skip
        """An operator without a weight: an activation ends the weight layers' search for theirs, a sum of two
        flows may be a residual addition, shape changes and the like pass the pending layers on."""
        act = function_activation(func, name, args, kwargs)
        if act is not None:
            self._activate(pending, act, "function")
            return out, frozenset()
        if name in _SCORES and len(inputs) >= 2:
            query, key = (self.flows.get(id(a), _EMPTY).pending for a in inputs[:2])
            if query and key and not query & key:  # two projections' outputs meet: attention scores q·kᵀ
                self.attention.append((tuple(sorted(query)), tuple(sorted(key))))
        if name in _ADDS and len(inputs) == 2 and inputs[0].ndim >= 2 and inputs[1].ndim >= 2:
            found = self._residual([self.flows.get(id(a), _EMPTY) for a in inputs])
            if found is not None and self.on_residual is not None:
                out = self._intervene(found, inputs, out)
            return out, pending
        return out, pending if name in _PASS else frozenset()

    def _mark(self, out: Any, pending: frozenset[str], ancestry: frozenset[int]) -> None:
        for t in _flat((out,), {}):
            if isinstance(t, Tensor):
                self.flows[id(t)] = _Flow(pending, ancestry)
                self.keep.append(t)

    def _activate(self, pending: frozenset[str], act: Activation, source: str) -> None:
        for layer in pending:
            if self.layers[layer].activation is None:
                self.layers[layer].activation, self.layers[layer].activation_source = act, source

    def _residual(self, flows: list[_Flow]) -> tuple[Residual, int] | None:
        """Record a residual addition; returns it with the index of its branch operand."""
        a, b = flows[0].ancestry, flows[1].ancestry
        own_a, own_b = a - b, b - a
        if not own_a and not own_b:
            return None
        index = 0 if len(own_a) >= len(own_b) else 1
        layers = [self.use_layer[i] for i in sorted(own_a if index == 0 else own_b)]
        if all(self.layers[n].use.op == "embedding" for n in layers):
            return None  # token + position embeddings: a sum of lookups, not a residual block
        block = self.stack[-1][0] if self.stack else ""
        self.residuals.append(Residual(tuple(dict.fromkeys(layers)), self.order, block))
        return self.residuals[-1], index

    def _intervene(self, found: tuple[Residual, int], inputs: list[Tensor], out: Tensor) -> Tensor:
        """Let :attr:`on_residual` replace a residual sum (``x += f(x)`` in place too: its ``x`` as it was)."""
        residual, index = found
        before = [out - inputs[1 - i] if t is out else t for i, t in enumerate(inputs)]
        assert self.on_residual is not None
        value = self.on_residual(residual, before[1 - index], before[index])
        if any(t is out for t in inputs):
            out.copy_(value)
            return out
        return value

    # -- what a weight's use is ------------------------------------------------------------------------
    def _weights(self, name: str, args: tuple[Any, ...], kwargs: Any,
                 weights: list[tuple[int, Tensor]]) -> list[tuple[str, int]]:  # fmt: skip
        """Record the weight uses of one operator; returns the weight layers whose output it is, with the order
        of each use."""
        module = self.stack[-1][0] if self.stack else ""
        found: list[tuple[str, int]] = []
        for use, tensor in uses(name, args, kwargs):
            pname = self.names.get(id(tensor))
            if pname is None:
                continue
            layer = self.layers.setdefault(pname, Layer(pname, tuple(tensor.shape)))
            layer.uses.append(Use(**{**use, "module": module, "order": self.order}))
            self.use_layer[self.order] = pname
            found.append((pname, self.order))
            self.order += 1
        for _, tensor in weights:
            pname = self.names[id(tensor)]
            if pname in self.layers:
                continue
            if tensor.ndim <= 1:
                self.vectors.setdefault(pname, name)
            elif pname not in self.unclassified:
                self.unclassified[pname] = f"used by {name}, which initlab has no fan rule for"
        return found

    # -- activation modules: the whole module is the activation ----------------------------------------
    def enter(self, module: nn.Module) -> bool:
        if acts_as_activation(module):
            self.opaque += 1
            return True
        return False

    def leave(self, module: nn.Module, name: str, args: tuple[Any, ...], output: Any) -> None:
        self.opaque -= 1
        if self.opaque:
            return
        flow = next((self.flows[id(a)] for a in args if isinstance(a, Tensor) and id(a) in self.flows), None)
        if flow is None:
            return
        for layer in flow.pending:  # resolved after the pass (identify_activation runs the module)
            if self.layers[layer].activation is None:
                self.modules.append((layer, module, name))
        self._mark(output, frozenset(), flow.ancestry)


def _flat(args: Any, kwargs: Any) -> Iterator[Any]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, list | tuple):
            yield from _flat(value, {})
        elif isinstance(value, dict):
            yield from _flat((), value)
        elif hasattr(value, "to_tuple") and not isinstance(value, Tensor):  # a Hugging Face ModelOutput
            yield from _flat(tuple(value.to_tuple()), {})
        else:
            yield value


@contextlib.contextmanager
def _module_stack(recorder: _Recorder, stack: list[tuple[str, nn.Module]],
                  names: Mapping[nn.Module, str]) -> Iterator[None]:  # fmt: skip
    opaque: list[bool] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        stack.append((names.get(module, ""), module))
        opaque.append(recorder.enter(module))

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name, _ = stack.pop()
        if opaque.pop():
            recorder.leave(module, name, args, output)

    with module_hooks(pre, post):
        yield


def _parameter_names(model: nn.Module) -> tuple[dict[int, str], dict[str, list[str]]]:
    """id(tensor) -> first name, and first name -> every name (tied copies)."""
    ids: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first = ids.setdefault(id(p), name)
        aliases.setdefault(first, []).append(name)
    return ids, aliases


def capture(model: nn.Module, example: Any, on_residual: OnResidual | None = None) -> Structure:
    """Run ``model`` once on ``example`` (a tensor, a tuple of positional inputs or a dict of keyword inputs) and
    return its :class:`Structure`. The model's modes, buffers and torch's RNG state are restored; no gradient is
    taken. On a model whose parameters are on the meta device the pass allocates nothing. ``on_residual(residual,
    skip, branch)``, where given, is called at each residual addition and returns the sum the pass goes on with
    (LSUV's stream mode scales each branch there). A sharded model (FSDP2) is read off a stand-in on the meta device
    (:func:`~initlab.init._meta.meta_ghost`): running it would gather every layer across the ranks."""
    model = unwrap(model)
    if sharded(model):
        model, example = meta_ghost(model), to_meta(example)
    ids, aliases = _parameter_names(model)
    stack: list[tuple[str, nn.Module]] = []
    names = {m: n for n, m in model.named_modules()}
    recorder = _Recorder(ids, stack, on_residual)
    parametrized = _computed_weights(model)
    with parametrize.cached(), restored(model), torch.no_grad():
        computed = [(name, getattr(module, attr)) for name, (module, attr) in parametrized.items()]  # kept alive
        ids.update({id(value): name for name, value in computed})
        with _module_stack(recorder, stack, names), recorder:
            output = call(model, example)
    layers = recorder.layers
    for layer in layers.values():
        layer.aliases = tuple(a for a in aliases.get(layer.name, [layer.name]) if a != layer.name)
        layer.parametrized = layer.name in parametrized
        layer.role = {"embedding": "embedding", "recurrent": "recurrent"}.get(layer.use.op, "hidden")
    for name, module, where in recorder.modules:
        if layers[name].activation is None:
            layers[name].activation, layers[name].activation_source = identify_activation(module), "module"
            layers[name].activation_module = where
    readout = _mark_output(recorder, output)
    params = dict(model.named_parameters())
    for name in params:
        owner = name.rsplit(".parametrizations.", 1)[0] if ".parametrizations." in name else None
        known = name in layers or name in recorder.vectors or any(name in layer.aliases for layer in layers.values())
        if not known and owner is None and name not in recorder.unclassified:
            recorder.unclassified[name] = "not used by the forward pass on the example"
    for layer in layers.values():
        p = params.get(layer.name)
        layer.frozen = p is not None and not p.requires_grad
    frozen = [n for n, p in params.items() if not p.requires_grad]
    norms = _norm_modules(model, recorder.module_ops)
    return Structure(
        layers, recorder.vectors, recorder.residuals, recorder.unclassified, frozen, readout, norms, recorder.attention
    )


_NORMALIZING = {"rsqrt", "layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm", "var", "std",
                "var_mean", "std_mean", "norm", "normalize"}  # fmt: skip


def _norm_modules(model: nn.Module, module_ops: Mapping[str, set[str]]) -> list[str]:
    """Modules whose own forward normalizes and whose own parameters are vectors (LayerNorm, RMSNorm written as
    ``x * rsqrt(mean(x²))``, ...): their scale starts at 1 and their shift at 0."""
    out = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own and all(p.ndim == 1 for p in own) and module_ops.get(name, set()) & _NORMALIZING:
            out.append(name)
    return out


def _computed_weights(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Weights a parametrization computes (spectral norm, orthogonal, weight norm): name -> (module, attribute)."""
    out = {}
    for prefix, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for attr in module.parametrizations:
                out[f"{prefix}.{attr}" if prefix else attr] = (module, attr)
    return out


def _mark_output(recorder: _Recorder, output: Any) -> str | None:
    """The readout: the weight whose output reaches the model's (first) output with no activation in between
    and which is not the last layer of a residual branch (a transformer without a head ends in its stream)."""
    branch_ends = {r.last for r in recorder.residuals}
    for t in _flat((output,), {}):
        flow = recorder.flows.get(id(t)) if isinstance(t, Tensor) else None
        if flow is None or not flow.pending:
            continue
        candidates = [n for n in flow.pending if n not in branch_ends]
        if len(candidates) != 1:
            return None
        layer = recorder.layers[candidates[0]]
        if layer.uses[-1].op != "embedding":  # a tied readout is the embedding's second use
            if layer.role != "embedding":
                layer.role = "output"
            return layer.name
        return None
    return None


def capture_or_why(model: nn.Module, example: Any = None) -> Structure | str:
    """:func:`capture` on ``example``, or on an input read off the model (:func:`example_input`); where there is no
    input or the model does not run on it, the reason, so that the caller can fall back and say why."""
    example = example_input(model) if example is None else example
    if example is None:
        return "no example input could be read off the model (pass example=)"
    try:
        return capture(model, example)
    except Exception as error:  # a model that does not take the guessed input
        return f"the model did not run on the example input ({type(error).__name__}: {str(error)[:120]})"
