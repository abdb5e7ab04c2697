"""Initialize a whole ``nn.Module`` in one call, with the right fans and gain for every layer.

``initialize(model, "he_normal")`` walks the model, and for each layer:

* Linear, ConvNd (any groups), ConvTransposeNd: the scheme on the weight with the layer's true fans
  (:func:`initlab.init.fans`); the bias by the scheme's bias rule (zeros, except ``torch_default``, which
  reproduces torch's ``U(±1/√fan_in)``) unless ``bias=`` says otherwise.
* Names keep their published meaning: Glorot/Xavier and LeCun have no activation gain, He/Kaiming is
  √(2/fan_in) whatever follows (the paper, Keras, torch's default), torch's and Keras' names draw what their
  functions draw. ``gain_from="activation"`` is initlab's explicit opt-in: each layer's gain becomes that of the
  activation that *follows* it (found in one forward pass on an example input, :mod:`initlab.init.structure`;
  without one by torch.fx tracing, else by module order, else from ``activation=``).
  The ``source`` column says where each gain came from; a note says where a published gain is poorly matched
  to a ReLU-like activation (there the variance factor per layer is exact) and names the opt-in. The
  ``critical`` scheme is defined by the activation, so it always reads it.
* Embedding: the scheme with ``fan_in = 1`` (a lookup), the padding row zero.
* RNN/LSTM/GRU: input weights per gate block with the scheme, recurrent weights orthogonal per gate block
  (Saxe et al. 2014; ``recurrent=`` to change), biases zero, LSTM forget-gate bias 1 (Jozefowicz et al. 2015).
* BatchNorm/LayerNorm/GroupNorm/RMSNorm: γ = 1, β = 0. MultiheadAttention: q/k/v blocks like Linear layers.
* ``residual=``: the residual rules (:mod:`initlab.init._residual`).

Every rule first makes plans (:mod:`initlab.init._plan`); the residual and role rules change them; then each tensor
is drawn once, and the report is read off the plans.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab.init import GAIN_SOURCES, RESIDUAL_RULES
from initlab.init import _formulas as f
from initlab.init._keras_model import initialize_keras, is_keras_model
from initlab.init._meta import check_meta, materialize, sharded, to_meta
from initlab.init._plan import Plan, draw
from initlab.init._report import HOMOGENEOUS, InitReport, LayerInit, notes_on_gains, target_std, weight_gain
from initlab.init._residual import deepnorm_constants, residual_rule, zero_roles
from initlab.init._torch_draw import check_shape, draw_
from initlab.init._walk import NORM_LAYERS, Found, from_modules
from initlab.init.activations import Activation, activation
from initlab.init.fans import Fans, fans
from initlab.init.gains import gain as gain_of
from initlab.init.lsuv import LsuvReport, calibrate, first_batch, prior_bias
from initlab.init.registry import Initializer, get
from initlab.init.structure import Structure, capture_or_why, unwrap

__all__ = ["GAIN_SOURCES", "InitReport", "LayerInit", "deepnorm_constants", "initialize", "lsuv"]

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


def initialize(
    model: nn.Module,
    scheme: str | Mapping[str, Any] | Initializer = "he_normal",
    *,
    bias: str | float | Mapping[str, Any] | Initializer | None = None,
    generator: torch.Generator | None = None,
    residual: str | None = None,
    activation: ActivationSpec | Mapping[str, ActivationSpec] | None = None,
    recurrent: str | Initializer = "orthogonal",
    gain_from: str = "published",
    data: Any = None,
    output_bias: str | None = None,
    example: Any = None,
    frozen: bool = False,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> InitReport:
    """Initialize every parameter of ``model`` in place and report what was done.

    Args:
        model: any ``nn.Module``, or a built Keras 3 model (any backend; the activation after each layer is the
            layer's own ``activation``, every variable is assigned in place).
        scheme: a scheme name (``initlab schemes`` lists them), config dict or Initializer.
        bias: ``None`` for the scheme's own rule (zeros, or torch's for ``torch_default``), a number for a
            constant, or a scheme name for an initializer.
        generator: a ``torch.Generator``; the same seed gives the same weights (drawn one after another in module
            order, as torch's own initializers draw).
        seed: keyed mode, instead of ``generator``: each parameter's random stream is derived from ``seed`` and
            the parameter's name alone, so the weights are bit-identical whatever the order in which modules
            are defined or initialized, and whether the model was built on the meta device, on CPU or GPU.
        residual: ``None``, ``"zero_last"``, ``"fixup"``, ``"scaled"`` (each branch's last layer ×1/√branches,
            GPT-2's rule; the ``gpt2`` scheme applies it by itself) or ``"deepnorm"`` (value, output and MLP
            projections ×β, DeepNet; the ``deepnorm`` scheme applies it) (see the module docs).
        activation: one activation for every layer where none was detected (except the last layer), or a
            dict ``{layer_name: activation}`` that overrides detection for the named layers.
        recurrent: the scheme for RNN recurrent weights.
        data: a batch (``x``, ``(x, y)`` or a DataLoader) for the data-dependent parts: the ``lsuv`` scheme and
            ``output_bias="prior"``.
        output_bias: ``"prior"`` sets the output layer's bias to the log class frequencies (integer targets)
            or the target mean (float targets) of ``data``, so the first loss is close to predicting the prior;
            the notes give the first loss before and after.
        example: an input the model takes (a tensor, a tuple of positional inputs or a dict of keyword inputs),
            run once to capture the model's structure (:mod:`initlab.init.structure`: how each weight is used,
            the activation after it, the residual branches, the readout). Default: the ``x`` of ``data``, else
            one read off the model (a Hugging Face model's ``dummy_inputs``, or its first layer's input size);
            without one, torch.fx tracing or module order stands in (and the report says so).
        frozen: also initialize parameters with ``requires_grad=False`` (default: they are left as they were,
            and the report says so).
        device: for a model built on the meta device: where its parameters and buffers get memory, once every
            plan has been checked (parameter by parameter, tied weights kept tied). Its structure is read on the
            meta device, at no memory cost. A sharded model (FSDP2) cannot run on meta: each rank's shards get
            memory first (its ``to_empty``). Without ``device=`` such a model is refused.
        gain_from: ``"published"`` (default) keeps each scheme's own gain, so a name means what it means in the paper,
            torch or Keras; ``"activation"`` scales each layer by the gain of the activation that follows it
            (``initlab.gain``: √2 for ReLU, 5/3 for tanh, 1/√E[φ(z)²] otherwise) for schemes with a gain.

    Returns:
        An :class:`InitReport`.

    Raises:
        InitlabError: unknown scheme, bias rule, residual rule or activation.

    >>> net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    >>> report = initialize(net, "he_normal", generator=torch.Generator().manual_seed(0))
    >>> [(r.name, r.activation, round(r.gain, 3), r.source) for r in report if r.name.endswith("weight")]
    [('0.weight', 'tanh', 1.414, 'published'), ('2.weight', 'linear', 1.414, 'published')]
    >>> report = initialize(net, "he_normal", gain_from="activation")
    >>> [(r.activation, round(r.gain, 3), r.source) for r in report if r.name.endswith("weight")]
    [('tanh', 1.667, 'activation (module)'), ('linear', 1.0, 'activation (none)')]
    """
    init = get(scheme)
    _check_options(init, residual, gain_from, output_bias, data)
    if seed is not None and (generator is not None or isinstance(seed, bool) or not isinstance(seed, int)):
        raise fail("initialize takes either seed= (keyed by parameter name) or generator= (sequential), not both",
                   accepted="seed=an int, or generator=a torch.Generator", received=(seed, generator),
                   fix="Pass seed=1234 for weights that depend only on the seed and each parameter's "
                   "name.")  # fmt: skip
    if is_keras_model(model):
        if (init.scheme.needs_data or output_bias or residual is not None or activation is not None or seed is not None
                or device is not None):  # fmt: skip
            raise fail("lsuv, output_bias, residual=, activation=, seed= and device= are for torch models",
                       received=(init.name, output_bias, residual, activation, seed, device),
                       fix="A Keras layer's activation is read from the layer; leave the others out.")  # fmt: skip
        return initialize_keras(model, init, bias_rule(bias), get(recurrent), generator, gain_from)
    model = unwrap(model)  # DDP, DataParallel, torch.compile: the names (and keyed streams) of the model itself
    _check_model(model)
    meta = check_meta(model, device)
    if init.scheme.needs_data:
        _check_unsharded(model, init.name)
        options = {"bias": bias, "generator": generator, "residual": residual, "activation": activation,
                   "recurrent": recurrent, "gain_from": gain_from, "seed": seed, "device": device}  # fmt: skip
        return _lsuv(model, init, data, output_bias, options)
    empty = {n for n, p in model.named_parameters() if p.is_meta}  # no values to keep: drawn, frozen or not
    early = []
    if meta and sharded(model):  # FSDP2 runs no forward pass on meta: each rank's shards get memory first, before
        early, meta = materialize(model, device), False  # the structure pass
    structure = read_structure(model, to_meta(example) if meta else example, data)
    report = _initialize_torch(model, init, bias_rule(bias), get(recurrent), generator, residual, activation,
                               gain_from, structure, frozen, seed, device if meta else None, empty)  # fmt: skip
    report.notes[:0] = early
    if output_bias == "prior":
        report.notes.append(_prior_note(*prior_bias(model, data)))
    return report


def _initialize_torch(model: nn.Module, init: Initializer, bias: Initializer | float | None, recurrent: Initializer,
                      generator: torch.Generator | None, residual: str | None, activation: Any, gain_from: str,
                      structure: Structure, frozen: bool, seed: int | None = None, device: Any = None,
                      empty: frozenset[str] | set[str] = frozenset()) -> InitReport:  # fmt: skip
    """Plan every parameter, then draw the plans. ``empty``: parameters built on the meta device (no values to keep:
    drawn even when frozen); ``device``: where they get memory, once every plan is checked."""
    ctx = plan_model(model, init, bias, recurrent, generator, residual, activation, gain_from, structure, seed)
    kept = {} if frozen else {n: p.detach().clone() for n, p in model.named_parameters()
                              if not p.requires_grad and n not in empty}  # fmt: skip
    if device is not None:  # every plan made and checked: now the meta tensors get memory
        ctx.notes += materialize(model, device)
    draw([p for p in ctx.plans if frozen or p.key.split("[")[0] in empty or p.parameter is None
          or p.parameter.requires_grad], ctx.stream, keyed=seed is not None)  # fmt: skip
    notes = notes_on_gains(ctx.mismatches) + _untouched(model, ctx) + _keep_frozen(model, kept, ctx) + ctx.notes
    if structure.why:
        notes.append(f"the model's structure came from {structure.source}: {structure.why}")
    return InitReport(ctx.rows, ctx.init.name, notes)


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


def _check_options(init: Initializer, residual: str | None, gain_from: str, output_bias: str | None,
                   data: Any) -> None:  # fmt: skip
    if residual is not None and residual not in RESIDUAL_RULES:
        raise unknown_name("residual rule", residual, RESIDUAL_RULES)
    if gain_from not in GAIN_SOURCES:
        raise unknown_name("gain_from", gain_from, GAIN_SOURCES)
    if output_bias not in (None, "prior"):
        raise unknown_name("output_bias", output_bias, ("prior",))
    if (init.scheme.needs_data or output_bias) and data is None:
        what = init.name if init.scheme.needs_data else "output_bias='prior'"
        raise fail(f"{what} is computed from data: pass a batch", accepted="data=x, data=(x, y) or a DataLoader",
                   fix=f"initialize(model, {init.name!r}, data=(x, y)), or initlab.lsuv(model, x).")  # fmt: skip


def _lsuv(
    model: nn.Module, init: Initializer, data: Any, output_bias: str | None, options: dict[str, Any]
) -> InitReport:
    """The base scheme, then LSUV's calibration on ``data``; the rows of calibrated weights show the scale."""
    p = init.params
    report = initialize(model, p["base"], **options)
    calibration = calibrate(model, data, target_std=float(p["target_std"]), tol=float(p["tol"]),
                            max_iter=int(p["max_iter"]), stream=bool(p["stream"]))  # fmt: skip
    scales = {r.name.split("[")[0]: r for r in calibration.rows}
    for row in report.rows:
        found = scales.get(row.name)
        if found is not None:
            row.scheme, row.source = f"lsuv ({row.scheme})", f"×{found.scale:.3g}, {found.iterations} pass(es)"
            row.std = None if row.std is None else row.std * found.scale
    report.scheme, report.calibration = "lsuv", calibration
    # the base scheme's gain notes no longer hold: the calibration set every layer's scale from the data
    report.notes = [n for n in report.notes if "keeps its published gain" not in n] + calibration.notes
    if output_bias == "prior":
        report.notes.append(_prior_note(*prior_bias(model, data)))
    return report


def _prior_note(name: str, before: float, after: float, prior: float) -> str:
    return (f"output_bias='prior': {name}.bias set from the data; first loss {before:.4g} → {after:.4g} "
            f"(the loss of predicting the prior: {prior:.4g})")  # fmt: skip


def lsuv(model: nn.Module, data: Any, *, base: str = "orthogonal", target_std: float = 1.0, tol: float = 0.1,
         max_iter: int = 10, stream: bool = False, generator: torch.Generator | None = None) -> LsuvReport:  # fmt: skip
    """Layer-sequential unit-variance initialization (Mishkin & Matas 2016) on a batch of ``data``: ``base``
    pre-initialization, then each weight layer, in forward order, scaled until its output std on the batch is
    ``target_std`` within ``tol`` (:mod:`initlab.init.lsuv` says how BatchNorm, Dropout, RNNs, attention and the
    residual stream are handled). Returns the per-layer report; ``initialize(model, "lsuv", data=...)`` is the
    same with initialize's report.

    >>> net = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))
    >>> x = torch.randn(256, 20, generator=torch.Generator().manual_seed(0))
    >>> report = lsuv(net, x, generator=torch.Generator().manual_seed(0))
    >>> [round(r.std_after, 1) for r in report], report.on_target
    ([1.0, 1.0, 1.0], 3)
    """
    config = {"base": base, "target_std": target_std, "tol": tol, "max_iter": max_iter, "stream": stream}
    report = initialize(model, get("lsuv", **config), data=data, generator=generator)
    assert report.calibration is not None
    return report.calibration


def _check_unsharded(model: nn.Module, scheme: str) -> None:
    """LSUV runs each weight layer again and again on its own input: on an FSDP2-sharded model that calls the layer
    past the hooks that gather its shards (or would gather it on every pass), so it is refused, before anything is
    drawn."""
    if sharded(model):
        raise fail(f"{scheme} measures each layer's output while it rescales it, which a sharded model (FSDP2, "
                   "DTensor parameters) cannot do without gathering the layer for every pass",
                   accepted="an unsharded model", received="a model with DTensor parameters",
                   fix="Run initlab.lsuv(model, batch) before fully_shard (on each rank, with the same batch and "
                   "generator), then shard it; or use a scheme that needs no data.")  # fmt: skip


def _check_model(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise fail("initialize cannot reach the layers of a TorchScript module (they are compiled, not nn.Linear and "
                   "friends)", accepted="an nn.Module", received=type(model).__name__,
                   fix="Initialize the model first, then script it: initlab.initialize(model, ...); "
                   "torch.jit.script(model).")  # fmt: skip
    if next(model.parameters(), None) is None:
        raise fail("the model has no parameters to initialize", accepted="an nn.Module with parameters",
                   received=type(model).__name__, fix="Pass the model whose weights you want initialized.")  # fmt: skip


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


def _untouched(model: nn.Module, ctx: Planning) -> list[str]:
    """A note naming the parameters no rule reached (a custom module's own nn.Parameter), left as they were."""
    reported = {name for row in ctx.rows for name in row.name.split(" = ")}
    names = [n for n, p in model.named_parameters() if id(p) not in ctx.owner and _logical(n) not in reported]
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    are = "parameter is" if len(names) == 1 else "parameters are"
    message = f"{len(names)} {are} in modules initialize has no rule for and left as they were: {shown}."
    warnings.warn(f"initlab.initialize: {message} Initialize them yourself, or pass example= so that their use "
                  "can be seen.", UserWarning, stacklevel=4)  # fmt: skip
    return [message]


def _logical(name: str) -> str:
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
    if source == "published" and act is not None and act.name in HOMOGENEOUS and std and layer_fans.fan_in:
        needed = gain_of(act)
        ctx.mismatches.setdefault((init.name, act.name), []).append((std * math.sqrt(layer_fans.fan_in), needed))
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


def read_structure(model: nn.Module, example: Any, data: Any) -> Structure:
    """The model's structure from one forward pass on ``example`` (or ``data``'s inputs, or an input read off the
    model), or from module types where there is none (:func:`~initlab.init._walk.from_modules`). An
    ``example=`` the model does not take is refused, before any tensor is touched: the user said what the input
    is."""
    found = capture_or_why(model, first_batch(data) if example is None and data is not None else example)
    if example is not None and isinstance(found, str):
        raise fail(f"initialize could not run the model on example=: {found}",
                   accepted="an input the model's forward takes: a tensor, a tuple of positional inputs or a dict of "
                   "keyword inputs", fix="Pass the batch you would give the model, e.g. example=x[:8].")  # fmt: skip
    return found if isinstance(found, Structure) else from_modules(model, found)


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


def _keep_frozen(model: nn.Module, kept: dict[str, Tensor], ctx: Planning) -> list[str]:
    """Put frozen parameters back as they were (``frozen=False``) and say so."""
    if not kept:
        return []
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in kept.items():
            params[name].copy_(value)
    for row in ctx.rows:
        if row.name.split(" = ")[0] in kept:
            row.scheme, row.source = "frozen: left as it was", "requires_grad=False"
            row.std = None
    shown = ", ".join(list(kept)[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return [f"{len(kept)} frozen parameter(s) (requires_grad=False) left as they were: {shown} (frozen=True to "
            "initialize them too)."]  # fmt: skip


def _readout(structure: Structure) -> str | None:
    """The module of the readout weight, None where it is an embedding table (tied)."""
    layer = structure.layers.get(structure.output) if structure.output else None
    if layer is None or layer.use.op == "embedding":
        return None
    return structure.owner(layer.name)
