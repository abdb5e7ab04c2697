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
    and 0.7). Layers of the same shape
    are stacked and reduced together, a few kernels for the whole model. The raw sums (count, sum, sum of
    squares, dead count, saturated count) are what DDP all-reduces, so the global statistics are exact.
    """

    needs_activations = True

    def __init__(self, sample_rows: int = 16, saturation: float = SATURATION_PRE) -> None:
        self.sample_rows = sample_rows
        self.saturation = saturation
        self.layers: list[str] = []
        self._rules: dict[str, tuple[str, float]] = {}
        # Samples are copied in the forward hook (hot in cache) into one contiguous buffer per group of
        # same-sized, same-rule layers, so a record reduces a few compact tensors.
        self._slots: dict[str, tuple[tuple[Any, ...], int]] = {}
        self._buffers: dict[tuple[Any, ...], Tensor] = {}
        self._views: dict[tuple[Any, ...], np.ndarray] = {}  # NumPy views of CPU buffers (shared memory)
        self._seen: set[str] = set()

    def attach(self, monitor: Monitor) -> None:
        super().attach(monitor)
        for layer, act in monitor.layer_activations.items():
            self._rules[layer] = _rule(act, self.saturation)

    def on_forward(self, layer: str, output: Tensor) -> None:
        if output.ndim == 0:
            return
        size = min(self.sample_rows, output.shape[0]) * (output.numel() // max(output.shape[0], 1))
        slot = self._slots.get(layer)
        if slot is None or self._buffers[slot[0]].shape[1] != size or slot[0][1] != output.device:
            slot = self._place(layer, output.detach()[: self.sample_rows].reshape(-1))
        view = self._views.get(slot[0])
        if view is not None and output.dtype in (torch.float32, torch.float64):
            # CPU: NumPy's dispatch is ~10× cheaper than torch's for these small copies (same memory)
            view[slot[1]] = output.detach().numpy()[: self.sample_rows].reshape(-1)
        else:
            self._buffers[slot[0]][slot[1]].copy_(output.detach()[: self.sample_rows].reshape(-1))
        self._seen.add(layer)

    def _place(self, layer: str, sample: Tensor) -> tuple[tuple[Any, ...], int]:
        if layer not in self._rules:  # a second call of a reused module ("name#2")
            self._rules[layer] = self._rules.get(layer.split("#")[0], ("none", 0.0))
        if layer not in self.layers:
            self.layers.append(layer)
        key = (sample.numel(), sample.device, *self._rules[layer])
        rows = sum(1 for k, _ in self._slots.values() if k == key)
        old = self._buffers.get(key)
        grown = torch.empty(rows + 1, sample.numel(), device=sample.device)
        if old is not None:
            grown[: old.shape[0]] = old
        self._buffers[key] = grown
        if grown.device.type == "cpu":
            self._views[key] = grown.numpy()
        self._slots[layer] = (key, rows)
        return self._slots[layer]

    def names(self) -> list[tuple[str, str]]:
        """Only the layers called in this step (a layer skipped by the forward pass has no statistics)."""
        return [(layer, stat) for layer in self.layers if layer in self._seen
                for stat in ("mean", "std", "dead", "saturated")]  # fmt: skip

    def raw(self) -> Tensor:
        """Per called layer: count, sum, sum of squares, dead count, saturated count (reducible by summing)."""
        parts = [self._reduce(key, buffer) for key, buffer in self._buffers.items()]
        if not parts:
            return torch.empty(0, 5)
        out = torch.cat(parts).cpu()[self._order()]
        if len(self._seen) != len(self.layers):
            out = out[[i for i, layer in enumerate(self.layers) if layer in self._seen]]
        self._seen.clear()
        return out

    def _order(self) -> Tensor:
        """Row of each layer (in first-call order) in the concatenation of the groups' results."""
        if getattr(self, "_order_for", None) != len(self._slots):
            offsets, start = {}, 0
            for key, buffer in self._buffers.items():
                offsets[key], start = start, start + buffer.shape[0]
            self._order_cache = torch.tensor([offsets[k] + row for k, row in (self._slots[x] for x in self.layers)])
            self._order_for = len(self._slots)
        return self._order_cache

    def _reduce(self, key: tuple[Any, ...], buffer: Tensor) -> Tensor:
        view = self._views.get(key)
        if view is not None:
            return _reduce_numpy(key, view)
        n, _, kind, level = key
        count = buffer.new_full((buffer.shape[0],), float(n))
        zero = buffer.new_zeros(buffer.shape[0])
        if kind == "zero":  # ReLU/ReLU6 outputs: dead ⇔ exactly 0, one count_nonzero kernel
            dead = n - torch.count_nonzero(buffer, dim=1)
        else:
            dead = n - (buffer > 0).sum(1) if kind == "relu" else zero
        if kind == "odd":
            saturated = (buffer.abs() >= level).sum(1)
        elif kind == "sigmoid":
            saturated = ((buffer >= level) | (buffer <= 1 - level)).sum(1)
        else:
            saturated = zero
        square = torch.linalg.vector_norm(buffer, dim=1).square()
        return torch.stack([count, buffer.sum(1), square, dead.to(buffer.dtype), saturated.to(buffer.dtype)], 1)

    def compute(self, step: int) -> Tensor:
        return self.finish(self.monitor.all_reduce(self.raw()))

    @staticmethod
    def finish(raw: Tensor) -> Tensor:
        """count, sum, sum of squares, dead, saturated → mean, std (unbiased), dead and saturated fractions."""
        n, s, ss, dead, sat = raw.unbind(1)
        mean = s / n
        var = (ss / n - mean**2).clamp_min(0) * n / (n - 1).clamp_min(1)
        return torch.stack([mean, var.sqrt(), dead / n, sat / n], 1).reshape(-1)


class PreActivation:
    """Marks a watched value as the input of ``act`` rather than its output (models whose activations are
    functions, not modules, are watched at their weight layers' outputs)."""

    def __init__(self, act: Any) -> None:
        self.act = act


def _reduce_numpy(key: tuple[Any, ...], a: np.ndarray) -> Tensor:
    """The CPU twin of ``ActivationStats._reduce`` (same columns), through NumPy's cheaper dispatch."""
    n, _, kind, level = key
    zero = np.zeros(a.shape[0])
    if kind == "zero":
        dead = n - np.count_nonzero(a, axis=1)
    elif kind == "relu":
        dead = n - (a > 0).sum(1)
    else:
        dead = zero
    if kind == "odd":
        saturated = (np.abs(a) >= level).sum(1)
    elif kind == "sigmoid":
        saturated = ((a >= level) | (a <= 1 - level)).sum(1)
    else:
        saturated = zero
    columns = [np.full(a.shape[0], float(n)), a.sum(1, dtype=np.float64), np.einsum("ij,ij->i", a, a), dead, saturated]
    return torch.from_numpy(np.stack(columns, 1).astype(np.float32))


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
        return ("zero", 0.0)
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
