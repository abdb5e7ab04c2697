"""The structure layer on GPT-2-small's real shape (issue 30): capture on the meta device, and initialize on the
materialized model against Hugging Face's own ``_init_weights``.

Run: .venv/bin/python bench/structure_capture.py
Targets: capture of GPT-2-small (12 blocks, width 768, 124M parameters) on the meta device in <= 2 s without
allocating its weights (the process's peak resident memory grows by far less than the 498 MB of fp32 weights);
``initlab.initialize(model, "gpt2")`` within 1.5x of ``model.apply(model._init_weights)`` (HF's own rule, the same
distributions: tests/test_zoo.py compares them parameter by parameter), interleaved, medians of 5.
"""

from __future__ import annotations

import resource
import statistics
import time

import torch
import transformers

import initlab as il
from _timing import interleaved, report
from initlab.init.structure import capture


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config()
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config)
    example = {"input_ids": torch.zeros(1, 64, dtype=torch.long, device="meta")}
    capture(model, example)  # the first call imports what the pass needs; then the memory a capture takes
    before = peak_mb()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        structure = capture(model, example)
        times.append(time.perf_counter() - start)
    size = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    print(f"capture on meta: median {statistics.median(times):.3f} s of 5 (target <= 2 s); {len(structure.layers)} "
          f"weight layers, {len(structure.branch_ends())} residual branches, readout {structure.output}; peak memory "
          f"grew {peak_mb() - before:.0f} MB (the weights would be {size:.0f} MB)")  # fmt: skip
    toy = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100,
                                                                n_positions=64)).eval()  # fmt: skip
    ids = {"input_ids": torch.randint(0, 100, (2, 4))}
    # the alternative the issue named: torch.export non-strict (its default call fails on the DynamicCache output)
    export = lambda: torch.export.export(toy, (), {**ids, "use_cache": False}, strict=False)  # noqa: E731
    base, ours = interleaved(export, lambda: capture(toy, ids), repeats=5)
    report("structure of a toy GPT-2: torch.export (non-strict) vs initlab's capture", base, ours, "informational")
    model = transformers.GPT2LMHeadModel(config)  # materialized
    generator = torch.Generator().manual_seed(0)
    # HF's rule applied to every module (init_weights() skips modules it marked as initialized already)
    base, ours = interleaved(lambda: model.apply(model._init_weights),
                             lambda: il.initialize(model, "gpt2", generator=generator), repeats=5)  # fmt: skip
    report("initialize(model, 'gpt2') vs HF's model.apply(model._init_weights) on GPT-2-small", base, ours, "<= 1.5")


if __name__ == "__main__":
    main()
