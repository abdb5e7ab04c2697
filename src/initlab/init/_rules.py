"""The rules that make ``initialize``'s plans (:mod:`initlab.init._plan`), one per module type, and the weights
only their use explains: Linear, ConvNd and ConvTransposeNd (the scheme with the layer's true fans, the bias by the
scheme's bias rule), Embedding (fan_in 1, the padding row zero), RNN/LSTM/GRU (input weights per gate block,
recurrent weights orthogonal per gate block, LSTM forget-gate bias 1), norms (γ = 1, β = 0), MultiheadAttention
(q/k/v blocks as Linear layers), and by their use in the structure pass any other weight (GPT-2's ``Conv1D``,
``F.linear(x, self.w)``, einsum projections). :func:`plan_model` runs them all, then the residual and role rules
(:mod:`initlab.init._residual`) that change plans; nothing is drawn here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab.init import _formulas as f
from initlab.init._plan import Plan
from initlab.init._report import LayerInit, record_gain, target_std, weight_gain
from initlab.init._residual import residual_rule, zero_roles
from initlab.init._torch_draw import check_shape, draw_
from initlab.init._walk import NORM_LAYERS, Found
from initlab.init.activations import Activation, activation
from initlab.init.fans import Fans, fans
from initlab.init.registry import Initializer, get
from initlab.init.structure import Structure

__all__ = ["ActivationSpec", "Planning", "bias_rule", "logical", "plan_model", "structure_activations"]

ActivationSpec = str | nn.Module | Callable[[Tensor], Tensor]


@dataclasses.dataclass
class Planning:
    init: Initializer
    bias: Initializer | float | None
    recurrent: Initializer
    generator: torch.Generator | None
    found: dict[str, Found]
    gain_from: str = "published"
    rows: list[LayerInit] = dataclasses.field(default_factory=list)
    owner: dict[int, int] = dataclasses.field(default_factory=dict)  # id(parameter) -> its row
    # (scheme, activation) -> [(the layer's forward gain std·√fan_in, the activation's gain)], for the notes
    mismatches: dict[tuple[str, str], list[tuple[float, float]]] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # said by the rules, for the report
    seed: int | None = None  # keyed mode: each parameter's stream from the seed and its name alone
    plans: list[Plan] = dataclasses.field(default_factory=list)  # every draw, in order (drawn once all rules ran)
    shadowed: list[Plan] = dataclasses.field(default_factory=list)  # a tied parameter's plans under its later names

    def stream(self, key: str, like: Tensor) -> torch.Generator | None:
        """The generator a parameter (or one block of it) is drawn from: the one sequential ``generator``, or, in
        keyed mode, a generator of its own seeded from ``(seed, key)``, on the tensor's device."""
        if self.seed is None:
            return self.generator
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return torch.Generator(device=like.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def plan_model(model: nn.Module, init: Initializer, bias: Initializer | float | None, recurrent: Initializer,
               generator: torch.Generator | None, residual: str | None, activation: Any, gain_from: str,
               structure: Structure, seed: int | None = None) -> Planning:  # fmt: skip
    """Every module rule, then the weights only their use explains, the residual rule and the zeroed roles: the
    plans (and rows) of every parameter, checked, with nothing drawn (``initialize`` draws them, ``verify``
    compares them with the tensors that are there)."""
    found = structure_activations(structure)
    ctx = Planning(init, bias, recurrent, generator, _with_overrides(structure, found, activation), gain_from,
                   seed=seed)  # fmt: skip
    residual = residual or init.scheme.residual_rule  # gpt2 scales its residual projections by itself
    branches = _branches(structure) if residual is not None else []  # refused before any tensor is touched
    for name, module in model.named_modules():
        rule = _rule_for(module)
        if rule is not None:
            _apply(rule, name, module, ctx)
    _by_use(model, structure, ctx)
    if residual is not None:
        note = residual_rule(model, structure, branches, residual, ctx.plans)
        ctx.notes += [note] if note else []
    if init.scheme.zero:
        zero_roles(init.scheme.zero, structure, ctx.plans)
    return ctx


def _apply(rule: Callable[[str, Any, Planning], None], name: str, module: nn.Module, ctx: Planning) -> None:
    """Run one module's rule. A parameter shared with a module met before (tied weights: an Embedding and the output
    Linear) keeps the first plan and is reported once, on the first row, with every name it has."""
    own = dict(module.named_parameters(recurse=False))
    shared = {pname: p for pname, p in own.items() if id(p) in ctx.owner}
    first, planned = len(ctx.rows), len(ctx.plans)
    rule(name, module, ctx)
    ctx.shadowed += [p for p in ctx.plans[planned:] if p.module is module and p.pname in shared]
    ctx.plans[planned:] = [p for p in ctx.plans[planned:] if not (p.module is module and p.pname in shared)]
    kept = []
    for row in ctx.rows[first:]:
        pname = row.name[len(name) + 1 :] if name else row.name
        if pname in shared:
            ctx.rows[ctx.owner[id(shared[pname])]].name += f" = {row.name}"
        else:
            kept.append(row)
    ctx.rows[first:] = kept
    index = {row.name: i for i, row in enumerate(ctx.rows)}
    for pname, p in own.items():
        if id(p) not in ctx.owner and _join(name, pname) in index:
            ctx.owner[id(p)] = index[_join(name, pname)]


def logical(name: str) -> str:
    """The weight a parametrization's original computes: ``fc.parametrizations.weight.original0`` → ``fc.weight``
    (written through the parametrization when that weight was initialized)."""
    owner, sep, rest = name.partition("parametrizations.")
    return owner + rest.split(".", 1)[0] if sep else name


def bias_rule(bias: str | float | Mapping[str, Any] | Initializer | None) -> Initializer | float | None:
    if bias is None or isinstance(bias, int | float):
        return None if bias is None else float(bias)
    return get(bias)


def _with_overrides(
    structure: Structure, found: dict[str, Found], override: ActivationSpec | Mapping[str, ActivationSpec] | None
) -> dict[str, Found]:
    if override is None:
        return found
    layers = list(dict.fromkeys(structure.owner(n) for n in structure.layers))  # the weights' modules, in order
    if isinstance(override, Mapping):
        names = set(layers)
        for layer, act in override.items():
            if layer not in names:
                raise unknown_name("layer", layer, names)
            found[layer] = Found(activation(act), "override")
        return found
    for layer in layers[:-1]:
        if found.get(layer, Found(None, "none")).activation is None:
            found[layer] = Found(activation(override), "override")
    return found


def _rule_for(module: nn.Module) -> Callable[[str, Any, Planning], None] | None:
    if isinstance(module, nn.RNNBase):
        return _recurrent
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return _embedding
    if isinstance(module, nn.Linear | nn.Bilinear | nn.modules.conv._ConvNd):
        return _dense
    if isinstance(module, NORM_LAYERS):
        return _norm
    if isinstance(module, nn.MultiheadAttention):
        return _attention
    return None


def _weight_scheme(init: Initializer, rank: int) -> Initializer:
    """Schemes defined for one rank mean their twin on the other (identity ↔ dirac, delta → orthogonal)."""
    twin = {
        ("identity", True): "dirac",
        ("dirac", False): "identity",
        ("delta_orthogonal", False): "orthogonal",
    }
    name = twin.get((init.name, rank > 2))
    return init if name is None else get(name)


def _init_weight(
    name: str,
    module: nn.Module,
    pname: str,
    ctx: Planning,
    layer_fans: Fans,
    found: Found,
    init: Initializer | None = None,
    gain: float | None = None,
    block: tuple[int, int] | None = None,
) -> None:
    """Plan ``module.<pname>`` (or its row block ``block`` = (index, blocks)) with the scheme, and its row."""
    param = getattr(module, pname)
    target = param if block is None else param.chunk(block[1])[block[0]]
    init = _weight_scheme(init or ctx.init, target.ndim)
    act: Activation | None = found.activation
    gain, source = weight_gain(init, act, found.source, ctx.gain_from, gain)
    dist = init.dist(layer_fans, gain)
    shape = tuple(target.shape)
    check_shape(dist, shape)  # a refusal now, before any tensor is drawn
    std = target_std(dist, shape)
    record_gain(ctx.mismatches, init, act, source, std, layer_fans.fan_in)
    reported = gain if gain is not None else init.scheme.default_gain
    row = LayerInit(_join(name, pname), type(module).__name__, shape, layer_fans.fan_in, layer_fans.fan_out, init.name,
                    std, reported if init.scheme.gain_param else None, act.name if act is not None else "linear",
                    source)  # fmt: skip
    ctx.rows.append(row)
    key = _join(name, pname) if block is None else f"{_join(name, pname)}[{block[0]}]"
    fill = functools.partial(_scheme_fill, init, gain, layer_fans)
    ctx.plans.append(Plan(module, pname, fill, key, row, block, dist=dist))


def _scheme_fill(init: Initializer, gain: float | None, layer_fans: Fans, tensor: Tensor,
                 generator: torch.Generator | None) -> None:  # fmt: skip
    init(tensor, gain=gain, fans=layer_fans, generator=generator)


def _dist_fill(dist: f.Dist, tensor: Tensor, generator: torch.Generator | None) -> None:
    draw_(tensor, dist, generator)


def _init_bias(
    name: str,
    module: nn.Module,
    pname: str,
    ctx: Planning,
    layer_fans: Fans,
    found: Found,
    value: float | None = None,
) -> None:
    tensor = getattr(module, pname, None)
    if tensor is None:
        return
    rule = ctx.bias if value is None else value
    if rule is None and ctx.init.scheme.bias_rule is not None:
        dist = ctx.init.scheme.bias_rule(found.activation, layer_fans, ctx.init.params)
        label = f"{ctx.init.name} bias"
    elif isinstance(rule, Initializer):
        dist, label = rule.dist(layer_fans), rule.name
    else:
        dist, label = f.Constant(rule or 0.0), "constant" if rule else "zeros"
    check_shape(dist, tuple(tensor.shape))
    _plain_row(ctx, name, module, pname, label, target_std(dist, tuple(tensor.shape)), "bias")
    ctx.plans.append(
        Plan(module, pname, functools.partial(_dist_fill, dist), _join(name, pname), ctx.rows[-1], dist=dist)
    )


def _plain_row(
    ctx: Planning, name: str, module: nn.Module, pname: str, scheme: str, std: float | None, source: str
) -> None:
    """Report a parameter that has no fans or gain (a bias, a norm scale)."""
    shape = tuple(getattr(module, pname).shape)
    ctx.rows.append(
        LayerInit(_join(name, pname), type(module).__name__, shape, None, None, scheme, std, None, "-", source)
    )


def _join(prefix: str, pname: str) -> str:
    return f"{prefix}.{pname}" if prefix else pname


def _dense(name: str, module: Any, ctx: Planning) -> None:
    found = ctx.found.get(name, Found(None, "none"))
    layer_fans = fans(module.weight, layer=module)
    _init_weight(name, module, "weight", ctx, layer_fans, found)
    _init_bias(name, module, "bias", ctx, layer_fans, found)


def _embedding(name: str, module: Any, ctx: Planning) -> None:
    layer_fans = fans(module.weight, layer=module)
    rule = ctx.init.scheme.embedding_rule
    if rule is None:
        _init_weight(name, module, "weight", ctx, layer_fans, Found(None, "lookup"), gain=1.0)
    else:  # a scheme with its own rule for lookup tables (small_embedding)
        dist = rule(layer_fans, ctx.init.params)
        ctx.rows.append(LayerInit(_join(name, "weight"), type(module).__name__, tuple(module.weight.shape),
                                  layer_fans.fan_in, layer_fans.fan_out, f"{ctx.init.name} (embedding)",
                                  target_std(dist, tuple(module.weight.shape)), None, "linear", "lookup"))  # fmt: skip
        ctx.plans.append(Plan(module, "weight", functools.partial(_dist_fill, dist), _join(name, "weight"),
                              ctx.rows[-1], dist=dist))  # fmt: skip
    padding = getattr(module, "padding_idx", None)
    if padding is not None:
        ctx.plans[-1].fixed.append(lambda table: table[padding].zero_())


def _recurrent(name: str, module: Any, ctx: Planning) -> None:
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    found = ctx.found.get(name, Found(None, "recurrent cell"))
    for pname, _ in module.named_parameters(recurse=False):
        if pname.startswith("bias"):
            _init_bias(name, module, pname, ctx, Fans(1, 1), found, value=0.0)
            if module.mode == "LSTM" and pname.startswith("bias_ih"):  # the forget gate (order i, f, g, o) open
                ctx.plans[-1].fixed.append(lambda bias: bias.chunk(4)[1].fill_(1.0))
                ctx.rows[-1].scheme = "zeros, forget gate 1"
        elif pname.startswith("weight_hh"):
            _init_blocks(name, module, pname, gates, ctx, found, init=ctx.recurrent, gain=1.0)
        else:
            _init_blocks(name, module, pname, 1 if pname.startswith("weight_hr") else gates, ctx, found)


def _init_blocks(
    name: str,
    module: nn.Module,
    pname: str,
    blocks: int,
    ctx: Planning,
    found: Found,
    init: Initializer | None = None,
    gain: float | None = None,
) -> None:
    """Plan each of ``blocks`` row blocks (gates, q/k/v) as its own layer, with a stream of its own in keyed mode;
    report them as one row."""
    param = getattr(module, pname)
    rows_before, plans_before = len(ctx.rows), len(ctx.plans)
    for i, block in enumerate(param.chunk(blocks)):
        _init_weight(name, module, pname, ctx, fans(block), found, init=init, gain=gain,
                     block=None if blocks == 1 else (i, blocks))  # fmt: skip
    first = ctx.rows[rows_before]
    del ctx.rows[rows_before:]
    row = dataclasses.replace(first, name=_join(name, pname), kind=type(module).__name__, shape=tuple(param.shape))
    ctx.rows.append(row)
    for i, plan in enumerate(ctx.plans[plans_before:]):
        plan.row = row if i == 0 else None


def _norm(name: str, module: Any, ctx: Planning) -> None:
    for pname, value in (("weight", 1.0), ("bias", 0.0)):
        tensor = getattr(module, pname, None)
        if isinstance(tensor, Tensor):
            _plain_row(ctx, name, module, pname, "ones" if value else "zeros", 0.0, "norm")
            dist = f.Constant(value)
            ctx.plans.append(
                Plan(module, pname, functools.partial(_dist_fill, dist), _join(name, pname), ctx.rows[-1], dist=dist)
            )


def _attention(name: str, module: Any, ctx: Planning) -> None:
    found = Found(None, "attention")
    for pname, param in module.named_parameters(recurse=False):
        if param.ndim == 2:
            _init_blocks(name, module, pname, 3 if pname == "in_proj_weight" else 1, ctx, found)
        else:
            _init_bias(name, module, pname, ctx, Fans(1, 1), found, value=0.0)


def structure_activations(structure: Structure) -> dict[str, Found]:
    """The activation after each weight layer, by the module that owns the weight (as the module rules ask)."""
    out: dict[str, Found] = {}
    for name, layer in structure.layers.items():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        out.setdefault(owner, Found(layer.activation, layer.activation_source))
    return out


def _by_use(model: nn.Module, structure: Structure, ctx: Planning) -> None:
    """Weights no module rule reached (GPT-2's Conv1D, a custom module's ``F.linear(x, self.w)``, an einsum
    projection): initialized by their use, with the fans of that use, and their module's bias with them."""
    params = dict(model.named_parameters())
    for name in structure.norms:  # a norm written out (Llama's RMSNorm): scale 1, shift 0, like torch's norms
        module = model.get_submodule(name)
        if all(id(p) not in ctx.owner for p in module.parameters(recurse=False)):
            _apply(_norm, name, module, ctx)
    for name, layer in structure.layers.items():
        p = params.get(name)
        if p is None or id(p) in ctx.owner or layer.use.op in ("embedding", "recurrent", "attention"):
            continue
        owner, pname = name.rsplit(".", 1) if "." in name else ("", name)
        module = model.get_submodule(owner)
        found = ctx.found.get(owner, Found(layer.activation, layer.activation_source))
        layer_fans = Fans(layer.use.fan_in, layer.use.fan_out)
        first = len(ctx.rows)
        _init_weight(owner, module, pname, ctx, layer_fans, found)
        if pname == "weight" and isinstance(getattr(module, "bias", None), Tensor):
            _init_bias(owner, module, "bias", ctx, layer_fans, found)
        for i, row in enumerate(ctx.rows[first:], first):
            row.source = f"{row.source}, by use ({layer.use.op})"
            ctx.owner[id(params[row.name])] = i


def _branches(structure: Structure) -> list[list[str]]:
    """Each residual branch's weight-owning modules in order."""
    if not structure.residuals_known:
        raise fail(
            "residual rules need the model's residual additions: pass example= (an input the model takes), or a "
            "model torch.fx can trace",
            fix="initialize(model, scheme, residual=..., example=x).",
        )
    return [list(dict.fromkeys(structure.owner(n) for n in r.branch)) for r in structure.residuals]
