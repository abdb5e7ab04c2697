"""initialize() of a GPT-2-small-sized model vs the equivalent loop of torch.nn.init calls (issue 3).

Run: .venv/bin/python bench/init_speed.py
Targets: initialize() / torch loop <= 1.2; truncated_normal_ / torch trunc_normal_ <= 1.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import initlab as il
from _timing import interleaved, report

D, VOCAB, CONTEXT, LAYERS = 768, 50257, 1024, 12


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.attn_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_proj(self.qkv(self.ln1(x))[..., :D])
        return x + self.proj(self.act(self.fc(self.ln2(x))))


class GPT2Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(CONTEXT, D)
        self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(D)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.ln_f(self.blocks(self.wte(idx) + self.wpe(idx)))


def torch_loop(model: nn.Module) -> None:
    """What a careful user writes by hand: kaiming_normal_ with the gain of the following activation."""
    gelu_gain = il.gain("gelu")  # torch has no gelu gain; the user must supply one
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            if name.endswith(".fc"):
                torch.nn.init.kaiming_normal_(m.weight, a=0.0, nonlinearity="linear")
                m.weight.mul_(gelu_gain)
            else:
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            torch.nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            torch.nn.init.normal_(m.weight)
        elif isinstance(m, nn.LayerNorm):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)


def main() -> None:
    torch.set_grad_enabled(False)
    model = GPT2Small()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M parameters, torch {torch.__version__}, {torch.get_num_threads()} threads")
    base, ours = interleaved(lambda: torch_loop(model), lambda: il.initialize(model, "kaiming_normal"), repeats=7)
    report("initialize(kaiming_normal) vs torch.nn.init loop", base, ours, "<= 1.2")
    base, ours = interleaved(lambda: torch_loop(model), lambda: il.initialize(model, "he_normal"), repeats=5)
    report("initialize(he_normal, truncated) vs the same loop", base, ours, "informational")

    weights = [p for p in model.parameters() if p.ndim == 2]
    base, ours = interleaved(
        lambda: [torch.nn.init.trunc_normal_(w, std=0.02) for w in weights],
        lambda: [il.truncated_normal_(w, std=0.02) for w in weights],
        repeats=7,
    )
    report("truncated_normal_ vs torch trunc_normal_", base, ours, "<= 1.5")


if __name__ == "__main__":
    main()
