"""Probes: each diagnostic quantity a small class with a lifecycle (Cockpit's design).

``attach(monitor)`` → (``on_forward(layer, output)`` for every watched layer call) → ``compute(step)`` on
recorded steps → ``detach()``. ``compute`` returns *tensors* (reduced on the tensor's device); the monitor
stacks every probe's tensors and copies them to the host once per recorded step, so probes never call
``.item()``.

Costs are what make a monitor usable at every step (issue 5: ≤ 10% of a training step). The built-in probes
therefore reduce many layers at once with fused ``torch._foreach_*`` kernels, and activation statistics use
the first ``sample_rows`` examples of the batch (64 by default): batches are shuffled, so this is a uniform
random sample, and a mean, a std or a fraction over 64 × width values has a sampling error well under the
thresholds the detectors use (documented per probe; the oracle tests apply the same rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
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
        self._buffers: dict[tuple[Any, ...], Tensor] = {}

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        for layer, act in monitor.layer_activations.items():
            self._rules[layer] = _rule(act, self.saturation)
            if isinstance(act, PreActivation):
                self._copied.add(layer)
        self._pending.clear()

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
        return [(layer, stat) for layer, _ in self._ready for stat in ("mean", "std", "dead", "saturated")]

    def raw(self) -> Tensor:
        """Per ready layer: count, sum, sum of squares, dead count, saturated count (reducible by summing)."""
        ready, self._ready = self._ready, []
        groups: dict[tuple[Any, ...], list[tuple[int, Tensor]]] = {}
        with torch.no_grad():
            for i, (layer, output) in enumerate(ready):
                sample = output[: self.sample_rows]
                rule = self._rules.get(layer)
                if rule is None:  # a second call of a reused module ("name#2") follows the module's rule
                    rule = self._rules[layer] = self._rules.get(layer.split("#")[0], _NONE)
                groups.setdefault((sample.shape, sample.dtype, sample.device, *rule), []).append((i, sample))
            parts, order = [], []
            for key, items in groups.items():
                # stacked into buffers kept between steps: fresh ones would cost page faults at every record
                buffers = self._buffers.get(key)
                if buffers is None or buffers.shape[1] != len(items):
                    shape, dtype, device = key[:3]
                    buffers = self._buffers[key] = torch.empty(2, len(items), *shape, dtype=dtype, device=device)
                torch.stack([sample for _, sample in items], out=buffers[0])
                parts.append(_reduce(buffers.flatten(2), *key[3:]))
                order += [i for i, _ in items]
        if not parts:
            return torch.empty(0, 5, dtype=torch.float64)
        out = parts[0] if len(parts) == 1 else torch.cat(parts)[torch.tensor(order).argsort()]
        return out.double().cpu()

    def compute(self, step: int) -> Tensor:
        return self.finish(self.monitor.all_reduce(self.raw()))

    @staticmethod
    def finish(raw: Tensor) -> Tensor:
        """count, sum, sum of squares, dead, saturated → mean, std (unbiased), dead and saturated fractions."""
        n, s, ss, dead, sat = raw.double().numpy().T  # a few dozen values: NumPy's dispatch is the cheap one
        with np.errstate(all="ignore"):  # NaN and Inf are results here (the NaN detector reads them)
            mean = s / n
            var = np.maximum(ss / n - mean**2, 0) * n / np.maximum(n - 1, 1)
            return torch.from_numpy(np.stack([mean, np.sqrt(var), dead / n, sat / n], 1).reshape(-1))


_NONE = ("none", 0.0)


def _reduce(buffers: Tensor, kind: str, level: float) -> Tensor:
    """``buffers[0]``: one sample per row; ``buffers[1]``: scratch of the same shape. Per row: count, sum,
    sum of squares, dead count, saturated count. Comparisons write float masks into the scratch and sum them:
    on the CPU that is ~5× faster than summing a boolean tensor, and the scratch is reused between steps."""
    if buffers.dtype not in (torch.float32, torch.float64):  # half precision: sums would overflow or round
        buffers = buffers.float()
    a, mask = buffers[0], buffers[1]
    rows, n = a.shape
    zero = a.new_zeros(rows)
    dead = n - torch.gt(a, 0, out=mask).sum(1) if kind in ("zero", "relu") else zero
    if kind == "odd":
        saturated = torch.ge(torch.abs(a, out=mask), level, out=mask).sum(1)
    elif kind == "sigmoid":
        saturated = torch.ge(a, level, out=mask).sum(1) + torch.le(a, 1 - level, out=mask).sum(1)
    else:
        saturated = zero
    square = torch.linalg.vector_norm(a, dim=1).square()
    return torch.stack([a.new_full((rows,), float(n)), a.sum(1), square, dead, saturated], 1)


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
    if act.name in ("relu", "relu6"):
        return ("zero", 0.0)  # outputs ≥ 0: dead ⇔ exactly 0
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
        self._weight_norms: Tensor | None = None
        self._scale: Tensor | None = None
        self._records = 0

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        self.params = [(n, p) for n, p in monitor.model.named_parameters() if p.requires_grad]
        self._scale = torch.tensor([math.sqrt(p.shape[0] / self._rows(p)) for _, p in self.params])
        # (parameter, rows to read or None for all): slicing only what is sampled saves a view per vector
        self._reads = [(p, self._rows(p) if self._rows(p) < p.shape[0] else None) for _, p in self.params]
        self._weight_norms, self._records = None, 0

    def _rows(self, p: Tensor) -> int:
        k = self.sample_rows
        return p.shape[0] if k is None or p.ndim < 2 or p.shape[0] <= k else k

    def names(self) -> list[tuple[str, str]]:
        return [(n, stat) for n, _ in self.params for stat in ("grad_norm", "grad_weight_ratio")]

    def compute(self, step: int) -> Tensor:
        grads = [torch.zeros(()) if p.grad is None else p.grad if k is None else p.grad[:k] for p, k in self._reads]
        g = torch.stack(torch._foreach_norm(grads)) * self._scale  # type: ignore[operator]
        if self._weight_norms is None or self._records % self.weight_every == 0:
            self._weight_norms = torch.stack(torch._foreach_norm([p.detach() for _, p in self.params]))
        self._records += 1
        return torch.stack([g, g / self._weight_norms], 1).reshape(-1)


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
