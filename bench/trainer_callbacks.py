"""The Monitor as a trainer callback (issue 33): Hugging Face's Trainer and Lightning's, each with the callback
recording every step, with it recording at the trainer's logging interval (10 steps), and without it, in one run.

Run: .venv/bin/python bench/trainer_callbacks.py
Targets: <= 1.10x recording every step, <= 1.02x at the logging interval. The toy GPT-2 of bench/monitor_gpt2.py
(4 blocks, width 64, vocabulary 100), batch 16 x 32 tokens, AdamW, CPU, 2 threads. What is timed: the steady
training steps, from the end of step WARM to the end of the last (a small timing callback in every run, the
baseline included, takes the clock at each step's end), so the trainers' and the Monitor's one-time setup (the
structure pass at train begin: printed apart) are not in the ratio. The three settings of a framework run
back to back, REPEATS times each: the ratio of the best runs is the figure (the machine's interference only adds
time), the paired ratios' median and quartiles show the spread.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import lightning.pytorch as pl
import torch
import transformers

from initlab.integrations.lightning import Monitor as LightningMonitor
from initlab.integrations.transformers import Monitor as TrainerMonitor

STEPS, WARM, REPEATS, LOG_EVERY = 60, 10, 15, 10


def _model() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _tokens() -> torch.Tensor:
    return torch.randint(0, 100, (16 * STEPS, 32), generator=torch.Generator().manual_seed(0))


class _HFClock(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, *args: object, **kwargs: object) -> None:
        self.ends.append(time.perf_counter())


class _LitClock(pl.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args: object, **kwargs: object) -> None:
        self.ends.append(time.perf_counter())


def _per_step(ends: list[float]) -> float:
    return (ends[-1] - ends[WARM - 1]) / (len(ends) - WARM)


def _hf_run(every: int | None, watch: bool, out: str) -> tuple[float, float]:
    """Seconds per steady step, and the seconds the Monitor's setup took at train begin (0 without it)."""
    clock, tokens = _HFClock(), _tokens()
    callbacks: list[transformers.TrainerCallback] = [clock]
    monitor = TrainerMonitor(every=every) if watch else None
    if monitor is not None:
        callbacks.append(monitor)
    args = transformers.TrainingArguments(output_dir=out, per_device_train_batch_size=16, max_steps=STEPS,
                                          logging_steps=LOG_EVERY, save_strategy="no", use_cpu=True, report_to=[],
                                          disable_tqdm=True, seed=0, log_level="error")  # fmt: skip
    data = [{"input_ids": row, "labels": row} for row in tokens]
    trainer = transformers.Trainer(model=_model(), args=args, train_dataset=data, callbacks=callbacks)
    trainer.remove_callback(transformers.PrinterCallback)  # the log lines on stdout
    begin = time.perf_counter()
    trainer.train()
    first_step = clock.ends[0] - begin
    return _per_step(clock.ends), first_step


class _LitGPT2(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = _model()

    def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
        return self.model(input_ids=batch[0], labels=batch[0]).loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=5e-5)


def _lit_run(every: int | None, watch: bool, out: str) -> tuple[float, float]:
    clock = _LitClock()
    callbacks: list[pl.Callback] = [clock]
    if watch:
        callbacks.append(LightningMonitor(every=every))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(_tokens()), batch_size=16)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=LOG_EVERY,
                         callbacks=callbacks, default_root_dir=out)  # fmt: skip
    begin = time.perf_counter()
    trainer.fit(_LitGPT2(), loader)
    return _per_step(clock.ends), clock.ends[0] - begin


def _compare(name: str, run: Callable[[int | None, bool, str], tuple[float, float]]) -> None:
    """Each repeat runs the three settings back to back (in rotated order). Shown: the ratio of the best runs
    (interference from the shared machine only ever adds time, and a run's mean over its steady steps includes the
    recorded steps), and the median of each repeat's ratio to its own plain run with its quartiles (the spread)."""
    settings = {"plain": (None, False), "every step": (1, True), f"every {LOG_EVERY} (logging)": (None, True)}
    steps: dict[str, list[float]] = {k: [] for k in settings}
    firsts: dict[str, list[float]] = {k: [] for k in settings}
    items = list(settings.items())
    with tempfile.TemporaryDirectory() as out:
        run(None, False, out)  # warm-up: imports, first allocations
        for i in range(REPEATS):
            for label, (every, watch) in items[i % len(items) :] + items[: i % len(items)]:
                step, first = run(every, watch, out)
                steps[label].append(step)
                firsts[label].append(first)
    plain = min(steps["plain"])
    setup = statistics.median(firsts["plain"])
    print(f"{name}: plain step {plain * 1e3:.2f} ms, best of {REPEATS} (first step incl. setup {setup:.3f} s)")
    for label, target in ((items[1][0], "<= 1.10"), (items[2][0], "<= 1.02")):
        ratios = [t / p for t, p in zip(steps[label], steps["plain"], strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        best = min(steps[label])
        print(f"  Monitor, {label}: {best * 1e3:.2f} ms/step, ratio {best / plain:.3f} (target {target}); paired "
              f"ratios: median {median:.3f}, quartiles {q1:.3f}-{q3:.3f}; first step incl. setup "
              f"{statistics.median(firsts[label]):.3f} s")  # fmt: skip


def main() -> None:
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.* is deprecated", FutureWarning)  # Lightning 2.6 on torch 2.13
    _compare("Hugging Face Trainer", _hf_run)
    _compare("Lightning Trainer", _lit_run)


if __name__ == "__main__":
    main()
