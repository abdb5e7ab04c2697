"""What the trainer callbacks share (Keras' ``fit``, Hugging Face's ``Trainer``, Lightning's ``Trainer``): the
schedule of recorded micro-batches, the epochs a fit went through, and writing the fit to a run store as
``initlab run`` writes a run, so that ``initlab report`` shows it beside other runs."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from torch import nn

from initlab._errors import fail
from initlab.compare.store import Store
from initlab.compare.train import EpochMetrics, RunResult
from initlab.init.structure import Structure
from initlab.monitor.core import Monitor, Schedule
from initlab.monitor.detectors import Finding
from initlab.monitor.history import History, Summary

__all__ = ["FitRecord", "Watching", "every_optimizer_step", "torch_config"]


def every_optimizer_step(every: int, accumulation: int) -> Schedule:
    """The schedule, over backward passes, that records the last micro-batch of optimizer steps 1, every,
    2·every, … (its gradients are the whole step's, before the optimizer uses them).

    >>> record = every_optimizer_step(5, accumulation=2)
    >>> [s for s in range(1, 25) if record(s)]
    [2, 10, 20]
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        fix = "Pass every=1 to record every step, or leave it out for the trainer's logging steps."
        raise fail("every must be a positive number of optimizer steps", received=every, fix=fix)
    if accumulation < 1:
        raise fail("gradient accumulation must be at least 1 micro-batch per step", received=accumulation)

    def record(backward: int) -> bool:
        step, last = divmod(backward, accumulation)
        return last == 0 and (step == 1 or step % every == 0)

    return record


class Watching:
    """What every trainer callback shows of the Monitor it drives: the history, the findings, a summary."""

    _monitor: Monitor | None = None

    @property
    def history(self) -> History:
        """The recorded statistics (:class:`initlab.monitor.History`; empty before training)."""
        return self._monitor.history if self._monitor is not None else History()

    @property
    def findings(self) -> list[Finding]:
        return self._monitor.findings if self._monitor is not None else []

    def summary(self) -> Summary:
        """The last recorded value of every statistic per layer (prints as a table)."""
        return Summary(self.history.summary_table(self.findings))


class FitRecord:
    """The epochs of a fit (loss and accuracy, train and validation, seconds) beside a Monitor's record."""

    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []
        self.started = self._epoch_started = time.perf_counter()

    def start_epoch(self) -> None:
        self._epoch_started = time.perf_counter()

    def end_epoch(self, train_loss: float, train_accuracy: float = math.nan, test_loss: float = math.nan,
                  test_accuracy: float = math.nan) -> None:  # fmt: skip
        seconds = time.perf_counter() - self._epoch_started
        self.epochs.append(EpochMetrics(len(self.epochs) + 1, train_loss, train_accuracy, test_loss, test_accuracy,
                                        seconds))  # fmt: skip
        self._epoch_started = time.perf_counter()

    def write(self, path: str | Path, config: dict[str, Any], monitor: Monitor) -> str:
        """Write the fit to the run store at ``path`` (created if new); returns the run's id."""
        key = json.dumps([config, time.time()], sort_keys=True, default=str)
        run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        losses = [e.train_loss for e in self.epochs]
        diverged = bool(losses) and not math.isfinite(losses[-1])
        result = RunResult(run_id, config, self.epochs, diverged, monitor.findings,  # type: ignore[arg-type]
                           monitor.history.to_records(), time.perf_counter() - self.started, monitor.steps)  # fmt: skip
        with Store(path) as db:
            db.write(result)
        return run_id


_NORMS = {"BatchNorm": "batch", "LayerNorm": "layer", "RMSNorm": "layer", "GroupNorm": "group"}


def torch_config(model: nn.Module, structure: Structure | None) -> dict[str, Any]:
    """What a torch model is, in the run store's terms, from its structure: depth = weight layers past the
    embeddings, width = their median input size (a transformer's hidden size), the most common hidden activation, and
    the normalization."""
    layers = [] if structure is None else [layer for layer in structure.layers.values() if layer.role != "embedding"]
    modules = dict(model.named_modules())
    norms = [type(modules[n]).__name__ for n in (structure.norms if structure is not None else []) if n in modules]
    norm = next((kind for name in norms for key, kind in _NORMS.items() if key in name), "none")
    activation = structure.main_activation() if structure is not None else None
    return {
        "model": type(model).__name__, "depth": len(layers),
        "width": int(statistics.median_low(layer.use.fan_in for layer in layers)) if layers else 0,
        "activation": activation or "linear", "norm": norm,
    }  # fmt: skip
