"""Probes: each diagnostic quantity a small class with a lifecycle (Cockpit's design).

``attach(monitor)`` → on recorded steps: ``on_forward(layer, output)`` for every watched layer call,
``on_forward_end()``, then ``names()`` and ``compute(step)`` after the backward pass (or ``discard()`` if
there is none) → ``detach()``. ``compute`` returns its values as Python floats (or as a 1-D tensor, which
the monitor converts): a probe reduces on the tensors' device and copies the result to the host once, never
value by value.

Costs are what make a monitor usable at every step (issue 5: ≤ 10% of a training step), and on the CPU they
are not where one would guess: each torch kernel costs 5–20 µs of dispatch however small its input, and the
first call of a kernel after a backward pass (whose code has left the caches) ~0.05–0.2 ms. So on the CPU the
built-in probes use fused C functions (``initlab.monitor._fused``, built by ``setup.py``): one pass over an
output computes its sum, sum of squares and unit counts inside the forward hook, while the output is still in
cache, one call reads all gradient samples, and two calls copy and compare the weights around an optimizer
step (update ratios). Elsewhere (GPU, half precision, non-contiguous tensors, or an
install without a C compiler: see :func:`fused_kernels`) the same statistics come from torch kernels over
many layers at once (activation samples stacked into reused buffers at the end of the forward pass, so the
outputs are not held through the backward pass; ``torch._foreach_norm`` for the gradients). Both read
samples: the first ``sample_rows`` examples of each output (a uniform sample for shuffled batches) and the
first rows of each weight gradient, with sampling errors far below the detectors' thresholds (documented per
probe; the oracle tests apply the same samples, on both paths).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from initlab._errors import fail
from initlab.init._meta import is_sharded
from initlab.init.structure import Structure


def _compiled() -> ModuleType | None:
    """The optional compiled part (setup.py); without it the statistics come from torch kernels."""
    try:
        from initlab.monitor import _fused
    except ImportError:  # an install without a C compiler
        return None
    return _fused


_fused = _compiled()

__all__ = ["ActivationStats", "GradientNorms", "LossProbe", "Probe", "UpdateRatio", "fused_kernels"]

SATURATION_PRE = 5.0  # DeepDiagnosis (Wardat et al. 2022): |pre-activation| > 5 for tanh/sigmoid
_FUSED_DTYPES = (torch.float32, torch.float64)
_PLAIN = (Tensor, nn.Parameter)  # subclasses (fake, distributed, …) may have no memory of their own to read


def fused_kernels() -> bool:
    """Whether the monitor's fused CPU reductions were built with this install (``setup.py`` compiles them when
    a C compiler is there). Without them the statistics are the same, from torch kernels, at 0.2–0.5 ms more
    per recorded step on the benchmark's 30-layer MLP (``bench/monitor_overhead.py`` measures both)."""
    return _fused is not None


SampleRows = int | None | str  # rows to read, None for all, or "auto"


def sample_rows_checked(value: SampleRows) -> SampleRows:
    """A probe's ``sample_rows``, checked: a positive number of rows, None to read every row, or ``"auto"``."""
    if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise fail("sample_rows must be a positive number of rows", accepted='an int >= 1, None to read every row, '
               'or "auto"', received=value, fix="Pass e.g. sample_rows=64, or None for exact statistics.")  # fmt: skip


def resolve_rows(value: SampleRows, sampled: int, monitor: Host) -> int | None:
    """The rows a probe reads: ``"auto"`` samples ``sampled`` rows only when the monitor records every step, where
    reading everything would cost more than the 10% budget; on any sparser schedule the statistics are exact
    (issue 35; ``bench/monitor_overhead.py`` at every=10: exact 1.024× beside sampled 1.034× in one run, exact
    1.056–1.087× in three others on a loaded machine)."""
    if value == "auto":
        return sampled if monitor.records_every_step else None
    assert not isinstance(value, str)
    return value


def _fusable(t: Tensor) -> bool:
    """Whether the fused kernels can read ``t`` from its address: dense CPU float32/float64 memory."""
    return (
        _fused is not None
        and type(t) in _PLAIN
        and t.is_cpu
        and t.dtype in _FUSED_DTYPES
        and t.layout is torch.strided
        and t.is_contiguous()
        and not t.is_neg()  # a lazily negated view: its memory holds the values before the negation
    )


def _prefix(t: Tensor, rows: int | None) -> int:
    """Elements in the first ``rows`` rows of a contiguous tensor (a prefix of its memory); all for None."""
    n = t.numel()
    return n if rows is None or t.ndim == 0 or t.shape[0] <= rows else n // t.shape[0] * rows


def _fused_addresses(tensors: Sequence[Tensor | None], counts: Sequence[int]) -> tuple[list[int], bool] | None:
    """The addresses of the tensors for the fused kernels (0 for a missing one) and whether they are float64,
    or None when one of them cannot be read there (wrong kind, fewer than ``counts[i]`` elements, dtypes that
    differ): the caller uses torch kernels then."""
    if _fused is None:
        return None
    addresses, dtype = [], None
    for t, n in zip(tensors, counts, strict=True):
        if t is None:
            addresses.append(0)
            continue
        if not _fusable(t) or t.numel() < n or (dtype is not None and t.dtype != dtype):
            return None
        dtype = t.dtype
        addresses.append(t.data_ptr())
    return addresses, dtype is torch.float64


# A sampled matrix is read as this many runs of rows, so that the spread of their sums of squares gives the
# estimate's own standard error (batch means); 2.365 is Student's t at 97.5% for GROUPS - 1 degrees of freedom.
GROUPS, T_975 = 8, 2.365


class _RowSample:
    """The rows of each parameter that a probe reads: for matrices with more than ``sample_rows`` rows the
    first ``sample_rows`` (a contiguous prefix), else all of it (scalars, vectors, small matrices, or every
    parameter when ``sample_rows`` is None). ``estimate`` reads those rows of same-shaped tensors in one call.

    A sampled matrix's prefix is read as :data:`GROUPS` runs of rows. Each run's sum of squares, scaled up, is
    an estimate of ``‖g‖²``; their spread gives the standard error of the mean of them, with the finite-population
    correction (rows are drawn without replacement), and so a ~95% relative error bound on the norm
    (``½ · t · SE/‖g‖²``): stored beside the value as ``grad_norm_err``. ``bench/sampled_norm_error.py`` measures
    how often the exact norm lies inside it."""

    def __init__(self, params: Sequence[Tensor], sample_rows: int | None) -> None:
        def rows(p: Tensor) -> int | None:
            k = sample_rows
            return k if k is not None and p.ndim >= 2 and p.shape[0] > k else None

        # (parameter, rows to read or None for all): slicing only what is sampled saves a view per vector
        self.reads = [(p, rows(p)) for p in params]
        self.counts = [_prefix(p, k) for p, k in self.reads]  # elements read, for the fused kernel
        self.scale = [1.0 if k is None else math.sqrt(p.shape[0] / k) for p, k in self.reads]  # √(rows/k)
        self.sampled = [k is not None for _, k in self.reads]
        self.parts = [GROUPS if k is not None and k % GROUPS == 0 else 1 for _, k in self.reads]
        self._fpc = [1.0 if k is None else math.sqrt((p.shape[0] - k) / (p.shape[0] - 1)) for p, k in self.reads]
        self._segment_counts = [c // g for c, g in zip(self.counts, self.parts, strict=True) for _ in range(g)]

    def views(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        return [t if k is None else t[:k] for t, (_, k) in zip(tensors, self.reads, strict=True)]

    def norms(self, tensors: Sequence[Tensor | None]) -> list[float]:
        """The norm of the sampled rows of each tensor (shaped as its parameter; 0 if missing), unscaled."""
        return [math.sqrt(sum(parts)) for parts in self._parts(tensors)]

    def estimate(self, tensors: Sequence[Tensor | None]) -> tuple[list[float], list[float]]:
        """Each tensor's estimated norm (scaled up from its sampled rows) and the estimate's ~95% relative error
        bound (0 where every row was read)."""
        norms, errors = [], []
        for parts, scale, fpc in zip(self._parts(tensors), self.scale, self._fpc, strict=True):
            total = sum(parts)
            norms.append(math.sqrt(total) * scale)
            if len(parts) == 1:
                errors.append(0.0)
                continue
            g = len(parts)
            spread = math.sqrt(sum((g * x - total) ** 2 for x in parts) / (g - 1))  # sd of the runs' estimates
            errors.append(0.5 * T_975 * spread / math.sqrt(g) * fpc / total if total > 0 else math.nan)
        return norms, errors

    def _parts(self, tensors: Sequence[Tensor | None]) -> list[list[float]]:
        """The sums of squares of each tensor's runs of sampled rows (one run where no rows are sampled)."""
        found = _fused_addresses(tensors, self.counts)
        if found is not None and _fused is not None:  # one call for all
            size = 8 if found[1] else 4
            addresses = [a + j * (c // g) * size if a else 0  # 0: a missing gradient
                         for a, c, g in zip(found[0], self.counts, self.parts, strict=True)
                         for j in range(g)] if any(g > 1 for g in self.parts) else found[0]  # fmt: skip
            flat = _fused.sumsq(addresses, self._segment_counts, found[1])
        else:
            views = [p.new_zeros(g) if t is None else (t if k is None else t[:k]).reshape(g, -1)
                     for t, (p, k), g in zip(tensors, self.reads, self.parts, strict=True)]  # fmt: skip
            flat = torch.stack(torch._foreach_norm([r for v in views for r in v.unbind(0)])).square().tolist()
        out, at = [], 0
        for g in self.parts:
            out.append(flat[at : at + g])
            at += g
        return out


class Host(Protocol):
    """What a probe may use of the monitor it is attached to (``initlab.monitor.Monitor`` is one); a protocol, so
    that probes do not import the monitor that drives them."""

    model: nn.Module
    layer_activations: dict[str, Any]
    structure: Structure | None  # the structure layer's view of the model (None for Keras)

    @property
    def distributed(self) -> bool: ...

    @property
    def recording_next_update(self) -> bool: ...

    @property
    def records_every_step(self) -> bool: ...

    def all_reduce(self, tensor: Tensor) -> Tensor: ...

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]: ...

    def attach_update(self, names: Sequence[tuple[str, str]], ratio: Sequence[float]) -> None: ...


class Probe:
    """Base class: override ``names`` and ``compute``; the hooks into the model are the monitor's."""

    needs_activations = False

    def attach(self, monitor: Host) -> None:
        self.monitor = monitor

    def on_forward(self, layer: str, output: Tensor) -> None:
        """Called for each watched layer call on recorded steps (only if ``needs_activations``)."""

    def on_forward_end(self) -> None:
        """Called when the model's forward pass returns on a step to be recorded, before its backward pass
        (with ``auto_step``; ``names`` must not depend on it)."""

    def names(self) -> list[tuple[str, str]]:
        """The (layer, statistic) pairs that ``compute`` returns, in order (may grow as layers are seen)."""
        raise NotImplementedError

    def compute(self, step: int) -> Sequence[float] | Tensor:
        """A value per ``names()`` entry: Python floats, or a 1-D tensor."""
        raise NotImplementedError

    def discard(self) -> None:
        """The step ends unrecorded (its forward pass had no backward pass, e.g. a frozen model's): drop what
        was collected for it."""

    def detach(self) -> None:
        """Release what ``attach`` took."""

    def arm(self, on: bool) -> None:
        """A probe with hooks of its own attaches them for a step to be recorded (``on``) and removes them after
        (the monitor calls this where it arms its own layer hooks)."""


class ActivationStats(Probe):
    """Per watched layer: mean, std, dead fraction (ReLU family: output ≤ 0) and saturated fraction
    (tanh/sigmoid/…: ``|pre-activation| > saturation``, read from the output through the activation's
    monotone map, so in-place activations are handled).

    Every row is read unless the monitor records every step (``sample_rows="auto"``, the default: issue 35);
    there the first 16 rows (examples) of each output are used: with shuffled batches a uniform
    sample of 16 × width values per layer (the standard error of a fraction is at most 0.125 even if all
    units of an example moved together, and ~0.01 for independent units; the detector thresholds are 0.5
    and 0.7). The raw sums (count, sum, sum of squares, dead count, saturated count) are what DDP
    all-reduces, so the global statistics are exact.

    Cost, on the CPU with the fused kernels (:func:`fused_kernels`): the hook reduces the sample at once with
    one C call (~2–3 µs for 16 × 256 values, read while the layer's output is still in cache) and keeps only
    five numbers, so it reads exactly what the layer produced, whatever happens to the tensor afterwards.

    Cost on the torch path (GPU, half precision, non-contiguous outputs, no C compiler at install): the
    forward hook only keeps a reference to the output and its version counter (the tensor is alive anyway
    until the backward pass: autograd saves it, or the next layer does). Torch kernels in the hook would run
    between two layers' kernels, with cold caches, at several times their isolated cost. At the end of the
    forward pass (:meth:`on_forward_end`) every sample is sliced in one tight loop, same-shaped samples
    are stacked into one buffer kept between steps and reduced with a handful of kernels, and the
    references are dropped: held through the backward pass, they would keep ~30 outputs from being freed as
    autograd finishes with them, and the memory the backward pass then takes afresh costs ~1000 page
    faults per step (~1 ms for the benchmark's MLP). The record only copies the results to the host. An
    output changed in place after its hook (``h = act(x); h.mul_(m)``) no longer holds what the layer
    produced: that layer is left out of the step (never reported wrong) and copied inside its hook from then
    on. Pre-activations (models with functional activations, watched at their weight layers) are always
    copied: ``F.relu(x, inplace=True)`` overwrites them.
    """

    needs_activations = True

    def __init__(self, sample_rows: SampleRows = "auto", saturation: float = SATURATION_PRE) -> None:
        self.sample_rows = sample_rows_checked(sample_rows)
        self._rows: int | None = 16
        self.saturation = saturation
        self._rules: dict[str, tuple[str, float]] = {}
        self._bounds: dict[str, tuple[str, float, float]] = {}  # the fused kernel's rule, hi and lo per layer
        self._copied: set[str] = set()  # layers whose output is overwritten after the hook
        self._calls = 0  # watched calls so far: orders the layers of a step reduced on different paths
        self._done: list[tuple[int, str, list[float]]] = []  # (call, layer, raw sums) reduced by the fused kernel
        self._pending: list[tuple[int, str, Tensor, int]] = []  # (call, layer, output or its copied sample, version)
        self._batches: list[tuple[tuple[int, ...], tuple[str, ...], _Plan]] = []  # reduced on the device
        self._names: tuple[tuple[str, ...], list[tuple[str, str]]] = ((), [])
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def attach(self, monitor: Host) -> None:
        super().attach(monitor)
        self._rows = resolve_rows(self.sample_rows, 16, monitor)
        for layer, act in monitor.layer_activations.items():
            self._rules[layer] = _rule(act, self.saturation)
            if isinstance(act, PreActivation):
                self._copied.add(layer)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()  # the references to outputs of a step that is not recorded
        self._batches.clear()
        self._done.clear()

    def detach(self) -> None:
        self.discard()

    def on_forward(self, layer: str, output: Tensor) -> None:
        if output.ndim == 0:
            return
        self._calls += 1
        if _fusable(output):
            self._done.append((self._calls, layer, self._sums(layer, output)))
            return
        if self._copied and (layer in self._copied or layer.split("#")[0] in self._copied):
            output = output.detach()[: self._rows].clone()
        self._pending.append((self._calls, layer, output, output._version))

    def _rule(self, layer: str) -> tuple[str, float]:
        rule = self._rules.get(layer)
        if rule is None:  # a second call of a reused module ("name#2") follows the module's rule
            rule = self._rules[layer] = self._rules.get(layer.split("#")[0], _NONE)
        return rule

    def _sums(self, layer: str, output: Tensor) -> list[float]:
        """count, sum, sum of squares, dead count, saturated count of the output's sample, by the fused kernel."""
        bounds = self._bounds.get(layer)
        if bounds is None:  # the rule's levels as the kernel's two comparisons: x >= hi, x <= lo
            kind, level = self._rule(layer)
            hi, lo = {"odd": (level, -level), "sigmoid": (level, 1 - level)}.get(kind, (math.inf, -math.inf))
            bounds = self._bounds[layer] = (kind, hi, lo)
        kind, hi, lo = bounds
        n = _prefix(output, self._rows)
        assert _fused is not None  # _fusable(output) said so
        s, ss, positive, above, below = _fused.sums(output.data_ptr(), n, output.dtype is torch.float64, hi, lo)
        dead = n - positive if kind == "relu" else 0.0
        saturated = above + below if kind in ("odd", "sigmoid") else 0.0
        return [float(n), s, ss, dead, saturated]

    def on_forward_end(self) -> None:
        """Reduce the samples of the outputs held so far on their device, then let the outputs go."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        calls, labels, samples, rows = [], [], [], self._rows
        with torch.no_grad():
            for call, layer, output, version in pending:
                if output._version == version:
                    calls.append(call)
                    labels.append(layer)
                    samples.append(output[:rows])
                else:
                    self._copied.add(layer)
            if not samples:
                return
            key = tuple(labels)
            plan = self._plan(key, samples)
            for group in plan.groups:
                group.reduce(samples, plan.results[group.buf.device])
        self._batches.append((tuple(calls), key, plan))

    def names(self) -> list[tuple[str, str]]:
        """The layers called in this step whose outputs are intact (a skipped layer has no statistics)."""
        self.on_forward_end()  # outputs still held: the step's forward pass did not end at the model's output
        if self._batches:  # in call order, whichever path reduced each layer
            calls = [(call, layer) for call, layer, _ in self._done]
            calls += [c for batch_calls, batch, _ in self._batches for c in zip(batch_calls, batch, strict=True)]
            labels = tuple(layer for _, layer in sorted(calls))
        else:
            labels = tuple(layer for _, layer, _ in self._done)
        if labels != self._names[0]:
            self._names = (labels, [(layer, stat) for layer in labels for stat in ("mean", "std", "dead", "saturated")])
        return self._names[1]

    def _plan(self, layers: tuple[str, ...], samples: list[Tensor]) -> _Plan:
        """How these samples are grouped and stacked: the plan made for the same layers in an earlier step
        while shapes, dtypes and devices stay the same (the usual case), else a new one."""
        shapes = [sample.shape for sample in samples]
        last = self._plans.get(layers)
        if (
            last is not None
            and last.shapes == shapes
            and all(samples[g.members[0]].dtype == g.dtype and samples[g.members[0]].device == g.buf.device
                    for g in last.groups)
        ):  # fmt: skip
            return last
        members: dict[tuple[Any, ...], list[int]] = {}
        for i, (layer, sample) in enumerate(zip(layers, samples, strict=True)):
            members.setdefault((sample.shape, sample.dtype, sample.device, *self._rule(layer)), []).append(i)
        if len(self._plans) >= 8:  # layer sets that changed for good (a layer found overwritten in place)
            self._plans.clear()
        plan = self._plans[layers] = _Plan(shapes, list(members.items()))
        return plan

    def compute(self, step: int) -> list[float]:
        raw = self.raw()
        if self.monitor.distributed:
            raw = self.monitor.all_reduce(torch.tensor(raw, dtype=torch.float64)).tolist()
        return self.finish(raw)

    def raw(self) -> list[list[float]]:
        """Per layer of ``names()``: count, sum, sum of squares, dead count, saturated count (reducible by
        summing across ranks)."""
        self.on_forward_end()
        done, batches = self._done, self._batches
        self._done, self._batches = [], []
        if not batches:
            return [row for _, _, row in done]
        rows = [(call, row) for call, _, row in done]
        for calls, labels, plan in batches:
            values = {device: result.tolist() for device, result in plan.results.items()}  # one copy per device
            out: list[list[float]] = [[] for _ in labels]
            for group in plan.groups:
                group.rows(values[group.buf.device], out)
            rows += zip(calls, out, strict=True)
        return [row for _, row in sorted(rows, key=lambda item: item[0])]  # call order, as names()

    @staticmethod
    def finish(raw: list[list[float]]) -> list[float]:
        """count, sum, sum of squares, dead, saturated → mean, std (unbiased), dead and saturated fractions.

        Plain Python on a few dozen numbers: cheaper than any array library's dispatch at this size.

        >>> ActivationStats.finish([[4.0, 2.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
        [0.5, 0.5773502691896257, 0.25, 0.0, nan, nan, nan, nan]
        """
        out: list[float] = []
        for n, s, ss, dead, saturated in raw:
            if n == 0:  # an empty batch
                out += (math.nan, math.nan, math.nan, math.nan)
                continue
            mean = s / n
            var = max(ss / n - mean * mean, 0.0) * n / max(n - 1, 1)  # NaN/Inf propagate (IEEE), never raise
            out += (mean, math.sqrt(var), dead / n, saturated / n)
        return out


_NONE = ("none", 0.0)
_MASKS = {"relu": 1, "odd": 1, "sigmoid": 2, "none": 0}  # mask blocks per rule (see _Group)


class _Group:
    """Layers whose samples share shape, dtype, device and rule, reduced together with three to five kernels.

    ``buf`` holds the samples stacked (one row each), then one block of rows per mask: ReLU family, the
    positive values; tanh-like, ``|x| ≥ level``; sigmoid-like, ``x ≥ level`` and ``x ≤ 1 − level``. Masks are
    float 0/1 (summing float masks is ~5× faster than summing booleans on the CPU). One sum over ``buf``'s
    rows gives every sample's sum and every mask's count, one norm the sums of squares, both written straight
    into the plan's result vector. The buffer is kept between steps: a fresh one would cost page faults at
    every record.
    """

    def __init__(self, key: tuple[Any, ...], members: list[int], offset: int) -> None:
        shape, self.dtype, device, self.kind, self.level = key
        self.members, self.offset = members, offset
        rows, self.n = len(members), math.prod(shape)
        # Half-precision samples are stacked into float32 (the stack converts): compared in their own dtype,
        # the saturation levels would be rounded (sigmoid(5) = 0.9933 becomes 0.9922 in bfloat16).
        work = self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32
        self.buf = torch.empty(rows * (1 + _MASKS[self.kind]), self.n, dtype=work, device=device)
        self.stacked = self.buf[:rows].view(rows, *shape)
        self.size = len(self.buf) + rows  # result values: a sum per buffer row, then a norm per sample

    def reduce(self, samples: list[Tensor], results: Tensor) -> None:
        rows, buf = len(self.members), self.buf
        torch.stack([samples[i] for i in self.members], out=self.stacked)
        a = buf[:rows]
        if self.kind == "relu":
            torch.gt(a, 0, out=buf[rows:])
        elif self.kind == "odd":
            torch.ge(torch.abs(a, out=buf[rows:]), self.level, out=buf[rows:])
        elif self.kind == "sigmoid":
            torch.ge(a, self.level, out=buf[rows : 2 * rows])
            torch.le(a, 1 - self.level, out=buf[2 * rows :])
        start, mid = self.offset, self.offset + len(buf)
        torch.sum(buf, 1, out=results[start:mid])
        torch.linalg.vector_norm(a, dim=1, dtype=results.dtype, out=results[mid : mid + rows])

    def rows(self, values: list[float], out: list[list[float]]) -> None:
        """Per member: count, sum, sum of squares, dead count, saturated count, read from ``values``."""
        rows, at, n = len(self.members), self.offset, float(self.n)
        sums, norms = values[at : at + rows], values[at + len(self.buf) : at + self.size]
        masks = [values[at + rows * (b + 1) : at + rows * (b + 2)] for b in range(_MASKS[self.kind])]
        for j, i in enumerate(self.members):
            dead = n - masks[0][j] if self.kind == "relu" else 0.0
            saturated = sum(m[j] for m in masks) if self.kind in ("odd", "sigmoid") else 0.0
            out[i] = [n, sums[j], norms[j] * norms[j], dead, saturated]


class _Plan:
    """The groups of a step's samples and one result vector per device they live on: float32 (accumulating
    a 16-row sample in float64 costs ~1.5× the whole reduction on the CPU) unless a group is float64."""

    def __init__(self, shapes: list[Any], keys: list[tuple[tuple[Any, ...], list[int]]]) -> None:
        self.shapes = shapes
        sizes: dict[torch.device, int] = {}
        dtypes: dict[torch.device, torch.dtype] = {}
        self.groups: list[_Group] = []
        for key, members in keys:
            device = key[2]
            group = _Group(key, members, sizes.get(device, 0))
            sizes[device] = group.offset + group.size
            dtypes[device] = torch.float64 if key[1] == torch.float64 else dtypes.get(device, torch.float32)
            self.groups.append(group)
        self.results = {d: torch.empty(size, dtype=dtypes[d], device=d) for d, size in sizes.items()}


class PreActivation:
    """Marks a watched value as the input of ``act`` rather than its output (models whose activations are
    functions, not modules, are watched at their weight layers' outputs)."""

    def __init__(self, act: Any) -> None:
        self.act = act


def unit_stats(act: Any) -> tuple[str, ...]:
    """Which unit statistics mean something for a watched value: ``dead`` after a ReLU-like activation,
    ``saturated`` after a saturating one (tanh, sigmoid, ...), neither after a linear or smooth one. The probe
    records 0 for the others; exports leave them out.

    >>> from initlab.init.activations import activation
    >>> unit_stats(activation("relu")), unit_stats(activation("tanh")), unit_stats(None)
    (('dead',), ('saturated',), ())
    """
    kind = _rule(act, SATURATION_PRE)[0]
    return ("dead",) if kind == "relu" else ("saturated",) if kind in ("odd", "sigmoid") else ()


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
    """Per parameter: gradient norm and gradient/weight norm ratio, all parameters in one call (the fused
    kernel on the CPU, else one ``_foreach_norm``).

    Exact unless the monitor records every step (``sample_rows="auto"``, the default: issue 35). Reading the
    gradients is the cost (memory-bound: 8 MB for a 30×256 MLP, ~0.7 ms, most of a 10% budget), so at every step
    the norm of a matrix with more than 64 rows is estimated from its first 64 rows (output units),
    ``‖g‖ ≈ √(rows/k)·‖g[:k]‖``: contiguous views, unbiased for ‖g‖² when units are exchangeable (as
    initialization makes them), relative error about ``cv/√k`` for a spread ``cv`` of the row norms. Measured
    (``bench/sampled_norm_error.py``: the monitor benchmark's 30×256 ReLU MLP, 200 SGD steps, k = 64 of 256 rows):
    median 9%, 90th percentile 22%, worst 40% (units that die give zero rows). So every sampled norm is stored
    with its own ~95% relative error bound, ``grad_norm_err``, from the spread of its sampled rows
    (:class:`_RowSample`; the bench measures how often the exact norm lies within it). Vectors and small matrices
    are exact; ``sample_rows=None`` makes every norm exact at every step, an int samples that many rows always.

    The weight norms, which only scale the ratio, are sampled the same way (weight rows are much more alike:
    0.2% median error, 0.5% worst, same run) and refreshed every ``weight_every`` recorded steps: a weight
    changes by its update, typically ‖ΔW‖/‖W‖ ≈ 1e-3 per step, so the ratio is off by ~1% at most.
    """

    def __init__(self, sample_rows: SampleRows = "auto", weight_every: int = 10) -> None:
        self.params: list[tuple[str, nn.Parameter]] = []
        self.sample_rows = sample_rows_checked(sample_rows)
        self.weight_every = weight_every
        self._weight_norms: list[float] | None = None
        self._records = 0

    def attach(self, monitor: Host) -> None:
        super().attach(monitor)
        self.params = monitor.named_parameters()
        self._sharded = [replicas(p) for _, p in self.params] if any(map(is_sharded, (p for _, p in self.params))) \
            else None  # fmt: skip
        rows = None if self._sharded is not None else resolve_rows(self.sample_rows, 64, monitor)
        self._sample = _RowSample([p for _, p in self.params], rows)
        self._names = [(n, stat) for (n, _), sampled in zip(self.params, self._sample.sampled, strict=True)
                       for stat in (("grad_norm", "grad_norm_err") if sampled else ("grad_norm",))
                       + ("grad_weight_ratio",)]  # fmt: skip
        self._weight_norms, self._records = None, 0

    def names(self) -> list[tuple[str, str]]:
        return self._names

    def compute(self, step: int) -> list[float]:
        estimate = self._sample.estimate if self._sharded is None else self._sharded_norms
        norms, errors = estimate([p.grad for _, p in self.params])
        if self._weight_norms is None or self._records % self.weight_every == 0:  # sampled as the gradients
            self._weight_norms = estimate([p.detach() for _, p in self.params])[0]
        self._records += 1
        out: list[float] = []
        for n, e, w, sampled in zip(norms, errors, self._weight_norms, self._sample.sampled, strict=True):
            out += (n, e, _ratio(n, w)) if sampled else (n, _ratio(n, w))
        return out

    def _sharded_norms(self, tensors: Sequence[Tensor | None]) -> tuple[list[float], list[float]]:
        """Exact norms of sharded tensors (FSDP2's DTensors): each rank's sum of squares over its local shard, a
        replicated tensor's divided by its copies, summed across ranks in one all-reduce."""
        assert self._sharded is not None
        sums = [0.0 if t is None else float(_local(t).double().square().sum()) / copies
                for t, copies in zip(tensors, self._sharded, strict=True)]  # fmt: skip
        total = self.monitor.all_reduce(torch.tensor(sums, dtype=torch.float64)).tolist()
        return [math.sqrt(max(x, 0.0)) for x in total], [0.0] * len(total)


def replicas(tensor: Tensor) -> int:
    """On how many ranks each element of a tensor lives: a plain tensor on every rank, a DTensor on the ranks of
    its mesh's dimensions it is not sharded over (FSDP2's Shard(0): one)."""
    if not is_sharded(tensor):
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    mesh, placements = tensor.device_mesh, tensor.placements  # type: ignore[attr-defined]
    return math.prod(mesh.size(i) for i, placement in enumerate(placements) if not placement.is_shard())


def _local(tensor: Tensor) -> Tensor:
    return tensor.to_local() if is_sharded(tensor) else tensor  # type: ignore[attr-defined]


def _ratio(a: float, b: float) -> float:
    """``a / b`` of two norms, NaN where it is undefined: a weight whose norm is exactly zero (a zero-initialized
    bias) has no gradient/weight or update/weight ratio, and the tables show "-" there, not infinity (issue 35).

    >>> _ratio(1.0, 0.0), _ratio(0.0, 0.0), _ratio(3.0, 2.0)
    (nan, nan, 1.5)
    """
    return a / b if b != 0 else math.nan


class UpdateRatio(Probe):
    """Per parameter: ‖ΔW‖/‖W‖ of the last optimizer step (needs ``optimizer=``).

    Hooks on the optimizer copy the weights before each recorded step and compare after it: on the CPU one C
    call copies every weight into one buffer and one compares (``_fused.snapshot`` and ``update_sumsq``);
    elsewhere torch kernels do it with a buffer per parameter. On the monitor benchmark's 30×256 MLP this costs
    ~2.6 ms per recorded step (an earlier clone-and-subtract version cost 13 ms), mostly memory traffic: 8 MB of
    weights copied once and read twice. With the other default probes, ``optimizer=`` measured 1.18–1.23× the
    plain step at every step and 1.01–1.05× at the default ``every=10`` (``bench/monitor_overhead.py``).

    ``sample_rows=k`` copies and reads only the first ``k`` rows of matrices with more rows, as
    :class:`GradientNorms` does, and reports ``‖ΔW[:k]‖/‖W[:k]‖`` (~1 ms for k = 64 there), but an update's
    rows are less alike than a gradient's (``bench/sampled_norm_error.py``, k = 64 of 256 rows: under SGD
    median error 18%, 90th percentile 83% — in layers whose tiny updates round away in float32, the sampled
    rows may not have moved at all and read 0 —; under Adam median 9%, 90th percentile 31%, worst 96%), so
    the ratio is exact by default.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, sample_rows: SampleRows = None) -> None:
        self.optimizer = optimizer
        self.sample_rows = sample_rows_checked(sample_rows)
        self._flat: Tensor | None = None  # the fused path's copy: the sampled rows one after another
        self._before: list[Tensor] = []  # the torch path's copy, one tensor per parameter
        self._armed = False

    def attach(self, monitor: Host) -> None:
        super().attach(monitor)
        self.params = monitor.named_parameters()
        self._names = [(n, "update_ratio") for n, _ in self.params]
        self._weights = [p for _, p in self.params]  # the fused kernels read a Parameter's memory as is
        self._sample = _RowSample(self._weights, resolve_rows(self.sample_rows, 64, monitor))
        self._pre = self.optimizer.register_step_pre_hook(self._snapshot)
        self._post = self.optimizer.register_step_post_hook(self._measure)

    def _snapshot(self, *args: Any) -> None:
        if not self.monitor.recording_next_update or not self._weights:
            return
        counts = self._sample.counts
        found = _fused_addresses(self._weights, counts)
        if found is not None and _fused is not None:  # one C call copies every parameter's rows
            dtype = torch.float64 if found[1] else torch.float32
            if self._flat is None or self._flat.dtype != dtype:
                self._flat = torch.empty(sum(counts), dtype=dtype)
            _fused.snapshot(found[0], counts, found[1], self._flat.data_ptr())
        else:
            self._flat = None
            rows = self._sample.views([p.detach() for p in self._weights])  # anew: p.data may have been replaced
            if [(b.shape, b.dtype, b.device) for b in self._before] != [(r.shape, r.dtype, r.device) for r in rows]:
                self._before = [torch.empty_like(r, memory_format=torch.contiguous_format) for r in rows]
            torch._foreach_copy_(self._before, rows)
        self._armed = True

    def _measure(self, *args: Any) -> None:
        if not self._armed:
            return
        self._armed = False
        counts = self._sample.counts
        if self._flat is not None:
            found = _fused_addresses(self._weights, counts)
            if found is not None and _fused is not None and found[1] == (self._flat.dtype is torch.float64):
                squares = _fused.update_sumsq(found[0], counts, found[1], self._flat.data_ptr())
                norms = [math.sqrt(v) for v in squares]
                self._report(norms[0::2], norms[1::2])
                return
        # the torch path, or a weight replaced during the step by one the fused kernels cannot read
        rows = self._sample.views([p.detach() for p in self._weights])
        before = self._before if self._flat is None else torch.split(self._flat, counts)
        if [b.numel() for b in before] != [r.numel() for r in rows]:
            return  # a weight replaced by one of another shape: no ratio to take (raising would stop training)
        before = [b.view(r.shape) for b, r in zip(before, rows, strict=True)]
        torch._foreach_sub_(before, rows)  # before − after = −ΔW, in place
        self._report(self._sample.norms(before), self._sample.norms(rows))

    def _report(self, delta: Sequence[float], weight: Sequence[float]) -> None:
        """Attach ‖ΔW‖/‖W‖ of the sampled rows to the step's record."""
        ratios = [_ratio(d, w) for d, w in zip(delta, weight, strict=True)]
        self.monitor.attach_update(self._names, ratios)

    def names(self) -> list[tuple[str, str]]:
        return []  # added to the step's record after the optimizer step, by attach_update

    def compute(self, step: int) -> list[float]:
        return []

    def detach(self) -> None:
        self._pre.remove()
        self._post.remove()
        self._flat, self._before, self._armed = None, [], False


class LossProbe(Probe):
    """The loss passed to ``mon.step(loss)`` or ``mon.observe_loss(loss)`` (absent from steps without one)."""

    def __init__(self) -> None:
        self.loss: Tensor | None = None

    def names(self) -> list[tuple[str, str]]:
        return [("model", "loss")] if self.loss is not None else []

    def compute(self, step: int) -> list[float]:
        value = [] if self.loss is None else [self.loss.detach().item()]
        self.loss = None
        return value


def default_probes(optimizer: torch.optim.Optimizer | None) -> Sequence[Probe]:
    probes: list[Probe] = [ActivationStats(), GradientNorms(), LossProbe()]
    if optimizer is not None:
        probes.append(UpdateRatio(optimizer))
    return probes
