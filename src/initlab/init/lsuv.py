"""Initialization from the data: layer-sequential unit variance (LSUV), and output biases from the labels.

LSUV (Mishkin & Matas 2016, "All you need is a good init"): after an orthonormal pre-initialization, each weight
layer in the order the forward pass reaches it is scaled until its output has standard deviation
``target_std`` (within ``tol``) on a batch of real inputs; biases stay zero. Done right:

* **The std training sees.** BatchNorm normalizes with the batch's own statistics, as in train mode (the
  ``lsuv`` package calibrates in eval mode, so its layers are off target once training starts), and its running
  statistics are left untouched; Dropout is off so every measurement is deterministic. Afterwards every
  module's mode, every buffer and ``torch.get_rng_state()`` are exactly as they were.
* **Measured on the layer's output**, by a hook (forward order, not module order); the forward pass stops at
  the layer being calibrated. Recurrent layers and attention are scaled on their input projections
  (``x @ W_ih^T``, the q/k/v projections), measured from the layer's input; attention's output projection on
  the attention's output.
* **The residual stream** (``stream=True``): after the layers, each residual branch's last layer is scaled so
  that the stream (the sum after the block) has std ``target_std`` growing by at most ``tol / 2`` over all
  the blocks — the ``lsuv`` package normalizes each branch and lets the sum grow (1.41 → 3.86 over 14 blocks).

``prior_bias`` sets the output layer's bias so that the first prediction is the prior: the log class
frequencies for classification, the target mean for regression.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init.structure import Residual, Structure, call, capture, restored

__all__ = ["LsuvReport", "LsuvRow", "calibrate", "first_batch", "prior_bias"]

MIN_BATCH = 16  # examples: below this a layer's std is too noisy to calibrate against a 10% tolerance
_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag, nn.RNNBase,
           nn.MultiheadAttention)  # fmt: skip


@dataclasses.dataclass
class LsuvRow:
    """One calibrated weight: its output std before and after, the factor applied and the passes it took."""

    name: str
    kind: str
    std_before: float
    std_after: float
    scale: float
    iterations: int
    converged: bool

    def merge(self, later: LsuvRow) -> None:
        """Fold in a later calibration of the same weight (stream=True calibrates again after the stream)."""
        self.std_after, self.scale = later.std_after, self.scale * later.scale
        self.iterations, self.converged = self.iterations + later.iterations, later.converged


@dataclasses.dataclass
class LsuvReport(Rows):
    """What LSUV did per layer, the residual stream's std after each block, and the time it took."""

    rows: list[LsuvRow]
    target_std: float = 1.0
    tol: float = 0.1
    stream: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)
    title: ClassVar[str] = "initlab.lsuv"
    columns: ClassVar[tuple[str, ...]] = ("name", "kind", "std_before", "std_after", "scale", "iterations",
                                          "converged")  # fmt: skip

    @property
    def on_target(self) -> int:
        """How many layers ended within ``tol`` of ``target_std``."""
        return sum(r.converged for r in self.rows)


def first_batch(data: Any) -> Any:
    """The inputs of the first batch of ``data``: a tensor, a dict of keyword inputs (a Hugging Face batch), an
    ``(x, y)`` pair, or an iterable of those."""
    if isinstance(data, Tensor | Mapping):
        return data
    if isinstance(data, tuple | list) and data and isinstance(data[0], Tensor):
        return data[0]
    if hasattr(data, "__iter__") and not isinstance(data, str | bytes | dict):
        for batch in data:
            return first_batch(batch)
    raise fail("lsuv and output_bias='prior' need data", accepted="a tensor of inputs, an (x, y) pair, or a "
               "DataLoader", received=type(data).__name__, fix="Pass one batch: data=x or data=(x, y).")  # fmt: skip


@contextlib.contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """Train mode for normalization (batch statistics), Dropout off, no autograd; modes, buffers and the RNG
    state restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    try:
        with restored(model):
            model.train()
            for module in model.modules():
                if isinstance(module, nn.modules.dropout._DropoutNd | nn.AlphaDropout):
                    module.eval()
            with torch.no_grad():
                yield
    finally:
        for module, mode in modes.items():
            module.training = mode


def _projection(attention: nn.Module, part: int) -> Tensor:
    """The q (0), k (1) or v (2) projection weight of a MultiheadAttention, packed or not (a view: scaling it
    scales the packed weight)."""
    packed = getattr(attention, "in_proj_weight", None)
    if isinstance(packed, Tensor):
        d = packed.shape[0] // 3
        return packed[part * d : (part + 1) * d]
    return attention.get_parameter(f"{'qkv'[part]}_proj_weight")


def _scalable(module: nn.Module, name: str) -> Tensor:
    """The tensor to scale so that ``module.<name>`` scales: the weight itself, or under weight normalization
    (w = g·v/‖v‖) its magnitude g."""
    if parametrize.is_parametrized(module, name):
        originals = getattr(module.parametrizations, name)
        return originals.original0 if hasattr(originals, "original0") else originals.original
    return module.get_parameter(name)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Tensor:
    return args[index] if len(args) > index else kwargs[name]


def _std(value: Any) -> float:
    out = value[0] if isinstance(value, tuple) else value
    return float(out.float().std())


def calibrate(model: nn.Module, data: Any, *, target_std: float = 1.0, tol: float = 0.1, max_iter: int = 10,
              stream: bool = False) -> LsuvReport:  # fmt: skip
    """Scale each weight layer of an already initialized model so its output std on ``data`` is ``target_std``.

    One forward pass: a hook on each weight layer calibrates it on the input it receives (every layer before it
    is calibrated already) and hands the calibrated output on, so the cost is one pass plus a few calls of each
    layer, not a pass per layer and iteration.
    """
    started = time.perf_counter()
    x = first_batch(data)
    lead = next(v for v in x.values() if isinstance(v, Tensor)) if isinstance(x, Mapping) else x
    if lead.ndim < 1 or lead.shape[0] < MIN_BATCH:
        raise fail(f"lsuv needs a batch of at least {MIN_BATCH} examples to measure a std within tolerance",
                   received=tuple(lead.shape), fix="Pass a larger batch (64 or more is typical).")  # fmt: skip
    report = LsuvReport([], target_std, tol)
    with _measuring(model):
        structure = capture(model, x)  # the model ran on x: the same x runs here
        layers = _weight_modules(model, structure)
        rows = _pass(model, x, target_std, tol, max_iter, skip=set(), layers=layers)
        if not rows:
            raise fail("lsuv found no weight layer the forward pass reaches", received=type(model).__name__,
                       accepted="a model with Linear, Conv, Embedding, RNN or attention layers")  # fmt: skip
        if stream:
            finals = {structure.owner(r.last) for r in structure.residuals}
            for last_round in (False, False, True):  # the stream changes what later layers see: calibrate again
                report.stream = _stream(model, len(structure.residuals), x, target_std, tol, rows, report)
                if not last_round and finals:
                    for label, row in _pass(model, x, target_std, tol, max_iter, skip=finals, layers=layers).items():
                        rows[label].merge(row)
        report.rows = list(rows.values())
    report.seconds = time.perf_counter() - started
    off = [r.name for r in report.rows if not r.converged]
    if off:
        message = (f"lsuv: {len(off)} layer(s) did not reach std {target_std} ± {tol} in {max_iter} passes: "
                   f"{', '.join(off)}")  # fmt: skip
        report.notes.append(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return report


def _weight_modules(model: nn.Module, structure: Structure) -> dict[int, str]:
    """The modules to calibrate, by id: the layer modules initlab knows, and every module that owns a weight the
    structure saw used as a linear map or a convolution (GPT-2's Conv1D, a custom projection); a weight shared by
    two modules (a readout tied to the embedding) is calibrated once, by the first."""
    inside_attention = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    dense = {
        n.rsplit(".", 1)[0]
        for n, layer in structure.layers.items()
        if "." in n and n.endswith(".weight") and layer.use.op in ("linear", "addmm", "conv", "conv_transpose")
    }
    names: dict[int, str] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if id(module) in inside_attention or not (isinstance(module, _LAYERS) or name in dense):
            continue
        weights = {id(p) for p in module.parameters(recurse=False)}
        if weights & seen:
            continue  # tied: its weight is calibrated where it is first used
        seen |= weights
        names[id(module)] = name
    return names


def _pass(model: nn.Module, x: Any, target: float, tol: float, max_iter: int, skip: set[str],
          layers: dict[int, str]) -> dict[str, LsuvRow]:  # fmt: skip
    """One forward pass that calibrates every weight layer it reaches (but ``skip``) at its first call."""
    rows: dict[str, LsuvRow] = {}
    names = {i: n for i, n in layers.items() if n not in skip}

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if id(module) not in names:  # calibrated at its first call (a layer used twice)
            return None
        for row in _module(names.pop(id(module)), module, args, kwargs, output, target, tol, max_iter):
            rows[row.name] = row
        return module.forward(*args, **kwargs)  # what the rest of the model sees: the calibrated output

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules() if id(m) in names]
    try:
        call(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def _module(name: str, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any,
            target: float, tol: float, max_iter: int) -> list[LsuvRow]:  # fmt: skip
    """Calibrate one module's weights on the inputs it was called with: a list of (label, weight view, measure)."""
    prefix = f"{name}." if name else ""
    parts: list[tuple[str, Tensor, Callable[[], float]]] = []
    if isinstance(module, nn.RNNBase):  # each layer's and direction's input projection x @ W_ih^T (the gates' input)
        return [
            _scale(prefix + label, type(module).__name__, weight, measure, target, tol, max_iter)
            for label, weight, measure in _recurrent_parts(module, _argument(args, kwargs, 0, "input"))
        ]
    if isinstance(module, nn.MultiheadAttention):
        for i, role in enumerate(("query", "key", "value")):
            view, inputs = _projection(module, i), _argument(args, kwargs, i, role)
            label = f"in_proj_weight[{'qkv'[i]}]" if module.in_proj_weight is not None else f"{'qkv'[i]}_proj_weight"
            parts.append((label, view, (lambda v, t: lambda: float(F.linear(t, v).float().std()))(view, inputs)))
        out_proj = module.out_proj.weight
        parts.append(("out_proj.weight", out_proj, lambda: _std(module.forward(*args, **kwargs))))
    else:
        first = [_std(output)]  # the hook's output: measured once already
        parts.append(("weight", _scalable(module, "weight"),
                      lambda: first.pop() if first else _std(module.forward(*args, **kwargs))))  # fmt: skip
    return [_scale(prefix + label, type(module).__name__, weight, measure, target, tol, max_iter)
            for label, weight, measure in parts]  # fmt: skip


def _recurrent_parts(module: nn.RNNBase, inputs: Tensor) -> Iterator[tuple[str, Tensor, Callable[[], float]]]:
    """Layer by layer, every direction's ``weight_ih``, measured on what that layer receives: the input for layer
    0, then the output of the layers below as calibrated so far (computed after they were scaled)."""
    x = inputs
    directions = ("", "_reverse") if module.bidirectional else ("",)
    for layer in range(module.num_layers):
        for suffix in directions:
            weight = module.get_parameter(f"weight_ih_l{layer}{suffix}")
            yield f"weight_ih_l{layer}{suffix}", weight, (lambda w, t: lambda: float(F.linear(t, w).float().std()))(
                weight, x)  # fmt: skip
        if layer + 1 < module.num_layers and not getattr(module, "proj_size", 0):
            x = _one_layer(module, layer)(x)[0]
        else:  # a projected LSTM's upper layers see h projected by weight_hr: left to the base scheme
            return


def _one_layer(module: nn.RNNBase, layer: int) -> nn.Module:
    """Layer ``layer`` of a stacked RNN as a one-layer RNN of its own (the same weights, copied)."""
    first = module.get_parameter(f"weight_ih_l{layer}")
    make: Any = type(module)  # LSTM/GRU/RNN take (input_size, hidden_size, ...)
    single: nn.Module = make(first.shape[1], module.hidden_size, num_layers=1, bias=module.bias,
                             batch_first=module.batch_first, bidirectional=module.bidirectional)  # fmt: skip
    with torch.no_grad():
        for name, p in single.named_parameters():
            p.copy_(module.get_parameter(name.replace("_l0", f"_l{layer}")))
    return single.to(first.device)


def _scale(label: str, kind: str, weight: Tensor, measure: Callable[[], float], target: float, tol: float,
           max_iter: int) -> LsuvRow:  # fmt: skip
    before = std = measure()
    if std == 0.0 or not math.isfinite(std):
        raise fail(f"the output of {label} is constant (std {std}) on the batch: no scale can give it std {target}",
                   fix="Check the inputs reach it (a zero input, a dead ReLU before it) or pre-initialize with "
                   "another base scheme.")  # fmt: skip
    total, passes = 1.0, 0
    while abs(std - target) > tol and passes < max_iter:
        factor = target / std
        weight.mul_(factor)
        total *= factor
        passes += 1
        std = measure()
    return LsuvRow(label, kind, before, std, total, passes, abs(std - target) <= tol)


def _stream(model: nn.Module, blocks: int, x: Any, target: float, tol: float, rows: dict[str, LsuvRow],
            report: LsuvReport) -> list[float]:  # fmt: skip
    """Scale each residual branch's last layer so the stream's std after block l is target·(1 + tol/2·l/L), in one
    pass: at each residual addition (the structure layer's) the branch is scaled and the corrected sum flows on."""
    if not blocks:
        if not report.notes:
            report.notes.append("stream=True: no residual addition found: no change")
        return []
    stds: list[float] = []

    def scale(residual: Residual, skip: Tensor, branch: Tensor) -> Tensor:
        wanted = target * (1.0 + 0.5 * tol * (len(stds) + 1) / blocks)
        alpha = _branch_scale(skip.double().flatten(), branch.double().flatten(), wanted)
        last = residual.last.rsplit(".", 1)[0] if "." in residual.last else ""
        for pname in ("weight", "bias"):
            p = getattr(model.get_submodule(last), pname, None)
            if isinstance(p, Tensor):
                p.mul_(alpha)
        value = skip + alpha * branch  # the branch ends in that layer (or in what is linear after it)
        stds.append(float(value.float().std()))
        row = rows.get(residual.last)
        if row is not None:  # its own output is not the target any more: the stream is
            row.scale, row.std_after = row.scale * alpha, row.std_after * alpha
            row.kind = row.kind if row.kind.endswith("(stream)") else f"{row.kind} (stream)"
            row.converged = abs(stds[-1] - wanted) <= tol
        return value

    capture(model, x, on_residual=scale)
    return stds


def _branch_scale(s: Tensor, f: Tensor, wanted: float) -> float:
    """α with std(s + α·f) = wanted (the larger root), or the α that adds least when the stream is already above."""
    var_f, cov, var_s = float(f.var()), float(((s - s.mean()) * (f - f.mean())).mean()), float(s.var())
    disc = cov * cov - var_f * (var_s - wanted * wanted)
    if var_f > 0 and disc >= 0:
        return (-cov + math.sqrt(disc)) / var_f
    return max(0.0, -cov / var_f) if var_f > 0 else 1.0


def prior_bias(model: nn.Module, data: Any) -> tuple[str, float, float, float]:
    """Set the output layer's bias (the readout the structure layer finds) to the prior: log class frequencies
    (integer targets) or the target mean (float targets), its weight unchanged. Returns the layer's name, the
    first loss before and after, and the loss of predicting the prior exactly (the class entropy, or the targets'
    variance)."""
    if not (isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)):
        raise fail("output_bias='prior' needs the targets too", accepted="data=(x, y)", received=type(data).__name__)
    x, y = data
    structure = capture(model, x)
    name = structure.owner(structure.output) if structure.output else None
    layer = model.get_submodule(name) if name is not None else None
    if layer is None or not isinstance(getattr(layer, "bias", None), Tensor):
        raise fail("output_bias='prior' sets the bias of the model's output layer; it has none",
                   received=type(model).__name__, fix="Give the output layer a bias (bias=True).")  # fmt: skip
    assert name is not None and isinstance(layer.bias, Tensor)
    outputs = layer.bias.shape[0]
    classification = not torch.is_floating_point(y)
    if classification and (int(y.min()) < 0 or int(y.max()) >= outputs):
        raise fail(f"class labels must lie in 0..{outputs - 1} (the outputs of {name})",
                   received=(int(y.min()), int(y.max())), fix="Pass integer class indices as targets.")  # fmt: skip
    loss = _loss(classification)
    with _measuring(model):
        before = float(loss(model(x), y))
        if classification:
            counts = torch.bincount(y.flatten(), minlength=outputs).double()
            freq = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))  # add-½ smoothing: no class at log 0
            layer.bias.copy_(freq.log())
            exact = counts / counts.sum()
            prior = float(-(exact * exact.clamp_min(1e-300).log()).sum())  # the entropy of the class frequencies
        else:
            targets = y.reshape(len(y), -1).double()
            layer.bias.copy_(targets.mean(0).to(layer.bias))
            prior = float(targets.var(0, unbiased=False).mean())
        after = float(loss(model(x), y))
    return name, before, after, prior


def _loss(classification: bool) -> Any:
    if classification:
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out, y.reshape(out.shape).to(out))
