"""A small GPT-style language model (``model = "transformer"``): token and position embeddings, ``depth`` blocks of
causal multi-head attention and an MLP, pre-LN or post-LN, optional DeepNorm residual scaling, tied or untied
output.

* pre-LN (GPT-2): ``x ← x + f(LN(x))`` per branch, one LN before the output layer;
* post-LN (Vaswani et al. 2017): ``x ← LN(x + f(x))``;
* ``deepnorm`` (Wang et al. 2022, "DeepNet"): post-LN with ``x ← LN(α·x + f(x))``, α = (2N)^¼ for N blocks;
  its β-scaled initialization is the ``deepnorm`` scheme.

Attention's parts are modules that initialization and the monitor can see: ``query``, ``key``, ``value`` and
``output`` projections, and ``logits`` and ``probs``, identities the attention logits and probabilities pass
through. While a forward hook watches either (the monitor's :class:`~initlab.monitor.residual.ResidualStream`,
on recorded steps), attention is written out through them; otherwise torch's fused
``scaled_dot_product_attention`` computes the same function (equal within float rounding; tested). ``scale``
multiplies the logits: 1/√d_head by default, µP's 1/d_head after :func:`initlab.init.mup.mup`.

The model returns logits of shape ``(batch, T, vocabulary)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from initlab._errors import fail, unknown_name
from initlab.compare.config import NORM_POSITIONS
from initlab.init.activations import activation_module
from initlab.init.model import deepnorm_constants

__all__ = ["NORM_POSITIONS", "Block", "CausalSelfAttention", "TransformerLM"]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions ≤ t."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise fail(f"{heads} heads do not divide width {width}", accepted="a multiple of heads",
                       fix=f"Use a width of {heads * max(1, round(width / heads))}.")  # fmt: skip
        self.heads, self.head_dim = heads, width // heads
        self.query, self.key, self.value, self.output = (nn.Linear(width, width) for _ in range(4))
        self.scale = 1 / math.sqrt(self.head_dim)
        self.logits = nn.Identity()  # the scaled logits (batch, heads, T, T), before the causal mask, pass here
        self.probs = nn.Identity()  # the attention probabilities (batch, heads, T, T) pass through here

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, width) -> (B, heads, T, head_dim)
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        if self.logits._forward_hooks or self.probs._forward_hooks:  # watched: written out, through the identities
            logits = self.logits((q @ k.transpose(-2, -1)) * self.scale)
            future = logits.new_ones(x.size(1), x.size(1), dtype=torch.bool).triu(1)
            probs = self.probs(logits.masked_fill(future, float("-inf")).softmax(-1))
            y = probs @ v
        else:  # the same function, torch's fused kernel: a 12-block width-32 training step 89 -> 59 ms on one CPU core
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.output(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Attention then MLP (width → 4·width → width), each a residual branch, normalized before (pre-LN) or after
    (post-LN) the addition; ``alpha`` scales the skip path (DeepNorm's α; 1 otherwise)."""

    def __init__(self, width: int, heads: int, activation: str, pre_norm: bool, alpha: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        hidden = 4 * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden), activation_module(activation), nn.Linear(hidden, width))
        self.pre_norm, self.alpha = pre_norm, alpha

    def forward(self, x: Tensor) -> Tensor:
        if self.pre_norm:
            x = x + self.attention(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(self.alpha * x + self.attention(x))
        return self.norm2(self.alpha * x + self.mlp(x))


class TransformerLM(nn.Module):
    """A decoder-only language model over ``vocabulary`` tokens and contexts of up to ``context`` positions."""

    def __init__(self, vocabulary: int, context: int, width: int = 128, depth: int = 4, heads: int = 4, *,
                 activation: str = "gelu", norm_position: str = "pre", tied: bool = False) -> None:  # fmt: skip
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise unknown_name("norm position", norm_position, NORM_POSITIONS)
        pre = norm_position == "pre"
        alpha = deepnorm_constants(depth)[0] if norm_position == "deepnorm" else 1.0
        self.context, self.norm_position = context, norm_position
        self.token, self.position = nn.Embedding(vocabulary, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(Block(width, heads, activation, pre, alpha) for _ in range(depth)))
        self.norm = nn.LayerNorm(width) if pre else nn.Identity()  # post-LN already ends in a LayerNorm
        self.head = nn.Linear(width, vocabulary, bias=False)
        if tied:
            self.head.weight = self.token.weight

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.token(ids) + self.position(positions)
        return self.head(self.norm(self.blocks(x)))
