"""Probes: each diagnostic quantity a small class with a lifecycle (Cockpit's design).

``attach(monitor)`` → (``on_forward(layer, output)`` for every watched layer call) → ``names()`` and
``compute(step)`` on recorded steps → ``detach()``. ``compute`` returns a tensor; the monitor concatenates
every probe's and converts them to Python numbers once per recorded step, so probes never call ``.item()``.

Costs are what make a monitor usable at every step (issue 5: ≤ 10% of a training step), and on the CPU they
are not where one would guess: after a backward pass the caches hold the matrix kernels, and the first call
of any other kernel costs ~0.05–0.2 ms however small its input. So the built-in probes do nothing in the
forward hooks but keep references, then run a handful of kernels per record over many layers at once
(samples stacked into reused buffers, ``torch._foreach_norm`` for the gradients), on samples: the first
``sample_rows`` examples of each output (a uniform sample for shuffled batches) and the first rows of each
weight gradient, with sampling errors far below the detectors' thresholds (documented per probe; the oracle
tests apply the same samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from initlab.monitor.core import Monitor

__all__ = ["ActivationStats", "GradientNorms", "LossProbe", "Probe", "UpdateRatio"]

SATURATION_PRE = 5.0  # DeepDiagnosis (Wardat et al. 2022): |pre-activation| > 5 for tanh/sigmoid


class Probe:
    """Base class: override ``names`` and ``compute``; the hooks into the model are the monitor's."""

    needs_activations = False

    def attach(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def on_forward(self, layer: str, output: Tensor) -> None:
        """Called for each watched layer call on recorded steps (only if ``needs_activations``)."""

    def names(self) -> list[tuple[str, str]]:
        """The (layer, statistic) pairs that ``compute`` returns, in order (may grow as layers are seen)."""
        raise NotImplementedError

    def compute(self, step: int) -> Tensor:
        """One 1-D tensor with a value per ``names()`` entry."""
        raise NotImplementedError

    def detach(self) -> None:
        """Release what ``attach`` took."""


class ActivationStats(Probe):
    """Per watched layer: mean, std, dead fraction (ReLU family: output ≤ 0) and saturated fraction
    (tanh/sigmoid/…: ``|pre-activation| > saturation``, read from the output through the activation's
    monotone map, so in-place activations are handled).

    The first ``sample_rows`` rows (examples) of each output are used: with shuffled batches a uniform
    sample of 16 × width values per layer (the standard error of a fraction is at most 0.125 even if all
    units of an example moved together, and ~0.01 for independent units; the detector thresholds are 0.5
    and 0.7). The raw sums (count, sum, sum of squares, dead count, saturated count) are what DDP
    all-reduces, so the global statistics are exact.

    Cost: the forward hook only keeps a reference to the output and its version counter (the tensor is
    alive anyway: autograd saves it for the backward pass, or the next layer does). Any work in the hook
    runs between two layers' kernels, with cold caches, at several times its isolated cost; the record
    instead slices every sample in one tight loop, stacks same-shaped samples into one buffer kept between
    steps, and reduces each stack with a handful of kernels. An output changed in place after its hook
    (``h = act(x); h.mul_(m)``) no longer holds what the layer produced: that layer is left out of the step
    (never reported wrong) and copied inside its hook from then on. Pre-activations (models with functional
    activations, watched at their weight layers) are always copied: ``F.relu(x, inplace=True)`` overwrites
    them.
    """

    needs_activations = True

    def __init__(self, sample_rows: int = 16, saturation: float = SATURATION_PRE) -> None:
        self.sample_rows = sample_rows
        self.saturation = saturation
        self._rules: dict[str, tuple[str, float]] = {}
        self._copied: set[str] = set()  # layers whose output is overwritten after the hook
        self._pending: list[tuple[str, Tensor, int]] = []  # (layer, output or its copied sample, version)
        self._ready: list[tuple[str, Tensor]] = []
        self._names: tuple[tuple[str, ...], list[tuple[str, str]]] = ((), [])
        self._last: _Plan | None = None

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        for layer, act in monitor.layer_activations.items():
            self._rules[layer] = _rule(act, self.saturation)
            if isinstance(act, PreActivation):
                self._copied.add(layer)
        self._pending.clear()

    def detach(self) -> None:
        self._pending.clear()  # the references to outputs of a step that was never recorded
        self._ready.clear()

    def on_forward(self, layer: str, output: Tensor) -> None:
        if output.ndim == 0:
            return
        if self._copied and (layer in self._copied or layer.split("#")[0] in self._copied):
            output = output.detach()[: self.sample_rows].clone()
        self._pending.append((layer, output, output._version))

    def names(self) -> list[tuple[str, str]]:
        """The layers called in this step whose outputs are intact (a skipped layer has no statistics)."""
        self._ready = []
        for layer, output, version in self._pending:
            if output._version == version:
                self._ready.append((layer, output))
            else:
                self._copied.add(layer)
        self._pending.clear()
        labels = tuple(layer for layer, _ in self._ready)
        if labels != self._names[0]:
            self._names = (labels, [(layer, stat) for layer in labels for stat in ("mean", "std", "dead", "saturated")])
        return self._names[1]

    def raw(self) -> Tensor:
        """Per ready layer: count, sum, sum of squares, dead count, saturated count (reducible by summing)."""
        ready, self._ready = self._ready, []
        if not ready:
            return torch.empty(0, 5, dtype=torch.float64)
        with torch.no_grad():
            samples = [output[: self.sample_rows] for _, output in ready]
            plan = self._plan([layer for layer, _ in ready], samples)
            parts = []
            for group in plan.groups:
                torch.stack([samples[i] for i in group.members], out=group.samples)
                parts.append(_reduce(group))
        out = parts[0] if len(parts) == 1 else torch.cat(parts)[plan.order]
        return out.to("cpu", torch.float64)

    def _plan(self, layers: list[str], samples: list[Tensor]) -> _Plan:
        """How this step's samples are grouped and stacked: the last step's plan while layers and shapes
        stay the same (the usual case), else a new one."""
        shapes = [sample.shape for sample in samples]
        last = self._last
        if (
            last is not None
            and last.layers == layers
            and last.shapes == shapes
            and all(
                samples[g.members[0]].dtype == g.samples.dtype and samples[g.members[0]].device == g.samples.device
                for g in last.groups
            )
        ):
            return last
        members: dict[tuple[Any, ...], list[int]] = {}
        for i, (layer, sample) in enumerate(zip(layers, samples, strict=True)):
            rule = self._rules.get(layer)
            if rule is None:  # a second call of a reused module ("name#2") follows the module's rule
                rule = self._rules[layer] = self._rules.get(layer.split("#")[0], _NONE)
            members.setdefault((sample.shape, sample.dtype, sample.device, *rule), []).append(i)
        groups = [_Group(key, index) for key, index in members.items()]
        order = torch.tensor([i for group in groups for i in group.members]).argsort()
        self._last = _Plan(layers, shapes, groups, order)
        return self._last

    def compute(self, step: int) -> Tensor:
        return self.finish(self.monitor.all_reduce(self.raw()))

    @staticmethod
    def finish(raw: Tensor) -> Tensor:
        """count, sum, sum of squares, dead, saturated → mean, std (unbiased), dead and saturated fractions.

        Plain Python on a few dozen numbers: cheaper than any array library's dispatch at this size."""
        out: list[float] = []
        for n, s, ss, dead, saturated in raw.tolist():
            if n == 0:  # an empty batch
                out += (math.nan, math.nan, math.nan, math.nan)
                continue
            mean = s / n
            var = max(ss / n - mean * mean, 0.0) * n / max(n - 1, 1)  # NaN/Inf propagate (IEEE), never raise
            out += (mean, math.sqrt(var), dead / n, saturated / n)
        return torch.tensor(out, dtype=torch.float64)


_NONE = ("none", 0.0)


class _Group:
    """Layers whose samples share shape, dtype, device and rule: stacked into one buffer and reduced at once.
    The buffers (the samples, a float32 copy of half-precision ones, a scratch for masks) are kept between
    steps: fresh ones would cost page faults at every record."""

    def __init__(self, key: tuple[Any, ...], members: list[int]) -> None:
        shape, dtype, device, self.kind, self.level = key
        self.members = members
        rows, n = len(members), math.prod(shape)
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32  # half precision would round
        self.samples = torch.empty(rows, *shape, dtype=dtype, device=device)
        self.converted = None if work == dtype else torch.empty(rows, n, dtype=work, device=device)
        self.mask = torch.empty(rows, n, dtype=work, device=device)
        self.zero = torch.zeros(rows, dtype=work, device=device)
        self.count = torch.full((rows,), float(n), dtype=work, device=device)


class _Plan:
    def __init__(self, layers: list[str], shapes: list[Any], groups: list[_Group], order: Tensor) -> None:
        self.layers, self.shapes, self.groups, self.order = layers, shapes, groups, order


def _reduce(group: _Group) -> Tensor:
    """Per stacked sample: count, sum, sum of squares, dead count, saturated count. Comparisons write float
    masks into the scratch and sum them: on the CPU ~5× faster than summing a boolean tensor."""
    a = group.samples.flatten(1)
    if group.converted is not None:
        a = group.converted.copy_(a)
    mask, n, kind, level = group.mask, a.shape[1], group.kind, group.level
    dead = n - torch.gt(a, 0, out=mask).sum(1) if kind == "relu" else group.zero
    if kind == "odd":
        saturated = torch.ge(torch.abs(a, out=mask), level, out=mask).sum(1)
    elif kind == "sigmoid":
        saturated = torch.ge(a, level, out=mask).sum(1) + torch.le(a, 1 - level, out=mask).sum(1)
    else:
        saturated = group.zero
    square = torch.linalg.vector_norm(a, dim=1).square()
    return torch.stack([group.count, a.sum(1), square, dead, saturated], 1)


class PreActivation:
    """Marks a watched value as the input of ``act`` rather than its output (models whose activations are
    functions, not modules, are watched at their weight layers' outputs)."""

    def __init__(self, act: Any) -> None:
        self.act = act


def _rule(act: Any, saturation: float) -> tuple[str, float]:
    """How to read dead and saturated units from a watched value: an activation's output, or (for a
    ``PreActivation``) the pre-activation itself, where the test is simply ``|x| > saturation``."""
    if isinstance(act, PreActivation):
        pre = act.act
        if pre is None:
            return ("none", 0.0)
        if pre.family == "relu":
            return ("relu", 0.0)
        return ("odd", saturation) if pre.family == "saturating" else ("none", 0.0)
    if act is None:
        return ("none", 0.0)
    if act.family == "relu":
        return ("relu", 0.0)
    if act.name in ("tanh", "softsign", "erf", "hardtanh"):
        return ("odd", float(act(torch.tensor(saturation, dtype=torch.float64))))
    if act.name in ("sigmoid", "hardsigmoid"):
        return ("sigmoid", float(act(torch.tensor(saturation, dtype=torch.float64))))
    return ("none", 0.0)


class GradientNorms(Probe):
    """Per parameter: gradient norm and gradient/weight norm ratio, one fused ``_foreach_norm`` each.

    Cost is reading the gradients (memory-bound: 8 MB for a 30×256 MLP, ~0.7 ms, most of a 10% budget), so
    for matrices with more than ``sample_rows`` rows the norm is estimated from the first ``sample_rows``
    rows (output units), ``‖g‖ ≈ √(rows/k)·‖g[:k]‖``: contiguous views, unbiased for ‖g‖² when units are
    exchangeable (as initialization makes them), relative error about ``cv/√k`` for a spread ``cv`` of the
    row norms (≈5% at k = 64) — far inside the orders of magnitude the detectors test. Vectors and small
    matrices are exact; ``sample_rows=None`` makes every norm exact.

    The weight norms, which only scale the ratio, are refreshed every ``weight_every`` recorded steps: a
    weight changes by its update, typically ‖ΔW‖/‖W‖ ≈ 1e-3 per step, so the ratio is off by ~1% at most.
    """

    def __init__(self, sample_rows: int | None = 64, weight_every: int = 10) -> None:
        self.params: list[tuple[str, nn.Parameter]] = []
        self.sample_rows = sample_rows
        self.weight_every = weight_every
        self._weight_norms: list[float] | None = None
        self._scale: list[float] = []
        self._records = 0

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        self.params = [(n, p) for n, p in monitor.model.named_parameters() if p.requires_grad]
        self._names = [(n, stat) for n, _ in self.params for stat in ("grad_norm", "grad_weight_ratio")]
        self._scale = [math.sqrt(p.shape[0] / self._rows(p)) for _, p in self.params]
        # (parameter, rows to read or None for all): slicing only what is sampled saves a view per vector
        self._reads = [(p, self._rows(p) if self._rows(p) < p.shape[0] else None) for _, p in self.params]
        self._weight_norms, self._records = None, 0

    def _rows(self, p: Tensor) -> int:
        k = self.sample_rows
        return p.shape[0] if k is None or p.ndim < 2 or p.shape[0] <= k else k

    def names(self) -> list[tuple[str, str]]:
        return self._names

    def compute(self, step: int) -> Tensor:
        grads = [p.new_zeros(()) if p.grad is None else p.grad if k is None else p.grad[:k] for p, k in self._reads]
        # scaling and ratios in plain Python: each extra kernel costs more than the arithmetic (see above)
        norms = [n * c for n, c in zip(torch.stack(torch._foreach_norm(grads)).tolist(), self._scale, strict=True)]
        if self._weight_norms is None or self._records % self.weight_every == 0:
            self._weight_norms = torch.stack(torch._foreach_norm([p.detach() for _, p in self.params])).tolist()
        self._records += 1
        return torch.tensor([x for n, w in zip(norms, self._weight_norms, strict=True) for x in (n, _ratio(n, w))],
                            dtype=torch.float64)  # fmt: skip


def _ratio(a: float, b: float) -> float:
    """``a / b`` with IEEE semantics (x/0 = ±inf, 0/0 = NaN) instead of Python's ZeroDivisionError.

    >>> _ratio(1.0, 0.0), _ratio(0.0, 0.0), _ratio(3.0, 2.0)
    (inf, nan, 1.5)
    """
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


class UpdateRatio(Probe):
    """Per parameter: ‖ΔW‖/‖W‖ of the last optimizer step (needs ``optimizer=``; copies the weights before
    each recorded step, which costs one extra read and write of every weight)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.before: list[Tensor] | None = None

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        self.params = [(n, p) for n, p in monitor.model.named_parameters() if p.requires_grad]
        self._pre = self.optimizer.register_step_pre_hook(self._snapshot)
        self._post = self.optimizer.register_step_post_hook(self._measure)

    def _snapshot(self, *args: Any) -> None:
        if self.monitor.recording_next_update:
            self.before = [p.detach().clone() for _, p in self.params]

    def _measure(self, *args: Any) -> None:
        if self.before is None:
            return
        after = [p.detach() for _, p in self.params]
        delta = torch._foreach_sub(after, self.before)
        ratio = torch.stack(torch._foreach_norm(delta)) / torch.stack(torch._foreach_norm(after))
        self.before = None
        self.monitor.attach_update([(n, "update_ratio") for n, _ in self.params], ratio)

    def names(self) -> list[tuple[str, str]]:
        return []  # added to the step's record after the optimizer step, by attach_update

    def compute(self, step: int) -> Tensor:
        return torch.empty(0)

    def detach(self) -> None:
        self._pre.remove()
        self._post.remove()


class LossProbe(Probe):
    """The loss passed to ``mon.step(loss)`` or ``mon.observe_loss(loss)`` (absent from steps without one)."""

    def __init__(self) -> None:
        self.loss: Tensor | None = None

    def names(self) -> list[tuple[str, str]]:
        return [("model", "loss")] if self.loss is not None else []

    def compute(self, step: int) -> Tensor:
        value = self.loss.detach().float().reshape(1) if self.loss is not None else torch.empty(0)
        self.loss = None
        return value


def default_probes(optimizer: torch.optim.Optimizer | None) -> Sequence[Probe]:
    probes: list[Probe] = [ActivationStats(), GradientNorms(), LossProbe()]
    if optimizer is not None:
        probes.append(UpdateRatio(optimizer))
    return probes
