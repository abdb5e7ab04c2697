"""µP, the maximal update parametrization (Yang et al. 2021, "Tensor Programs V"), without changing the model.

A parameter's *width dimensions* are those that differ between a ``base`` model and a ``delta`` model (the same
architecture at two widths; ``delta`` defaults to the model itself, as in the ``mup`` package). With ``m`` the
ratio of a width dimension to the base's, each parameter gets a role and, relative to the standard
parametrization (SP) initialization and learning rate ``lr``:

================  ==========================================  ===============  =========  ===========
role              which                                       init std         SGD lr     Adam lr
================  ==========================================  ===============  =========  ===========
``hidden``        both dims width (q, k, v, MLP, conv)        ×1               ×m_out/m_in ×1/m_in
``output``        only fan-in width (the readout)             ×1/√m, or 0      ×1/m       ×1/m
``vector``        one width dim otherwise (input weights,     ×1               ×m         ×1
                  embeddings, biases, norm scales)
``fixed``         no width dim (e.g. the readout's bias)      ×1               ×1         ×1
================  ==========================================  ===============  =========  ===========

This is the ``mup`` package's µP (``MuReadout`` + ``MuSGD``/``MuAdam``) with the readout's 1/m output multiplier
moved into its initialization and learning rate (an equivalent parametrization: a weight ``W`` read as ``a·W``
trains like ``W`` with init ×a, Adam lr ×a and SGD lr ×a²), so any ``nn.Module`` works unchanged. As the paper
recommends, the readout and the query projections start at zero, and attention uses 1/d scaling (logits
×√d_base/d for initlab's transformer attention, equal to 1/√d at the base width). Biases of layers whose fan-in is
a width dimension are ×√m_in, as ``mup.set_base_shapes`` does (so torch's default bias init stays width-free).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from initlab._errors import fail, unknown_name
from initlab.init._walk import structure_of
from initlab.init.structure import Layer, Structure

__all__ = ["ADAM_LIKE", "SGD_LIKE", "Mup", "MupParam", "mup"]

SGD_LIKE = ("sgd", "momentum")
ADAM_LIKE = ("adam", "adamw", "rmsprop")  # entrywise-normalized updates: Adam's rule (TP5, Appendix B)


@dataclasses.dataclass(frozen=True)
class MupParam:
    """One parameter's µP role and multipliers (relative to SP with the same base learning rate)."""

    name: str
    role: str  # hidden, output, vector or fixed
    fan_in_mult: float  # width ratio of the fan-in dimension (1 if it is not a width)
    fan_out_mult: float
    init: float  # multiplier applied to the SP initialization (0: zero-initialized)
    sgd_lr: float
    adam_lr: float


@dataclasses.dataclass
class Mup:
    """What :func:`mup` did, and the optimizer parameter groups that complete µP."""

    model: nn.Module
    params: list[MupParam]

    def __iter__(self) -> Iterator[MupParam]:
        return iter(self.params)

    def param_groups(self, optimizer: str, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Parameter groups for ``torch.optim`` (one per learning-rate multiplier): ``optimizer`` is ``sgd`` or
        ``momentum`` (SGD's rule) or ``adam``, ``adamw``, ``rmsprop`` (Adam's rule). Weight decay is divided by
        each group's multiplier, as the ``mup`` package does, so that lr·wd stays width-free."""
        if optimizer not in SGD_LIKE + ADAM_LIKE:
            raise unknown_name("optimizer", optimizer, SGD_LIKE + ADAM_LIKE)
        named = dict(self.model.named_parameters())
        groups: dict[float, dict[str, Any]] = {}
        for p in self.params:
            mult = p.sgd_lr if optimizer in SGD_LIKE else p.adam_lr
            group = groups.setdefault(mult, {"params": [], "names": [], "lr": lr * mult,
                                             "weight_decay": weight_decay / mult})  # fmt: skip
            group["params"].append(named[p.name])
            group["names"].append(p.name)
        return list(groups.values())


def _shapes(model: nn.Module | Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    if isinstance(model, nn.Module):
        return {name: tuple(p.shape) for name, p in model.named_parameters()}
    return {name: tuple(shape) for name, shape in model.items()}


def mup(
    model: nn.Module,
    base: nn.Module | Mapping[str, tuple[int, ...]],
    delta: nn.Module | Mapping[str, tuple[int, ...]] | None = None,
    *,
    zero_readout: bool = True,
    zero_query: bool = True,
) -> Mup:
    """Turn ``model``'s standard initialization (already drawn, e.g. by :func:`initlab.initialize`) into µP's, in
    place, relative to ``base`` (the same architecture at the base width), and return the roles and the
    optimizer parameter groups (:meth:`Mup.param_groups`). See the module docs for the table.

    >>> def mlp(w):
    ...     return nn.Sequential(nn.Linear(10, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 3))
    >>> plan = mup(mlp(256), base=mlp(64), delta=mlp(128))
    >>> [(p.name, p.role, p.sgd_lr, p.adam_lr) for p in plan if p.name.endswith("weight")]
    [('0.weight', 'vector', 4.0, 1.0), ('2.weight', 'hidden', 1.0, 0.25), ('4.weight', 'output', 0.25, 0.25)]

    Raises:
        InitlabError: parameters that differ in name from ``base``, more than two width dimensions, a readout
            tied to an embedding (µP gives the two different learning rates), or ``nn.MultiheadAttention`` (its
            1/√d scaling is fixed; use modules with separate ``query``/``key`` projections and a ``scale``).
    """
    shapes, base_shapes = _shapes(model), _shapes(base)
    delta_shapes = shapes if delta is None else _shapes(delta)
    if set(shapes) != set(base_shapes) or set(shapes) != set(delta_shapes):
        missing = sorted(set(shapes) ^ set(base_shapes) | set(shapes) ^ set(delta_shapes))
        raise fail("the model and its base (and delta) must have the same parameters", received=missing[:5],
                   fix="Build the base model with the same architecture at the base width.")  # fmt: skip
    structure = structure_of(model)
    _check_modules(model, structure)
    queries = {f"{name}.weight" for name in structure.queries_and_keys()[0]}
    lookups = {n for n, layer in structure.layers.items() if layer.use.op == "embedding"}
    stored_in_out = {n for n, layer in structure.layers.items() if _in_out(layer)}  # GPT-2's Conv1D: (in, out)
    params = []
    for name in shapes:
        flip = name in stored_in_out
        sizes = (_flip(shapes[name], flip), _flip(base_shapes[name], flip), _flip(delta_shapes[name], flip))
        params.append(_role(name, *sizes, name in lookups, zero_readout, zero_query and name in queries))
    _apply(model, params, structure)
    _attention_scale(model, base if isinstance(base, nn.Module) else None)
    return Mup(model, params)


def _in_out(layer: Layer) -> bool:
    """Whether a 2-D weight is stored (in, out), as its use reads it (``addmm``, ``x @ W``)."""
    return len(layer.shape) == 2 and (
        layer.use.op == "addmm"
        or (layer.use.op == "matmul" and (layer.use.fan_in, layer.use.fan_out) == layer.shape != layer.shape[::-1])
    )


def _flip(shape: tuple[int, ...], stored_in_out: bool) -> tuple[int, ...]:
    return shape[::-1] if stored_in_out else shape


def _check_modules(model: nn.Module, structure: Structure) -> None:
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise fail("µP needs 1/d attention, and nn.MultiheadAttention fixes 1/√d",
                   fix="Use attention with separate query/key/value projections and a `scale` attribute "
                       "(initlab.compare.transformer.CausalSelfAttention).")  # fmt: skip
    for layer in structure.layers.values():
        ops = {use.op for use in layer.uses}
        if "embedding" in ops and ops - {"embedding"}:
            readout = next((use.module for use in layer.uses if use.op != "embedding"), layer.name)
            raise fail(f"µP cannot be applied without output multipliers to {readout!r}: its weight is tied to an "
                       "embedding, and µP gives the readout and the embedding different learning rates",
                       fix="Build the model with an untied output layer (tied=False).")  # fmt: skip


def _role(name: str, shape: tuple[int, ...], base: tuple[int, ...], delta: tuple[int, ...], lookup: bool,
          zero_readout: bool, zero: bool) -> MupParam:  # fmt: skip
    if len(shape) != len(base) or len(shape) != len(delta):
        raise fail(f"parameter {name!r} has shape {shape} but {base} in the base", fix="Use the same architecture.")
    mults = [s / b if b != d else 1.0 for s, b, d in zip(shape, base, delta, strict=True)]
    width_dims = [i for i, (b, d) in enumerate(zip(base, delta, strict=True)) if b != d]
    if len(width_dims) > 2:
        raise fail(f"parameter {name!r} has {len(width_dims)} width dimensions", accepted="at most 2")
    fan_in = mults[1] if len(shape) >= 2 else 1.0
    fan_out = mults[0]
    if len(width_dims) == 2:
        role, init, sgd, adam = "hidden", 1.0, fan_out / fan_in, 1 / fan_in
    elif len(width_dims) == 1 and len(shape) >= 2 and width_dims == [1] and not lookup:
        role, init, sgd, adam = "output", 0.0 if zero_readout else fan_in**-0.5, 1 / fan_in, 1 / fan_in
    elif len(width_dims) == 1:
        role, init, sgd, adam = "vector", 1.0, mults[width_dims[0]], 1.0
    else:
        role, init, sgd, adam = "fixed", 1.0, 1.0, 1.0
    return MupParam(name, role, fan_in, fan_out, 0.0 if zero else init, sgd, adam)


@torch.no_grad()
def _apply(model: nn.Module, params: list[MupParam], structure: Structure) -> None:
    named = dict(model.named_parameters())
    roles = {p.name: p for p in params}
    for p in params:
        if p.init != 1.0:
            named[p.name].mul_(p.init)
    for name, layer in structure.layers.items():  # mup.set_base_shapes' rescale_linear_bias
        weight = roles.get(name)
        bias = named.get(f"{structure.owner(name)}.bias" if "." in name else "bias")
        if layer.use.op in ("linear", "addmm", "conv") and name.endswith("weight") and bias is not None and weight:
            bias.mul_(0.0 if weight.init == 0.0 else math.sqrt(weight.fan_in_mult))


def _attention_scale(model: nn.Module, base: nn.Module | None) -> None:
    """1/d attention: logits ×√d_base/d (1/√d at the base width), for modules with ``scale`` and ``head_dim``."""
    base_dims = {name: m.head_dim for name, m in base.named_modules() if hasattr(m, "head_dim")} if base else {}
    for name, module in model.named_modules():
        if hasattr(module, "scale") and hasattr(module, "head_dim"):
            base_dim = base_dims.get(name, module.head_dim)
            module.scale = math.sqrt(base_dim) / module.head_dim
