"""Watch ``model.fit``: :class:`Monitor` is a ``keras.callbacks.Callback`` around :class:`initlab.Monitor`.

On Keras' torch backend a Keras layer is a ``torch.nn.Module`` and its variables are torch parameters, so the
same probes run: per layer that applies an activation (``Dense(activation="tanh")``, ``Activation``, ``ReLU``),
activation mean, std, dead and saturated fractions; per variable (named by its Keras path,
``sequential/dense/kernel``), gradient norm and gradient/weight ratio; and the same findings, in plain words,
with remedies. Other backends compile the training step, where nothing can be read per layer: the callback says
so at the start of ``fit`` instead of recording nothing.

With ``store=``, the fit is written to an initlab run store like ``initlab run`` writes a run (per-epoch loss and
accuracy, the layer statistics, the findings), so ``initlab report`` shows it beside torch runs; its config
says what it was: ``framework: keras``, the model's name, depth (kernels), width, hidden activation, the
initializer's initlab name, optimizer and learning rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from initlab._errors import InitlabError, fail
from initlab.compare.train import EpochMetrics
from initlab.init._keras_model import keras_activation, keras_kernels, keras_numpy
from initlab.init.registry import get
from initlab.integrations._fit import FitRecord, Watching
from initlab.monitor.core import Monitor as TorchMonitor
from initlab.monitor.detectors import Finding, Thresholds
from initlab.monitor.export import TensorBoardWriter

__all__ = ["Monitor"]


class Monitor(Watching, keras.callbacks.Callback):  # type: ignore[misc]
    """Record per-layer statistics and findings while ``model.fit`` trains.

    Args:
        every: record every n-th training step.
        thresholds: detector thresholds (:class:`initlab.monitor.Thresholds`).
        stop_on: finding kinds that stop training (``model.stop_training``), e.g. ``("nan",)``.
        log_dir: also write TensorBoard scalars there (``initlab/<stat>/<layer>``), at the end of every epoch.
        store: also write the fit to this SQLite run store when it ends (``initlab report STORE`` shows it).
        verbose: print each finding when it is found (1) or not (0).

    After ``fit``: ``.history`` (an :class:`initlab.monitor.History`), ``.findings``, ``.summary()``.
    """

    def __init__(self, every: int = 10, *, thresholds: Thresholds | None = None, stop_on: Iterable[str] = (),
                 log_dir: str | Path | None = None, store: str | Path | None = None,
                 verbose: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.every, self.thresholds, self.stop_on = every, thresholds, set(stop_on)
        self.log_dir, self.store, self.verbose = log_dir, store, verbose
        self._fit = FitRecord()
        self._monitor: TorchMonitor | None = None
        self._writer: TensorBoardWriter | None = None

    @property
    def epochs(self) -> list[EpochMetrics]:
        """Loss and accuracy per epoch (train and validation), as the run store keeps them."""
        return self._fit.epochs

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

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._fit.start_epoch()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}

        def metric(*names: str) -> float:
            return next((float(logs[n]) for n in names if n in logs), math.nan)

        accuracy = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy")
        self._fit.end_epoch(
            metric("loss"), metric(*accuracy), metric("val_loss"), metric(*(f"val_{a}" for a in accuracy))
        )
        if self._writer is not None:
            self._writer.write(self.history)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._monitor is not None:
            self._monitor.close()
        if self._writer is not None:
            self._writer.write(self.history)
            self._writer.close()
            self._writer = None
        if self.store is not None and self._monitor is not None:
            self._fit.write(self.store, keras_config(self.model), self._monitor)


def keras_config(model: Any) -> dict[str, Any]:
    """What a Keras fit was, in the run store's terms: depth = kernels, width = their median units, the most
    common hidden activation, the first kernel's initializer by its initlab name, optimizer and learning rate."""
    kernels = keras_kernels(model)
    acts = [a.name for layer, _ in kernels[:-1] if (a := keras_activation(layer)) is not None]
    init = getattr(kernels[0][0], "kernel_initializer", None) if kernels else None
    try:
        scheme = get(init).name if init is not None else "keras"
    except InitlabError:
        scheme = type(init).__name__
    optimizer = getattr(model, "optimizer", None)
    lr = getattr(optimizer, "learning_rate", math.nan)
    return {
        "framework": "keras", "model": model.name, "data": "keras fit", "depth": len(kernels),
        "width": int(statistics.median(int(v.shape[-1]) for _, v in kernels)) if kernels else 0,
        "activation": max(set(acts), key=acts.count) if acts else "linear", "scheme": scheme, "seed": 0,
        "optimizer": type(optimizer).__name__.lower() if optimizer is not None else "none",
        "lr": lr if isinstance(lr, float) else float(keras_numpy(lr)),
        "epochs": None, "norm": "none",
    }  # fmt: skip
