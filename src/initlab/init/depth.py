"""Transfer across depth: CompleteP (Dey et al. 2025, α = 1) and depth-µP (Yang et al. 2023, Bordelon et al. 2023,
α = ½), without changing the model.

Relative to a base model of the same architecture at the base depth, with m = L/L_base the ratio of their numbers
of residual branches, each residual branch is read as ``x + m^-α · f(x)``, and, for Adam, as in the paper's
reference implementation (EleutherAI's nanoGPT-mup, ``completep`` branch):

==================  ======================================================  ==========  ===========  ==========
role                which                                                   init        Adam lr      Adam ε
==================  ======================================================  ==========  ===========  ==========
``branch_out``      the last layer of each residual branch (its weight and  ×m^-α       ×m^-1        ×1
                    bias): it carries the branch's multiplier
``block``           every other parameter of a block (a module whose        ×1          ×m^(α-1)     ×m^-α
                    forward adds a residual branch): norms, q/k/v, MLP
``outside``         embeddings, the final norm, the readout                 ×1          ×1           ×1
==================  ======================================================  ==========  ===========  ==========

The branch's multiplier ``a = m^-α`` is folded into its last layer as :func:`initlab.mup` folds the readout's: a
weight W read as a·W trains under Adam like W' = a·W with learning rate ×a, ε ÷a and decoupled weight decay ÷a
(Adam's update is invariant to the gradient's scale but for ε). So ``branch_out`` is the block's ×m^(α-1) and ε
×m^-α, times the folding: learning rate ×m^-1, ε ×1, weight decay ×m^α. No module is replaced; any residual
model the structure layer reads works (initlab's transformer, a Hugging Face decoder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from initlab._errors import fail
from initlab.init._walk import structure_of
from initlab.init.structure import Structure

__all__ = ["ALPHAS", "Depth", "DepthParam", "depth"]

ALPHAS = {"completep": 1.0, "depth_mup": 0.5}


@dataclasses.dataclass(frozen=True)
class DepthParam:
    """One parameter's role and multipliers (relative to the same model trained at its own depth without them)."""

    name: str
    role: str  # branch_out, block or outside
    init: float
    lr: float
    eps: float
    weight_decay: float


@dataclasses.dataclass
class Depth:
    """What :func:`depth` did, and the Adam parameter groups that complete it."""

    model: nn.Module
    params: list[DepthParam]
    multiplier: float  # m = L / L_base
    alpha: float

    def __iter__(self) -> Iterator[DepthParam]:
        return iter(self.params)

    def param_groups(self, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict[str, Any]]:
        """Parameter groups for ``torch.optim.Adam``/``AdamW`` (one per distinct multiplier set), each with its
        own ``lr``, ``eps`` and ``weight_decay`` (PyTorch's Adam takes all three per group)."""
        named = dict(self.model.named_parameters())
        groups: dict[tuple[float, float, float], dict[str, Any]] = {}
        for p in self.params:
            key = (p.lr, p.eps, p.weight_decay)
            group = groups.setdefault(key, {"params": [], "names": [], "lr": lr * p.lr, "eps": eps * p.eps,
                                            "weight_decay": weight_decay * p.weight_decay})  # fmt: skip
            group["params"].append(named[p.name])
            group["names"].append(p.name)
        return list(groups.values())


def depth(model: nn.Module, base: nn.Module, *, alpha: float = 1.0, example: Any = None) -> Depth:
    """Fold CompleteP's (``alpha=1``) or depth-µP's (``alpha=0.5``) residual multiplier into ``model``'s
    initialization (already drawn, e.g. by :func:`initlab.initialize`), in place, relative to ``base`` (the same
    architecture at the base depth), and return each parameter's multipliers and the Adam groups (module docs).

    >>> from initlab.compare.transformer import TransformerLM
    >>> deep = TransformerLM(50, 16, width=32, depth=8)
    >>> plan = depth(deep, TransformerLM(50, 16, width=32, depth=2))
    >>> plan.multiplier, sorted({(p.role, p.init, p.lr, p.eps) for p in plan})
    (4.0, [('block', 1.0, 1.0, 0.25), ('branch_out', 0.25, 0.25, 1.0), ('outside', 1.0, 1.0, 1.0)])

    Raises:
        InitlabError: an ``alpha`` outside [0.5, 1], a model or base without residual branches, or a branch's last
            layer whose weight is shared with another layer.
    """
    if not 0.5 <= alpha <= 1.0:
        raise fail("alpha is the depth exponent of the residual multiplier m^-α", accepted="0.5 (depth-µP) to 1 "
                   "(CompleteP)", received=alpha, fix="Pass alpha=1.0 (CompleteP) or alpha=0.5.")  # fmt: skip
    structure, base_structure = structure_of(model, example), structure_of(base, example)
    if not structure.residuals or not base_structure.residuals:
        raise fail("depth transfer scales residual branches, and the model (or its base) has none the structure "
                   "layer could see", fix="Pass a residual model, and example= (an input it takes) if it has no "
                   "input initlab can read off it.")  # fmt: skip
    m = len(structure.residuals) / len(base_structure.residuals)
    params = _roles(model, structure, m, alpha)
    with torch.no_grad():
        named = dict(model.named_parameters())
        for p in params:
            if p.init != 1.0:
                named[p.name].mul_(p.init)
    return Depth(model, params, m, alpha)


def _roles(model: nn.Module, structure: Structure, m: float, alpha: float) -> list[DepthParam]:
    ends = {structure.owner(r.last) for r in structure.residuals}
    blocks = {r.module for r in structure.residuals}
    seen: dict[int, str] = {}
    out = []
    for name, p in model.named_parameters(remove_duplicate=False):
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if id(p) in seen:
            if owner in ends or seen[id(p)] in ends:
                raise fail(f"{name} is shared with {seen[id(p)]}, and one of them ends a residual branch: its "
                           "multiplier cannot be folded into one of them alone",
                           fix="Untie the branch's last layer.")  # fmt: skip
            continue
        seen[id(p)] = owner
        if owner in ends:
            a = m**-alpha
            out.append(DepthParam(name, "branch_out", a, m ** (alpha - 1) * a, m**-alpha / a, 1 / a))
        elif any(owner == b or owner.startswith(f"{b}.") for b in blocks if b):
            out.append(DepthParam(name, "block", 1.0, m ** (alpha - 1), m**-alpha, 1.0))
        else:
            out.append(DepthParam(name, "outside", 1.0, 1.0, 1.0, 1.0))
    return out
