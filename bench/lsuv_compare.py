"""LSUV (issue 25): initlab's ``lsuv`` and the ``lsuv`` package (0.3.0) on the same models, in one run.

Run: .venv/bin/python bench/lsuv_compare.py  (not bench/lsuv.py: a script of that name would shadow the package)
Goal: initlab puts every layer on target (std 1 ± 0.1 in the mode training uses: BatchNorm on batch statistics,
Dropout off), keeps the residual stream in the band with ``stream=True``, and takes no longer (ratio ≤ 1.0).

Models: a 30-layer MLP (width 256) with BatchNorm after every Linear, and a residual MLP (14 blocks of
Linear-ReLU-Linear, width 128), on one batch of 512 standard-normal inputs. Both libraries start from the
same seed and do their own orthonormal pre-initialization, which is part of the time.
"""

from __future__ import annotations

import torch
from lsuv import lsuv_with_singlebatch
from torch import Tensor, nn

import initlab as il
from _timing import interleaved, report


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def mlp_bn() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(30):
        layers += [nn.Linear(64 if i == 0 else 256, 256), nn.BatchNorm1d(256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def resnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), *[Residual(128) for _ in range(14)], nn.Linear(128, 10))


def stds(model: nn.Module, x: Tensor, kind: type[nn.Module]) -> list[float]:
    """Each ``kind`` module's output std, in train mode (batch statistics) with the model's state kept."""
    out: list[float] = []

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        out.append(float(output.std()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kind)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        model(x)
    model.load_state_dict(state)
    for h in handles:
        h.remove()
    return out


def main() -> None:
    x = torch.randn(512, 64, generator=torch.Generator().manual_seed(1))
    for name, build in (("30-layer MLP + BatchNorm", mlp_bn), ("residual MLP, 14 blocks", resnet)):
        theirs, ours = build(), build()
        lsuv_with_singlebatch(theirs, x, verbose=False)
        il.lsuv(ours, x, stream=build is resnet, generator=torch.Generator().manual_seed(0))
        for label, model in (("lsuv 0.3.0", theirs), ("initlab", ours)):
            layer = stds(model, x, nn.Linear)
            on = sum(abs(s - 1.0) <= 0.1 for s in layer)
            line = (
                f"{name}, {label}: {on}/{len(layer)} Linear outputs on target (range {min(layer):.2f}–{max(layer):.2f})"
            )
            if build is resnet:
                stream = stds(model, x, Residual)
                line += f"; residual stream std {stream[0]:.2f} → {stream[-1]:.2f}"
                if model is ours:  # stream=True scales each branch's last Linear for the sum, not for itself
                    line += " (stream=True: the 14 branch-final Linears are scaled for the stream)"
            print(line)
        base, cand = interleaved(lambda b=build: lsuv_with_singlebatch(b(), x, verbose=False),
                                 lambda b=build: il.lsuv(b(), x, stream=b is resnet), repeats=5)  # fmt: skip
        report(f"{name}, wall time (model built in both)", base, cand, "≤ 1.0")


if __name__ == "__main__":
    main()
