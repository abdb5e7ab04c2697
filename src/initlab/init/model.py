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

Every rule first makes plans (:mod:`initlab.init._rules`, :mod:`initlab.init._plan`); the residual and role rules
change them; then each tensor is drawn once, and the report is read off the plans.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from initlab._errors import fail, unknown_name
from initlab.init import GAIN_SOURCES, RESIDUAL_RULES
from initlab.init._keras_model import initialize_keras, is_keras_model
from initlab.init._meta import check_meta, materialize, sharded, to_meta
from initlab.init._plan import draw
from initlab.init._report import InitReport, LayerInit, notes_on_gains
from initlab.init._residual import deepnorm_constants
from initlab.init._rules import ActivationSpec, Planning, bias_rule, logical, plan_model
from initlab.init._walk import from_modules
from initlab.init.lsuv import LsuvReport, calibrate, first_batch, prior_bias
from initlab.init.registry import Initializer, get
from initlab.init.structure import Structure, capture_or_why, unwrap

__all__ = [
    "GAIN_SOURCES",
    "InitReport",
    "LayerInit",
    "bias_rule",
    "check_options",
    "deepnorm_constants",
    "initialize",
    "lsuv",
    "plan_model",
    "read_structure",
]  # fmt: skip


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
    check_options(init, residual, gain_from, output_bias, data)
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


def check_options(init: Initializer, residual: str | None, gain_from: str, output_bias: str | None,
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


def _untouched(model: nn.Module, ctx: Planning) -> list[str]:
    """A note naming the parameters no rule reached (a custom module's own nn.Parameter), left as they were."""
    reported = {name for row in ctx.rows for name in row.name.split(" = ")}
    names = [n for n, p in model.named_parameters() if id(p) not in ctx.owner and logical(n) not in reported]
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    are = "parameter is" if len(names) == 1 else "parameters are"
    message = f"{len(names)} {are} in modules initialize has no rule for and left as they were: {shown}."
    warnings.warn(f"initlab.initialize: {message} Initialize them yourself, or pass example= so that their use "
                  "can be seen.", UserWarning, stacklevel=4)  # fmt: skip
    return [message]


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
