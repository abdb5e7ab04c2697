"""Theory meets reality: one forward and backward pass on a real batch, beside the mean-field prediction.

``audit(model, batch)`` measures every traced value's variance and gradient second moment, sets them beside
:func:`initlab.predict`'s numbers, and turns the comparison into findings in plain words ("ordered phase:
gradients shrink 3.0× per layer … he_normal gives χ1 = 1.0"). The model's mode, parameters, gradients and
buffers (BatchNorm running statistics) are exactly as they were afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, fx, nn

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init._tracing import WEIGHT_LAYERS
from initlab.init.activations import activation, is_activation_module
from initlab.theory import meanfield
from initlab.theory.propagate import input_stat, label, propagate
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


class _Recorder(fx.Interpreter):
    """Runs the traced graph, keeping every tensor value with its gradient retained."""

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__(graph)
        self.values: dict[fx.Node, Tensor] = {}

    def call_module(self, target: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if getattr(self.fetch_attr(str(target)), "inplace", False):
            # keep the producer's value intact: an in-place activation would overwrite it (ReLU(inplace=True))
            args = tuple(a.clone() if isinstance(a, Tensor) else a for a in args)
        return super().call_module(target, args, kwargs)

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, Tensor) and result.is_floating_point() and n.op not in ("placeholder", "output"):
            if result.requires_grad:
                result.retain_grad()
            self.values[n] = result
        return result


def _synthetic_loss(out: Tensor, generator: torch.Generator) -> Tensor:
    # A fixed random projection of the output: its gradient is i.i.d. N(0, 1) per output unit, the setting
    # the mean-field backward pass assumes.
    return (out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum()


def audit(model: nn.Module, batch: Tensor | tuple[Tensor, Tensor], loss_fn: LossFn | None = None, *,
          seed: int = 0) -> AuditReport:  # fmt: skip
    """Measure one forward/backward pass on ``batch`` beside the mean-field prediction.

    Args:
        model: a traceable ``nn.Module`` (left exactly as it was).
        batch: inputs, or ``(inputs, targets)``.
        loss_fn: the loss; default cross-entropy when targets are given, else a synthetic loss: the output
            projected on a fixed random direction (gradient i.i.d. N(0, 1) per output unit).
        seed: seeds the synthetic loss's direction.

    Returns:
        An :class:`AuditReport`.

    >>> net = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    >>> report = audit(net, torch.randn(128, 64, generator=torch.Generator().manual_seed(0)))
    >>> report.findings[0].startswith("ordered phase")
    True
    """
    inputs, targets = batch if isinstance(batch, tuple) else (batch, None)
    if not isinstance(inputs, Tensor) or inputs.ndim < 2:
        raise fail("audit needs a batch of inputs with a batch dimension", received=getattr(inputs, "shape", inputs),
                   fix="Pass a tensor of shape (batch, features...) or a (inputs, targets) pair.")  # fmt: skip
    if inputs.shape[0] < 2:
        raise fail("audit needs at least 2 examples to measure a variance", accepted="a batch of 2 or more",
                   received=inputs.shape[0], fix="Pass a larger batch (256 is a good size).")  # fmt: skip
    in_shape = tuple(inputs.shape[1:])
    flat = inputs.double().transpose(0, 1).reshape(in_shape[0], -1) if len(in_shape) > 1 else inputs.double().T
    prediction, graph = propagate(model, in_shape, input_stat(in_shape, flat.mean(1), flat.var(1)))
    with _preserved(model):
        values = _measure(graph, inputs, targets, loss_fn, seed)
        grad_ratio = _grad_norm_ratio(model)
    rows = _rows(graph, prediction, values)
    chi = _measured_chi(rows, model)
    report = AuditReport(rows, grad_ratio, chi)
    report.findings = _findings(report, model)
    return report


class _preserved:  # noqa: N801 - used as a context manager
    """Restore mode, parameters' gradients and buffers of a model after a measuring pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.modes = {m: m.training for m in self.model.modules()}
        self.grads = {p: (None if p.grad is None else p.grad.clone()) for p in self.model.parameters()}
        self.buffers = {k: v.clone() for k, v in self.model.state_dict().items() if k not in
                        dict(self.model.named_parameters())}  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes.items():
            m.training = mode
        for p, g in self.grads.items():
            p.grad = g
        self.model.load_state_dict(self.buffers, strict=False)


def _measure(graph: fx.GraphModule, inputs: Tensor, targets: Tensor | None, loss_fn: LossFn | None,
             seed: int) -> dict[fx.Node, tuple[float, float]]:  # fmt: skip
    recorder = _Recorder(graph)
    with torch.enable_grad():
        out = recorder.run(inputs)
        if loss_fn is not None and targets is not None:
            loss = loss_fn(out, targets)
        elif targets is not None:
            loss = nn.functional.cross_entropy(out, targets)
        else:
            loss = _synthetic_loss(out, torch.Generator().manual_seed(seed))
        loss.backward()  # type: ignore[no-untyped-call]
    out_grad = out.grad.pow(2).mean().item() if out.grad is not None else math.nan
    measured = {}
    for node, value in recorder.values.items():
        grad = value.grad.pow(2).mean().item() / out_grad if value.grad is not None else math.nan
        measured[node] = (value.detach().double().var().item(), grad)
    return measured


def _rows(graph: fx.GraphModule, prediction: Any, values: dict[fx.Node, tuple[float, float]]) -> list[AuditRow]:
    predicted = {r.name: r for r in prediction.rows}
    rows = []
    for node, (var, grad) in values.items():
        key = label(node)
        p = predicted.get(key)
        pv, pg = (p.forward_var, p.backward_var) if p is not None else (None, None)
        rows.append(AuditRow(key, p.kind if p is not None else node.op, pv, var, _ratio(var, pv), pg, grad,
                             _ratio(grad, pg)))  # fmt: skip
    return rows


def _ratio(measured: float, predicted: float | None) -> float | None:
    if predicted is None or predicted == 0 or not math.isfinite(measured):
        return None
    return measured / predicted


def _weight_grads(model: nn.Module) -> list[Tensor]:
    weights = [getattr(m, "weight", None) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    # A weight-normalized layer's weight is computed, not a leaf: it has no .grad of its own.
    return [w.grad for w in weights if isinstance(w, Tensor) and w.is_leaf and w.grad is not None]


def _grad_norm_ratio(model: nn.Module) -> float:
    grads = _weight_grads(model)
    if len(grads) < 2 or float(grads[-1].norm()) == 0:
        return math.nan
    return float(grads[0].norm() / grads[-1].norm())


def _measured_chi(rows: list[AuditRow], model: nn.Module) -> float:
    """Geometric-mean factor of gradient second moment per weight layer, from the first to the last one."""
    layer_names = {n for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    grads = [r.measured_grad for r in rows if r.name in layer_names and r.measured_grad > 0]
    if len(grads) < 3:
        return math.nan
    return float((grads[0] / grads[-2]) ** (1 / (len(grads) - 2)))


def _findings(report: AuditReport, model: nn.Module) -> list[str]:
    chi = report.chi_per_layer
    if not math.isfinite(chi):
        return ["too few weight layers to judge the phase"]
    phase = meanfield.phase(chi, tol=0.1)
    per = f"{1 / chi:.1f}× per layer" if chi < 1 else f"{chi:.1f}× per layer"
    first = report.grad_norm_ratio
    fix = _remedy(_main_activation(model), chi)
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


def _main_activation(model: nn.Module) -> str | None:
    names = [activation(m).name for m in model.modules() if is_activation_module(m)]
    names = [n for n in names if n != "linear"]
    return max(set(names), key=names.count) if names else None
