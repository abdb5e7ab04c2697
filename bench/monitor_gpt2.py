"""The Monitor on a Hugging Face GPT-2 training loop (issue 30): every step and every=10, against the same loop
without it, interleaved in blocks of 10 steps, medians.

Run: .venv/bin/python bench/monitor_gpt2.py
Target: <= 1.10x at every step. A toy GPT-2 (4 blocks, width 64, 4 heads, vocabulary 100), batch 16 x 32 tokens,
AdamW lr 1e-3, CPU, 2 threads; the monitor's default probes (activation statistics at every activation the
structure layer finds, gradient norms of all 52 parameters, the loss).
"""

from __future__ import annotations

import statistics
import time

import torch
import transformers

import initlab as il

STEPS, REPEATS = 10, 30


def main() -> None:
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 100, (16, 32), generator=torch.Generator().manual_seed(0))

    def loop(mon: il.Monitor | None) -> None:
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            loss = model(input_ids=ids, labels=ids).loss
            if mon is not None:
                mon.observe_loss(loss)
            loss.backward()
            opt.step()

    monitors = {"every step": il.Monitor(model, every=1), "every=10": il.Monitor(model, every=10)}

    def monitored(mon: il.Monitor) -> None:
        with mon:
            loop(mon)

    runs = {"plain": lambda: loop(None), **{k: (lambda m=m: monitored(m)) for k, m in monitors.items()}}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    items = list(runs.items())
    for i in range(REPEATS):
        for label, fn in items[i % len(items) :] + items[: i % len(items)]:
            start = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - start) / STEPS)
    plain = statistics.median(times["plain"])
    print(f"plain GPT-2 step: {plain * 1e3:.2f} ms")
    for label, target in (("every step", "<= 1.10"), ("every=10", "<= 1.02")):
        t = statistics.median(times[label])
        print(f"Monitor, {label}: {t * 1e3:.2f} ms/step, ratio {t / plain:.3f} (target {target})")
    record = monitors["every step"].history.records[-1]
    print(
        f"watched: {len({layer for layer, s in record if s == 'std'})} activations, "
        f"{len({layer for layer, s in record if s == 'stream_out'})} residual blocks, "
        f"{len({layer for layer, s in record if s == 'grad_norm'})} gradient norms per recorded step"
    )


if __name__ == "__main__":
    main()
