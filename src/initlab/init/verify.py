"""Does this model carry the initialization you meant? (issue 32, ``il.verify``.)

``verify(model, scheme, **initialize's options)`` makes the plans ``initialize`` would make (:mod:`._plan`: every
rule, residual scaling and zeroed role included) and compares each with the tensor that is there, drawing nothing:

* a plan of independent entries (normal, uniform, truncated): the std, the mean, the bounds and the shape
  (:mod:`._evidence`: the variance test with its sampling tolerance for that many entries, KS and kurtosis on a
  strided sample); every test of the call at α/T, Bonferroni over its T tests, so a correctly initialized model is
  flagged with probability ≤ α (default 10⁻³);
* orthogonal (and delta-orthogonal) plans: W Wᵀ = g²·I within 10⁻³; sparse plans: the zeros per column;
* constants, identity, Dirac and every fixed entry (a padding row, an LSTM's forget-gate bias, a zeroed layer):
  exactly;
* a tied parameter is checked against the plan of the name that owns it; where another name's plan (the one a
  second rule would have drawn) explains the values, the report says so.

A Keras model is checked against the plans its own walk makes (:func:`~initlab.init._keras_model.plan_keras`: the
same :class:`~initlab.init._plan.Plan` objects, Keras' channels-last fans, its recurrent kernels' gates along the
columns). A parameter that differs is named with how: ``std 0.02, plan 0.00707 = 0.02 ×1/√8: the ×1/√8 rule was not
applied``, ``1310 of 8192 sampled entries beyond the plan's bounds``... Frozen parameters are not checked unless
``frozen=True`` (initialize leaves them alone), and a parameter no plan covers is named in a warning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from initlab._errors import fail
from initlab._tables import Rows
from initlab.init import _formulas as f
from initlab.init._evidence import Evidence, Law, evidence, law_of, p_values
from initlab.init._keras_model import is_keras_model, keras_numpy, plan_keras
from initlab.init._meta import sharded
from initlab.init._plan import Plan, magnitude
from initlab.init._torch_draw import draw_
from initlab.init.fans import Fans
from initlab.init.identify import ALPHA, TOLERANCE_ORTHOGONAL, candidates, consistent, orthogonality
from initlab.init.model import bias_rule, check_options, plan_model, read_structure
from initlab.init.registry import get
from initlab.init.structure import unwrap

__all__ = ["ParamCheck", "VerifyReport", "verify"]

FIXED = (f.Constant, f.Identity, f.Dirac, f.DeltaOrthogonal)  # plans with entries known before any draw


@dataclasses.dataclass
class ParamCheck:
    """One parameter (or row block) against its plan."""

    name: str
    plan: str  # the plan's scheme, with the rules that changed it
    expected: str  # the distribution the plan draws
    std_plan: float | None
    std: float | None
    status: str  # "ok", "differs", "not checked"
    why: str  # how it differs, or why it was not checked


@dataclasses.dataclass
class VerifyReport(Rows):
    """Every parameter against the plan ``initialize`` would make: ``ok`` when none differs."""

    rows: list[ParamCheck]
    scheme: str = ""
    ok: bool = True
    alpha: float = ALPHA
    tests: int = 0  # the statistical tests made (each at alpha / tests)
    notes: list[str] = dataclasses.field(default_factory=list)
    title: ClassVar[str] = "initlab.verify"
    columns: ClassVar[tuple[str, ...]] = ("name", "plan", "expected", "std_plan", "std", "status", "why")

    @property
    def mismatches(self) -> list[ParamCheck]:
        return [row for row in self.rows if row.status == "differs"]


@dataclasses.dataclass
class _Check:
    """What was measured of one plan: exact failures, and the p-values still to be judged at α/T."""

    plan: Plan
    name: str
    law: Law | None = None
    ev: Evidence | None = None
    p: dict[str, float] = dataclasses.field(default_factory=dict)
    exact: str = ""  # an exact check that failed: how
    skipped: str = ""  # why it was not checked
    values: Any = None  # the tensor (or row block) checked


def verify(model: nn.Module, scheme: str | Mapping[str, Any] = "he_normal", *, bias: Any = None,
           residual: str | None = None, activation: Any = None, recurrent: str = "orthogonal",
           gain_from: str = "published", example: Any = None, frozen: bool = False,
           alpha: float = ALPHA) -> VerifyReport:  # fmt: skip
    """Compare every parameter of ``model`` with the plan ``initialize(model, scheme, ...)`` would make for it
    (module docs). The options mean what they mean to :func:`initlab.initialize`; ``alpha`` is the chance that a
    correctly initialized model is reported as differing.

    >>> from initlab import initialize
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    >>> _ = initialize(net, "he_uniform", generator=torch.Generator().manual_seed(0))
    >>> verify(net, "he_uniform").ok
    True
    >>> report = verify(net, "glorot_uniform")
    >>> report.ok, report.mismatches[0].name, report.mismatches[0].why
    (False, '0.weight', 'std 0.1759, plan 0.125 (×1.41); consistent with he_uniform')
    """
    init = get(scheme)
    _refuse_data(init.name, init.scheme.needs_data)
    check_options(init, residual, gain_from, None, None)  # the names initialize accepts, refused as it refuses them
    if not 0 < alpha < 1:
        raise fail("alpha is the chance of reporting a correctly initialized model as differing",
                   accepted="a number between 0 and 1 (exclusive)", received=alpha, fix="Pass alpha=1e-3.")  # fmt: skip
    if is_keras_model(model):
        return _verify_keras(model, init, bias, recurrent, gain_from, frozen, alpha)
    model = unwrap(model)
    _refuse_values(model)
    structure = read_structure(model, example, None)
    planning = plan_model(model, init, bias_rule(bias), get(recurrent), None, residual, activation, gain_from,
                          structure)  # fmt: skip
    notes = _unplanned(model, planning.plans, planning.shadowed)
    if structure.why:
        notes.append(f"the model's structure came from {structure.source}: {structure.why}")
    return _report([_measure(plan, frozen) for plan in planning.plans], init.name, alpha, planning.shadowed, notes)


def _verify_keras(model: Any, init: Any, bias: Any, recurrent: str, gain_from: str, frozen: bool,
                  alpha: float) -> VerifyReport:  # fmt: skip
    """A Keras model against the plans its own walk makes (:func:`~initlab.init._keras_model.plan_keras`)."""
    walk = plan_keras(model, init, bias_rule(bias), get(recurrent), gain_from)
    return _report([_measure(plan, frozen) for plan in walk.plans], init.name, alpha, [], list(walk.notes))


def _report(checks: list[_Check], scheme: str, alpha: float, shadowed: list[Plan], notes: list[str]) -> VerifyReport:
    """Judge every check at α/T, T the tests made, and say so."""
    tests = sum(len(c.p) for c in checks)
    threshold = alpha / max(tests, 1)
    rows = [_judge(c, threshold, shadowed) for c in checks]
    notes.append(f"{tests} statistical tests, each at p < {alpha:g}/{max(tests, 1)} = {threshold:.2g} (Bonferroni: a "
                 f"correctly initialized model is reported as differing with probability ≤ {alpha:g})")  # fmt: skip
    ok = all(row.status != "differs" for row in rows)
    return VerifyReport(rows, scheme, ok, alpha, tests, notes)


def _refuse_data(scheme: str, needs_data: bool) -> None:
    if needs_data:
        raise fail(f"{scheme} scales each layer by what it measures on a batch, so no plan says what its weights "
                   "should be", accepted="a scheme that needs no data", received=scheme,
                   fix="Verify the base scheme's shape with identify(model), or the base scheme itself.")  # fmt: skip


def _refuse_values(model: nn.Module) -> None:
    if any(p.is_meta for p in model.parameters()):
        raise fail("the model is on the meta device: it has no values to verify", received="meta parameters",
                   fix="Initialize it first: initialize(model, scheme, device='cpu').")  # fmt: skip
    if sharded(model):
        raise fail("verify reads whole parameters, and this model's are sharded (DTensor)",
                   accepted="an unsharded model or a full state dict",
                   fix="Gather a full state dict (torch.distributed.checkpoint.state_dict.get_model_state_dict with "
                   "full_state_dict=True), load it into an unsharded copy (or save it and run `initlab verify`), "
                   "and verify that.")  # fmt: skip


def _value(plan: Plan) -> tuple[Tensor | None, str]:
    """The tensor the plan drew: the parameter, or the one its parametrization keeps for it (spectral norm's
    ``original``; weight norm computes the weight that was drawn); None where a parametrization computes it from
    values of its own (orthogonal)."""
    module, pname = plan.module, plan.pname
    held = getattr(module, pname)
    if hasattr(held, "path") and not isinstance(held, Tensor):  # a Keras variable
        value = torch.from_numpy(keras_numpy(held)).requires_grad_(bool(getattr(held, "trainable", True)))
        return (value.T if pname == "recurrent_kernel" else value), ""  # gates along the rows, as torch's
    if not parametrize.is_parametrized(module, pname):
        return held, ""
    steps: Any = getattr(module, "parametrizations")[pname]  # noqa: B009  (a ModuleDict)
    if any(hasattr(step, "_power_method") for step in steps):
        return steps.original, ""
    if magnitude(module, pname) is not None:
        return getattr(module, pname), ""
    return None, "its parametrization computes the weight from values of its own: not checked"


def _measure(plan: Plan, frozen: bool) -> _Check:
    name = plan.key if plan.block is not None or plan.row is None else plan.row.name
    check = _Check(plan, name)
    value, check.skipped = _value(plan)
    if value is None:
        return check
    if not (frozen or value.requires_grad or plan.parameter is None):
        check.skipped = "frozen (requires_grad=False): not checked (frozen=True checks it)"
        return check
    with torch.no_grad():
        view = check.values = plan.view(value.detach())
        known = None
        if plan.zero or plan.fixed or isinstance(plan.dist, FIXED):
            fixed = _fixed(plan, view)
            known = ~fixed.isnan()
            wrong = int((view[known].float() != fixed[known]).sum())
            if wrong:
                check.exact = f"{wrong} of {int(known.sum())} entries differ from the plan's fixed values"
            if bool(known.all()):
                return check
        _random(check, view, known)
    return check


def _fixed(plan: Plan, view: Tensor) -> Tensor:
    """The plan's fixed entries (a constant, identity or Dirac plan, a zeroed layer, a padding row, a forget gate),
    NaN where it draws at random."""
    probe = torch.full(view.shape, math.nan, dtype=torch.float32, device=view.device)
    if plan.zero:
        probe.zero_()
    elif isinstance(plan.dist, f.Constant | f.Identity | f.Dirac):
        draw_(probe, plan.dist)
        probe.mul_(plan.scale)
    elif isinstance(plan.dist, f.DeltaOrthogonal):
        probe.zero_()
        tap: tuple[Any, ...] = (slice(None), slice(None), *f.center_tap(tuple(view.shape)))
        probe[tap] = math.nan
    for fix in plan.fixed:
        fix(probe)
    return probe


def _random(check: _Check, view: Tensor, known: Tensor | None) -> None:
    """The tests of a plan's random entries (``known``: the fixed ones, checked already; None: there are none)."""
    dist, scale = check.plan.dist, check.plan.scale
    values = view if known is None else view[~known]
    if isinstance(dist, f.Orthogonal | f.DeltaOrthogonal):
        tap: tuple[Any, ...] = (slice(None), slice(None), *f.center_tap(tuple(view.shape)))
        matrix = view if isinstance(dist, f.Orthogonal) else view[tap]
        rows = known.reshape(known.shape[0], -1).all(dim=1) if isinstance(dist, f.Orthogonal) and known is not None \
            else None  # fmt: skip
        check.ev = evidence(matrix)
        blocks = view.shape[0] // view.shape[1] if check.plan.pname == "recurrent_kernel" else 1  # Keras' gates
        deviation = orthogonality(matrix if rows is None else matrix[~rows], dist.gain * scale, blocks,
                                  spare=0 if rows is None else int(rows.sum()))  # fmt: skip
        if deviation > TOLERANCE_ORTHOGONAL:
            check.exact = f"not orthogonal: max |W Wᵀ/g² − I| = {deviation:.3g} (g = {dist.gain * scale:.4g})"
        return
    if isinstance(dist, f.Sparse):  # the draw zeroes ceil(sparsity·rows) entries of each column (fixed ones apart)
        zeros, per_column = math.ceil(dist.sparsity * view.shape[0]), (view == 0).sum(dim=0)
        off = (per_column < zeros) | (per_column > zeros + (0 if known is None else known.sum(dim=0)))
        if bool(off.any()):
            check.exact = f"{int(off.sum())} column(s) with other than {zeros} zeros"
        values = values[values != 0]
        dist = f.Normal(0.0, dist.std)
    law = law_of(dist) if dist is not None else None
    check.ev = evidence(values)
    if law is None:
        check.skipped = "no distribution to compare with"
        return
    check.law = law.scaled(scale)
    check.p = p_values(check.ev, check.law)


def _judge(check: _Check, threshold: float, shadowed: list[Plan]) -> ParamCheck:
    plan, law, ev = check.plan, check.law, check.ev
    label = plan.row.scheme if plan.row is not None else ""
    expected = str(law) if law is not None else _describe(plan)
    std_plan = law.std if law is not None else (plan.row.std if plan.row is not None else None)
    row = ParamCheck(check.name, label, expected, std_plan, ev.std if ev is not None else None, "ok", "")
    if check.skipped:
        row.status, row.why = "not checked", check.skipped
        return row
    failed = sorted(k for k, p in check.p.items() if p < threshold)
    if check.exact or failed:
        row.status = "differs"
        row.why = check.exact or _why(check, failed, threshold, shadowed)
    return row


def _describe(plan: Plan) -> str:
    if plan.zero:
        return "zeros"
    dist = plan.dist
    if isinstance(dist, f.Orthogonal | f.DeltaOrthogonal):
        return f"{type(dist).__name__.lower()} × {dist.gain * plan.scale:.4g}"
    if isinstance(dist, f.Constant):
        return f"constant {dist.value * plan.scale:.4g}"
    return type(dist).__name__.lower() if dist is not None else "-"


def _why(check: _Check, failed: list[str], threshold: float, shadowed: list[Plan]) -> str:
    """How a plan's random entries differ, most telling first: a rule not applied, another name's plan of a tied
    parameter, the std (with the schemes it is consistent with), the bounds, the shape, the mean."""
    plan, law, ev = check.plan, check.law, check.ev
    assert law is not None and ev is not None
    if "std" in failed or "mean" in failed:
        rules = [(label, factor) for label, factor in plan.rules if factor]
        if rules and _fits(ev, law.scaled(1 / plan.scale), threshold):
            labels = " ".join(label for label, _ in rules)
            return (f"std {ev.std:.4g}, plan {law.std:.4g} = {law.std / plan.scale:.4g} {labels}: the {labels} rule "
                    "was not applied")  # fmt: skip
        for other in shadowed:
            if other.parameter is plan.parameter and other.dist is not None:
                other_law = law_of(other.dist)
                if other_law is not None and _fits(ev, other_law.scaled(other.scale), threshold):
                    return (f"std {ev.std:.4g}, plan {law.std:.4g}: it is {other.key}'s plan ({other_law}), so the "
                            f"tied parameter was drawn again under that name after its first draw")  # fmt: skip
    parts = [f"std {ev.std:.4g}, plan {law.std:.4g} (×{ev.std / law.std:.3g})"] if "std" in failed else []
    if "bounds" in failed and ("std" not in failed or law.family == "truncated normal"):  # else the scale says it
        outside = int(((ev.sample < law.low) | (ev.sample > law.high)).sum())
        advice = (" (torch's trunc_normal_ takes absolute bounds a, b: at std σ pass a=-2σ, b=2σ)"
                  if law.family == "truncated normal" else "")  # fmt: skip
        parts.append(f"{outside} of {len(ev.sample)} sampled entries outside the plan's bounds [{law.low:.4g}, "
                     f"{law.high:.4g}]: not drawn from {law.family}{advice}")  # fmt: skip
    elif "shape" in failed or "tails" in failed:
        parts.append(f"not {law.family}-shaped: KS p {check.p.get('shape', 1.0):.2g}, kurtosis {ev.kurtosis:.3g} "
                     f"(tails p {check.p.get('tails', 1.0):.2g})")  # fmt: skip
    if not parts:
        parts.append(f"mean {ev.mean:.4g}, plan {law.mean:.4g} (std of the mean {law.std / math.sqrt(ev.n):.2g})")
    return "; ".join(parts) + (_consistent_with(check, threshold) if set(failed) - {"mean"} else "")


def _fits(ev: Evidence, law: Law, threshold: float) -> bool:
    return min(p_values(ev, law, until=threshold).values(), default=1.0) >= threshold


def _consistent_with(check: _Check, threshold: float) -> str:
    """ "; consistent with torch_default" where known schemes at the plan's fans explain the values."""
    row = check.plan.row
    if row is None or row.fan_in is None or row.fan_out is None or check.ev is None:
        return ""
    values = check.values
    found = [c for c in candidates(Fans(row.fan_in, row.fan_out), tuple(values.shape))
             if consistent(check.ev, c, values, threshold)]  # fmt: skip
    return f"; consistent with {'; '.join(map(str, found))}" if found else ""


def _unplanned(model: nn.Module, plans: list[Plan], shadowed: list[Plan]) -> list[str]:
    """A note (and a warning) naming the parameters no plan covers."""
    covered = {id(p.parameter) for p in plans + shadowed if p.parameter is not None}
    covered |= {id(p) for plan in plans if plan.parameter is None for p in plan.module.parameters()}
    names = [n for n, p in model.named_parameters() if id(p) not in covered]
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    message = f"{len(names)} parameter(s) no plan covers, not checked: {shown}"
    warnings.warn(f"initlab.verify: {message}. Pass example= so that their use can be seen.", UserWarning,
                  stacklevel=3)  # fmt: skip
    return [message]
