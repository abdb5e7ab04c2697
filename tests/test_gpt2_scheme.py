"""The ``gpt2`` scheme (issue 26, item 3, first part): N(0, 0.02²) everywhere, and the output projection of each
of the 2N residual branches of an N-block pre-LN transformer scaled by 1/√(2N) (Radford et al. 2019) — checked
per parameter against the formula for several N, found through the model's residual additions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import initlab as il


class Block(nn.Module):
    """A pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


@pytest.mark.parametrize("blocks", [2, 6, 12])
def test_residual_projections_are_scaled_by_one_over_root_2n(blocks: int) -> None:
    d = 64
    net = nn.Sequential(nn.Embedding(100, d), *[Block(d) for _ in range(blocks)], nn.Linear(d, 100))
    report = il.initialize(net, "gpt2", generator=torch.Generator().manual_seed(0))
    rows = {r.name: r for r in report}
    scaled = 0.02 / math.sqrt(2 * blocks)
    for i in range(1, blocks + 1):
        for name in (f"{i}.attn.out_proj.weight", f"{i}.mlp.2.weight"):
            assert rows[name].std == pytest.approx(scaled) and rows[name].scheme == f"gpt2 ×1/√{2 * blocks}"
        for name in (f"{i}.attn.in_proj_weight", f"{i}.mlp.0.weight"):
            assert rows[name].std == pytest.approx(0.02)
        assert not net[i].attn.out_proj.bias.any() and (net[i].ln1.weight == 1).all()
    assert rows["0.weight"].std == pytest.approx(0.02)  # the token embedding: N(0, 0.02²) too
    # the tensors themselves: 64·64·blocks values per kind, sample std within 3% (≈ 4 standard errors at 2 blocks)
    out = torch.cat([net[i].attn.out_proj.weight.detach().flatten() for i in range(1, blocks + 1)])
    assert float(out.std()) == pytest.approx(scaled, rel=0.03)


def test_scaled_is_a_residual_rule_for_any_scheme() -> None:
    net = nn.Sequential(nn.Linear(8, 32), *[Block(32) for _ in range(3)])
    report = il.initialize(net, "he_normal", residual="scaled", generator=torch.Generator().manual_seed(0))
    row = next(r for r in report if r.name == "1.mlp.2.weight")
    assert row.scheme == "he_normal ×1/√6"  # 3 blocks: 6 residual branches
    assert row.std == pytest.approx(math.sqrt(2 / 128) / math.sqrt(6))  # He's exact std at fan_in 128, ×1/√6


@pytest.mark.parametrize("blocks", [2, 6, 12])
def test_deepnorm_scales_value_output_and_mlp_by_beta(blocks: int) -> None:
    # DeepNet (Wang et al. 2022), decoder-only: β = (8N)^-¼ on the value, output and MLP projections; Xavier normal
    d = 64
    net = nn.Sequential(nn.Linear(16, d), *[Block(d) for _ in range(blocks)], nn.Linear(d, 10))
    report = il.initialize(net, "deepnorm", generator=torch.Generator().manual_seed(0))
    rows = {r.name: r for r in report}
    beta = (8 * blocks) ** -0.25
    assert il.init.model.deepnorm_constants(blocks) == (pytest.approx((2 * blocks) ** 0.25), pytest.approx(beta))
    xavier = {(d, d): math.sqrt(2 / (d + d)), (4 * d, d): math.sqrt(2 / (5 * d)), (d, 4 * d): math.sqrt(2 / (5 * d))}
    for i in range(1, blocks + 1):
        assert rows[f"{i}.attn.out_proj.weight"].std == pytest.approx(beta * xavier[(d, d)])
        assert rows[f"{i}.mlp.0.weight"].std == pytest.approx(beta * xavier[(4 * d, d)])
        assert rows[f"{i}.mlp.2.weight"].std == pytest.approx(beta * xavier[(d, 4 * d)])
        packed = net[i].attn.in_proj_weight.detach()
        q, v = packed[:d], packed[2 * d :]  # q (and k) keep Xavier; v is β-scaled: 4,096 values each, std within 5%
        assert float(q.std()) == pytest.approx(xavier[(d, d)], rel=0.05)
        assert float(v.std()) == pytest.approx(beta * xavier[(d, d)], rel=0.05)
        assert rows[f"{i}.attn.in_proj_weight"].scheme.endswith("on v")
    assert rows["0.weight"].std == pytest.approx(math.sqrt(2 / (16 + d)))  # outside the blocks: plain Xavier
