"""Watch Lightning's ``Trainer``: :class:`Monitor` is a ``lightning.pytorch.Callback`` around :class:`initlab.Monitor`.

    trainer = lightning.Trainer(max_epochs=3, callbacks=[Monitor(store="runs.db")])

It attaches to the LightningModule when fitting starts and records the same per-layer statistics and findings as
:class:`initlab.Monitor` on the Trainer's logging steps (``log_every_n_steps``, or ``every=``): the last micro-batch
of each such optimizer step, read right after its backward pass (``on_after_backward``), before clipping and the
optimizer. The Monitor's steps count backward passes: with gradient accumulation, optimizer step k ends at backward
pass k × ``accumulate_grad_batches``. The Monitor needs no forward pass of the module itself, so a ``training_step``
that calls submodules is watched too. Each record goes to the Trainer's loggers (``initlab/<stat>/<layer>`` at the
Trainer's global step, and ``initlab/findings``); each finding to the ``lightning.pytorch`` logger and, for
TensorBoard, as text. With ``stop_on`` a finding of those kinds stops training (``trainer.should_stop``).

The Monitor's state (steps, history, findings, what detection remembers) is saved in Lightning's checkpoints, so a
run resumed from one (``trainer.fit(model, ckpt_path=...)``) continues the same record. With ``store=``, the fit is
written to an initlab run store when it ends: ``initlab report STORE`` shows it beside other runs.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import Tensor

from initlab.integrations._fit import FitRecord, Watching, every_optimizer_step, torch_config
from initlab.monitor.core import Monitor as TorchMonitor
from initlab.monitor.detectors import Finding, Thresholds

__all__ = ["Monitor"]

logger = logging.getLogger("lightning.pytorch")

_TRAIN_LOSS, _TRAIN_ACCURACY = ("train_loss", "loss", "train/loss"), ("train_acc", "train_accuracy", "train/acc")
_VAL_LOSS, _VAL_ACCURACY = ("val_loss", "val/loss", "valid_loss"), ("val_acc", "val_accuracy", "val/acc")


class Monitor(Watching, pl.Callback):
    """Record per-layer statistics and findings while Lightning's ``Trainer`` fits a LightningModule.

    Args:
        every: record every n-th optimizer step (and the first); by default ``log_every_n_steps``.
        thresholds: detector thresholds (:class:`initlab.monitor.Thresholds`).
        stop_on: finding kinds that stop training, e.g. ``("nan", "exploding")``.
        store: write the fit to this SQLite run store when it ends.
        scheme: how the model was initialized, as the report names it (default ``"torch default"``).

    After fitting: ``.history``, ``.findings``, ``.summary()``, ``.run_id`` (with ``store``).
    """

    def __init__(self, every: int | None = None, *, thresholds: Thresholds | None = None, stop_on: Iterable[str] = (),
                 store: str | Path | None = None, scheme: str | None = None) -> None:  # fmt: skip
        if every is not None:
            every_optimizer_step(every, 1)  # a bad value is refused here, not when fitting starts
        self.every, self.thresholds, self.stop_on = every, thresholds, set(stop_on)
        self.store, self.scheme = store, scheme
        self.run_id: str | None = None
        self._fit = FitRecord()
        self._resumed: dict[str, Any] | None = None  # the state of a checkpoint, until fitting starts
        self._logged = self._told = 0  # history records and findings sent to the loggers
        self._epoch_first = 0  # the first history record of this epoch
        self._stop = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = self.every or int(getattr(trainer, "log_every_n_steps", 0)) or 50  # set by the Trainer; 0: no logs
        schedule = every_optimizer_step(every, int(trainer.accumulate_grad_batches))
        self._monitor = TorchMonitor(pl_module, schedule, thresholds=self.thresholds, on_finding=self._found,
                                     auto_step=False)  # fmt: skip
        if self._resumed is not None:
            self._monitor.load_state_dict(self._resumed)
            self._resumed = None
        self._logged = self._epoch_first = len(self._monitor.history.records)
        self._told = len(self._monitor.findings)
        self._monitor.__enter__()

    def _found(self, finding: Finding) -> None:
        logger.warning(f"initlab: {finding}")
        if finding.kind in self.stop_on:
            logger.warning(f"initlab: stopping training: {finding.kind} at {finding.layer} "
                           f"(stop_on={sorted(self.stop_on)})")  # fmt: skip
            self._stop = True

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if self._monitor is not None:
            self._monitor.observe_loss(loss)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        monitor.step()  # records the step if the schedule says so, with this backward pass's gradients
        if len(monitor.history.records) > self._logged:
            self._log(trainer, monitor)
        if self._stop:
            trainer.should_stop = True

    def _log(self, trainer: pl.Trainer, monitor: TorchMonitor) -> None:
        history = monitor.history
        for record in history.records[self._logged :]:
            metrics = {f"initlab/{stat}/{layer}": value for (layer, stat), value in record.items()
                       if math.isfinite(value) and history.applies(layer, stat)}  # fmt: skip
            metrics["initlab/findings"] = len(monitor.findings)
            for sink in trainer.loggers:
                sink.log_metrics(metrics, step=trainer.global_step)
        new, self._told = monitor.findings[self._told :], len(monitor.findings)
        for sink in trainer.loggers if trainer.is_global_zero else ():
            add_text: Any = getattr(getattr(sink, "experiment", None), "add_text", None)  # TensorBoard's writer
            for finding in new if add_text is not None else ():
                add_text(f"initlab/{finding.kind}/{finding.layer}", str(finding), trainer.global_step)
        self._logged = len(history.records)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit.start_epoch()
        self._epoch_first = len(self.history.records)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logged = trainer.callback_metrics
        recorded = [r[("model", "loss")] for r in self.history.records[self._epoch_first :] if ("model", "loss") in r]

        def metric(names: tuple[str, ...], fallback: float = math.nan) -> float:
            return next((float(logged[n]) for n in names if n in logged), fallback)

        loss = metric(_TRAIN_LOSS, statistics.fmean(recorded) if recorded else math.nan)
        self._fit.end_epoch(loss, metric(_TRAIN_ACCURACY), metric(_VAL_LOSS), metric(_VAL_ACCURACY))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._monitor is not None:
            self._monitor.close()  # no hooks left on the module

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        monitor.close()
        if self.store is not None and trainer.is_global_zero:
            config = {
                "framework": "lightning", **torch_config(pl_module, monitor.structure), "data": "lightning fit",
                "scheme": self.scheme or "torch default",
                "seed": int(os.environ.get("PL_GLOBAL_SEED", 0)),  # what seed_everything set
                "optimizer": _optimizer(trainer),
                "lr": _learning_rate(trainer), "epochs": trainer.max_epochs,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
            }  # fmt: skip
            self.run_id = self._fit.write(self.store, config, monitor)

    def state_dict(self) -> dict[str, Any]:
        """The Monitor's record, saved in Lightning's checkpoints (plain Python values)."""
        if self._monitor is not None:
            return self._monitor.state_dict()
        return dict(self._resumed or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning restores callbacks before fitting starts: the record is taken up in :meth:`on_fit_start`."""
        if state_dict:
            self._resumed = state_dict


def _optimizer(trainer: pl.Trainer) -> str:
    return type(trainer.optimizers[0]).__name__.lower() if trainer.optimizers else "none"


def _learning_rate(trainer: pl.Trainer) -> float:
    groups = trainer.optimizers[0].param_groups if trainer.optimizers else []
    return float(groups[0]["lr"]) if groups else math.nan
