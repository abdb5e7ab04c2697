"""``verify`` on a 124M-parameter model (issue 32): its time against one pass over the model's parameters.

Run: .venv/bin/python bench/verify_speed.py
Model: Hugging Face GPT-2 at GPT-2-small's shapes (12 blocks, width 768, vocabulary 50,257, 1,024 positions:
124.4M parameters), built from its config (no download) and initialized by initlab's ``gpt2`` scheme (seed 0).
Baseline: one pass over every parameter, the least a check of the values must read: ``torch.std_mean`` of each.
initlab: ``il.verify(model, "gpt2")``, the whole call (the structure pass on an input read off the model, the plans,
every test). Best of 5 each, alternating; 2 threads. Goal: verify <= 2x the baseline.
"""

from __future__ import annotations

import time
import warnings

import torch
import transformers

import initlab as il


def main() -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    params = sum(p.numel() for p in model.parameters())
    il.initialize(model, "gpt2", seed=0)
    baseline, ours = [], []
    for _ in range(5):
        start = time.perf_counter()
        with torch.no_grad():
            for p in model.parameters():
                torch.std_mean(p)
        baseline.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = il.verify(model, "gpt2")
        ours.append(time.perf_counter() - start)
        assert report.ok, report.mismatches
    print(f"model: {params / 1e6:.1f}M parameters, {len(report.rows)} plans checked, {report.tests} tests")
    print(f"one pass (std_mean of every parameter): {min(baseline) * 1e3:.0f} ms (best of 5)")
    print(f"il.verify(model, 'gpt2'): {min(ours) * 1e3:.0f} ms (best of 5)")
    print(f"ratio: {min(ours) / min(baseline):.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
