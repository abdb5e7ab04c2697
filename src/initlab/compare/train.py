"""One training run, as a plain loop that reads top to bottom.

``TrainConfig`` holds every knob (one frozen, commented dataclass); ``train(config)`` runs:
seed → data → model → initialize → optimizer → epochs of steps (with the monitor) → evaluate → result.
A diverged run (NaN/Inf loss) is a *result*, recorded with its finding, not a crash. The same seed on the
CPU gives identical weights and an identical loss curve.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from initlab._errors import InitlabError, fail, unknown_name
from initlab.compare.config import OPTIMIZERS, TrainConfig
from initlab.compare.data import DATASETS, Dataset, batches, load
from initlab.compare.models import MODEL_KINDS, NORMS, RNN_CELLS, ModelSpec, build
from initlab.init.activations import activation_module
from initlab.init.depth import ALPHAS, depth
from initlab.init.model import initialize
from initlab.init.mup import mup
from initlab.init.registry import get, lookup
from initlab.monitor import Monitor
from initlab.monitor.core import init_findings
from initlab.monitor.detectors import Finding
from initlab.monitor.snapshot import distinct_units, layer_histograms
from initlab.theory.audit import audit

__all__ = ["OPTIMIZERS", "EpochMetrics", "RunResult", "TrainConfig", "check", "train"]


@dataclasses.dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float


@dataclasses.dataclass
class RunResult:
    """What a run produced: per-epoch metrics, whether it diverged, the monitor's findings and history."""

    run_id: str
    config: TrainConfig
    epochs: list[EpochMetrics]
    diverged: bool
    findings: list[Finding]
    layer_stats: list[dict[str, Any]]
    seconds: float
    steps: int
    audit: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # predicted vs measured at init
    histograms: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # phase "init"/"end" rows
    measures: dict[str, float] = dataclasses.field(default_factory=dict)  # e.g. distinct_units at the end

    @property
    def final(self) -> EpochMetrics | None:
        return self.epochs[-1] if self.epochs else None


def _optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def _constrain(model: nn.Module, config: TrainConfig) -> None:
    """Weight clipping and the max-norm constraint (Srivastava et al. 2014), after each step."""
    if config.clip_weight <= 0 and config.max_norm <= 0:
        return  # neither remedy is on: do not walk the modules every step
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.ndim < 2:
            continue
        if config.clip_weight > 0:
            weight.clamp_(-config.clip_weight, config.clip_weight)
        if config.max_norm > 0:
            norms = weight.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = (config.max_norm / norms).clamp(max=1.0)
            weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))


def _flat(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """A language model's ``(B, T, V)`` logits and ``(B, T)`` targets as ``(B·T, V)`` and ``(B·T,)``: every position
    is one prediction (its loss, its accuracy); a classifier's ``(B, C)`` and ``(B,)`` pass through."""
    return (out.flatten(0, -2), y.flatten()) if out.ndim == 3 else (out, y)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        out, target = _flat(model(x[start : start + batch_size]), y[start : start + batch_size])
        loss_sum += nn.functional.cross_entropy(out, target, reduction="sum").item()
        correct += int((out.argmax(1) == target).sum())
    model.train(was_training)
    return loss_sum / y.numel(), correct / y.numel()


def _inputs(data: Dataset, config: TrainConfig) -> tuple[Tensor, Tensor]:
    if config.model == "rnn":  # an image presented row by row: (N, H, W)
        return data.train_x.flatten(1, -2), data.test_x.flatten(1, -2)
    return data.train_x, data.test_x


def check(config: TrainConfig) -> None:
    """Raise the InitlabError a run of ``config`` would raise for a name it does not know (data set, model, norm,
    recurrent cell, activation, scheme), at once and without loading data or building the model: a sweep checks
    every point before its first run, so that a typo does not fail late or leave runs behind."""
    if config.data not in DATASETS:
        raise unknown_name("data set", config.data, DATASETS)
    if (config.data == "text") != (config.model == "transformer"):
        raise fail("the transformer is a language model and text is its data set: they go together",
                   received=(config.model, config.data),
                   fix="Pass model=transformer with data=text, or another model with another data set.")  # fmt: skip
    if config.model == "transformer" and config.width % config.heads:
        raise fail(f"heads={config.heads} does not divide width={config.width}", accepted="a divisor of width",
                   fix=f"Pass heads=1 or a width that is a multiple of {config.heads}.")  # fmt: skip
    for kind, value, accepted in (("model", config.model, MODEL_KINDS), ("norm", config.norm, NORMS),
                                  ("recurrent cell", config.cell, RNN_CELLS)):  # fmt: skip
        if value not in accepted:
            raise unknown_name(kind, value, accepted)
    activation_module(config.activation)
    lookup(config.scheme)
    _check_device(config.device)
    if config.parametrization in ALPHAS and (config.optimizer not in ("adam", "adamw")
                                             or not (config.model == "transformer" or config.residual)):  # fmt: skip
        raise fail(f"{config.parametrization} scales residual branches and sets Adam's learning rate and ε per "
                   "parameter", accepted="optimizer adam or adamw, and model=transformer or residual=true",
                   received=(config.optimizer, config.model, config.residual),
                   fix="Pass optimizer=adam with model=transformer (or residual=true).")  # fmt: skip


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise fail(f"unknown device {name!r}", accepted="cpu, cuda, cuda:N, mps", received=name,
                   fix="Pass device=cpu.") from None  # fmt: skip
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise fail(f"device {name!r} is not available on this machine", accepted="cpu" + ", cuda" * available["cuda"],
                   received=name, fix="Pass device=cpu (or run where that device is).")  # fmt: skip


def train(config: TrainConfig, *, on_epoch: Callable[[EpochMetrics], None] | None = None,
          data: Dataset | None = None) -> RunResult:  # fmt: skip
    """Run one configuration to the end and return its result (see the module docs for the order)."""
    check(config)
    started = time.perf_counter()
    torch.manual_seed(config.seed)  # dropout masks
    generator = torch.Generator().manual_seed(config.seed)  # initialization and batch order
    data = data if data is not None else load(config.data, seed=0, data_dir=config.data_dir or None)
    train_x, test_x = _inputs(data, config)
    spec = ModelSpec(config.model, config.depth, config.width, config.activation, config.norm, config.dropout,
                     config.weight_norm, config.residual, config.groups, config.cell, config.norm_position,
                     config.heads, config.tied)  # fmt: skip
    in_shape = tuple(train_x.shape[1:])
    model = build(spec, in_shape, data.classes).to(config.device)
    probe = (train_x[:256].to(config.device), data.train_y[:256].to(config.device))
    residual = None if config.residual_init == "none" else config.residual_init
    init_report = initialize(
        model, config.scheme, generator=generator, gain_from=config.gain_from, data=probe, residual=residual
    )  # fmt: skip  (data: lsuv's batch)
    verified = (
        None
        if get(config.scheme).scheme.needs_data
        else init_findings(  # lsuv: no plan says what it draws
            model, config.scheme, {"gain_from": config.gain_from, "residual": residual, "example": probe[0][:2]}
        )
    )
    params: Any = model.parameters()
    if config.parametrization == "mup":  # µP relative to base_width: init rescaled, a learning rate per group
        base, delta = (build(dataclasses.replace(spec, width=w), in_shape, data.classes)
                       for w in (config.base_width, 2 * config.base_width))  # fmt: skip
        params = mup(model, base, delta).param_groups(config.optimizer, config.lr, config.weight_decay)
    elif config.parametrization in ALPHAS:  # relative to base_depth: branches ×m^-α folded, Adam's lr and ε per group
        base = build(dataclasses.replace(spec, depth=config.base_depth), in_shape, data.classes)
        params = depth(model, base, alpha=ALPHAS[config.parametrization], example=probe[0][:2]).param_groups(
            config.lr, config.weight_decay)  # fmt: skip
    snapshots = _Snapshots(model, probe) if config.snapshots else None
    optimizer = _optimizer(config, params)
    total_steps = config.epochs * math.ceil(train_x.shape[0] / config.batch_size)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
                 if config.schedule == "cosine" else None)  # fmt: skip
    monitor = Monitor(model, every=config.monitor_every) if config.monitor else None
    loop = _Loop(config, model, optimizer, scheduler, monitor, generator)
    epochs: list[EpochMetrics] = []
    model.train()
    with monitor if monitor is not None else contextlib.nullcontext():
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            train_loss, train_acc = loop.epoch(train_x, data.train_y)
            test_loss, test_acc = evaluate(model, test_x.to(config.device), data.test_y.to(config.device))
            metrics = EpochMetrics(epoch, train_loss, train_acc, test_loss, test_acc, time.perf_counter() - epoch_start)
            epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if loop.diverged or loop.done:
                break
    steps, diverged = loop.steps, loop.diverged
    findings = (verified or []) + (list(monitor.findings) if monitor is not None else [])
    if diverged and not any(f.kind == "nan" for f in findings):
        findings.append(
            Finding(
                steps + 1,
                "model",
                "nan",
                "the loss became NaN/Inf; the run diverged.",
                {"step": float(steps + 1)},
                ["lower the learning rate", "clip gradients by norm"],
            )
        )
    stats = monitor.history.to_records() if monitor is not None else []
    result = RunResult(config.run_id, config, epochs, diverged, findings, stats, 0.0, steps)
    if snapshots is not None:
        snapshots.finish(result)
    _measures(result, init_report.calibration, verified)
    result.seconds = time.perf_counter() - started
    return result


def _measures(result: RunResult, calibration: Any, verified: list[Finding] | None) -> None:
    """The run's measures beside its metrics (those of the snapshots are set already)."""
    if result.config.model == "transformer" and result.final is not None:  # a language model's score: bits/char
        result.measures["test_bits_per_char"] = result.final.test_loss / math.log(2)
    if verified is not None:  # the parameters that do not carry the run's scheme: 0 where all of them do
        result.measures["init_mismatches"] = float(len(verified))
    if calibration is not None:  # a data-dependent scheme: what its calibration cost, for the report
        result.measures["init_seconds"] = calibration.seconds


class _Snapshots:
    """The audit and histograms at initialization; histograms and the symmetry measure at the end."""

    def __init__(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
        self.model, self.batch = model, batch
        try:
            report = audit(model, batch)
            self.audit = [dataclasses.asdict(r) for r in report.rows]
        except InitlabError:  # a model the theory cannot follow (e.g. recurrent): no audit, training goes on
            self.audit = []
        self.histograms = [{"phase": "init", **row} for row in layer_histograms(model, *batch)]

    def finish(self, result: RunResult) -> None:
        result.audit = self.audit
        end = layer_histograms(self.model, *self.batch) if not result.diverged else []
        result.histograms = self.histograms + [{"phase": "end", **row} for row in end]
        result.measures = {"distinct_units": distinct_units(self.model)}


@dataclasses.dataclass
class _Loop:
    """The steps of one epoch: forward, loss, backward, the gradient/weight remedies, optimizer step."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    monitor: Monitor | None
    generator: torch.Generator
    steps: int = 0
    diverged: bool = False

    @property
    def done(self) -> bool:
        return bool(self.config.max_steps) and self.steps >= self.config.max_steps

    def epoch(self, x_all: Tensor, y_all: Tensor) -> tuple[float, float]:
        """One pass over shuffled batches; mean training loss and accuracy (NaN loss if it diverged first)."""
        loss_sum, correct, seen = 0.0, 0, 0
        for x_cpu, y_cpu in batches(x_all, y_all, self.config.batch_size, self.generator):
            x, y = x_cpu.to(self.config.device), y_cpu.to(self.config.device)
            out, loss = self.step(x, y)
            if self.diverged:
                break
            out, y = _flat(out, y)
            loss_sum += loss * y.numel()
            correct += int((out.argmax(1) == y).sum())
            seen += y.numel()
            if self.done:
                break
        return (loss_sum / seen if seen else math.nan), correct / max(seen, 1)

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, float]:
        config = self.config
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = nn.functional.cross_entropy(*_flat(out, y))
        if self.monitor is not None:
            self.monitor.observe_loss(loss)
        if not torch.isfinite(loss):
            self.diverged = True  # a result, not a crash
            return out, math.nan
        loss.backward()  # type: ignore[no-untyped-call]
        if config.clip_grad_value > 0:
            nn.utils.clip_grad_value_(self.model.parameters(), config.clip_grad_value)
        if config.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad_norm)
        self.optimizer.step()
        _constrain(self.model, config)
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return out, loss.item()
