"""The Monitor: per-layer activation and gradient statistics during training, at almost no cost.

How it stays cheap (measured in ``bench/monitor_overhead.py``):

* it counts steps by itself: a training step is a forward pass with gradients enabled. For a step to be
  recorded, a hook on the model's output queues a callback that runs once the whole backward pass has
  finished (the mechanism DistributedDataParallel uses), so gradients are complete; other steps are
  counted at the end of their forward pass and cost one hook call;
* layer hooks are attached only for the steps that are recorded (``every=``) and removed otherwise;
* on the CPU a hook reduces its output's sample with one call of a fused C kernel (``probes``; ~2–3 µs while
  the output is in cache) and the gradients are read in one more call after the backward pass; elsewhere
  the hooks only keep a reference to each output and the statistics are computed once per recorded step,
  a few torch kernels over many layers at once. Each probe converts its values to Python numbers once.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from initlab._errors import TrainingDiverged, fail, unknown_name
from initlab.monitor._layers import (
    first_tensor,
    inner_module,
    model_structure,
    named_parameters,
    watched_layers,
    weight_names,
)
from initlab.monitor.detectors import DetectorState, Finding, Thresholds, detect
from initlab.monitor.history import History, Summary
from initlab.monitor.probes import LossProbe, Probe, default_probes, unit_stats
from initlab.monitor.residual import ResidualStream
from initlab.theory.schemes import fix_text, weight_moments, weights_chi1

__all__ = ["Monitor", "Schedule", "linear_schedule", "log_schedule"]

Schedule = Callable[[int], bool]


def linear_schedule(every: int) -> Schedule:
    """Record steps ``every, 2·every, …`` (and step 1).

    >>> [s for s in range(1, 25) if linear_schedule(10)(s)]
    [1, 10, 20]
    """
    if every < 1:
        raise fail("every must be a positive number of steps", received=every)
    return lambda step: step == 1 or step % every == 0


def log_schedule(per_decade: int = 10) -> Schedule:
    """Record ~``per_decade`` log-spaced steps per decade: dense early (where problems start), sparse later.

    >>> [s for s in range(1, 200) if log_schedule(4)(s)]
    [1, 2, 3, 6, 10, 18, 32, 56, 100, 178]
    """
    marks: set[int] = set()
    for decade in range(12):
        for i in range(per_decade):
            marks.add(round(10 ** (decade + i / per_decade)))
    return lambda step: step in marks


class Monitor:
    """Watch a model's training: per-layer statistics, findings in plain words, and their remedies.

    Args:
        model: the model (a DDP-wrapped model works; statistics are reduced across ranks).
        every: record every n-th step, or a schedule ``step -> bool`` (:func:`linear_schedule`,
            :func:`log_schedule`).
        probes: ``"default"`` (activation mean/std/dead/saturated, gradient norms and ratios, loss, update
            ratios when ``optimizer`` is given, and the residual stream and attention per block where the model
            has them: :mod:`initlab.monitor.residual`) or a list of :class:`~initlab.monitor.probes.Probe`.
        optimizer: enables the update/weight ratio probe.
        thresholds: detector thresholds.
        on_finding: called with each new :class:`Finding`.
        stop_on: finding kinds that raise :class:`~initlab.TrainingDiverged` (e.g. ``("nan",)``).
        auto_step: count a step at the end of every backward pass through the model (pass the loss first
            with ``mon.observe_loss(loss)``); with ``False``, call ``mon.step(loss)`` after each step.
        scheme: the scheme the model was initialized with (and ``scheme_options``: initialize's, such as
            ``{"residual": "scaled"}``):
            :func:`initlab.verify` checks every parameter against its plan now, and each one that differs is a
            finding at step 0 (kind ``init_mismatch``), before training has moved anything.

    Which places are watched comes from :mod:`initlab.init.structure`: the monitor runs the model once, without
    gradients, on an input read off the model (a Hugging Face model's own, or its first layer's size; modes,
    buffers and the RNG state restored), so that Hugging Face's activation modules and functional activations are
    watched too; where no input can be read, module types and torch.fx decide.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with Monitor(net, every=1) as mon:
    ...     for _ in range(3):
    ...         net(torch.randn(16, 4)).pow(2).mean().backward()
    >>> mon.steps, len(mon.history.steps)
    (3, 3)
    """

    def __init__(self, model: nn.Module, every: int | Schedule = 10, probes: str | Sequence[Probe] = "default",
                 optimizer: torch.optim.Optimizer | None = None, *, thresholds: Thresholds | None = None,
                 on_finding: Callable[[Finding], None] | None = None, stop_on: Iterable[str] = (),
                 auto_step: bool = True, scheme: str | None = None,
                 scheme_options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.model = model
        self.schedule = linear_schedule(every) if isinstance(every, int) else every
        if isinstance(probes, str):
            if probes != "default":
                raise unknown_name("probe set", probes, ("default",))
            probes = [*default_probes(optimizer), ResidualStream()]
        self.probes = list(probes)
        self.thresholds = thresholds or Thresholds()
        self.on_finding = on_finding
        self.stop_on = set(stop_on)
        self.auto_step = auto_step
        self.history = History()
        self.findings: list[Finding] = []
        self.steps = 0
        self._state = DetectorState()
        self._handles: list[RemovableHandle] = []
        self._root: RemovableHandle | None = None
        self._calls: dict[str, int] = {}
        self._pending_update: Tensor | None = None
        self._no_grad_passes, self._warned = 0, False  # see close
        self._fix: Callable[[], str | None] | None = None  # see _init_fix
        self._armable: list[Probe] = []  # probes with hooks of their own (see Probe.arm), once attached
        self._entered = False  # between __enter__ and close
        self.structure = structure = model_structure(model)  # one forward pass (or module walk) answers all
        self.layers, self.layer_activations = watched_layers(model, structure)
        self.history.inapplicable = {(layer, stat) for layer, act in self.layer_activations.items()
                                     for stat in ("dead", "saturated") if stat not in unit_stats(act)}  # fmt: skip
        self._producers = _producers(inner_module(model), [name for name, _ in self.layers])
        self.weights = weight_names(model, structure)
        if scheme is not None:
            self.findings += init_findings(model, scheme, dict(scheme_options or {}))
        watched = any(p.needs_activations for p in self.probes)  # hooks made once, attached on recorded steps
        self._layer_hooks = [(module, self._layer_hook(name)) for name, module in self.layers] if watched else []

    # -- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> Monitor:
        for probe in self.probes:
            probe.attach(self)
        self._armable = [p for p in self.probes if type(p).arm is not Probe.arm and getattr(p, "active", True)]
        if self.auto_step:
            self._root = self.model.register_forward_hook(self._on_root_forward)
        self._arm(self.schedule(self.steps + 1))
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook (also called on leaving the ``with`` block, exceptions included). A monitor that saw
        the model run only under ``torch.no_grad()`` warns that it recorded nothing (issue 23: it used to stay
        silent)."""
        if self.steps == 0 and self._no_grad_passes and not self._warned:
            self._warned = True
            warnings.warn(
                f"initlab.Monitor recorded nothing: the model ran {self._no_grad_passes} times, always under "
                "torch.no_grad() (or inference mode), where there are no gradients to watch. Run the training steps "
                "with gradients enabled inside the monitor's with-block.",
                UserWarning,
                stacklevel=2,
            )
        self._arm(False)
        self._entered = False
        if self._root is not None:
            self._root.remove()
            self._root = None
        for probe in self.probes:
            probe.detach()

    @property
    def records_every_step(self) -> bool:
        """Whether the schedule records every step (the first 100 at least): there the probes read samples, to
        stay within 10% of a step; on any sparser schedule their statistics are exact."""
        return all(self.schedule(step) for step in range(1, 101))

    @property
    def recording_next_update(self) -> bool:
        """Whether the optimizer step about to run belongs to a recorded step (after its backward)."""
        return self.schedule(self.steps)

    def _arm(self, on: bool) -> None:
        if on and not self._handles and self._layer_hooks:
            for module, hook in self._layer_hooks:
                self._handles.append(module.register_forward_hook(hook))
        elif not on:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
        for probe in self._armable:
            probe.arm(on)

    def _layer_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        watchers = [p for p in self.probes if p.needs_activations]

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor) and torch.is_grad_enabled():  # evaluation passes are not steps
                count = self._calls[name] = self._calls.get(name, 0) + 1
                label = name if count == 1 else f"{name}#{count}"  # a module used twice per step
                for probe in watchers:
                    probe.on_forward(label, output)

        return hook

    def _on_root_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            self._no_grad_passes += 1
            return  # evaluation passes are not training steps
        out = first_tensor(output)
        if self.schedule(self.steps + 1) and out is not None and out.requires_grad:
            if out.grad_fn is not None:  # a pre-hook on the node that made the output (cheaper)
                out.grad_fn.register_prehook(self._on_output_grad)
            else:
                out.register_hook(self._on_output_grad)  # type: ignore[no-untyped-call]
            for probe in self.probes:
                probe.on_forward_end()
        else:
            self._count()  # an unrecorded step needs nothing from its backward pass: count it now

    def _count(self) -> None:
        if self._handles:  # a step meant to be recorded ended without a backward pass through the model
            for probe in self.probes:
                probe.discard()
        self.steps += 1
        self._calls.clear()
        self._arm(self.schedule(self.steps + 1))

    def _on_output_grad(self, grad: Any) -> None:
        torch.autograd.Variable._execution_engine.queue_callback(self._requeue)

    def _requeue(self) -> None:
        # Callbacks run in queue order and ours was queued first (at the output's gradient); DDP queues the
        # one that writes the averaged gradients later. Queuing again puts the record after it.
        torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)

    def _on_backward_end(self) -> None:
        self.step()

    # -- steps ---------------------------------------------------------------------------------------
    def observe_loss(self, loss: Tensor) -> None:
        """Give the monitor this step's loss (for NaN and plateau detection) without ending the step."""
        for probe in self.probes:
            if isinstance(probe, LossProbe):
                probe.loss = loss

    def step(self, loss: Tensor | None = None) -> None:
        """End a step: record it if the schedule says so. Called automatically after each backward pass;
        call it yourself only for steps without a backward through the model."""
        if loss is not None:
            self.observe_loss(loss)
        self.steps += 1
        self._calls.clear()
        if self.schedule(self.steps):
            self._record()
        self._arm(self.schedule(self.steps + 1))

    def attach_update(self, names: Sequence[tuple[str, str]], ratio: Sequence[float]) -> None:
        """Update ratios arrive after the optimizer step, i.e. after the step was recorded: add them."""
        self.history.add_late(self.steps, names, list(ratio))

    def _record(self) -> None:
        names: list[tuple[str, str]] = []
        values: list[float] = []
        with torch.no_grad():
            for probe in self.probes:
                names += probe.names()  # before compute, which may reset what the names depend on
                out = probe.compute(self.steps)
                values += out.detach().reshape(-1).tolist() if isinstance(out, Tensor) else out
        record = dict(zip(names, values, strict=True))
        self.history.add(self.steps, record)
        findings = detect(self._state, self.steps, record, self.weights, self.thresholds, self._init_fix, self._silent)
        for finding in findings:
            self.findings.append(finding)
            if self.on_finding is not None:
                self.on_finding(finding)
            if finding.kind in self.stop_on:
                raise TrainingDiverged(str(finding), finding)

    def _silent(self, layer: str) -> bool:
        """Whether ``layer``'s input is exactly zero by construction: the parametric module that feeds it (itself,
        for a watched weight layer; else the last one before it in module order) has every parameter exactly 0,
        as the zeroed last layer of a residual branch does (``residual="zero_last"``)."""
        producer = self._producers.get(layer)
        if producer is None:
            return False
        with torch.no_grad():
            return all(not bool(p.any()) for p in producer.parameters(recurse=False))

    def _init_fix(self) -> Callable[[], str | None]:
        """The initialization a remedy may name: the scheme whose predicted χ1 is closer to 1 than the model's
        weights give at the first finding that asks, or None. That step only takes the weights' moments (~1 ms);
        the mean-field solves run when a finding's remedies are first read, once per monitor (issue 35: on a
        30-layer MLP they stalled the step for 0.4 s)."""
        if self._fix is None:
            model, structure = inner_module(self.model), self.structure
            moments = weight_moments(model)

            @functools.cache
            def predicted() -> str | None:
                found = weights_chi1(model, moments, structure)
                text = fix_text(*found) if found is not None else None
                return f"initialize closer to the edge of chaos: {text}" if text else None

            self._fix = predicted
        return self._fix

    def state_dict(self) -> dict[str, Any]:
        """Everything the monitor has learned (steps, history, findings, what detection remembers) in plain Python
        values, so that a resumed run continues the same record: save it with the checkpoint and give it to
        :meth:`load_state_dict` of a new monitor on the same model.

        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> with Monitor(net, every=1) as mon:
        ...     net(torch.randn(16, 4)).sum().backward()
        >>> again = Monitor(net, every=1)
        >>> again.load_state_dict(mon.state_dict())
        >>> again.steps, again.history.records == mon.history.records
        (1, True)
        """
        return {"steps": self.steps, "history": self.history.state_dict(),
                "findings": [f.to_dict() for f in self.findings], "detector": self._state.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the steps, history and findings recorded so far are replaced)."""
        self.steps = int(state["steps"])
        self.history.load_state_dict(state["history"])
        self.findings = [Finding.from_dict(f) for f in state["findings"]]
        self._state = DetectorState.from_state(state["detector"])
        if self._entered:  # watching: the hooks follow the new step count
            self._arm(self.schedule(self.steps + 1))

    @property
    def distributed(self) -> bool:
        """Whether statistics must be reduced across ranks (torch.distributed initialized, > 1 process)."""
        dist = torch.distributed
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The trainable parameters the probes watch, by the names the history uses."""
        return named_parameters(self.model)

    def all_reduce(self, tensor: Tensor) -> Tensor:
        """Sum a tensor of statistics across DDP ranks (no-op without torch.distributed)."""
        if self.distributed:
            tensor = tensor.clone()
            torch.distributed.all_reduce(tensor)
        return tensor

    def summary(self) -> Summary:
        """The last recorded value of every statistic per layer: a rich table that ``print()`` shows as text."""
        return Summary(self.history.summary_table(self.findings))


def _producers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    """For each watched layer, the module with parameters of its own that feeds it, by module order."""
    wanted, last, out = set(layers), None, {}
    for name, module in model.named_modules():
        own = next(module.parameters(recurse=False), None) is not None
        if name in wanted:
            producer = module if own else last
            if producer is not None:
                out[name] = producer
        if own:
            last = module
    return out


def init_findings(model: nn.Module, scheme: str, options: dict[str, Any]) -> list[Finding]:
    """A finding at step 0 for every parameter that does not carry ``scheme``'s plan (:func:`initlab.verify`)."""
    from initlab.init.verify import verify

    with warnings.catch_warnings():  # parameters no plan covers: verify's warning is initialize's, said already
        warnings.simplefilter("ignore", UserWarning)
        report = verify(model, scheme, **options)
    call = ", ".join([repr(scheme), *(f"{k}={v!r}" for k, v in options.items())])
    return [Finding(0, row.name.split(" = ")[0], "init_mismatch", f"{row.name} does not carry the plan of "
                    f"initialize(model, {call}): {row.why}", {"step": 0.0},
                    [f"initialize(model, {call}) again after building the model, and look for code that draws "
                     f"{row.name.split(' = ')[0]} after it (a second init loop, a tied weight, a load)"])
            for row in report.mismatches]  # fmt: skip
