"""Watch ``model.fit``: :class:`Monitor` is a ``keras.callbacks.Callback`` around :class:`initlab.Monitor`.

On Keras' torch backend a Keras layer is a ``torch.nn.Module`` and its variables are torch parameters, so the
same probes run: per layer that applies an activation (``Dense(activation="tanh")``, ``Activation``, ``ReLU``),
activation mean, std, dead and saturated fractions; per variable (named by its Keras path,
``sequential/dense/kernel``), gradient norm and gradient/weight ratio; and the same findings, in plain words,
with remedies. Other backends compile the training step, where nothing can be read per layer: the callback says
so at the start of ``fit`` instead of recording nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from initlab._errors import fail
from initlab.monitor.core import Monitor as TorchMonitor
from initlab.monitor.detectors import Finding, Thresholds
from initlab.monitor.export import TensorBoardWriter
from initlab.monitor.history import History, Summary

__all__ = ["Monitor"]


class Monitor(keras.callbacks.Callback):  # type: ignore[misc]
    """Record per-layer statistics and findings while ``model.fit`` trains.

    Args:
        every: record every n-th training step.
        thresholds: detector thresholds (:class:`initlab.monitor.Thresholds`).
        stop_on: finding kinds that stop training (``model.stop_training``), e.g. ``("nan",)``.
        log_dir: also write TensorBoard scalars there (``initlab/<stat>/<layer>``), at the end of every epoch.
        verbose: print each finding when it is found (1) or not (0).

    After ``fit``: ``.history`` (an :class:`initlab.monitor.History`), ``.findings``, ``.summary()``.
    """

    def __init__(self, every: int = 10, *, thresholds: Thresholds | None = None, stop_on: Iterable[str] = (),
                 log_dir: str | Path | None = None, verbose: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.every, self.thresholds, self.stop_on = every, thresholds, set(stop_on)
        self.log_dir, self.verbose = log_dir, verbose
        self._monitor: TorchMonitor | None = None
        self._writer: TensorBoardWriter | None = None

    @property
    def history(self) -> History:
        return self._monitor.history if self._monitor is not None else History()

    @property
    def findings(self) -> list[Finding]:
        return self._monitor.findings if self._monitor is not None else []

    def summary(self) -> Summary:
        """The last recorded value of every statistic per layer (prints as a table)."""
        return Summary(self.history.summary_table(self.findings))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if keras.backend.backend() != "torch":
            raise fail(f"initlab.keras.Monitor reads layers and gradients through torch; Keras runs on "
                       f"{keras.backend.backend()!r} here", accepted="Keras' torch backend",
                       fix="Set KERAS_BACKEND=torch before importing Keras.")  # fmt: skip
        if self._monitor is None:  # a second fit() continues the same record
            self._monitor = TorchMonitor(self.model, self.every, thresholds=self.thresholds,
                                         on_finding=self._found)  # fmt: skip
        self._monitor.__enter__()
        if self.log_dir is not None and self._writer is None:
            self._writer = TensorBoardWriter(self.log_dir)

    def _found(self, finding: Finding) -> None:
        if self.verbose:
            print(f"initlab: {finding}")
        if finding.kind in self.stop_on:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.write(self.history)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._monitor is not None:
            self._monitor.close()
        if self._writer is not None:
            self._writer.write(self.history)
            self._writer.close()
            self._writer = None
