"""Theory meets reality: one forward and backward pass on a real batch, beside the mean-field prediction.

``audit(model, batch)`` measures the variance and gradient second moment of every value :func:`initlab.predict`
names (the outputs of modules, activations, weight uses, sums and norms), sets them beside its numbers, and
turns the comparison into findings in plain words ("ordered phase: gradients shrink 3.0× per layer …
he_normal gives χ1 = 1.0"). The model's mode, parameters, gradients, buffers (BatchNorm running statistics) and
torch's RNG state are exactly as they were afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init.structure import Structure, capture_or_why, restored, unwrap
from initlab.theory import meanfield
from initlab.theory._maps import Stat
from initlab.theory._recorder import inputs_of, output_value, record
from initlab.theory.propagate import Prediction, check_keras, first_examples, main_input, predict_with
from initlab.theory.schemes import fix_text

__all__ = ["AuditReport", "AuditRow", "audit"]

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclasses.dataclass
class AuditRow:
    """Measured beside predicted for one value (``*_ratio`` = measured / predicted)."""

    name: str
    kind: str
    predicted_var: float | None
    measured_var: float
    var_ratio: float | None
    predicted_grad: float | None
    measured_grad: float
    grad_ratio: float | None


@dataclasses.dataclass
class AuditReport(Rows):
    """Per-layer measured vs predicted variances, the gradient-norm ratio, and findings."""

    rows: list[AuditRow]
    grad_norm_ratio: float = math.nan  # ‖∂L/∂W‖ of the first weight layer over that of the last
    chi_per_layer: float = math.nan  # measured geometric-mean change of gradient variance per weight layer
    findings: list[str] = dataclasses.field(default_factory=list)
    title: ClassVar[str] = "initlab.theory.audit"
    columns: ClassVar[tuple[str, ...]] = ("name", "kind", "predicted_var", "measured_var", "var_ratio",
                                          "predicted_grad", "measured_grad", "grad_ratio")  # fmt: skip


def _synthetic_loss(out: Tensor, generator: torch.Generator) -> Tensor:
    # A fixed random projection of the output: its gradient is i.i.d. N(0, 1) per output unit, the setting
    # the mean-field backward pass assumes.
    return (out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum()


Batch = Tensor | Mapping[str, Tensor] | tuple[Any, Any]


def audit(model: nn.Module, batch: Batch, loss_fn: LossFn | None = None, *, seed: int = 0) -> AuditReport:
    """Measure one forward/backward pass on ``batch`` beside the mean-field prediction.

    Args:
        model: any ``nn.Module`` (left exactly as it was: modes, parameters, gradients, buffers, RNG).
        batch: inputs (a tensor, token ids included, or a dict of keyword inputs), or ``(inputs, targets)``.
        loss_fn: the loss; default: the model's own (``output.loss``, where a Hugging Face model computes one
            from ``labels`` in the batch), else cross-entropy when targets are given, else a synthetic loss: the
            output projected on a fixed random direction (gradient i.i.d. N(0, 1) per output unit).
        seed: seeds the synthetic loss's direction and the measuring pass's random draws (dropout).

    Returns:
        An :class:`AuditReport`.

    >>> net = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    >>> report = audit(net, torch.randn(128, 64, generator=torch.Generator().manual_seed(0)))
    >>> report.findings[0].startswith("ordered phase")
    True
    """
    check_keras(model)
    inputs, targets = batch if isinstance(batch, tuple) and len(batch) == 2 else (batch, None)
    first = next(iter(inputs.values()), None) if isinstance(inputs, Mapping) else inputs
    if not isinstance(first, Tensor) or first.ndim < 1 or (isinstance(inputs, Tensor) and inputs.ndim < 2):
        raise fail("audit needs a batch of inputs with a batch dimension", received=getattr(inputs, "shape", inputs),
                   fix="Pass a tensor of shape (batch, features...), a dict of keyword inputs, or a (inputs, "
                   "targets) pair.")  # fmt: skip
    if first.shape[0] < 2:
        raise fail("audit needs at least 2 examples to measure a variance", accepted="a batch of 2 or more",
                   received=first.shape[0], fix="Pass a larger batch (256 is a good size).")  # fmt: skip
    model = unwrap(model)
    moments = {key: (t.detach().double().mean(0, keepdim=True), t.detach().double().var(0, unbiased=False,
               keepdim=True)) for key, t in inputs_of(inputs) if t.is_floating_point()}  # fmt: skip

    def source(t: Tensor, key: str) -> tuple[Stat | None, bool]:
        if key in moments:
            mean, var = moments[key]
            return Stat(mean.expand(t.shape).clone(), var.expand(t.shape).clone()), False
        return None, main_input(model, key)

    structure = capture_or_why(model, first_examples(inputs))  # once: for both passes and the findings
    prediction = predict_with(model, inputs, source, structure)
    with _preserved(model):
        measured, layers = _measure(model, inputs, targets, loss_fn, seed, structure)
        grad_ratio = _grad_norm_ratio(model, layers)
    rows = _rows(prediction, measured)
    weights = {r.name for r in prediction.rows if r.weights}
    report = AuditReport(rows, grad_ratio, _measured_chi(rows, weights))
    report.findings = _findings(report, _main_activation(structure))
    return report


@contextlib.contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Restore mode, parameters' gradients, buffers and torch's RNG state of a model after a measuring pass."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: (None if p.grad is None else p.grad.clone()) for p in model.parameters()}
    try:
        with restored(model):
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, g in grads.items():
            p.grad = g


def _measure(model: nn.Module, inputs: Any, targets: Tensor | None, loss_fn: LossFn | None,
             seed: int, structure: Structure | str) -> tuple[dict[str, tuple[float, float]], list[str]]:  # fmt: skip
    """Every row's measured variance and gradient second moment (relative to the output's), by name; and the
    weights used, in order."""
    keyed = dict(inputs_of(inputs))
    leaves = {k: v.detach().clone().requires_grad_() for k, v in keyed.items() if v.is_floating_point()}
    run = {**inputs, **leaves} if isinstance(inputs, Mapping) else leaves.get("0", inputs)
    with torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout in train mode draws the same masks whatever the caller's RNG state
        recorder, output = record(model, run, lambda t, key: (None, main_input(model, key)), False, structure)
        final = output_value(recorder, output)
        out = recorder.keep[final] if final is not None else None
        for value in recorder.values.values():
            if value.requires_grad:
                value.retain_grad()
        own = getattr(output, "loss", None)
        if loss_fn is not None and targets is not None and out is not None:
            loss = loss_fn(out, targets)
        elif isinstance(own, Tensor):
            loss = own
        elif targets is not None and out is not None:
            loss = nn.functional.cross_entropy(out, targets)
        elif out is not None:
            loss = _synthetic_loss(out, torch.Generator().manual_seed(seed))
        else:
            raise fail("audit needs a model whose output is a float tensor derived from its input",
                       received=type(output).__name__,
                       fix="Audit the sub-module that computes the output.")  # fmt: skip
        if out is not None:
            out.retain_grad()
        loss.backward()  # type: ignore[no-untyped-call]
    out_grad = out.grad.pow(2).mean().item() if out is not None and out.grad is not None else math.nan
    measured = {}
    for n, value in recorder.values.items():
        grad = value.grad.pow(2).mean().item() / out_grad if value.grad is not None else math.nan
        var = value.detach().double().var(unbiased=False).item()
        if n in recorder.changed:  # changed in place after it was made: the variance it had
            var, same_grad = recorder.changed[n]
            grad = grad if same_grad else math.nan
        measured[recorder.places[n].name] = (var, grad)
    layers = [w for _, p in sorted(recorder.places.items()) for w in p.weights]
    return measured, list(dict.fromkeys(layers))


def _rows(prediction: Prediction, measured: dict[str, tuple[float, float]]) -> list[AuditRow]:
    rows = []
    for p in prediction.rows:
        if p.name not in measured:
            continue
        var, grad = measured[p.name]
        rows.append(AuditRow(p.name, p.kind, p.forward_var, var, _ratio(var, p.forward_var), p.backward_var, grad,
                             _ratio(grad, p.backward_var)))  # fmt: skip
    return rows


def _ratio(measured: float, predicted: float | None) -> float | None:
    if predicted is None or predicted == 0 or not math.isfinite(measured):
        return None
    return measured / predicted


def _grad_norm_ratio(model: nn.Module, layers: list[str]) -> float:
    """‖∂L/∂W‖ of the first weight used over that of the last (weights a parametrization computes have no
    gradient of their own and are left out)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    grads = [g for name in layers if (p := params.get(name)) is not None and (g := p.grad) is not None]
    if len(grads) < 2 or float(grads[-1].norm()) == 0:
        return math.nan
    return float(grads[0].norm() / grads[-1].norm())


def _measured_chi(rows: list[AuditRow], weights: set[str]) -> float:
    """Geometric-mean factor of gradient second moment per weight layer, from the first to the last one."""
    grads = [r.measured_grad for r in rows if r.name in weights and r.measured_grad > 0]
    if len(grads) < 3:
        return math.nan
    return float((grads[0] / grads[-2]) ** (1 / (len(grads) - 2)))


def _findings(report: AuditReport, main_activation: str | None) -> list[str]:
    chi = report.chi_per_layer
    if not math.isfinite(chi):
        return ["too few weight layers to judge the phase"]
    phase = meanfield.phase(chi, tol=0.1)
    per = "to zero" if chi == 0 else (f"{1 / chi:.1f}× per layer" if chi < 1 else f"{chi:.1f}× per layer")
    first = report.grad_norm_ratio
    fix = _remedy(main_activation, chi)
    if phase == "ordered":
        text = (
            f"ordered phase: gradient variance χ = {chi:.2f} per layer, back-propagated gradients shrink {per} "
            f"towards the input; layer 1's weight gradient is {first:.2g}× the last layer's. {fix}."
        )
    elif phase == "chaotic":
        text = (
            f"chaotic phase: gradient variance χ = {chi:.2f} per layer, back-propagated gradients grow {per} towards "
            f"the input; layer 1's weight gradient is {first:.2g}× the last layer's. {fix}, or clip gradients by norm."
        )
    else:
        text = f"critical: gradient variance changes by χ = {chi:.2f} per layer; signal and gradients propagate."
    findings = [text]
    bad = [r for r in report.rows if r.var_ratio is not None and not 0.5 < r.var_ratio < 2.0]
    if bad:
        findings.append(f"theory and measurement differ by more than 2× at {bad[0].name} "
                        f"(measured {bad[0].measured_var:.3g}, predicted {bad[0].predicted_var:.3g}): "
                        "the inputs or layers break the mean-field assumptions there")  # fmt: skip
    return findings


def _remedy(act: str | None, chi: float) -> str:
    """The initialization fix, named only if theory predicts it brings χ1 closer to 1 than the measured χ."""
    text = fix_text(act or "linear", chi)
    if text is None:
        return f"Fix: no initialization scheme is predicted to bring χ1 closer to 1 than {chi:.2f} for {act}"
    return f"Fix: {text}"


def _main_activation(structure: Structure | str) -> str | None:
    """The activation most of the model's weight layers feed (from the structure of one example's pass)."""
    return None if isinstance(structure, str) else structure.main_activation()
