"""Watch Hugging Face's ``Trainer``: :class:`Monitor` is a ``transformers.TrainerCallback`` around
:class:`initlab.Monitor`.

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Monitor(store="runs.db")])

On train begin it attaches to the model the Trainer trains (unwrapped from DDP and ``torch.compile``) and records
the same per-layer statistics and findings as :class:`initlab.Monitor`, on the Trainer's logging steps (or
``every=``): the last micro-batch of each such optimizer step, whose gradients are the step's, before clipping and
the optimizer. The Monitor's steps count backward passes: with gradient accumulation, optimizer step k ends at
backward pass k × ``gradient_accumulation_steps``. The findings go out through the Trainer's own logging: each new
one is added to the next log (``initlab/<kind>/<layer>``, its text, and ``initlab/findings``, how many so far), so
that TensorBoard, W&B or whatever ``report_to`` names receive it, and to the ``transformers`` logger. With
``stop_on`` a finding of those kinds stops training (``control.should_training_stop``) and says why.

With ``store=``, the fit is written to an initlab run store when training ends (config from the
``TrainingArguments`` and the model's config, loss per epoch, the evaluations' loss and accuracy, the layer
statistics and findings): ``initlab report STORE`` shows it beside other runs.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import transformers
from torch import nn
from torch.utils.hooks import RemovableHandle

from initlab.init._pass import unwrap
from initlab.integrations._fit import FitRecord, Watching, every_optimizer_step, torch_config
from initlab.monitor.core import Monitor as TorchMonitor
from initlab.monitor.detectors import Finding, Thresholds
from initlab.monitor.export import TensorBoardWriter

__all__ = ["Monitor"]

logger = transformers.utils.logging.get_logger("transformers.trainer")


class Monitor(Watching, transformers.TrainerCallback):
    """Record per-layer statistics and findings while a Hugging Face ``Trainer`` trains.

    Args:
        every: record every n-th optimizer step (and the first); by default the Trainer's logging steps.
        thresholds: detector thresholds (:class:`initlab.monitor.Thresholds`).
        stop_on: finding kinds that stop training, e.g. ``("nan", "exploding")``.
        log_stats: also add every recorded statistic to the Trainer's log (``initlab/<stat>/<layer>``), so that
            TensorBoard or W&B plot them; off by default, as the console prints each log whole.
        log_dir: also write every recorded statistic as TensorBoard scalars there.
        store: write the fit to this SQLite run store when training ends.
        scheme: how the model was initialized, as the report names it (by default ``"<model_type> init"``: the
            model's own ``_init_weights``).

    After training: ``.history``, ``.findings``, ``.summary()``, ``.run_id`` (with ``store``).
    """

    def __init__(self, every: int | None = None, *, thresholds: Thresholds | None = None, stop_on: Iterable[str] = (),
                 log_stats: bool = False, log_dir: str | Path | None = None, store: str | Path | None = None,
                 scheme: str | None = None) -> None:  # fmt: skip
        if every is not None:
            every_optimizer_step(every, 1)  # a bad value is refused here, not when training starts
        self.every, self.thresholds, self.stop_on = every, thresholds, set(stop_on)
        self.log_stats, self.log_dir, self.store, self.scheme = log_stats, log_dir, store, scheme
        self.run_id: str | None = None
        self._fit = FitRecord()
        self._new: list[Finding] = []  # found since the last log
        self._stop: Finding | None = None
        self._losses: list[float] = []  # the losses the Trainer logged this epoch
        self._evaluation: dict[str, float] = {}
        self._logged = 0  # history records already added to a log
        self._hook: RemovableHandle | None = None
        self._writer: TensorBoardWriter | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **_: Any) -> None:
        _log_before_reporters(self)
        inner = unwrap(model) if model is not None else None
        if inner is None:
            return
        self._fit, self._new, self._stop, self._logged = FitRecord(), [], None, 0  # a new train() is a new run
        accumulation = args.gradient_accumulation_steps
        every = self.every or _logging_steps(state.logging_steps)
        self._monitor = TorchMonitor(inner, every_optimizer_step(every, accumulation), thresholds=self.thresholds,
                                     on_finding=self._found)  # fmt: skip
        self._monitor.steps = state.global_step * accumulation  # resumed from a checkpoint: the numbering goes on
        self._hook = inner.register_forward_hook(self._observe_loss)
        self._monitor.__enter__()
        if self.log_dir is not None:
            self._writer = TensorBoardWriter(self.log_dir)

    def _observe_loss(self, module: nn.Module, inputs: Any, output: Any) -> None:
        loss = getattr(output, "loss", None) if not isinstance(output, dict) else output.get("loss")
        if loss is not None and loss.requires_grad and self._monitor is not None:
            self._monitor.observe_loss(loss)

    def _found(self, finding: Finding) -> None:
        self._new.append(finding)
        logger.warning(f"initlab: {finding}")
        if finding.kind in self.stop_on and self._stop is None:
            self._stop = finding

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._stop is not None and not control.should_training_stop:
            logger.warning(f"initlab: stopping training after step {state.global_step}: {self._stop.kind} at "
                           f"{self._stop.layer} (stop_on={sorted(self.stop_on)})")  # fmt: skip
            control.should_training_stop = True
            control.should_log = True  # the finding reaches the loggers before training ends

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        if logs is None or self._monitor is None:
            return
        if isinstance(logs.get("loss"), int | float):
            self._losses.append(float(logs["loss"]))
        for finding in self._new:
            logs[f"initlab/{finding.kind}/{finding.layer}"] = str(finding)
        self._new.clear()
        logs["initlab/findings"] = len(self.findings)
        history = self._monitor.history
        if self.log_stats:
            for record in history.records[self._logged :]:
                logs.update({f"initlab/{stat}/{layer}": value for (layer, stat), value in record.items()
                             if math.isfinite(value) and history.applies(layer, stat)})  # fmt: skip
        self._logged = len(history.records)
        if self._writer is not None:
            self._writer.write(history)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **_: Any) -> None:  # fmt: skip
        self._evaluation = dict(metrics or {})

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._fit.start_epoch()
        self._losses.clear()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        evaluation = self._evaluation
        loss = statistics.fmean(self._losses) if self._losses else math.nan
        self._fit.end_epoch(loss, math.nan, float(evaluation.get("eval_loss", math.nan)),
                            float(evaluation.get("eval_accuracy", math.nan)))  # fmt: skip

    def on_train_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **_: Any) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        monitor.close()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._writer is not None:
            self._writer.write(monitor.history)
            self._writer.close()
            self._writer = None
        if self.store is not None and state.is_world_process_zero:
            self.run_id = self._fit.write(self.store, self._config(args, monitor), monitor)

    def _config(self, args: Any, monitor: TorchMonitor) -> dict[str, Any]:
        model, hf_config = monitor.model, getattr(monitor.model, "config", None)
        model_type = getattr(hf_config, "model_type", "") or type(model).__name__
        training = {key: getattr(args, key) for key in _TRAINING_ARGS if hasattr(args, key)}
        return {
            "framework": "transformers", **torch_config(model, monitor.structure), "data": "hf trainer",
            "scheme": self.scheme or f"{model_type} init", "seed": args.seed, "optimizer": str(args.optim),
            "lr": float(args.learning_rate), "epochs": args.num_train_epochs, "model_type": model_type,
            "model_config": hf_config.to_diff_dict() if hf_config is not None else {},
            "training_args": {key: value if isinstance(value, int | float | str | bool) or value is None else str(value)
                              for key, value in training.items()},
        }  # fmt: skip


_TRAINING_ARGS = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
                  "weight_decay", "max_grad_norm", "lr_scheduler_type", "warmup_steps", "logging_steps", "optim",
                  "bf16", "fp16")  # fmt: skip


def _logging_steps(steps: float | int) -> int:
    """The Trainer's logging interval (state.logging_steps: already a count of steps by train begin)."""
    return max(1, math.ceil(steps)) if steps and steps > 0 else 10


def _log_before_reporters(callback: transformers.TrainerCallback) -> None:
    """Put the callback first in the Trainer's list, so that what it adds to a log (the findings) reaches the
    reporting callbacks (TensorBoard, W&B, ...) that read the log after it. transformers runs callbacks in list
    order (its own and the reporters before the user's) and has no public way to order them; the list is the
    attribute of the ``CallbackHandler`` that calls ``on_train_begin``, one frame up."""
    handler = sys._getframe(2).f_locals.get("self")
    if isinstance(handler, transformers.trainer_callback.CallbackHandler) and callback in handler.callbacks:
        handler.callbacks.remove(callback)
        handler.callbacks.insert(0, callback)
